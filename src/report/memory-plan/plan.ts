// Memory you can plan: the peak of a training step, predicted before any
// memory is taken, with where it goes.
//
// The step is the trainer's own (ampStep over the GPT, AdamW with nanoGPT's
// groups, the GradScaler, clipping), run on a backend that only counts bytes
// (shape-backend.ts). So the activations are exactly what autograd saves for
// the model's real forward under the policy, in the order it saves and frees
// them: per block the layer-norm inputs and statistics, the 16-bit copies of
// the inputs and weights of every linear layer under autocast (the weights'
// from the region's cast cache), the qkv projection, the attention output and
// its log-sum-exp (the probabilities too, with attention dropout), GELU's
// input and output; then the logits (kept by cross-entropy and by the
// caller) with their log-sum-exp. With recomputation only each block's input
// is kept, and backward re-runs one block at a time. The breakdown's fixed
// parts come from report/memory.ts's computeMemory on the planned model.

import type { Backend } from '../../backend/backend.js';
import { parsePolicy, withPolicy, type Policy } from '../../amp/policy.js';
import type { GradScaler } from '../../amp/grad-scaler.js';
import { itemSize } from '../../dtype/dtype.js';
import { GPT, countParameters, validateConfig, type GPTConfig, type GPTInit } from '../../nn/gpt.js';
import type { AdamW } from '../../optim/adamw.js';
import { tensor } from '../../tensor/creation.js';
import type { Tensor } from '../../tensor/tensor.js';
import { DEFAULT_TRAIN_CONFIG as D, TrainConfigError } from '../../train/config.js';
import { createOptimizer, scalerFor } from '../../train/run-setup.js';
import { ampStep, type AmpStepResult } from '../../train/amp-step.js';
import { computeMemory } from '../memory.js';
import { ShapeBackend, type Allocator } from './shape-backend.js';
import { segmentBytesFor } from '../../backend/webgpu/buffer-pool.js';

/** What the device allows; each is optional (unknown limits are not checked). */
export interface DeviceLimits {
  /** The largest buffer (WebGPU's maxBufferSize): a larger tensor is held in several buffers. */
  maxBufferSize?: number;
  /** The largest binding (maxStorageBufferBindingSize): larger tensors are processed in parts, which works but costs passes. */
  maxStorageBufferBindingSize?: number;
  /** The memory the device (or, for the CPU backend, the machine) has. */
  totalMemory?: number;
}

