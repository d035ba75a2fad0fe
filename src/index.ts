// mixprec: mixed-precision training of Transformer language models.

export * as dtypes from './dtype/index.js';
export { finfo, type FInfo } from './dtype/codec.js';
export type { DType, FloatDType } from './dtype/dtype.js';

export type { Backend, MemoryInfo } from './backend/backend.js';
export { CpuBackend } from './backend/cpu/backend.js';
export { getBackend, setBackend, registerBackend } from './backend/registry.js';
export { Generator, type GeneratorState } from './backend/random.js';

export { Tensor, tidy, keep, memory, type MemoryReport } from './tensor/tensor.js';
export * from './tensor/creation.js';
export * from './tensor/ops.js';
export * from './tensor/errors.js';
export { backward, noGrad, enableGrad } from './autograd/backward.js';

export { autocast, isAutocastEnabled, autocastDtype, AUTOCAST_OPS, type AutocastOptions } from './amp/autocast.js';
export { GradScaler, GradScalerError, type GradScalerOptions, type GradScalerState, type ScalableOptimizer } from './amp/grad-scaler.js';
export { parsePolicy, withPolicy, castOutput, PRESETS as POLICY_PRESETS, PolicyError, type Policy, type LossScaling } from './amp/policy.js';

export { Optimizer, OptimizerError, type ParamGroupSpec, type OptimizerStateDict, type OptimizerOptions } from './optim/optimizer.js';
export { AdamW, ADAMW_DEFAULTS, type AdamWOptions } from './optim/adamw.js';
export { SGD, SGD_DEFAULTS, type SGDOptions } from './optim/sgd.js';
export { clipGradNorm } from './optim/clip.js';
export { warmupCosine, type WarmupCosineOptions } from './optim/schedule.js';

export * from './nn/module.js';
export * from './nn/gpt.js';
export * from './io/gpt2.js';
export { SafetensorsReader, SafetensorsError, writeSafetensors, readSafetensorsHeader, type SafetensorsDType, type TensorInfo, type RawTensor, type WritableTensor } from './io/safetensors.js';
