// Reductions (sum, mean, max, min over dimensions) and the broadcast-undoing
// sum that every broadcasting op's gradient needs.

import type { ReduceOp } from '../../backend/backend.js';
import { float32Output } from '../dispatch.js';
import { TensorError, fmtShape } from '../errors.js';
import { broadcastStrides, normDims, requireFloat } from '../helpers.js';
import { Tensor, record, sizeOf } from '../tensor.js';
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
    x.backend.reduce(op, cur.view, y.view, outer, r, inner);
    if (cur !== x) cur.dispose();
    cur = y;
    shape = outShape;
  }
  return cur === x ? reshape(x, x.shape) : cur;
}

function finish(y: Tensor, x: Tensor, dims: number[], keepdim: boolean): Tensor {
  if (keepdim) return y;
  const shape = x.shape.filter((_, i) => !dims.includes(i));
  const out = reshape(y, shape);
  y.dispose();
  return out;
}

/** Broadcasts g (whose shape has the reduced dims as 1) back to `shape`. */
export function expandTo(g: Tensor, shape: readonly number[]): Tensor {
  const y = Tensor.empty(shape, g.dtype, g.backend);
  const strides = broadcastStrides(g.shape, shape);
  g.backend.copy({ view: g.view, offset: 0, strides }, { view: y.view, offset: 0, strides: broadcastStrides(shape, shape) }, shape);
  return y;
}

/** Sums g over the dimensions that broadcasting added or stretched, so it has `shape` again. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.shape.length - shape.length;
  if (lead < 0) throw new TensorError(`sumToShape: gradient ${fmtShape(g.shape)} has fewer dimensions than ${fmtShape(shape)}`);
  const dims: number[] = [];
  for (let i = 0; i < g.shape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const y = dims.length ? reduceKeep('sum', g, dims) : g;
  const out = reshape(y, shape);
  if (y !== g) y.dispose();
  return out;
}

export function sum(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  const ds = normDims('sum', dims, x.ndim);
  const outDtype = x.dtype === 'int32' ? 'int32' : float32Output(x.dtype);
  const y = finish(reduceKeep('sum', x, ds, outDtype), x, ds, keepdim);
  return record(y, 'sum', [x], [], (gy) => [expandTo(reshape(gy, keptShape(x.shape, ds)), x.shape)]);
}

export function mean(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  requireFloat('mean', x);
  const ds = normDims('mean', dims, x.ndim);
  const n = sizeOf(ds.map((d) => x.shape[d]!));
  const s = sum(x, ds, keepdim);
  const y = affine(s, 1 / n, 0);
  s.dispose();
  return y;
}

function extremum(op: 'max' | 'min', x: Tensor, dims: number | readonly number[] | undefined, keepdim: boolean): Tensor {
  const ds = normDims(op, dims, x.ndim);
  if (x.size === 0) throw new TensorError(`${op}: cannot reduce an empty tensor ${x.describe()}`);
  const kept = reduceKeep(op, x, ds);
  const y = reshape(kept, keepdim ? kept.shape : x.shape.filter((_, i) => !ds.includes(i)));
  const out = record(y, op, [x], [x, kept], (gy, [sx, sk]) => {
    // The gradient is shared evenly between tied extrema (as torch.amax does).
    const hit = eq(sx!, expandTo(sk!, x.shape));
    const count = reduceKeep('sum', hit, ds);
    const g = mul(hit, div(expandTo(reshape(gy, keptShape(x.shape, ds)), x.shape), expandTo(count, x.shape)));
    return [g];
  });
  kept.dispose();
  return out;
}

export function max(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  return extremum('max', x, dims, keepdim);
}

export function min(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  return extremum('min', x, dims, keepdim);
}

function keptShape(shape: readonly number[], dims: number[]): number[] {
  return shape.map((d, i) => (dims.includes(i) ? 1 : d));
}
