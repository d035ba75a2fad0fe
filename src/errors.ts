// The root of mixprec's errors. Every error the library throws on purpose is a
// MixprecError: one `catch` can tell mixprec's errors from others, and `code`
// says what went wrong in a form a program can branch on. The named subclasses
// (ShapeError, CheckpointError, ...) stay the types to catch; their messages
// are for people and may be reworded, their codes are stable.

/** Every `code` a MixprecError can carry: the class that carries it, and what it means. */
export const ERROR_CODES = {
  TENSOR_INVALID: { error: 'TensorError', meaning: 'a tensor misused (wrong kind of tensor for an op, a bad index or argument)' },
  SHAPE_MISMATCH: { error: 'ShapeError', meaning: 'shapes that do not fit together (broadcasting, matmul, reshape, ...)' },
  TENSOR_DISPOSED: { error: 'DisposedError', meaning: 'a tensor used after it was disposed' },
  GRAD_MISUSE: { error: 'GradError', meaning: 'autograd misuse (backward without grad, a freed graph, ...)' },
  DTYPE_INVALID: { error: 'DTypeError', meaning: 'an unknown dtype, or one an operation cannot take' },
  BACKEND_FAILED: { error: 'BackendError', meaning: 'a backend refused or failed an operation' },
  WEBGPU_UNAVAILABLE: { error: 'WebGPUUnavailableError', meaning: 'no WebGPU adapter or device here' },
  DEVICE_LOST: { error: 'DeviceLostError', meaning: 'the GPU device was lost' },
  GPU_OUT_OF_MEMORY: { error: 'GPUOutOfMemoryError', meaning: 'the GPU ran out of memory' },
  BUFFER_TOO_LARGE: { error: 'BufferTooLargeError', meaning: "a buffer beyond the adapter's limits" },
  GPU_VALIDATION: { error: 'GPUValidationError', meaning: 'a WGSL compilation or WebGPU validation error' },
  MATMUL_INVALID: { error: 'MatmulError', meaning: 'a matrix product the WebGPU kernels cannot run as described' },
  OPERAND_LAYOUT_INVALID: { error: 'OperandLayoutError', meaning: 'a WGSL operand declared with a layout its dtype or access does not allow' },
  UPDATE_RULE_INVALID: { error: 'UpdateRuleError', meaning: 'an update rule that is malformed, or a call that lacks what it reads' },
  INDEX_OUT_OF_RANGE: { error: 'IndexOutOfRangeError', meaning: 'a token id outside the embedding table, or a target outside the classes' },
  BACKEND_NOT_CREATED: { error: 'BackendNotCreatedError', meaning: 'a backend named before it was created (WebGPU is created asynchronously)' },
  BACKEND_UNAVAILABLE: { error: 'BackendUnavailableError', meaning: 'the backend asked for cannot be used' },
  GRAD_SCALER_MISUSE: { error: 'GradScalerError', meaning: 'GradScaler calls out of order or with bad options' },
  POLICY_INVALID: { error: 'PolicyError', meaning: 'an unknown or inconsistent precision policy' },
  OPTIMIZER_INVALID: { error: 'OptimizerError', meaning: 'bad optimizer options, parameter groups or state' },
  MODULE_INVALID: { error: 'ModuleError', meaning: 'bad module options, parameter names or state' },
  GPT_CONFIG_INVALID: { error: 'GPTConfigError', meaning: 'a GPT configuration that cannot be built' },
  GENERATION_INVALID: { error: 'GenerationError', meaning: 'bad generation or sampling arguments' },
  KV_CACHE_MISUSE: { error: 'KVCacheError', meaning: 'a key/value cache used beyond its size or out of order' },
  SAFETENSORS_INVALID: { error: 'SafetensorsError', meaning: 'a safetensors file that is malformed, truncated or does not match' },
  GPT2_CHECKPOINT_INVALID: { error: 'GPT2CheckpointError', meaning: 'a Hugging Face GPT-2 directory that cannot be loaded or written' },
  CHECKPOINT_INVALID: { error: 'CheckpointError', meaning: 'a training checkpoint that is missing, incomplete or corrupt' },
  CHECKPOINT_REPLACED: { error: 'CheckpointReplacedError', meaning: 'a training checkpoint that a newer save replaced while it was being read' },
  DATA_INVALID: { error: 'DataError', meaning: 'data that cannot be found, read, split or batched' },
  TOKENIZER_INVALID: { error: 'TokenizerError', meaning: 'an unknown tokenizer, or ids it cannot decode' },
  TRAIN_CONFIG_INVALID: { error: 'TrainConfigError', meaning: 'a training option out of range or inconsistent' },
  STATS_INVALID: { error: 'StatsError', meaning: 'a tensor that statistics cannot be computed for (disposed, integer, empty)' },
  LOSS_SCALE_COLLAPSED: { error: 'LossScaleCollapsedError', meaning: 'the dynamic loss scale fell below its minimum (minScale)' },
  REPORT_INVALID: { error: 'ReportError', meaning: 'report or comparison input that cannot be used (set-ups, metrics, options)' },
  CLI_USAGE: { error: 'UsageError', meaning: 'a command line that does not parse' },
} as const;

/** A stable, machine-readable name of what went wrong. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The base of every error mixprec throws on purpose. A subclass declares only
 * its `code`; its `name` (the class's name, as `ERROR_CODES` lists it) follows
 * from the code, so the two cannot disagree.
 */
export abstract class MixprecError extends Error {
  abstract readonly code: ErrorCode;

  override get name(): string {
    // Undefined while Error's constructor runs, before the subclass's fields are set.
    return this.code === undefined ? 'MixprecError' : ERROR_CODES[this.code].error;
  }
}
