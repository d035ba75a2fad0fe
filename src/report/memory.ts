// Where a run's memory goes: parameters, float32 master weights, gradients,
// optimizer moments and activations. Computed from the tensors' sizes and
// dtypes, and measured as the backend's own byte counts around building the
// model, building the optimizer and one forward and backward pass.

import type { Backend } from '../backend/backend.js';
import { itemSize } from '../dtype/dtype.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

/** What the breakdown reads from an optimizer (mixprec's optimizers). */
export interface OptimizerTensors {
  readonly paramGroups: readonly {
    step: Tensor;
    state: readonly Map<string, Tensor>[];
    master: readonly (Tensor | null)[];
    masterGrad: readonly (Tensor | null)[];
  }[];
}

export interface MemoryBreakdown {
  parameters: number;
  masterWeights: number;
  /** The parameters' gradients plus the float32 master gradients of 16-bit parameters. */
  gradients: number;
  /** Optimizer moments (exp_avg, exp_avg_sq, momentum) and step counters. */
  optimizerStates: number;
  /** Measured only: the peak of a forward and backward pass above what it left behind (null when unknown). */
  activations: number | null;
}

const bytes = (ts: readonly (Tensor | null | undefined)[]): number => ts.reduce((a, t) => a + (t ? t.size * itemSize(t.dtype) : 0), 0);

/** The sizes that follow from the tensors (activations are not computed: null). */
export function computeMemory(model: Module, optimizer: OptimizerTensors): MemoryBreakdown {
  const params = model.parameters();
  const groups = optimizer.paramGroups;
  return {
    parameters: bytes(params),
    masterWeights: bytes(groups.flatMap((g) => g.master)),
    // A gradient has its parameter's dtype and shape; a master gradient is float32.
    gradients: bytes(params) + bytes(groups.flatMap((g) => g.masterGrad)),
    optimizerStates: bytes(groups.flatMap((g) => [...g.state.flatMap((s) => [...s.values()]), g.step])),
    activations: null,
  };
}

export interface MeasureSteps<M, O> {
  createModel(): M;
  createOptimizer(model: M): O;
  /** One forward and backward pass that leaves the gradients in place and frees everything else. */
  forwardBackward(model: M, optimizer: O): void;
}

/**
 * The backend's byte counts around each phase: parameters (building the
 * model), master weights with optimizer states (building the optimizer),
 * gradients (left by a forward and backward pass) and activations (that
 * pass's peak above what it left, when it raised the backend's peak). Byte
 * counts cannot tell master weights and master gradients from moments, all
 * made by the optimizer's constructor: the measured optimizer states are what
 * that constructor allocated less the master copies' computed sizes.
 */
export function measureMemory<M extends Module, O extends OptimizerTensors>(backend: Backend, steps: MeasureSteps<M, O>): { measured: MemoryBreakdown; model: M; optimizer: O } {
  const at = () => backend.memory();
  const start = at().bytes;
  const model = steps.createModel();
  const afterModel = at().bytes;
  const optimizer = steps.createOptimizer(model);
  const afterOptimizer = at().bytes;
  const peakBefore = at().peakBytes;
  steps.forwardBackward(model, optimizer);
  const after = at();
  const computed = computeMemory(model, optimizer);
  const optimizerBytes = afterOptimizer - afterModel;
  // The optimizer allocates master gradients up front; they are gradients in the breakdown.
  const masterGrads = computed.gradients - computed.parameters;
  return {
    model, optimizer,
    measured: {
      parameters: afterModel - start,
      masterWeights: computed.masterWeights,
      gradients: after.bytes - afterOptimizer + masterGrads,
      optimizerStates: optimizerBytes - computed.masterWeights - masterGrads,
      activations: after.peakBytes > peakBefore ? after.peakBytes - after.bytes : null,
    },
  };
}
