// mixprec for Node: the browser-safe core plus files (safetensors, GPT-2
// checkpoints, training checkpoints), corpora and the training loop.

export * from './core.js';
export { loadBrownCorpus, loadTextData } from './data/corpus.js';
export { loadTokenizedSplits } from './data/cache.js';
export * from './io/gpt2.js';
export { SafetensorsReader, SafetensorsError, writeSafetensors, readSafetensorsHeader, type SafetensorsDType, type TensorInfo, type RawTensor, type WritableTensor } from './io/safetensors.js';
export { Trainer, train, createOptimizer, createScaler, modelConfig, CHECKPOINT_DIR, RESUMABLE_OPTIONS, type TrainHooks, type TrainerOptions, type TrainSummary, type StepProgress, type StopReason } from './train/trainer.js';
export { DEFAULT_TRAIN_CONFIG, resolveTrainConfig, resolveLossScale, TrainConfigError, parseDuration, formatDuration, type TrainConfig, type BackendChoice } from './train/config.js';
export { selectBackend, BackendUnavailableError, type SelectedBackend } from './train/select-backend.js';
export { evaluateLoss, type EvalResult } from './train/evaluate.js';
export { sampleText, sampleTexts, SAMPLE_PRECISIONS, type SampleOptions, type SamplePrecision } from './train/sample.js';
export { openModelDir, inspectModelDir, type OpenedModel, type ModelDirInfo } from './train/model-dir.js';
export { readMetrics, METRICS_FILE, SUMMARY_FILE, type MetricsRecord, type StartRecord, type TrainRecord, type EvalRecord } from './train/metrics.js';
export { saveCheckpoint, readCheckpoint, loadCheckpointModel, restoreOptimizer, restoreScaler, isCheckpointDir, CheckpointError, CheckpointReplacedError, type Checkpoint, type CheckpointContents, type TrainerState } from './io/checkpoint.js';
export { compare, readSetupResult, DEFAULT_SETUPS, REPORT_FILE, RESULTS_FILE, type CompareOptions } from './report/compare.js';
export {
  planMemory, formatPlan, createTrainingSetup, disposeTrainingSetup, trainingStep,
  type MemoryPlan, type PlanOptions, type DeviceLimits, type Fit, type StepPhase, type TrainingSetup, type TrainingStepOptions,
} from './report/memory-plan/plan.js';
export { NumericsObserver, type NumericsOptions, type StatsRecord, type NonFiniteRecord } from './report/observer.js';
export type { StepObserver, ObserverRecord } from './train/observer.js';
export type { SkippedSteps } from './train/step-watch.js';
