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
