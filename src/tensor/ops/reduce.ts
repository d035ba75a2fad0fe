// Reductions (sum, mean, max, min over dimensions) and the broadcast-undoing
// sum that every broadcasting op's gradient needs.

import type { ReduceOp } from '../../backend/backend.js';
import { float32Output } from '../dispatch.js';
import { TensorError, fmtShape } from '../errors.js';
import { broadcastStrides, normDims, requireFloat } from '../helpers.js';
import { Tensor, op, record, sizeOf } from '../tensor.js';
import { affine, eq, mul, div } from './elementwise.js';
import { reshape } from './shape.js';

/**
 * Reduces `dims` (sorted, distinct) of x with one kernel per run of adjacent
 * dimensions. Returns the result with the reduced dims kept as size 1.
 */
function reduceKeep(op: ReduceOp, x: Tensor, dims: number[], dtype = x.dtype): Tensor {
  // Partial results of a multi-run reduction stay at (at least) float32.
  const partial = dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype;
  let cur = x;
  let shape = [...x.shape];
  // Runs of adjacent dims, reduced from the last run to the first.
  const runs: [number, number][] = [];
  for (const d of dims) {
    const last = runs[runs.length - 1];
    if (last && last[1] === d) last[1] = d + 1;
    else runs.push([d, d + 1]);
  }
  for (let i = runs.length - 1; i >= 0; i--) {
    const [a, b] = runs[i]!;
    const outer = sizeOf(shape.slice(0, a)), r = sizeOf(shape.slice(a, b)), inner = sizeOf(shape.slice(b));
    const outShape = [...shape.slice(0, a), ...shape.slice(a, b).map(() => 1), ...shape.slice(b)];
    const y = Tensor.empty(outShape, i === 0 ? dtype : partial, x.backend);
    x.backend.reduce(op, cur.storageView, y.storageView, outer, r, inner);
    cur = y;
    shape = outShape;
  }
  return cur === x ? reshape(x, x.shape) : cur;
}

function finish(y: Tensor, x: Tensor, dims: number[], keepdim: boolean): Tensor {
  return keepdim ? y : reshape(y, x.shape.filter((_, i) => !dims.includes(i)));
}

/** Broadcasts g (whose shape has the reduced dims as 1) back to `shape`. */
export const expandTo = op((g: Tensor, shape: readonly number[]): Tensor => {
  const y = Tensor.empty(shape, g.dtype, g.backend);
  const strides = broadcastStrides(g.shape, shape);
  g.backend.copy({ view: g.storageView, offset: 0, strides }, { view: y.storageView, offset: 0, strides: broadcastStrides(shape, shape) }, shape);
  return y;
});

/** Sums g over the dimensions that broadcasting added or stretched, so it has `shape` again. */
export const sumToShape = op((g: Tensor, shape: readonly number[]): Tensor => {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.shape.length - shape.length;
  if (lead < 0) throw new TensorError(`sumToShape: gradient ${fmtShape(g.shape)} has fewer dimensions than ${fmtShape(shape)}`);
  const dims: number[] = [];
  for (let i = 0; i < g.shape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  return reshape(dims.length ? reduceKeep('sum', g, dims) : g, shape);
});

export const sum = op((x: Tensor, dims?: number | readonly number[], keepdim: boolean = false): Tensor => {
  const ds = normDims('sum', dims, x.ndim);
  const outDtype = x.dtype === 'int32' ? 'int32' : float32Output(x.dtype);
  const y = finish(reduceKeep('sum', x, ds, outDtype), x, ds, keepdim);
  return record(y, 'sum', [x], [], (gy) => [expandTo(reshape(gy, keptShape(x.shape, ds)), x.shape)]);
});

export const mean = op((x: Tensor, dims?: number | readonly number[], keepdim: boolean = false): Tensor => {
  requireFloat('mean', x);
  const ds = normDims('mean', dims, x.ndim);
  const n = sizeOf(ds.map((d) => x.shape[d]!));
  return affine(sum(x, ds, keepdim), 1 / n, 0);
});

const extremum = op((name: 'max' | 'min', x: Tensor, dims: number | readonly number[] | undefined, keepdim: boolean): Tensor => {
  const ds = normDims(name, dims, x.ndim);
  if (x.size === 0) throw new TensorError(`${name}: cannot reduce an empty tensor ${x.describe()}`);
  const kept = reduceKeep(name, x, ds);
  const y = reshape(kept, keepdim ? kept.shape : x.shape.filter((_, i) => !ds.includes(i)));
  return record(y, name, [x], [x, kept], (gy, [sx, sk]) => {
    // The gradient is shared evenly between tied extrema (as torch.amax does).
    const hit = eq(sx!, expandTo(sk!, x.shape));
    const count = reduceKeep('sum', hit, ds);
    const g = mul(hit, div(expandTo(reshape(gy, keptShape(x.shape, ds)), x.shape), expandTo(count, x.shape)));
    return [g];
  });
});

export const max = (x: Tensor, dims?: number | readonly number[], keepdim: boolean = false): Tensor => extremum('max', x, dims, keepdim);
export const min = (x: Tensor, dims?: number | readonly number[], keepdim: boolean = false): Tensor => extremum('min', x, dims, keepdim);

function keptShape(shape: readonly number[], dims: number[]): number[] {
  return shape.map((d, i) => (dims.includes(i) ? 1 : d));
}
