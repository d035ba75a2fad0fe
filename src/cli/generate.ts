// `mixprec generate`: samples text from a checkpoint (or any GPT-2 directory).

import type { TokenizerName } from '../data/tokenizer.js';
import type { BackendChoice } from '../train/config.js';
import { openModelDir } from '../train/model-dir.js';
import { SAMPLE_PRECISIONS, sampleTexts, type SamplePrecision } from '../train/sample.js';
import { weightFormat, type WeightFormat } from '../nn/quantize.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION, MODEL_DIR_OPTIONS, WEIGHTS_OPTIONS, backendOption, describeOpened, modelTokenizer, useBackend } from './common.js';
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
    { name: 'top-p', type: 'float', min: 0, default: 1, parse: parseTopP, help: 'then among the most likely tokens whose probabilities reach p (nucleus sampling)' },
    { name: 'stop', type: 'string', metavar: 'TEXT', repeatable: true, parse: parseStop, help: 'end a sample where this text appears (\\n for a newline); given several times, where the first of them does' },
    { name: 'num-samples', type: 'int', min: 1, default: 1, help: 'samples of the prompt, drawn together' },
    ...WEIGHTS_OPTIONS,
    { name: 'seed', type: 'int', min: 0, default: 0, help: 'seeds the sampling' },
    { name: 'precision', type: 'enum', values: SAMPLE_PRECISIONS, default: 'fp32', help: 'fp32, or autocast to fp16 or bf16 (with fp32 weights)' },
    backendOption(),
    HELP_OPTION,
  ],
  epilog: "examples:\n  mixprec generate --checkpoint runs/20250101-120000 --prompt 'The jury' --max-new-tokens 300 --seed 7\n"
    + "  mixprec generate --checkpoint gpt2 --weights int8 --top-p 0.9 --stop '\\n\\n' --stop END --num-samples 3",
};

export async function generateCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(GENERATE_SPEC, argv, out);
  if (!args) return EXIT_OK;
  const v = args.values;
  const selected = await useBackend(v.backend as BackendChoice, err);
  const opened = await openModelDir(v.checkpoint as string, { backend: selected.backend, weights: v.weights as WeightFormat | undefined, groupSize: v['group-size'] as number | undefined });
  const { model } = opened;
  try {
    const tokenizer = await modelTokenizer(v.tokenizer as TokenizerName | undefined, opened, GENERATE_SPEC);
    const prompt = v.prompt as string;
    if (prompt.length === 0) throw new UsageError('option --prompt: the prompt is empty (give at least one character)', shortUsage(GENERATE_SPEC));
    const numSamples = v['num-samples'] as number;
    err.write(`model: ${describeOpened(opened)}, ${weightFormat(model)} weights, sampling in ${v.precision}\n`);
    // One sample streams as its tokens arrive; several are printed whole, one after another.
    if (numSamples === 1) out.write(prompt);
    const texts = await sampleTexts(model, tokenizer, prompt, {
      maxNewTokens: v['max-new-tokens'] as number,
      temperature: v.temperature as number,
      topK: v['top-k'] as number,
      topP: v['top-p'] as number,
      seed: v.seed as number,
      precision: v.precision as SamplePrecision,
      stop: v.stop as string[],
      numSamples,
      onText: numSamples === 1 ? (_, text) => out.write(text) : undefined,
    });
    if (numSamples === 1) out.write('\n');
    else texts.forEach((text, i) => out.write(`--- sample ${i + 1} ---\n${prompt}${text}\n`));
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}

function parseStop(raw: string): string {
  if (raw === '') throw new Error('the stop text is empty (it would end every sample before its first token)');
  return raw.replace(/\\n/g, '\n');
}

function parseTopP(raw: string): number {
  const p = Number(raw);
  if (!(p > 0 && p <= 1)) throw new Error(`must be in (0, 1], got '${raw}'`);
  return p;
}
