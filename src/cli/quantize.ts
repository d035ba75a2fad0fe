// `mixprec quantize`: writes a model in an inference weight format, as a
// directory that `generate` and `eval` open (int8/int4 with their scales and
// format in the safetensors metadata; fp16/bf16 as a Hugging Face directory).

import { saveGPT2 } from '../io/gpt2.js';
import { parseDType } from '../dtype/dtype.js';
import { isQuantized, weightBytes, type WeightFormat } from '../nn/quantize.js';
import type { BackendChoice } from '../train/config.js';
import { openModelDir } from '../train/model-dir.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION, MODEL_DIR_OPTIONS, WEIGHTS_OPTIONS, backendOption, describeOpened, useBackend } from './common.js';
import type { OutputStream } from './progress.js';

export const QUANTIZE_SPEC: CommandSpec = {
  name: 'quantize',
  summary: 'Write a model in an inference weight format (int8, int4, fp16, bf16).',
  usage: 'quantize --checkpoint DIR --weights FORMAT --out DIR [options]',
  options: [
    ...MODEL_DIR_OPTIONS.filter((o) => o.name === 'checkpoint'),
    ...WEIGHTS_OPTIONS,
    { name: 'out', type: 'string', metavar: 'DIR', required: true, help: 'the directory to write (config.json and model.safetensors)' },
    backendOption('cpu'),
    HELP_OPTION,
  ],
  epilog: 'example:\n  mixprec quantize --checkpoint runs/20250101-120000 --weights int8 --out runs/int8',
};

export async function quantizeCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(QUANTIZE_SPEC, argv, out);
  if (!args) return EXIT_OK;
  const v = args.values;
  const weights = v.weights as WeightFormat | undefined;
  if (weights === undefined || weights === 'fp32') throw new UsageError('option --weights: choose int8, int4, fp16 or bf16', shortUsage(QUANTIZE_SPEC));
  const selected = await useBackend(v.backend as BackendChoice, err);
  const opened = await openModelDir(v.checkpoint as string, { backend: selected.backend, weights, groupSize: v['group-size'] as number | undefined });
  const { model } = opened;
  try {
    await saveGPT2(model, v.out as string, isQuantized(model) ? {} : { dtype: parseDType(weights) });
    out.write(`${describeOpened(opened)} -> ${v.out as string}: ${weights} weights, ${(weightBytes(model) / 2 ** 20).toFixed(1)} MiB\n`);
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}
