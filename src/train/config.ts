// The configuration of a training run: every option with its default, and
// validation that names the option at fault. A checkpoint stores the resolved
// configuration, so a resumed run continues with exactly the same settings.

import { parsePolicy, type LossScaling } from '../amp/policy.js';
import { GPT_PRESETS } from '../nn/gpt.js';
import { TOKENIZER_NAMES, type TokenizerName } from '../data/tokenizer.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export type BackendChoice = 'auto' | 'cpu' | 'webgpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cpu', 'webgpu'];

export interface TrainConfig {
  /** A precision preset (fp32, fp16, fp16-master, bf16, bf16-master) or a policy string. */
  precision: string;
  /** 'auto' follows the policy: dynamic for float16 compute, none otherwise. */
  lossScale: LossScaling | 'auto';
  /** Stop the run (LossScaleCollapsedError, after a checkpoint) when the dynamic scale would fall below this; 0: never. */
  minScale: number;
  /** Back the dynamic scale off only after this many consecutive overflows (DeepSpeed's hysteresis; 1 is PyTorch's rule). */
  hysteresis: number;
  /** Keep float32 master weights for 16-bit parameters (false: update the 16-bit weights directly). */
  masterWeights: boolean;
  backend: BackendChoice;
  /** A GPT preset (GPT_PRESETS); nLayer, nHead and nEmbd override its sizes. */
  model: string;
  nLayer: number | null;
  nHead: number | null;
  nEmbd: number | null;
  dropout: number;
  tokenizer: TokenizerName;
  /** A text file, directory or glob; null for the Brown corpus. */
  data: string | null;
  batchSize: number;
  /** Context length of the training windows (and of the model, unless it comes from --init-from). */
  blockSize: number;
  /** Micro-batches per optimizer step; the loss of each is divided by this. */
  gradAccum: number;
  lr: number;
  minLr: number;
  warmup: number;
  maxSteps: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Clip the gradient norm to this value; 0 disables clipping. */
  clip: number;
  evalInterval: number;
  /** Validation batches per evaluation (fixed windows, the same at every evaluation). */
  evalSteps: number;
  logInterval: number;
  /** Save a checkpoint every this many steps (0: only at the end and on interrupt). */
  saveInterval: number;
  seed: number;
  /**
   * Stop early (with a final evaluation and checkpoint) so that this session, setup included, ends
   * within this many seconds; the schedule still follows maxSteps. null: no limit.
   */
  timeBudget: number | null;
  /** A Hugging Face GPT-2 directory to start from (fine-tuning). */
  initFrom: string | null;
  /** Recompute each block's activations in backward instead of keeping them (GPT.recompute): less memory, the same results. */
  recompute: boolean;
}

/**
 * The default run's model: the mini preset made shallower and narrower (2 layers,
 * width 96, 4 heads; about 250k parameters), which learns the most per second of
 * CPU time among the sizes tried. These sizes apply only when no --model is given.
 */
export const DEFAULT_MODEL_SIZES = { nLayer: 2, nHead: 4, nEmbd: 96 } as const;

/**
 * The default run: a small GPT on the Brown corpus, bytes as tokens, fp16 compute
 * with float32 master weights and dynamic loss scaling, sized to learn more than
 * letter pairs (below 2.3 nats per byte) within a few minutes on two CPU cores.
 */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = {
  precision: 'fp16',
  lossScale: 'auto',
  minScale: 0,
  hysteresis: 1,
  masterWeights: true,
  backend: 'auto',
  model: 'mini',
  ...DEFAULT_MODEL_SIZES,
  dropout: 0,
  tokenizer: 'byte',
  data: null,
  batchSize: 16,
  blockSize: 64,
  gradAccum: 1,
  lr: 5e-3,
  minLr: 5e-4,
  warmup: 20,
  maxSteps: 400,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  clip: 1,
  evalInterval: 100,
  evalSteps: 16,
  logInterval: 10,
  saveInterval: 200,
  seed: 1337,
  timeBudget: null,
  initFrom: null,
  recompute: false,
};

/** A configuration value that cannot be used; names the option. */
export class TrainConfigError extends MixprecError {
  override readonly code: ErrorCode = 'TRAIN_CONFIG_INVALID';
  constructor(readonly option: string, message: string) {
    super(message);
  }
}

/** The options of a configuration as the command line spells them (nLayer: n-layer). */
export function optionName(key: keyof TrainConfig): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The loss scaling a configuration asks for, from --loss-scale and the policy. */
export function resolveLossScale(config: Pick<TrainConfig, 'precision' | 'lossScale'>): LossScaling {
  return parsePolicy(config.precision, config.lossScale === 'auto' ? undefined : config.lossScale).lossScaling;
}

