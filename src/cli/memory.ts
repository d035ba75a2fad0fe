// `mixprec memory`: the memory a `mixprec train` run would take, planned
// without taking it: parameters, master weights, gradients, optimizer moments,
// activations, workspace and the peak, and whether that fits the backend's
// limits. It takes train's options (the same parser).

import { totalmem } from 'node:os';
import { parsePolicy } from '../amp/policy.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { readGPT2Config } from '../io/gpt2.js';
import type { GPTConfig } from '../nn/gpt.js';
import type { WebGPUBackend } from '../backend/webgpu/backend.js';
import { TrainConfigError, resolveLossScale, resolveTrainConfig, type TrainConfig } from '../train/config.js';
import { modelConfig } from '../train/run-setup.js';
import { releaseBackend, type SelectedBackend } from '../train/select-backend.js';
import { formatPlan, planMemory, type DeviceLimits } from '../report/memory-plan/plan.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec } from './args.js';
import { EXIT_OK } from './errors.js';
import { HELP_OPTION, useBackend } from './common.js';
import type { OutputStream } from './progress.js';
import { CONFIG_OPTIONS, givenConfig } from './train.js';

/** train's options that decide memory: the model, precision, batch, context, backend and recompute. */
const MEMORY_OPTION_NAMES = [
  'precision', 'loss-scale', 'backend', 'model', 'n-layer', 'n-head', 'n-embd', 'dropout', 'tokenizer',
  'batch-size', 'block-size', 'grad-accum', 'clip', 'init-from', 'recompute',
];

export const MEMORY_SPEC: CommandSpec = {
  name: 'memory',
  summary: 'Plan the memory of a training run: what it holds, its predicted peak, and whether it fits the backend.',
  usage: 'memory [options]',
  options: [...CONFIG_OPTIONS.filter((o) => MEMORY_OPTION_NAMES.includes(o.name)), HELP_OPTION],
  epilog: [
    "The options are train's: the plan is for the run `mixprec train` would make with them.",
    "The step is run on a backend that only counts bytes (the CPU backend's, or the WebGPU",
    "buffer pool's under the adapter's limits), so nothing is allocated.",
    '',
    'examples:',
    '  mixprec memory --model gpt2 --tokenizer gpt2 --batch-size 1 --block-size 128',
    '  mixprec memory --model gpt2 --tokenizer gpt2 --precision bf16 --recompute --backend webgpu',
  ].join('\n'),
};

/** The GPT configuration the run would train: the --init-from directory's, or train's from the options. */
async function plannedModel(c: TrainConfig): Promise<GPTConfig> {
  if (c.initFrom === null) return modelConfig(c, (await loadTokenizer(c.tokenizer)).vocabSize);
  return readGPT2Config(c.initFrom, { dropout: c.dropout });
}

/** The limits of the selected backend: the adapter's for WebGPU, the machine's memory for the CPU backend. */
function backendLimits(selected: SelectedBackend): DeviceLimits {
  if (selected.kind === 'cpu') return { totalMemory: totalmem() };
  const rt = (selected.backend as WebGPUBackend).rt;
  return { maxBufferSize: rt.maxBufferBytes, maxStorageBufferBindingSize: rt.maxBindingBytes };
}

export async function memoryCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(MEMORY_SPEC, argv, out);
  if (!args) return EXIT_OK;
  let c: TrainConfig;
  let model: GPTConfig;
  try {
    c = resolveTrainConfig(givenConfig(args));
    model = await plannedModel(c);
    if (c.blockSize > model.blockSize) throw new TrainConfigError('blockSize', `--block-size: ${c.blockSize} is longer than the model's ${model.blockSize} positions`);
  } catch (e) {
    if (e instanceof TrainConfigError) throw new UsageError(e.message, shortUsage(MEMORY_SPEC));
    throw e;
  }
  const selected = await useBackend(c.backend, err);
  let limits: DeviceLimits;
  try {
    limits = backendLimits(selected);
    // Dawn must have finished its start-up work before the device is destroyed.
    await selected.backend.sync();
  } finally {
    releaseBackend(selected);
  }
  const plan = planMemory(model, parsePolicy(c.precision, resolveLossScale(c)), {
    batchSize: c.batchSize, blockSize: c.blockSize, gradAccum: c.gradAccum, recompute: c.recompute, clip: c.clip, backend: selected.kind, limits,
  });
  out.write(`${formatPlan(plan)}\n`);
  return EXIT_OK;
}