export interface PlanOptions {
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Tokens per sequence (default: the model's block size). */
  blockSize?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Activation recomputation per block (GPT.recompute). */
  recompute?: boolean;
  /** float32 master weights for 16-bit parameters (default true). */
  masterWeights?: boolean;
  /** Gradient clipping norm, as the trainer's --clip (default the trainer's); 0: none. */
  clip?: number;
  /** The backend whose allocations to count: 'cpu' (exact bytes, the default) or 'webgpu' (its buffer pool, under `limits`). */
  backend?: 'cpu' | 'webgpu';
  limits?: DeviceLimits;
}

export type StepPhase = 'forward' | 'backward' | 'optimizer';

export interface MemoryPlan {
  parameterCount: number;
  policy: string;
  batchSize: number;
  blockSize: number;
  gradAccum: number;
  recompute: boolean;
  backend: 'cpu' | 'webgpu';
  /** Bytes, as report/memory.ts's MemoryBreakdown counts them. */
  parameters: number;
  masterWeights: number;
  /** The parameters' gradients (made by backward) plus the float32 master gradients of 16-bit parameters. */
  gradients: number;
  optimizerStates: number;
  /** Saved for backward when the forward pass ends (the largest over micro-batches), logits and the step's token ids included. */
  activations: number;
  /** Transient bytes at the peak: what the op running then holds beyond the above (and, on WebGPU, the pool's free and rounded-up blocks). */
  workspace: number;
  /** The predicted peak of the backend's bytes over a training step. */
  peak: number;
  /** When the peak is reached, and what is held then. */
  atPeak: { phase: StepPhase; gradients: number; activations: number; workspace: number };
  /** The largest single tensor of the step. */
  largestTensor: { bytes: number; dtype: string; elements: number };
  limits: DeviceLimits;
  fit: Fit;
}

export interface Fit {
  /** false when the peak exceeds totalMemory; null when no memory size is known. */
  fits: boolean | null;
  /** One sentence per limit checked. */
  notes: string[];
}

/** A training run's model, optimizer and loss scaler, as the trainer builds them. */
export interface TrainingSetup {
  model: GPT;
  optimizer: AdamW;
  scaler: GradScaler;
  policy: Policy;
}

/**
 * The trainer's set-up for a policy on a backend: the GPT in the policy's
 * parameter dtype, AdamW with nanoGPT's weight-decay groups (float32 master
 * weights for 16-bit parameters unless turned off) and the GradScaler of the
 * policy's loss scaling.
 */
export function createTrainingSetup(
  backend: Backend, config: GPTConfig, policy: Policy,
  opts: { recompute?: boolean; masterWeights?: boolean; init?: GPTInit; seed?: number } = {},
): TrainingSetup {
  const dtype = policy.params as 'float32' | 'float16' | 'bfloat16';
  const model = new GPT(config, { backend, dtype, init: opts.init, seed: opts.seed, recompute: opts.recompute ?? false });
  const optimizer = createOptimizer(model, { ...D, masterWeights: opts.masterWeights ?? true });
  return { model, optimizer, scaler: scalerFor(policy.lossScaling, backend), policy };
}

export function disposeTrainingSetup(s: TrainingSetup): void {
  s.scaler.dispose();
  s.optimizer.dispose();
  s.model.dispose();
}

export interface TrainingStepOptions {
  gradAccum?: number;
  clip?: number;
  /** Called as each micro-batch's forward pass has ended (its autocast region closed). */
  afterForward?: () => void;
  afterBackward?: () => void;
}

/**
 * One optimizer step as the trainer takes it (ampStep: each micro-batch's
 * forward under the policy's autocast, scaled backward, unscale, clipping,
 * step, scale update); `batch` makes a micro-batch's int32 ids and targets.
 */
export function trainingStep(s: TrainingSetup, batch: () => [Tensor, Tensor], opts: TrainingStepOptions = {}): AmpStepResult {
  return ampStep(() => {
    const loss = withPolicy(s.policy, () => s.model.loss(...batch()));
    opts.afterForward?.();
    return loss;
  }, {
    optimizer: s.optimizer, scaler: s.scaler, autocast: null, maxGradNorm: opts.clip ?? D.clip,
    accumulationSteps: opts.gradAccum ?? 1, afterBackward: opts.afterBackward,
  });
}

/** Plans the memory of one training step of a GPT under a precision policy. */
export function planMemory(config: GPTConfig, policy: Policy | string, opts: PlanOptions): MemoryPlan {
  const p = typeof policy === 'string' ? parsePolicy(policy) : policy;
  const c = validateConfig(config);
  const B = opts.batchSize, T = opts.blockSize ?? c.blockSize, accum = opts.gradAccum ?? 1;
  for (const [key, v] of [['batchSize', B], ['blockSize', T], ['gradAccum', accum]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new TrainConfigError(key, `planMemory: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (T > c.blockSize) throw new TrainConfigError('blockSize', `planMemory: blockSize ${T} is longer than the model's ${c.blockSize} positions`);
  const limits = opts.limits ?? {};
  const kind = opts.backend ?? 'cpu';
  // The pool rounds a block up to its size class unless it is held in several buffers: the plan counts as the pool does.
  const allocator: Allocator = kind === 'cpu' ? { kind } : {
    kind, maxBufferSize: limits.maxBufferSize ?? Number.MAX_SAFE_INTEGER, maxBindingBytes: limits.maxStorageBufferBindingSize ?? Number.MAX_SAFE_INTEGER,
  };
  const backend = new ShapeBackend(allocator);
  const setup = createTrainingSetup(backend, c, p, { recompute: opts.recompute, masterWeights: opts.masterWeights, init: 'none' });
  try {
    const trace = traceSteps(backend, setup, { B, T, gradAccum: accum, clip: opts.clip ?? D.clip });
    const fixed = computeMemory(setup.model, setup.optimizer);
    const masterGrads = fixed.gradients - fixed.parameters;
    const held = fixed.parameters + fixed.masterWeights + fixed.optimizerStates + masterGrads;
    const peak = backend.memory().peakBytes;
    const atPeak = { ...trace.atPeak, workspace: peak - held - trace.atPeak.gradients - trace.atPeak.activations };
    const largest = backend.largest;
    return {
      parameterCount: countParameters(c), policy: p.name, batchSize: B, blockSize: T, gradAccum: accum, recompute: setup.model.recompute, backend: kind,
      parameters: fixed.parameters, masterWeights: fixed.masterWeights, gradients: fixed.gradients, optimizerStates: fixed.optimizerStates,
      activations: trace.activations, workspace: atPeak.workspace, peak, atPeak,
      largestTensor: { bytes: largest.bytes, dtype: largest.dtype, elements: largest.size },
      limits, fit: checkFit(peak, largest.bytes, backend.overBinding, limits),
    };
  } finally {
    disposeTrainingSetup(setup);
  }
}

interface Trace {
  activations: number;
  atPeak: { phase: StepPhase; gradients: number; activations: number };
}

/**
 * Runs two training steps (the second shows a pool's reuse) on the counting
 * backend, noting what is saved at the end of each forward pass and what is
 * held whenever the peak rises.
 */
function traceSteps(backend: ShapeBackend, setup: TrainingSetup, s: { B: number; T: number; gradAccum: number; clip: number }): Trace {
  let phase: StepPhase = 'forward';
  let stepStart = 0, forwardStart = 0, activations = 0;
  const saved = new Set<number>();
  let peakMoment: { phase: StepPhase; gradients: number; recent: Map<number, number> } = { phase, gradients: 0, recent: new Map() };
  const gradientBytes = () => setup.model.parameters().reduce((a, t) => a + (t.grad ? t.grad.size * itemSize(t.grad.dtype) : 0), 0);
  backend.onPeak = () => {
    peakMoment = { phase, gradients: gradientBytes(), recent: backend.liveSince(stepStart) };
  };
  const ids = () => tensor(new Int32Array(s.B * s.T), { shape: [s.B, s.T], dtype: 'int32', backend });
  for (let step = 0; step < 2; step++) {
    stepStart = backend.serial;
    const { loss, gradNorm } = trainingStep(setup, () => {
      phase = 'forward';
      forwardStart = backend.serial;
      return [ids(), ids()];
    }, {
      gradAccum: s.gradAccum, clip: s.clip,
      afterForward: () => {
        const kept = backend.liveSince(forwardStart);
        for (const serial of kept.keys()) saved.add(serial);
        activations = Math.max(activations, [...kept.values()].reduce((a, b) => a + b, 0));
        phase = 'backward';
      },
      afterBackward: () => { phase = 'optimizer'; },
    });
    loss.dispose();
    gradNorm?.dispose();
  }
  backend.onPeak = null;
  const heldActivations = [...peakMoment.recent].reduce((a, [serial, bytes]) => a + (saved.has(serial) ? bytes : 0), 0);
  return { activations, atPeak: { phase: peakMoment.phase, gradients: peakMoment.gradients, activations: heldActivations } };
}

const MiB = 1024 * 1024;

/** Bytes for people: 1.2 GB, 35.4 MB, 812 kB (decimal units, as the README's tables). */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

function checkFit(peak: number, largest: number, overBinding: number, limits: DeviceLimits): Fit {
  const notes: string[] = [];
  let fits: boolean | null = null;
  if (limits.maxBufferSize !== undefined) {
    const buffers = Math.ceil(largest / segmentBytesFor(limits.maxBufferSize));
    notes.push(largest <= limits.maxBufferSize
      ? `the largest tensor (${formatBytes(largest)}) fits maxBufferSize (${formatBytes(limits.maxBufferSize)})`
      : `the largest tensor (${formatBytes(largest)}) exceeds maxBufferSize (${formatBytes(limits.maxBufferSize)}): it is held in ${buffers} buffers`);
  }
  if (limits.maxStorageBufferBindingSize !== undefined) {
    const limit = limits.maxStorageBufferBindingSize;
    notes.push(overBinding > 0
      ? `${overBinding} tensor shapes exceed maxStorageBufferBindingSize (${(limit / MiB).toFixed(0)} MiB): they are processed in parts`
      : `every tensor fits one binding (maxStorageBufferBindingSize ${(limit / MiB).toFixed(0)} MiB)`);
  }
  if (limits.totalMemory !== undefined) {
    const ok = peak <= limits.totalMemory;
    fits = (fits ?? true) && ok;
    notes.push(`the peak is ${(100 * peak / limits.totalMemory).toFixed(0)}% of the ${formatBytes(limits.totalMemory)} of memory${ok ? '' : ': it does not fit'}`);
  }
  return { fits, notes };
}

/** The plan as the lines `mixprec memory` prints. */
export function formatPlan(plan: MemoryPlan): string {
  const row = (name: string, bytes: number, note = '') => `  ${name.padEnd(20)}${formatBytes(bytes).padStart(10)}${note ? `  ${note}` : ''}`;
  const at = plan.atPeak;
  const fit = plan.fit.fits === null ? 'memory size unknown (WebGPU does not report it)' : plan.fit.fits ? 'fits' : 'does NOT fit';
  return [
    `memory plan: ${plan.parameterCount.toLocaleString('en-US')} parameters, precision ${plan.policy}, ${plan.batchSize} x ${plan.blockSize} tokens`
    + `${plan.gradAccum > 1 ? ` x ${plan.gradAccum} micro-batches` : ''}, recompute ${plan.recompute ? 'on' : 'off'}, ${plan.backend} backend`,
    row('parameters', plan.parameters),
    row('master weights', plan.masterWeights),
    row('gradients', plan.gradients, plan.gradients > plan.parameters ? 'with float32 master gradients' : ''),
    row('optimizer moments', plan.optimizerStates),
    row('activations', plan.activations, 'saved for backward by the forward pass'),
    row('workspace', plan.workspace, 'transient, at the peak'),
    row('predicted peak', plan.peak, `in the ${at.phase === 'optimizer' ? 'optimizer step' : `${at.phase} pass`} (gradients ${formatBytes(at.gradients)} and activations ${formatBytes(at.activations)} held then)`),
    `  largest tensor: ${formatBytes(plan.largestTensor.bytes)} (${plan.largestTensor.elements.toLocaleString('en-US')} ${plan.largestTensor.dtype} elements)`,
    `  ${fit}${plan.fit.notes.length ? `: ${plan.fit.notes.join('; ')}` : ''}`,
  ].join('\n');
}
