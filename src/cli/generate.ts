// `mixprec generate`: samples text from a checkpoint (or any GPT-2 directory).

import type { TokenizerName } from '../data/tokenizer.js';
import type { BackendChoice } from '../train/config.js';
import { openModelDir } from '../train/model-dir.js';
import { SAMPLE_PRECISIONS, sampleText, type SamplePrecision } from '../train/sample.js';
import { UsageError, formatHelp, parseArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION, MODEL_DIR_OPTIONS, backendOption, describeOpened, modelTokenizer, useBackend } from './common.js';
import type { OutputStream } from './progress.js';

export const GENERATE_SPEC: CommandSpec = {
  name: 'generate',
  summary: 'Sample text from a checkpoint: the prompt, then the continuation.',
  usage: 'generate --checkpoint DIR [--prompt TEXT] [options]',
  options: [
    ...MODEL_DIR_OPTIONS,
    { name: 'prompt', type: 'string', metavar: 'TEXT', default: '\n', defaultText: 'a newline', help: 'the text to continue' },
    { name: 'max-new-tokens', type: 'int', min: 1, default: 200, help: 'tokens to sample' },
    { name: 'temperature', type: 'float', min: 0, default: 0.8, help: 'divides the logits; 0 picks the most likely token' },
    { name: 'top-k', type: 'int', min: 1, default: 200, help: 'sample among the k most likely tokens' },
    { name: 'seed', type: 'int', min: 0, default: 0, help: 'seeds the sampling' },
    { name: 'precision', type: 'enum', values: SAMPLE_PRECISIONS, default: 'fp32', help: 'fp32, or autocast to fp16 or bf16' },
    backendOption(),
    HELP_OPTION,
  ],
  epilog: "example:\n  mixprec generate --checkpoint runs/20250101-120000 --prompt 'The jury' --max-new-tokens 300 --seed 7",
};

export async function generateCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseArgs(GENERATE_SPEC, argv);
  if (args.help) {
    out.write(formatHelp(GENERATE_SPEC));
    return EXIT_OK;
  }
  const v = args.values;
  const selected = await useBackend(v.backend as BackendChoice, err);
  const opened = await openModelDir(v.checkpoint as string, { backend: selected.backend });
  const { model } = opened;
  try {
    const tokenizer = await modelTokenizer(v.tokenizer as TokenizerName | undefined, opened, GENERATE_SPEC);
    const prompt = v.prompt as string;
    if (prompt.length === 0) throw new UsageError('option --prompt: the prompt is empty (give at least one character)', shortUsage(GENERATE_SPEC));
    err.write(`model: ${describeOpened(opened)}, sampling in ${v.precision}\n`);
    const text = await sampleText(model, tokenizer, prompt, {
      maxNewTokens: v['max-new-tokens'] as number,
      temperature: v.temperature as number,
      topK: v['top-k'] as number,
      seed: v.seed as number,
      precision: v.precision as SamplePrecision,
    });
    out.write(`${prompt}${text}\n`);
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}