/**
 * Learning rates for GPT-2's sizes when none is given, as nanoGPT trains them:
 * from scratch 6e-4 decaying to 6e-5, fine-tuning from a checkpoint 3e-5 held
 * constant. The default run's 5e-3 suits its 250k-parameter model; on GPT-2 the
 * loss rises with it.
 */
export const GPT2_LEARNING_RATES = {
  scratch: { lr: 6e-4, minLr: 6e-5 },
  fineTune: { lr: 3e-5, minLr: 3e-5 },
} as const;

function learningRates(given: Partial<TrainConfig>): Partial<Pick<TrainConfig, 'lr' | 'minLr'>> {
  const rates = given.initFrom ? GPT2_LEARNING_RATES.fineTune : given.model?.startsWith('gpt2') ? GPT2_LEARNING_RATES.scratch : null;
  if (!rates) return {};
  const lr = given.lr ?? rates.lr;
  return { lr, minLr: given.minLr ?? Math.min(rates.minLr, lr) };
}

/**
 * Completes a partial configuration with the defaults and checks every value.
 * With a model preset given, the sizes not given are the preset's; GPT-2's
 * sizes and fine-tuning get their own learning rates (GPT2_LEARNING_RATES).
 */
export function resolveTrainConfig(partial: Partial<TrainConfig> = {}): TrainConfig {
  const given = stripUndefined(partial);
  const sizes = given.model === undefined ? {} : { nLayer: null, nHead: null, nEmbd: null };
  const c: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...sizes, ...given, ...learningRates(given) };
  const fail = (key: keyof TrainConfig, what: string): never => {
    throw new TrainConfigError(key, `--${optionName(key)}: ${what}, got ${JSON.stringify(c[key])}`);
  };
  const int = (key: keyof TrainConfig, min: number) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(key, `must be an integer >= ${min}`);
  };
  const num = (key: keyof TrainConfig, ok: (v: number) => boolean, what: string) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(key, what);
  };
  for (const k of ['batchSize', 'blockSize', 'gradAccum', 'maxSteps', 'evalInterval', 'evalSteps', 'logInterval', 'hysteresis'] as const) int(k, 1);
  num('minScale', (v) => v >= 0, 'must be a number >= 0 (0: no minimum)');
  for (const k of ['masterWeights', 'recompute'] as const) if (typeof c[k] !== 'boolean') fail(k, 'must be true or false');
  for (const k of ['warmup', 'saveInterval', 'seed'] as const) int(k, 0);
  for (const k of ['nLayer', 'nHead', 'nEmbd'] as const) if (c[k] !== null) int(k, 1);
  num('lr', (v) => v > 0, 'must be a positive number');
  num('minLr', (v) => v >= 0, 'must be a number >= 0');
  num('weightDecay', (v) => v >= 0, 'must be a number >= 0');
  num('clip', (v) => v >= 0, 'must be a number >= 0 (0 disables clipping)');
  num('beta1', (v) => v >= 0 && v < 1, 'must be in [0, 1)');
  num('beta2', (v) => v >= 0 && v < 1, 'must be in [0, 1)');
  num('dropout', (v) => v >= 0 && v < 1, 'must be in [0, 1)');
  if (c.timeBudget !== null) num('timeBudget', (v) => v > 0, 'must be a positive number of seconds');
  if (!BACKEND_CHOICES.includes(c.backend)) fail('backend', `must be one of ${BACKEND_CHOICES.join(', ')}`);
  if (!TOKENIZER_NAMES.includes(c.tokenizer)) fail('tokenizer', `must be one of ${TOKENIZER_NAMES.join(', ')}`);
  if (!Object.hasOwn(GPT_PRESETS, c.model)) fail('model', `must be one of ${Object.keys(GPT_PRESETS).join(', ')}`);
  if (c.lossScale !== 'auto' && c.lossScale !== 'dynamic' && c.lossScale !== 'none') {
    num('lossScale', (v) => v > 0, "must be 'dynamic', 'none' or a positive number");
  }
  try {
    resolveLossScale(c);
  } catch (err) {
    throw new TrainConfigError('precision', `--precision: ${(err as Error).message}`);
  }
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Parses a duration: a number of seconds, or units such as 90s, 9m, 1h30m, 1.5h. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(h|m|s)/gy;
  let total = 0, end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
    end = re.lastIndex;
  }
  if (end === 0 || end !== s.length) throw new Error(`'${text}' is not a duration (examples: 540, 90s, 9m, 1h30m)`);
  return total;
}

/** A duration in seconds as 1h02m03s / 4m05s / 12s. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h) return `${h}h${pad(m)}m${pad(r)}s`;
  if (m) return `${m}m${pad(r)}s`;
  return `${r}s`;
}
