// Shape ops. Tensors are always contiguous: reshape shares storage; permutes,
// expands, slices and concatenation copy with one strided kernel.

import { contiguousStrides } from '../../backend/backend.js';
import { promoteAll } from '../../dtype/dtype.js';
import { ShapeError, TensorError, fmtShape } from '../errors.js';
import { broadcastShapes, normDim, sameBackend } from '../helpers.js';
import { fusions } from '../fusions.js';
import { Storage, Tensor, op, record, sizeOf } from '../tensor.js';
import { sumToShape } from './reduce.js';

export const reshape = op((x: Tensor, shape: readonly number[]): Tensor => {
  const infer = shape.indexOf(-1);
  let dims = [...shape];
  if (infer >= 0) {
    const known = sizeOf(shape.filter((_, i) => i !== infer));
    if (shape.lastIndexOf(-1) !== infer || known === 0 || x.size % known !== 0) {
      throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) into ${fmtShape(shape)}`);
    }
    dims[infer] = x.size / known;
  }
  if (dims.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(dims) !== x.size) {
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) into ${fmtShape(shape)}`);
  }
  const y = new Tensor((x.storage as Storage).retain(), x.offset, dims, x.dtype);
  return record(y, 'reshape', [x], [], (gy) => [reshape(gy, x.shape)]);
});

export const unsqueeze = op((x: Tensor, dim: number): Tensor => {
  const d = normDim('unsqueeze', dim, x.ndim + 1);
  return reshape(x, [...x.shape.slice(0, d), 1, ...x.shape.slice(d)]);
});

export const squeeze = op((x: Tensor, dim?: number): Tensor => {
  if (dim === undefined) return reshape(x, x.shape.filter((d) => d !== 1));
  const d = normDim('squeeze', dim, x.ndim);
  return x.shape[d] === 1 ? reshape(x, x.shape.filter((_, i) => i !== d)) : reshape(x, x.shape);
});

export const permute = op((x: Tensor, dims: readonly number[]): Tensor => {
  if (dims.length !== x.ndim) throw new ShapeError(`permute: ${dims.length} dimensions given for ${x.describe()}`);
  const perm = dims.map((d) => normDim('permute', d, x.ndim));
  if (new Set(perm).size !== perm.length) throw new ShapeError(`permute: repeated dimension in [${dims.join(', ')}]`);
  const shape = perm.map((d) => x.shape[d]!);
  const src = contiguousStrides(x.shape);
  const y = Tensor.empty(shape, x.dtype, x.backend);
  x.backend.copy(
    { view: x.storageView, offset: 0, strides: perm.map((d) => src[d]!) },
    { view: y.storageView, offset: 0, strides: contiguousStrides(shape) },
    shape,
  );
  const inverse = new Array<number>(perm.length);
  perm.forEach((d, i) => { inverse[d] = i; });
  return record(y, 'permute', [x], [], (gy) => [permute(gy, inverse)]);
});

export const transpose = op((x: Tensor, d0: number, d1: number): Tensor => {
  const a = normDim('transpose', d0, x.ndim), b = normDim('transpose', d1, x.ndim);
  const perm = x.shape.map((_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return permute(x, perm);
});

export const expand = op((x: Tensor, shape: readonly number[]): Tensor => {
  const target = shape.map((d, i) => (d === -1 ? x.shape[x.ndim - shape.length + i] ?? -1 : d));
  const out = broadcastShapes('expand', x.shape, target);
  if (out.length !== target.length || out.some((d, i) => d !== target[i])) {
    throw new ShapeError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  const y = Tensor.empty(out, x.dtype, x.backend);
  const src = contiguousStrides(x.shape);
  const strides = out.map((_, i) => {
    const j = i - (out.length - x.ndim);
    return j < 0 || x.shape[j] === 1 ? 0 : src[j]!;
  });
  x.backend.copy({ view: x.storageView, offset: 0, strides }, { view: y.storageView, offset: 0, strides: contiguousStrides(out) }, out);
  return record(y, 'expand', [x], [], (gy) => [sumToShape(gy, x.shape)]);
});

/** Elements start..end-1 along `dim` (negative indices count from the end, like Python). */
export const slice = op((x: Tensor, dim: number, start: number, end?: number): Tensor => {
  const d = normDim('slice', dim, x.ndim);
  const n = x.shape[d]!;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const s = clamp(start), e = Math.max(clamp(end ?? n), s);
  const shape = [...x.shape];
  shape[d] = e - s;
  const strides = contiguousStrides(x.shape);
  const y = Tensor.empty(shape, x.dtype, x.backend);
  x.backend.copy({ view: x.storageView, offset: s * strides[d]!, strides }, { view: y.storageView, offset: 0, strides: contiguousStrides(shape) }, shape);
  return record(y, 'slice', [x], [], (gy) => {
    const g = Tensor.empty(x.shape, gy.dtype, gy.backend);
    gy.backend.fill(g.storageView, 0);
    gy.backend.copy({ view: gy.storageView, offset: 0, strides: contiguousStrides(shape) }, { view: g.storageView, offset: s * strides[d]!, strides }, shape);
    return [g];
  });
});

/** Concatenates along `dim`; mixed float dtypes promote. */
export const cat = op((xs: readonly Tensor[], dim: number = 0): Tensor => {
  if (xs.length === 0) throw new TensorError('cat: no tensors given');
  sameBackend('cat', ...xs);
  const first = xs[0]!;
  const d = normDim('cat', dim, first.ndim);
  for (const t of xs) {
    if (t.ndim !== first.ndim || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new ShapeError(`cat: shapes ${fmtShape(first.shape)} and ${fmtShape(t.shape)} differ outside dimension ${d}`);
    }
  }
  const shape = [...first.shape];
  shape[d] = xs.reduce((a, t) => a + t.shape[d]!, 0);
  const y = Tensor.empty(shape, promoteAll(xs.map((t) => t.dtype)), first.backend);
  const outStrides = contiguousStrides(shape);
  const starts: number[] = [];
  let at = 0;
  for (const t of xs) {
    starts.push(at);
    first.backend.copy(
      { view: t.storageView, offset: 0, strides: contiguousStrides(t.shape) },
      { view: y.storageView, offset: at * outStrides[d]!, strides: outStrides },
      t.shape,
    );
    at += t.shape[d]!;
  }
  return record(y, 'cat', xs, [], (gy) => xs.map((t, i) => (t.requiresGrad ? slice(gy, d, starts[i]!, starts[i]! + t.shape[d]!) : null)));
});

export const clone = op((x: Tensor): Tensor => {
  const y = Tensor.empty(x.shape, x.dtype, x.backend);
  fusions(x.backend).cast(x.storageView, y.storageView);
  return record(y, 'clone', [x], [], (gy) => [gy]);
});
