// Elementwise ops and their gradients.

import type { BinaryOp, UnaryOp } from '../../backend/backend.js';
import { parseDType, promote, type DType } from '../../dtype/dtype.js';
import { float32Output } from '../dispatch.js';
import { fusions } from '../fusions.js';
import { DTypeError } from '../errors.js';
import { broadcastShapes, requireFloat, sameBackend, stridedAs } from '../helpers.js';
import { Tensor, op, record } from '../tensor.js';
import { sumToShape } from './reduce.js';

function empty(like: Tensor, dtype: DType = like.dtype, shape: readonly number[] = like.shape): Tensor {
  return Tensor.empty(shape, dtype, like.backend);
}

/** A one-element tensor holding `v`, for comparisons and other binary ops with a number. */
function scalarLike(v: number, like: Tensor): Tensor {
  const dtype = like.dtype === 'int32' && !Number.isInteger(v) ? 'float32' : like.dtype;
  const t = empty(like, dtype, []);
  like.backend.write(t.storageView, [v]);
  return t;
}

type Grad = (gy: Tensor, saved: Tensor) => Tensor;

/**
 * A float unary op. `float32` marks autocast's float32 category (16-bit inputs
 * give float32 outputs inside an autocast region). `save` says whether the
 * gradient formula needs the input or the output.
 */
function unaryFloat(
  name: string, x: Tensor, op: UnaryOp, float32: boolean, save: 'x' | 'y', grad: Grad, s?: number, s2?: number,
): Tensor {
  requireFloat(name, x);
  const y = empty(x, float32 ? float32Output(x.dtype) : x.dtype);
  x.backend.unary(op, x.storageView, y.storageView, s, s2);
  return record(y, name, [x], [save === 'x' ? x : y], (gy, [saved]) => [grad(gy, saved!)]);
}

