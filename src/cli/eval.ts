// `mixprec eval`: validation loss and perplexity of a checkpoint (or any GPT-2 directory).

import { parsePolicy } from '../amp/policy.js';
import { weightBytes, weightFormat, type WeightFormat } from '../nn/quantize.js';
import { evalBatches } from '../data/batches.js';
import { loadTokenizedSplits } from '../data/cache.js';
import type { TokenizerName } from '../data/tokenizer.js';
import type { BackendChoice } from '../train/config.js';
import { evaluateLoss } from '../train/evaluate.js';
import { inspectModelDir, openModelDir } from '../train/model-dir.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION, MODEL_DIR_OPTIONS, WEIGHTS_OPTIONS, backendOption, describeOpened, modelTokenizer, useBackend } from './common.js';
import type { OutputStream } from './progress.js';
import { parsePrecision } from './train.js';

export const EVAL_SPEC: CommandSpec = {
  name: 'eval',
  summary: 'Print the validation loss (nats per token, and per byte for byte tokenizers) and perplexity of a checkpoint.',
  usage: 'eval --checkpoint DIR [options]',
  options: [
    ...MODEL_DIR_OPTIONS,
    { name: 'data', type: 'string', metavar: 'PATH', defaultText: "the run's data (the Brown corpus)", help: 'a text file, directory or glob; its last 10% is evaluated' },
    { name: 'precision', type: 'string', metavar: 'POLICY', parse: parsePrecision, defaultText: "the run's, or fp32", help: 'precision policy of the forward pass (fp32, fp16, bf16, ...)' },
    { name: 'batch-size', type: 'int', min: 1, defaultText: "the run's, or 8", help: 'sequences per batch' },
    { name: 'block-size', type: 'int', min: 1, defaultText: "the run's, or min(256, the model's context)", help: 'tokens per sequence' },
    { name: 'eval-steps', type: 'int', min: 1, defaultText: "the run's, or 16", help: 'batches of fixed validation windows' },
    ...WEIGHTS_OPTIONS,
    backendOption(),
    { name: 'json', type: 'flag', help: 'print the result as one JSON object' },
    HELP_OPTION,
  ],
  epilog: 'example:\n  mixprec eval --checkpoint runs/20250101-120000',
};

export async function evalCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(EVAL_SPEC, argv, out);
  if (!args) return EXIT_OK;
  const v = args.values;
  const selected = await useBackend(v.backend as BackendChoice, err);
  const info = await inspectModelDir(v.checkpoint as string);
  const run = info.config;
  // The policy decides the parameter dtype (fp16-master and bf16-master hold 16-bit weights).
  const policy = parsePolicy((v.precision as string | undefined) ?? run?.precision ?? 'fp32', 'none');
  const probe = await openModelDir(info, {
    backend: selected.backend, dtype: policy.params as 'float32' | 'float16' | 'bfloat16',
    weights: v.weights as WeightFormat | undefined, groupSize: v['group-size'] as number | undefined,
  });
  const { model } = probe;
  try {
    const tokenizer = await modelTokenizer(v.tokenizer as TokenizerName | undefined, probe, EVAL_SPEC);
    const dataSpec = (v.data as string | undefined) ?? run?.data ?? undefined;
    const batchSize = (v['batch-size'] as number | undefined) ?? run?.batchSize ?? 8;
    const blockSize = (v['block-size'] as number | undefined) ?? run?.blockSize ?? Math.min(256, model.config.blockSize);
    const steps = (v['eval-steps'] as number | undefined) ?? run?.evalSteps ?? 16;
    if (blockSize > model.config.blockSize) {
      throw new UsageError(`option --block-size: ${blockSize} is longer than the model's ${model.config.blockSize} positions`, shortUsage(EVAL_SPEC));
    }
    const data = await loadTokenizedSplits({ data: dataSpec, tokenizer });
    const batches = evalBatches(data.validation, { batchSize, blockSize, steps, split: 'validation' });
    err.write(`model: ${describeOpened(probe)}, ${weightFormat(model)} weights (${(weightBytes(model) / 2 ** 20).toFixed(1)} MiB), precision ${policy.name}\n`);
    err.write(`data: ${data.source}: ${steps} batches of ${batchSize} x ${blockSize} tokens from the validation split\n`);
    const r = await evaluateLoss(model, batches, { policy, batchSize, blockSize, tokenizer: tokenizer.name });
    if (v.json) {
      out.write(`${JSON.stringify({ checkpoint: probe.dir, step: probe.step, precision: policy.name, weights: weightFormat(model), weightBytes: weightBytes(model), backend: selected.description, data: data.source, ...r })}\n`);
    } else {
      const perByte = r.valLossPerByte !== undefined ? ` = ${r.valLossPerByte.toFixed(4)} nats/byte` : '';
      out.write(`val loss ${r.valLoss.toFixed(4)} nats/token${perByte}, perplexity ${r.perplexity.toFixed(2)} (${r.evalTokens.toLocaleString('en-US')} tokens)\n`);
    }
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}
