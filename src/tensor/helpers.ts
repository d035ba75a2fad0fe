// Shape arithmetic shared by the ops: broadcasting, dimension normalisation,
// and the checks that produce typed errors.

import { contiguousStrides, type Strided } from '../backend/backend.js';
import { isFloat } from '../dtype/dtype.js';
import { DTypeError, ShapeError, TensorError, fmtShape } from './errors.js';
import type { Tensor } from './tensor.js';

export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1, db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor of `shape` as if it had `outShape` (0 on broadcast dimensions). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const s = contiguousStrides(shape);
  const out = new Array<number>(outShape.length).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const o = outShape.length - shape.length + i;
    out[o] = shape[i] === 1 && outShape[o] !== 1 ? 0 : s[i]!;
  }
  return out;
}

export function stridedAs(t: Tensor, outShape: readonly number[]): Strided {
  return { view: t.storageView, offset: 0, strides: broadcastStrides(t.shape, outShape) };
}

export function normDim(op: string, dim: number, ndim: number): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(dim) || d < 0 || d >= ndim) {
    throw new TensorError(`${op}: dimension ${dim} is out of range for a tensor with ${ndim} dimension${ndim === 1 ? '' : 's'}`);
  }
  return d;
}

export function normDims(op: string, dims: number | readonly number[] | undefined, ndim: number): number[] {
  if (dims === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const list = typeof dims === 'number' ? [dims] : dims;
  const out = [...new Set(list.map((d) => normDim(op, d, ndim)))];
  return out.sort((x, y) => x - y);
}

export function requireFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (!isFloat(t.dtype)) throw new DTypeError(`${op}: expected a floating-point tensor, got integer tensor ${t.describe()}`);
  }
}

export function requireInt(op: string, what: string, t: Tensor): void {
  if (t.dtype !== 'int32') throw new DTypeError(`${op}: ${what} must be an int32 tensor, got ${t.describe()}`);
}

export function sameBackend(op: string, ...ts: Tensor[]): void {
  const b = ts[0]!.backend;
  for (const t of ts) {
    if (t.backend !== b) throw new TensorError(`${op}: tensors live on different backends ('${b.name}' and '${t.backend.name}')`);
  }
}