function binaryKernel(op: BinaryOp, a: Tensor, b: Tensor, dtype: DType, name: string): Tensor {
  sameBackend(name, a, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const y = empty(a, dtype, shape);
  a.backend.binary(op, stridedAs(a, shape), stridedAs(b, shape), y.storageView, shape);
  return y;
}

// ---- unary ----

export const neg = op((x: Tensor): Tensor => {
  if (x.dtype === 'int32') return affine(x, -1, 0);
  return unaryFloat('neg', x, 'neg', false, 'x', (gy) => neg(gy));
});

export const exp = op((x: Tensor): Tensor => {
  return unaryFloat('exp', x, 'exp', true, 'y', (gy, y) => mul(gy, y));
});

export const log = op((x: Tensor): Tensor => {
  return unaryFloat('log', x, 'log', true, 'x', (gy, x) => div(gy, x));
});

export const sqrt = op((x: Tensor): Tensor => {
  return unaryFloat('sqrt', x, 'sqrt', true, 'y', (gy, y) => mul(div(gy, y), 0.5));
});

export const rsqrt = op((x: Tensor): Tensor => {
  return unaryFloat('rsqrt', x, 'rsqrt', true, 'y', (gy, y) => mul(gy, affine(pow(y, 3), -0.5, 0)));
});

export const tanh = op((x: Tensor): Tensor => {
  return unaryFloat('tanh', x, 'tanh', false, 'y', (gy, y) => gradOp('tanh_grad', y, gy));
});

export const sigmoid = op((x: Tensor): Tensor => {
  return unaryFloat('sigmoid', x, 'sigmoid', false, 'y', (gy, y) => gradOp('sigmoid_grad', y, gy));
});

export const relu = op((x: Tensor): Tensor => {
  return unaryFloat('relu', x, 'relu', false, 'x', (gy, x) => gradOp('relu_grad', x, gy));
});

/** GELU with the tanh approximation, as GPT-2 uses. */
export const gelu = op((x: Tensor): Tensor => {
  return unaryFloat('gelu', x, 'gelu', false, 'x', (gy, x) => gradOp('gelu_grad', x, gy));
});

export const abs = op((x: Tensor): Tensor => {
  return unaryFloat('abs', x, 'abs', false, 'x', (gy, x) => mul(gy, unaryFloat('sign', x, 'sign', false, 'x', () => { throw new Error('unreachable'); })));
});

export const square = op((x: Tensor): Tensor => {
  return unaryFloat('square', x, 'square', false, 'x', (gy, x) => mul(gy, affine(x, 2, 0)));
});

/** x ** p for a number p (autocast float32 category). */
export const pow = op((x: Tensor, p: number): Tensor => {
  return unaryFloat('pow', x, 'pow', true, 'x', (gy, x) => mul(gy, affine(pow(x, p - 1), p, 0)), p);
});

/** x * a + b in one kernel. */
export const affine = op((x: Tensor, a: number, b: number): Tensor => {
  const dtype = x.dtype === 'int32' && !(Number.isInteger(a) && Number.isInteger(b)) ? 'float32' : x.dtype;
  const y = empty(x, dtype);
  x.backend.unary('affine', x.storageView, y.storageView, a, b);
  return record(y, 'affine', [x], [], (gy) => [affine(gy, a, 0)]);
});

function gradOp(op: BinaryOp, x: Tensor, gy: Tensor): Tensor {
  return binaryKernel(op, x, gy, gy.dtype, op);
}

// ---- binary ----

export const add = op((a: Tensor | number, b: Tensor | number): Tensor => {
  if (typeof b === 'number') return typeof a === 'number' ? tensorError('add') : affine(a, 1, b);
  if (typeof a === 'number') return affine(b, 1, a);
  const y = binaryKernel('add', a, b, promote(a.dtype, b.dtype), 'add');
  return record(y, 'add', [a, b], [], (gy) => [sumToShape(gy, a.shape), sumToShape(gy, b.shape)]);
});

export const sub = op((a: Tensor | number, b: Tensor | number): Tensor => {
  if (typeof b === 'number') return typeof a === 'number' ? tensorError('sub') : affine(a, 1, -b);
  if (typeof a === 'number') return affine(b, -1, a);
  const y = binaryKernel('sub', a, b, promote(a.dtype, b.dtype), 'sub');
  return record(y, 'sub', [a, b], [], (gy) => [sumToShape(gy, a.shape), sumToShape(neg(gy), b.shape)]);
});

export const mul = op((a: Tensor | number, b: Tensor | number): Tensor => {
  if (typeof b === 'number') return typeof a === 'number' ? tensorError('mul') : affine(a, b, 0);
  if (typeof a === 'number') return affine(b, a, 0);
  const y = binaryKernel('mul', a, b, promote(a.dtype, b.dtype), 'mul');
  return record(y, 'mul', [a, b], [a, b], (gy, [sa, sb]) => [
    a.requiresGrad ? sumToShape(mul(gy, sb!), a.shape) : null,
    b.requiresGrad ? sumToShape(mul(gy, sa!), b.shape) : null,
  ]);
});

export const div = op((a: Tensor | number, b: Tensor | number): Tensor => {
  if (typeof b === 'number') return typeof a === 'number' ? tensorError('div') : affine(a, 1 / b, 0);
  if (typeof a === 'number') return mul(reciprocal(b), a);
  // Only int32 / int32 is refused; a float divided by an int32 promotes to the float.
  if (a.dtype === 'int32' && b.dtype === 'int32') requireFloat('div', a);
  const y = binaryKernel('div', a, b, promote(a.dtype, b.dtype), 'div');
  return record(y, 'div', [a, b], [a, b], (gy, [sa, sb]) => [
    a.requiresGrad ? sumToShape(div(gy, sb!), a.shape) : null,
    b.requiresGrad ? sumToShape(neg(div(mul(gy, sa!), mul(sb!, sb!))), b.shape) : null,
  ]);
});

export const reciprocal = op((x: Tensor): Tensor => {
  return unaryFloat('reciprocal', x, 'reciprocal', true, 'y', (gy, y) => neg(mul(gy, mul(y, y))));
});

const minmax = op((name: 'maximum' | 'minimum', a: Tensor | number, b: Tensor | number): Tensor => {
  if (typeof a === 'number') [a, b] = [b, a];
  if (typeof a === 'number') return tensorError(name);
  const bt = typeof b === 'number' ? scalarLike(b, a) : b;
  const y = binaryKernel(name, a, bt, promote(a.dtype, bt.dtype), name);
  // The gradient goes to the operand that was selected (to a on ties).
  return record(y, name, [a, bt], [a, bt], (gy, [sa, sb]) => {
    const pick = binaryKernel(name === 'maximum' ? 'ge' : 'le', sa!, sb!, gy.dtype, name);
    const ga = mul(gy, pick);
    const gb = sub(gy, ga);
    return [sumToShape(ga, sa!.shape), sumToShape(gb, sb!.shape)];
  });
});

export const maximum = (a: Tensor | number, b: Tensor | number): Tensor => minmax('maximum', a, b);
export const minimum = (a: Tensor | number, b: Tensor | number): Tensor => minmax('minimum', a, b);

const compare = op((name: BinaryOp, a: Tensor, b: Tensor | number): Tensor => {
  const bt = typeof b === 'number' ? scalarLike(b, a) : b;
  return binaryKernel(name, a, bt, a.dtype === 'int32' && bt.dtype === 'int32' ? 'int32' : 'float32', name);
});

/** Comparisons give 1 or 0 (float32, or int32 for two int32 operands) and have no gradient. */
export const eq = (a: Tensor, b: Tensor | number): Tensor => compare('eq', a, b);
export const ne = (a: Tensor, b: Tensor | number): Tensor => compare('ne', a, b);
export const gt = (a: Tensor, b: Tensor | number): Tensor => compare('gt', a, b);
export const ge = (a: Tensor, b: Tensor | number): Tensor => compare('ge', a, b);
export const lt = (a: Tensor, b: Tensor | number): Tensor => compare('lt', a, b);
export const le = (a: Tensor, b: Tensor | number): Tensor => compare('le', a, b);

/** cond != 0 ? a : b, broadcasting all three; mixed float inputs promote. */
export const where = op((cond: Tensor, a: Tensor, b: Tensor): Tensor => {
  sameBackend('where', cond, a, b);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  const y = empty(a, promote(a.dtype, b.dtype), shape);
  a.backend.where(stridedAs(cond, shape), stridedAs(a, shape), stridedAs(b, shape), y.storageView, shape);
  return record(y, 'where', [null, a, b], [cond], (gy, [c]) => {
    const zero = Tensor.empty([], gy.dtype, gy.backend);
    gy.backend.fill(zero.storageView, 0);
    const ga = where(c!, gy, zero), gb = where(c!, zero, gy);
    return [null, sumToShape(ga, a.shape), sumToShape(gb, b.shape)];
  });
});

/** Converts to another dtype, rounding to nearest even; the gradient converts back. */
export const to = op((x: Tensor, dtype: DType | string): Tensor => {
  const d = parseDType(dtype);
  if (d === x.dtype) return x;
  if (x.requiresGrad && d === 'int32') throw new DTypeError(`to: cannot convert ${x.describe()}, which requires grad, to int32`);
  const y = empty(x, d);
  fusions(x.backend).cast(x.storageView, y.storageView);
  return record(y, 'to', [x], [], (gy) => [gy]);
});

function tensorError(op: string): never {
  throw new DTypeError(`${op}: at least one operand must be a tensor`);
}
