// The command line, run as users run it: spawned processes (through tsx, no
// build needed) for exit statuses, signals and files; main() in-process for the
// many bad-argument cases, each checked for its message, usage and status.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { readMetrics, type MetricsRecord, type StartRecord } from '../../src/train/metrics.js';
import { GPT } from '../../src/nn/gpt.js';
import { saveGPT2 } from '../../src/io/gpt2.js';
import { tempRunRoot, tinyArgs } from '../train/tiny-run.js';

const TSX = import.meta.resolve('tsx');
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/mixprec.js', import.meta.url));

let root: string;
let dataFile: string;
let trainedRun: string;

before(async () => {
  ({ root, dataFile } = await tempRunRoot('mixprec-cli-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** Runs `mixprec ...args` in a child process, in the temporary directory. */
function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', TSX, MAIN, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs main() in this process, capturing its output. */
async function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const status = await main(args, { write: (s: string) => (stdout += s) }, { write: (s: string) => (stderr += s) });
  return { status, stdout, stderr };
}

/** Asserts a usage error: status 2, the message naming what is wrong, and the command's usage. */
function assertUsageError(r: { status: number | null; stderr: string }, command: string, message: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  const [first, ...rest] = r.stderr.trim().split('\n');
  assert.match(first!, new RegExp(`^mixprec${command ? ` ${command}` : ''}: error: `));
  assert.match(first!, message);
  assert.match(rest.join('\n'), /usage: mixprec/);
}

const comparable = (rs: MetricsRecord[]) => rs.filter((r) => r.type !== 'start').map((r) => {
  const { elapsedSec: _e, tokensPerSec: _t, ...rest } = r as unknown as Record<string, unknown>;
  return rest;
});

describe('exit statuses of a real process', () => {
  test('no command: the commands and exit status 2', () => {
    const r = cli([]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /usage: mixprec <command> \[options\]/);
    assert.match(r.stderr, /train .*\n.*eval .*\n.*generate /);
  });

  test('unknown command: lists the commands, exit status 2', () => {
    assertUsageError(cli(['frob']), '', /unknown command 'frob' \(commands: train, eval, generate, quantize, compare, memory\)/);
  });

  test('unknown option: named, with the usage, exit status 2', () => {
    assertUsageError(cli(['train', '--bogus', '1']), 'train', /unknown option --bogus/);
  });

  test('--version exits 0', () => {
    const v = cli(['--version']);
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^mixprec \d+\.\d+\.\d+\n$/);
  });
});

describe('bad arguments (in-process)', () => {
  const cases: [string, string[], string, RegExp][] = [
    ['option before the command', ['--lr', '1'], '', /expected a command before options, got '--lr'/],
    ['unknown option, with a suggestion', ['train', '--max-step', '3'], 'train', /unknown option --max-step \(did you mean --max-steps\?\)/],
    ['missing value at the end', ['train', '--max-steps'], 'train', /option --max-steps is missing its value \(an integer\)/],
    ['missing value before another option', ['train', '--data', '--lr', '1'], 'train', /option --data is missing its value \(PATH\)/],
    ['wrong type: integer', ['train', '--batch-size=abc'], 'train', /option --batch-size: expected an integer, got 'abc'/],
    ['wrong type: float', ['train', '--lr', 'fast'], 'train', /option --lr: expected a number, got 'fast'/],
    ['below the minimum', ['train', '--grad-accum', '0'], 'train', /option --grad-accum: must be at least 1, got 0/],
    ['bad enum value', ['train', '--backend', 'tpu'], 'train', /option --backend: 'tpu' is not one of auto, cpu, webgpu/],
    ['bad model preset', ['train', '--model', 'huge'], 'train', /option --model: 'huge' is not one of tiny, mini/],
    ['bad tokenizer', ['train', '--tokenizer', 'words'], 'train', /option --tokenizer: 'words' is not one of byte, gpt2/],
    ['bad precision preset', ['train', '--precision', 'fp8'], 'train', /option --precision: policy: unknown preset 'fp8' \(presets: fp32, fp16, fp16-master, bf16, bf16-master/],
    ['bad precision string', ['train', '--precision', 'params=float16,compute=float32'], 'train', /option --precision: .*float16 parameters with float32 compute is not supported/],
    ['bad policy key', ['train', '--precision=params=f32,speed=fast'], 'train', /option --precision: policy: unknown key 'speed'/],
    ['bad loss scale', ['train', '--loss-scale', '-3'], 'train', /option --loss-scale: expected dynamic, none or a positive number, got '-3'/],
    ['bad duration', ['train', '--time-budget', 'soon'], 'train', /option --time-budget: 'soon' is not a duration \(examples: 540, 90s, 9m, 1h30m\)/],
    ['flag with a value', ['eval', '--json=yes'], 'eval', /option --json is a flag and takes no value/],
    ['stray argument', ['train', 'fast'], 'train', /unexpected argument 'fast'/],
    ['inconsistent sizes', ['train', '--model', 'tiny', '--n-head', '3', '--backend', 'cpu'], 'train', /--model: .*nEmbd 64 is not divisible by nHead 3/],
    ['missing --resume directory', ['train', '--resume', 'runs/nowhere'], 'train', /option --resume: run directory 'runs\/nowhere' does not exist/],
    ['--resume with --out', ['train', '--resume', '.', '--out', 'x'], 'train', /options --resume and --out cannot be combined/],
    ['eval without --checkpoint', ['eval'], 'eval', /option --checkpoint is required/],
    ['generate: top-k 0', ['generate', '--checkpoint', '.', '--top-k', '0'], 'generate', /option --top-k: must be at least 1, got 0/],
    ['generate: bad precision', ['generate', '--checkpoint', '.', '--precision', 'fp8'], 'generate', /option --precision: 'fp8' is not one of fp32, fp16, bf16/],
    ['generate: negative temperature', ['generate', '--checkpoint', '.', '--temperature=-1'], 'generate', /option --temperature: must be at least 0, got -1/],
  ];
  for (const [what, args, command, message] of cases) {
    test(what, async () => assertUsageError(await run(args), command, message));
  }

  test('--help on every command: the options with their defaults, exit 0', async () => {
    assert.match((await run(['--help'])).stdout, /commands:\n  train .*\n  eval .*\n  generate /);
    for (const command of ['train', 'eval', 'generate']) {
      const r = await run([command, '--help']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, new RegExp(`usage: mixprec ${command}`));
      assert.match(r.stdout, /\(default: /);
    }
    const t = (await run(['train', '-h'])).stdout;
    for (const o of ['precision', 'loss-scale', 'backend', 'model', 'n-layer', 'tokenizer', 'data', 'batch-size', 'block-size', 'grad-accum', 'lr', 'min-lr', 'warmup', 'max-steps', 'weight-decay', 'clip', 'eval-interval', 'eval-steps', 'save-interval', 'seed', 'out', 'resume', 'init-from', 'time-budget']) {
      assert.match(t, new RegExp(`--${o} `), o);
    }
    assert.match(t, /--precision POLICY +fp32, fp16, fp16-master, bf16, bf16-master.*\n.*\(default: fp16\)/);
  });
});

describe('a tiny run: train, eval, generate, interrupt and resume', () => {
  test('train writes metrics.jsonl, summary.json and a checkpoint; plain progress lines when not on a terminal', async () => {
    trainedRun = path.join(root, 'runs', 'tiny');
    const r = cli(['train', ...tinyArgs(dataFile, { maxSteps: 8, logInterval: 4, evalInterval: 4 }), '--out', 'runs/tiny']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^backend: cpu/m);
    assert.match(r.stderr, /^step 4\/8 \| loss \d+\.\d{4} \| lr .* \| scale \d+ \| skipped \d+ \| [\d,]+ tok\/s \| \d+s elapsed$/m);
    assert.match(r.stderr, /^step 8: val loss \d+\.\d{4} nats\/token = \d+\.\d{4} nats\/byte, perplexity/m);
    assert.doesNotMatch(r.stderr, /\r/);
    assert.match(r.stdout, /^done: 8\/8 steps \(\d+ skipped\), 1,024 tokens in \d+s, [\d,]+ tok\/s$/m);
    assert.match(r.stdout, /^final validation loss \d+\.\d{4} nats\/token = \d+\.\d{4} nats\/byte, perplexity \d+\.\d\d$/m);
    assert.match(r.stdout, /^sample: mixprec generate --checkpoint runs\/tiny --prompt 'The '$/m);
    const summary = JSON.parse(await fs.readFile(path.join(trainedRun, 'summary.json'), 'utf8'));
    assert.equal(summary.steps, 8);
    assert.equal(summary.backend, 'cpu (the pure-TypeScript reference backend)');
    const records = await readMetrics(path.join(trainedRun, 'metrics.jsonl'));
    assert.deepEqual(records.map((x) => `${x.type}@${x.step}`), ['start@0', 'train@4', 'eval@4', 'train@8', 'eval@8']);
    assert.ok((await fs.readdir(path.join(trainedRun, 'checkpoint'))).includes('trainer_state.json'));
  });

  test('eval prints the validation loss and perplexity: the same windows and policy give the final loss of the run', async () => {
    const summary = JSON.parse(await fs.readFile(path.join(trainedRun, 'summary.json'), 'utf8'));
    const r = cli(['eval', '--checkpoint', 'runs/tiny', '--backend', 'cpu', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.valLoss, summary.finalValLoss);
    assert.equal(result.step, 8);
    const text = await run(['eval', '--checkpoint', path.join(trainedRun, 'checkpoint'), '--backend', 'cpu', '--precision', 'fp32', '--eval-steps', '3']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^val loss \d+\.\d{4} nats\/token = \d+\.\d{4} nats\/byte, perplexity \d+\.\d\d \(384 tokens\)\n$/);
  });

  test('generate prints the prompt and a sample; the seed makes it reproducible, in fp32, fp16 and bf16', async () => {
    // In this process the working directory is not the temporary one: absolute paths.
    const base = ['generate', '--checkpoint', trainedRun, '--backend', 'cpu', '--prompt', 'the quick', '--max-new-tokens', '20', '--seed', '5'];
    const a = cli(base);
    assert.equal(a.status, 0, a.stderr);
    assert.ok(a.stdout.startsWith('the quick'));
    assert.ok(Buffer.byteLength(a.stdout) > 'the quick'.length + 5);
    assert.equal((await run(base)).stdout, a.stdout);
    for (const precision of ['fp16', 'bf16']) {
      const r = await run([...base, '--precision', precision]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`sampling in ${precision}`));
      assert.ok(r.stdout.startsWith('the quick'));
    }
  });

  test('--resume of a damaged checkpoint: an error naming the file, exit status 1', async () => {
    const copy = path.join(root, 'runs', 'damaged');
    await fs.cp(trainedRun, copy, { recursive: true });
    await fs.appendFile(path.join(copy, 'checkpoint', 'optimizer.safetensors'), 'x');
    const r = await run(['train', '--resume', copy]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^mixprec train: error: checkpoint .*optimizer\.safetensors: is \d+ bytes, trainer_state\.json recorded \d+ \(truncated or altered\)\n$/);
    const plain = path.join(root, 'runs', 'not-a-run');
    await fs.mkdir(plain, { recursive: true });
    const p = await run(['train', '--resume', plain]);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /checkpoint .*not-a-run\/checkpoint: does not exist/);
    const changed = await run(['train', '--resume', trainedRun, '--batch-size', '8']);
    assertUsageError(changed, 'train', /--batch-size: cannot change from 4 to 8 when resuming/);
  });

  test('Ctrl-C saves a checkpoint and exits with 130; --resume then gives the losses of an uninterrupted run, bit for bit', async () => {
    const args = tinyArgs(dataFile, { maxSteps: 40, evalInterval: 10 });
    const straight = cli(['train', ...args, '--out', 'runs/straight']);
    assert.equal(straight.status, 0, straight.stderr);

    const child = spawn(process.execPath, ['--import', TSX, MAIN, 'train', ...args, '--out', 'runs/stopped'], { cwd: root });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const metrics = path.join(root, 'runs', 'stopped', 'metrics.jsonl');
    for (let i = 0; i < 600; i++) {
      const steps = (await readMetrics(metrics)).filter((r) => r.type === 'train').length;
      if (steps >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const status = await exited;
    assert.equal(status, 130, stderr);
    assert.match(stderr, /interrupt: finishing the current step and saving a checkpoint/);
    const stoppedAt = Number(/interrupted at step (\d+) of 40/.exec(stderr)?.[1]);
    assert.ok(stoppedAt >= 3 && stoppedAt < 40, `stopped at ${stoppedAt}`);
    assert.match(stderr, /resume with: mixprec train --resume runs\/stopped\n/);
    await assert.rejects(fs.stat(path.join(root, 'runs', 'stopped', 'summary.json')), 'no final summary for an interrupted run');

    const resumed = cli(['train', '--resume', 'runs/stopped']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resuming at step ${stoppedAt} of 40`));
    const a = comparable(await readMetrics(path.join(root, 'runs', 'straight', 'metrics.jsonl')));
    const b = comparable(await readMetrics(metrics));
    assert.equal(a.length, 40 + 4);
    assert.deepEqual(b, a);
  });
});

test('--init-from a GPT-2 directory fine-tunes it with the GPT-2 tokenizer by default', async () => {
  const source = path.join(root, 'gpt2-tiny');
  const model = new GPT({ vocabSize: 50257, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 32, dropout: 0, bias: true }, { seed: 7 });
  await saveGPT2(model, source);
  model.dispose();
  const out = path.join(root, 'runs', 'tuned');
  const r = await run(['train', '--init-from', source, '--data', dataFile, '--backend', 'cpu', '--max-steps', '2', '--batch-size', '2', '--block-size', '16', '--eval-steps', '1', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /gpt2 tokenizer/);
  const start = (await readMetrics(path.join(out, 'metrics.jsonl')))[0] as StartRecord;
  assert.equal(start.config.tokenizer, 'gpt2');
  assert.equal(start.model.nEmbd, 32);
  assert.match(r.stdout, /final validation loss \d+\.\d{4} nats\/token, perplexity/);
});

test('bin/mixprec.js says how to build when dist/ is missing', async () => {
  const pkg = path.join(root, 'pkg');
  await fs.mkdir(path.join(pkg, 'bin'), { recursive: true });
  await fs.copyFile(BIN, path.join(pkg, 'bin', 'mixprec.js'));
  const r = spawnSync(process.execPath, [path.join(pkg, 'bin', 'mixprec.js'), '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /dist\/cli\/main\.js\) is missing\.\nBuild it with `npm run build`/);
});
