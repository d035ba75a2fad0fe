// Making tensors: from data, constants, ranges and seeded random numbers.

import type { Backend, HostArray } from '../backend/backend.js';
import type { Generator } from '../backend/random.js';
import { resolveBackend } from '../backend/registry.js';
import { parseDType, type DType } from '../dtype/dtype.js';
import { ShapeError, TensorError, fmtShape } from './errors.js';
import { getDefaultGenerator } from './ops/nn.js';
import { Tensor, sizeOf } from './tensor.js';

export interface TensorOptions {
  dtype?: DType | string;
  shape?: readonly number[];
  requiresGrad?: boolean;
  backend?: Backend | string;
}

type Nested = number | boolean | readonly Nested[];
export type TensorData = Nested | ArrayLike<number>;

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as Nested;
  }
  return shape;
}

function flatten(data: Nested, shape: number[], dim: number, out: number[]): void {
  if (dim === shape.length) {
    if (Array.isArray(data)) throw new ShapeError(`tensor: ragged nested array (expected a number at depth ${dim})`);
    out.push(+data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    throw new ShapeError(`tensor: ragged nested array (expected ${shape[dim]} elements at depth ${dim} for shape ${fmtShape(shape)})`);
  }
  for (const d of data) flatten(d as Nested, shape, dim + 1, out);
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

/**
 * A tensor from numbers: a number, nested arrays or a flat typed array (with
 * `shape`, or 1-D). Values are rounded to `dtype` (default float32, int32 for an Int32Array).
 */
export function tensor(data: TensorData, opts: TensorOptions = {}): Tensor {
  const dtype = opts.dtype ? parseDType(opts.dtype) : data instanceof Int32Array ? 'int32' : 'float32';
  let values: ArrayLike<number>;
  let shape: number[];
  if (typeof data === 'number' || typeof data === 'boolean') {
    values = [+data];
    shape = [];
  } else if (Array.isArray(data)) {
    shape = inferShape(data as Nested);
    const flat: number[] = [];
    flatten(data as Nested, shape, 0, flat);
    values = flat;
  } else {
    values = data as ArrayLike<number>;
    shape = [values.length];
  }
  if (opts.shape) {
    if (sizeOf(opts.shape) !== values.length) {
      throw new ShapeError(`tensor: ${values.length} values do not fill shape ${fmtShape(opts.shape)} (${sizeOf(opts.shape)} elements)`);
    }
    shape = [...opts.shape];
  }
  const t = Tensor.empty(shape, dtype, resolveBackend(opts.backend));
  t.backend.write(t.storageView, values);
  return finish(t, opts);
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const t = Tensor.empty(shape, parseDType(opts.dtype ?? 'float32'), resolveBackend(opts.backend));
  t.backend.fill(t.storageView, value);
  return finish(t, opts);
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return full(t.shape, 0, { dtype: t.dtype, backend: t.backend, ...opts });
}

export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, backend: t.backend, ...opts });
}

/** start, start+step, ... below end (like torch.arange); int32 when all arguments are integers. */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new TensorError('arange: step must not be 0');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const isInt = Number.isInteger(start) && Number.isInteger(step);
  const values = Array.from({ length: n }, (_, i) => start + i * step);
  return tensor(values, { dtype: isInt ? 'int32' : 'float32', ...opts, shape: [n] });
}

export interface RandomOptions extends TensorOptions {
  generator?: Generator;
}

function random(shape: readonly number[], draw: (g: Generator, n: number) => HostArray, opts: RandomOptions): Tensor {
  const g = opts.generator ?? getDefaultGenerator();
  return tensor(draw(g, sizeOf(shape)), { ...opts, shape });
}

/** Uniform in (0, 1) from the seeded counter-based generator: the same numbers on every backend. */
export function rand(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  return random(shape, (g, n) => g.uniform(n) as HostArray, opts);
}

/** Standard normal from the seeded counter-based generator: the same numbers on every backend. */
export function randn(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  return random(shape, (g, n) => g.normal(n) as HostArray, opts);
}
