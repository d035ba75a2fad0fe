// Typed errors for tensor misuse. Each names the op and what was wrong with
// the operands, so the message alone says what to fix.

import { MixprecError, type ErrorCode } from '../errors.js';

export { DTypeError } from '../dtype/dtype.js';

export class TensorError extends MixprecError {
  override readonly code: ErrorCode = 'TENSOR_INVALID';
}

/** Shapes that do not fit together (broadcasting, matmul, reshape, ...). */
export class ShapeError extends TensorError {
  override readonly code: ErrorCode = 'SHAPE_MISMATCH';
}

/** A tensor used after `dispose()` (or after the `tidy` scope that owned it ended). */
export class DisposedError extends TensorError {
  override readonly code: ErrorCode = 'TENSOR_DISPOSED';
}

/** Autograd misuse: backward on a tensor that does not require grad, a graph already freed, ... */
export class GradError extends TensorError {
  override readonly code: ErrorCode = 'GRAD_MISUSE';
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
