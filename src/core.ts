// mixprec's browser-safe core: tensors, autograd, autocast, GradScaler,
// optimizers, the GPT model, tokenizers and batching, and the CPU and WebGPU
// backends. Nothing here imports a Node built-in (the WebGPU backend loads the
// Node `webgpu` package only when `navigator.gpu` is absent).

export { MixprecError, ERROR_CODES, type ErrorCode } from './errors.js';
export * as dtypes from './dtype/index.js';
export { finfo, type FInfo } from './dtype/codec.js';
export type { DType, FloatDType } from './dtype/dtype.js';

export type { Backend, MemoryInfo } from './backend/backend.js';
export { BackendError, IndexOutOfRangeError } from './backend/backend.js';
export { UpdateRuleError, type Expr, type UpdateCall, type UpdateRule } from './backend/update-rule.js';
export { UNSCALE_RULE, UPDATE_SCALE_RULE } from './amp/loss-scale-rules.js';
export { CpuBackend } from './backend/cpu/backend.js';
export { getBackend, setBackend, registerBackend, resolveBackend, BackendNotCreatedError } from './backend/registry.js';
export { Generator, type GeneratorState } from './backend/random.js';

export { Tensor, tidy, keep, memory, type MemoryReport } from './tensor/tensor.js';
export * from './tensor/creation.js';
export * from './tensor/ops.js';
export * from './tensor/errors.js';
export { backward, noGrad, enableGrad } from './autograd/backward.js';
export { checkpoint, type CheckpointOptions } from './autograd/checkpoint.js';

export { autocast, isAutocastEnabled, autocastDtype, AUTOCAST_OPS, type AutocastOptions } from './amp/autocast.js';
export { GradScaler, GradScalerError, type GradScalerOptions, type GradScalerState, type ScalableOptimizer } from './amp/grad-scaler.js';
export { parsePolicy, withPolicy, castOutput, PRESETS as POLICY_PRESETS, PolicyError, type Policy, type LossScaling } from './amp/policy.js';

export { Optimizer, OptimizerError, type ParamGroupSpec, type OptimizerStateDict, type OptimizerOptions } from './optim/optimizer.js';
export { AdamW, ADAMW_DEFAULTS, ADAMW_RULE, type AdamWOptions } from './optim/adamw.js';
export { SGD, SGD_DEFAULTS, sgdRule, type SGDOptions } from './optim/sgd.js';
export { clipGradNorm } from './optim/clip.js';
export { warmupCosine, type WarmupCosineOptions } from './optim/schedule.js';
export { ampStep, type AmpStepOptions, type AmpStepResult, type AmpOptimizer } from './train/amp-step.js';

export * from './nn/module.js';
export { quantize, toWeightFormat, parseWeightFormat, weightFormat, weightBytes, isQuantized, WEIGHT_FORMATS, type WeightFormat, type QuantizeOptions } from './nn/quantize.js';
export { QuantizedWeight, quantizedLinear } from './tensor/quantized.js';
export { QuantizeError, type QuantFormat, type QuantLayout } from './dtype/quant.js';
export * from './nn/gpt.js';

export { createWebGPUBackend, WebGPUBackend, type WebGPUBackendOptions } from './backend/webgpu/backend.js';
export type { AdapterInfo } from './backend/webgpu/device.js';
export * from './backend/webgpu/errors.js';

export { ByteTokenizer, GPT2Tokenizer, loadTokenizer, TOKENIZER_NAMES, type Tokenizer, type TokenizerName } from './data/tokenizer.js';
export { BatchSampler, evalBatches } from './data/batches.js';
export { DataError, TokenizerError } from './data/errors.js';

export { tensorStats, StatsError, HISTOGRAM_LOW, HISTOGRAM_HIGH, type TensorStats, type StatsEntry, type StatsKind, type RangeFractions } from './report/stats.js';
export { LossScaleCollapsedError, type StepStatus, type StepStatusInfo } from './amp/grad-scaler.js';
export type { OverflowInfo } from './amp/overflow-record.js';
export { NonFiniteFinder, describeNonFinite, type NonFiniteReport, type CheckedTensor } from './report/culprit.js';
export { recommendScale, type ScaleRecommendation, type StatsSample } from './report/recommend.js';
export { computeMemory, measureMemory, type MemoryBreakdown } from './report/memory.js';
export { summarize, FOLLOW_TOLERANCE, type Summary, type Verdict } from './report/summary.js';
export { renderReport, type ReportOptions } from './report/html.js';
export { ReportError, type SetupSpec, type SetupResult } from './report/results.js';
export * as charts from './report/svg.js';
