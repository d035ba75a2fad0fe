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

export { Trainer, train, createOptimizer, createScaler, modelConfig, CHECKPOINT_DIR, RESUMABLE_OPTIONS, type TrainHooks, type TrainerOptions, type TrainSummary, type StepProgress, type StopReason } from './train/trainer.js';
export { DEFAULT_TRAIN_CONFIG, resolveTrainConfig, resolveLossScale, TrainConfigError, parseDuration, formatDuration, type TrainConfig, type BackendChoice } from './train/config.js';
export { selectBackend, BackendUnavailableError, type SelectedBackend } from './train/select-backend.js';
export { evaluateLoss, type EvalResult } from './train/evaluate.js';
export { sampleText, SAMPLE_PRECISIONS, type SampleOptions, type SamplePrecision } from './train/sample.js';
export { openModelDir, inspectModelDir, type OpenedModel, type ModelDirInfo } from './train/model-dir.js';
export { readMetrics, METRICS_FILE, SUMMARY_FILE, type MetricsRecord, type StartRecord, type TrainRecord, type EvalRecord } from './train/metrics.js';
export { saveCheckpoint, readCheckpoint, loadCheckpointModel, restoreOptimizer, restoreScaler, isCheckpointDir, CheckpointError, type Checkpoint, type CheckpointContents, type TrainerState } from './io/checkpoint.js';
