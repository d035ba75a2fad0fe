// The `mixprec` command line: `mixprec <train|eval|generate|quantize|compare|memory> [options]`.
// bin/mixprec.js runs the compiled form of this file; during development
// `node --import tsx src/cli/main.ts ...` runs it from source.

import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PROGRAM, UsageError } from './args.js';
import { EXIT_OK, EXIT_USAGE, reportError } from './errors.js';
import { evalCommand } from './eval.js';
import { generateCommand } from './generate.js';
import { quantizeCommand } from './quantize.js';
import type { OutputStream } from './progress.js';
import { trainCommand } from './train.js';
import { compareCommand } from './compare.js';
import { memoryCommand } from './memory.js';

type Command = (argv: readonly string[], out: OutputStream, err: OutputStream) => Promise<number>;

export const COMMANDS: Record<string, { run: Command; summary: string }> = {
  train: { run: trainCommand, summary: 'train a GPT with mixed precision (the default run: a small GPT on the Brown corpus)' },
  eval: { run: evalCommand, summary: 'validation loss and perplexity of a checkpoint' },
  generate: { run: generateCommand, summary: 'sample text from a checkpoint' },
  quantize: { run: quantizeCommand, summary: 'write a model in an inference weight format (int8, int4, fp16, bf16)' },
  compare: { run: compareCommand, summary: 'train under several precision set-ups and write report.html comparing them' },
  memory: { run: memoryCommand, summary: 'plan the memory of a training run (breakdown, predicted peak, fit) without allocating it' },
};

const USAGE = `usage: ${PROGRAM} <command> [options]`;

function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 4;
  return [
    'mixprec: mixed-precision training of GPT language models (autocast, GradScaler, float32 master weights).',
    '',
    USAGE,
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    `Run '${PROGRAM} <command> --help' for a command's options; '${PROGRAM} --version' for the version.`,
    '',
  ].join('\n');
}

function version(): string {
  // package.json sits two levels above this file, both in src/cli and in dist/cli.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Runs the command line and returns the exit status. */
export async function main(argv: readonly string[], out: OutputStream = process.stdout, err: OutputStream = process.stderr): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    err.write(topHelp());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    out.write(topHelp());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    out.write(`${PROGRAM} ${version()}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    const what = name.startsWith('-') ? `expected a command before options, got '${name}'` : `unknown command '${name}'`;
    return reportError(new UsageError(`${what} (commands: ${Object.keys(COMMANDS).join(', ')})`, `${USAGE}\nRun '${PROGRAM} --help' for more.`), null, err);
  }
  try {
    return await command.run(rest, out, err);
  } catch (e) {
    return reportError(e, name, err);
  }
}

/** True when this module is the program being run (not imported). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
}
