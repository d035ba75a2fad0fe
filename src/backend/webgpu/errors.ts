// Typed errors of the WebGPU backend. Each says what failed and, where it can,
// what to do about it.

import { BackendError } from '../backend.js';
import { type ErrorCode } from '../../errors.js';

export type UnavailableReason =
  /** Neither navigator.gpu nor the `webgpu` package (Node). */
  | 'no-navigator-gpu'
  /** The `webgpu` package is installed but could not be loaded (missing native binary, wrong platform). */
  | 'package-not-loadable'
  /** requestAdapter() gave no adapter: no GPU and no software driver (lavapipe, SwiftShader). */
  | 'no-adapter'
  /** The adapter refused to create a device. */
  | 'device-request-failed';

/** WebGPU cannot be used here; `reason` says why. */
export class WebGPUUnavailableError extends BackendError {
  override readonly code: ErrorCode = 'WEBGPU_UNAVAILABLE';
  constructor(readonly reason: UnavailableReason, message: string) {
    super(`WebGPU is unavailable (${reason}): ${message}`);
  }
}

/** The GPU device was lost (driver reset, GPU removed, or destroyed); every later call fails with this. */
export class DeviceLostError extends BackendError {
  override readonly code: ErrorCode = 'DEVICE_LOST';
  constructor(readonly reason: string, detail: string) {
    super(`WebGPU device lost (${reason})${detail ? `: ${detail}` : ''}`);
  }
}

/** The device ran out of memory while allocating or running. */
export class GPUOutOfMemoryError extends BackendError {
  override readonly code: ErrorCode = 'GPU_OUT_OF_MEMORY';
}

/** A buffer larger than the adapter can bind as storage or allocate at all. */
export class BufferTooLargeError extends BackendError {
  override readonly code: ErrorCode = 'BUFFER_TOO_LARGE';
  constructor(readonly bytes: number, readonly limit: number, readonly limitName: string, what: string) {
    super(`webgpu: ${what} needs ${bytes} bytes, more than this adapter's ${limitName} of ${limit} bytes`);
  }
}

/** A WGSL compilation or WebGPU validation error: a bug in a kernel or in how it was called. */
export class GPUValidationError extends BackendError {
  override readonly code: ErrorCode = 'GPU_VALIDATION';
}
