// The root of mixprec's errors. Every error the library throws on purpose is a
// MixprecError: one `catch` can tell mixprec's errors from others, and `code`
// says what went wrong in a form a program can branch on. The named subclasses
// (ShapeError, CheckpointError, ...) stay the types to catch; their messages
// are for people and may be reworded, their codes are stable.

/** Every `code` a MixprecError can carry, with the class that carries it. */
export const ERROR_CODES = {
  TENSOR_INVALID: 'TensorError: a tensor misused (wrong kind of tensor for an op, a bad index or argument)',
  SHAPE_MISMATCH: 'ShapeError: shapes that do not fit together (broadcasting, matmul, reshape, ...)',
  TENSOR_DISPOSED: 'DisposedError: a tensor used after it was disposed',
  GRAD_MISUSE: 'GradError: autograd misuse (backward without grad, a freed graph, ...)',
  DTYPE_INVALID: 'DTypeError: an unknown dtype, or one an operation cannot take',
  BACKEND_FAILED: 'BackendError: a backend refused or failed an operation',
  WEBGPU_UNAVAILABLE: 'WebGPUUnavailableError: no WebGPU adapter or device here',
  DEVICE_LOST: 'DeviceLostError: the GPU device was lost',
  GPU_OUT_OF_MEMORY: 'GPUOutOfMemoryError: the GPU ran out of memory',
  BUFFER_TOO_LARGE: "BufferTooLargeError: a buffer beyond the adapter's limits",
  GPU_VALIDATION: 'GPUValidationError: a WGSL compilation or WebGPU validation error',
  MATMUL_INVALID: 'MatmulError: a matrix product the WebGPU kernels cannot run as described',
  OPERAND_LAYOUT_INVALID: 'OperandLayoutError: a WGSL operand declared with a layout its dtype or access does not allow',
  BACKEND_UNAVAILABLE: 'BackendUnavailableError: the backend asked for cannot be used',
  GRAD_SCALER_MISUSE: 'GradScalerError: GradScaler calls out of order or with bad options',
  POLICY_INVALID: 'PolicyError: an unknown or inconsistent precision policy',
  OPTIMIZER_INVALID: 'OptimizerError: bad optimizer options, parameter groups or state',
  MODULE_INVALID: 'ModuleError: bad module options, parameter names or state',
  GPT_CONFIG_INVALID: 'GPTConfigError: a GPT configuration that cannot be built',
  GENERATION_INVALID: 'GenerationError: bad generation or sampling arguments',
  KV_CACHE_MISUSE: 'KVCacheError: a key/value cache used beyond its size or out of order',
  SAFETENSORS_INVALID: 'SafetensorsError: a safetensors file that is malformed, truncated or does not match',
  GPT2_CHECKPOINT_INVALID: 'GPT2CheckpointError: a Hugging Face GPT-2 directory that cannot be loaded or written',
  CHECKPOINT_INVALID: 'CheckpointError: a training checkpoint that is missing, incomplete or corrupt',
  DATA_INVALID: 'DataError: data that cannot be found, read, split or batched',
  TOKENIZER_INVALID: 'TokenizerError: an unknown tokenizer, or ids it cannot decode',
  TRAIN_CONFIG_INVALID: 'TrainConfigError: a training option out of range or inconsistent',
  CLI_USAGE: 'UsageError: a command line that does not parse',
} as const;

/** A stable, machine-readable name of what went wrong. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The base of every error mixprec throws on purpose; `code` is stable, `name` is the subclass's name. */
export abstract class MixprecError extends Error {
  abstract readonly code: ErrorCode;
  override name = 'MixprecError';
}
