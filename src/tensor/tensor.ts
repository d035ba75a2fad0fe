// Tensor: a shaped, typed handle on backend storage, with autograd metadata.
//
// Storage is reference counted (reshapes share it) and released
// deterministically by `dispose()` or by the `tidy` scope the tensor was made
// in. One ownership rule: every op runs in its own scope (`op`) and hands back
// only its result; what a recorded graph needs it holds as aliases. So `tidy`
// is for callers, never needed for correctness inside an op. `memory()` counts
// live tensors and bytes per backend, so a test can show that a training step
// leaks nothing.

import type { DType } from '../dtype/dtype.js';
import { isFloat } from '../dtype/dtype.js';
import { sizeOf } from '../dtype/shape.js';
import type { Backend, Buf, HostArray, View } from '../backend/backend.js';
import { getBackend } from '../backend/registry.js';
import { DisposedError, DTypeError, GradError, TensorError, fmtShape } from './errors.js';
import { Node, isGradEnabled, type BackwardFn, type Edge } from './graph.js';
import * as ops from './ops.js';

/** A backend buffer shared by the tensors that view it. */
export class Storage {
  private refs = 1;
  constructor(readonly backend: Backend, readonly buf: Buf) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) this.backend.free(this.buf);
  }
}

// ---- scopes ----------------------------------------------------------------

const scopes: Set<Tensor>[] = [];
const liveTensors = new Map<Backend, number>();

function countLive(backend: Backend, delta: number): void {
  liveTensors.set(backend, (liveTensors.get(backend) ?? 0) + delta);
}

function track(t: Tensor): void {
  countLive(t.backend, 1);
  scopes[scopes.length - 1]?.add(t);
}

function collect(x: unknown, into: Set<Tensor>): void {
  if (x instanceof Tensor) into.add(x);
  else if (Array.isArray(x)) for (const v of x) collect(v, into);
  else if (x && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) for (const v of Object.values(x)) collect(v, into);
}

/** Runs fn in a new scope; on return or throw, disposes what it made except the tensors in `survivors(result)`. */
function inScope<T>(fn: () => T, survivors: (result: T) => Set<Tensor>, who: string): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new TensorError(`${who}: the function must be synchronous (it returned a Promise)`);
  } catch (e) {
    // A scope that throws still releases everything it made.
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  const returned = survivors(result);
  const outer = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) outer?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Runs fn and disposes every tensor created inside it, except those it returns
 * (anywhere inside an array or plain object) and those marked with `keep`.
 * Returned tensors move to the enclosing scope. If fn throws, everything it
 * made is disposed. fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  return inScope(fn, (result) => {
    const returned = new Set<Tensor>();
    collect(result, returned);
    return returned;
  }, 'tidy');
}

/**
 * The ownership rule of every op: its body runs in its own scope and hands back
 * only its result, so temporaries (autocast casts, saved statistics, reshapes)
 * are released whether or not the caller uses `tidy`. What the recorded graph
 * needs it holds as aliases (see `record`).
 */
export function op<A extends unknown[]>(body: (...args: A) => Tensor): (...args: A) => Tensor {
  return (...args: A) => inScope(() => body(...args), (y) => new Set([y]), 'op');
}

/** Exempts a tensor from disposal by the enclosing `tidy` scopes. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

export interface MemoryReport {
  backend: string;
  /** Live tensors made through the public API (internal autograd references not counted). */
  tensors: number;
  buffers: number;
  bytes: number;
  peakBytes: number;
}

export function memory(backend: Backend = getBackend()): MemoryReport {
  const m = backend.memory();
  return { backend: backend.name, tensors: liveTensors.get(backend) ?? 0, ...m };
}

// ---- the tensor --------------------------------------------------------------

export { sizeOf };

export class Tensor {
  readonly size: number;
  requiresGrad = false;
  /** Accumulated gradient, in this tensor's dtype. */
  grad: Tensor | null = null;
  /** The recorded op that produced this tensor (null for leaves). */
  node: Node | null = null;
  /** A name for messages (parameters get theirs from the model). */
  name?: string;
  private store: Storage | null;
  private readonly internal: boolean;

  /** Low level: wraps storage (taking over one reference). Use `tensor()`, `zeros()`, ... instead. */
  constructor(storage: Storage, readonly offset: number, readonly shape: readonly number[], readonly dtype: DType, internal = false) {
    this.store = storage;
    this.size = sizeOf(shape);
    this.internal = internal;
    if (!internal) track(this);
  }

  /** A new tensor with fresh storage on `backend`. */
  static empty(shape: readonly number[], dtype: DType, backend: Backend = getBackend(), what?: string): Tensor {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new TensorError(`invalid shape ${fmtShape(shape)}: sizes must be non-negative integers`);
    }
    if (!backend.supports(dtype)) throw new DTypeError(`backend '${backend.name}' cannot store ${dtype}`);
    let buf: Buf;
    try {
      buf = backend.alloc(dtype, sizeOf(shape));
    } catch (e) {
      // The backend knows sizes and limits; say which tensor it was refusing.
      if (e instanceof Error) e.message = `${what ? `${what}, ` : ''}a ${fmtShape(shape)} ${dtype} tensor: ${e.message}`;
      throw e;
    }
    return new Tensor(new Storage(backend, buf), 0, [...shape], dtype);
  }

  get backend(): Backend {
    return this.storage.backend;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.store === null;
  }

  get isLeaf(): boolean {
    return this.node === null;
  }

  /** @internal */
  get storage(): Storage {
    if (!this.store) throw new DisposedError(`use of a disposed tensor: ${this.describe()}`);
    return this.store;
  }

  /** The backend's view of this tensor's elements (its window on the storage); not PyTorch's `view()`, which is `reshape` here. */
  get storageView(): View {
    const s = this.storage;
    return { buf: s.buf, offset: this.offset, size: this.size, dtype: this.dtype };
  }

  describe(): string {
    return `${this.name ? `'${this.name}' ` : ''}${fmtShape(this.shape)} ${this.dtype}`;
  }

  toString(): string {
    return `Tensor(${this.describe()}${this.isDisposed ? ', disposed' : ''})`;
  }

  /** Releases the storage (when no other tensor shares it) and the recorded graph behind this tensor. Idempotent. */
  dispose(): void {
    if (!this.store) return;
    if (!this.internal) countLive(this.store.backend, -1);
    this.store.release();
    this.store = null;
    this.node?.release();
    this.node = null;
  }

  /** @internal A second handle on the same storage, owned by the autograd graph. */
  alias(): Tensor {
    const t = new Tensor(this.storage.retain(), this.offset, this.shape, this.dtype, true);
    t.name = this.name;
    return t;
  }

  /** A tensor with the same values and storage, cut off from the graph. */
  detach(): Tensor {
    const t = new Tensor(this.storage.retain(), this.offset, this.shape, this.dtype);
    t.name = this.name;
    return t;
  }

  /** Marks this tensor as a leaf that accumulates gradients. Float tensors only. */
  requiresGrad_(flag = true): this {
    if (flag && !isFloat(this.dtype)) throw new DTypeError(`requiresGrad: ${this.describe()} is an integer tensor; only floating-point tensors can require gradients`);
    if (!this.isLeaf && !flag) throw new GradError(`requiresGrad_(false) on non-leaf tensor ${this.describe()}: use detach()`);
    this.requiresGrad = flag;
    return this;
  }

  // ---- read-back ----

  /** The values as numbers: Float32Array for float32/16/bfloat16, Float64Array for float64, Int32Array for int32. */
  toArray(): Promise<HostArray> {
    return this.backend.read(this.storageView);
  }

  /** Synchronous read-back, on backends that can (the CPU backend). */
  toArraySync(): HostArray {
    const b = this.backend;
    if (!b.readSync) throw new TensorError(`toArraySync: backend '${b.name}' reads asynchronously; use await toArray()`);
    return b.readSync(this.storageView);
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new TensorError(`item: ${this.describe()} has ${this.size} elements, not 1`);
    return (await this.toArray())[0]!;
  }

  /** Nested arrays of numbers, like PyTorch's tolist(). */
  async toList(): Promise<unknown> {
    const flat = Array.from(await this.toArray());
    const build = (dim: number, off: number): unknown => {
      if (dim === this.shape.length) return flat[off];
      const stride = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim]! }, (_, i) => build(dim + 1, off + i * stride));
    };
    return build(0, 0);
  }

  // ---- autograd ----

  backward(grad?: Tensor): void {
    if (!backwardHook) throw new GradError('backward: autograd is not loaded');
    backwardHook(this, grad);
  }

  // ---- op methods (the same ops as the functions in ops.ts) ----

  add(b: Tensor | number): Tensor { return ops.add(this, b); }
  sub(b: Tensor | number): Tensor { return ops.sub(this, b); }
  mul(b: Tensor | number): Tensor { return ops.mul(this, b); }
  div(b: Tensor | number): Tensor { return ops.div(this, b); }
  neg(): Tensor { return ops.neg(this); }
  pow(p: number): Tensor { return ops.pow(this, p); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  rsqrt(): Tensor { return ops.rsqrt(this); }
  tanh(): Tensor { return ops.tanh(this); }
  relu(): Tensor { return ops.relu(this); }
  gelu(): Tensor { return ops.gelu(this); }
  sigmoid(): Tensor { return ops.sigmoid(this); }
  abs(): Tensor { return ops.abs(this); }
  square(): Tensor { return ops.square(this); }
  maximum(b: Tensor | number): Tensor { return ops.maximum(this, b); }
  minimum(b: Tensor | number): Tensor { return ops.minimum(this, b); }
  eq(b: Tensor | number): Tensor { return ops.eq(this, b); }
  gt(b: Tensor | number): Tensor { return ops.gt(this, b); }
  lt(b: Tensor | number): Tensor { return ops.lt(this, b); }
  matmul(b: Tensor): Tensor { return ops.matmul(this, b); }
  sum(dims?: number | readonly number[], keepdim = false): Tensor { return ops.sum(this, dims, keepdim); }
  mean(dims?: number | readonly number[], keepdim = false): Tensor { return ops.mean(this, dims, keepdim); }
  max(dims?: number | readonly number[], keepdim = false): Tensor { return ops.max(this, dims, keepdim); }
  min(dims?: number | readonly number[], keepdim = false): Tensor { return ops.min(this, dims, keepdim); }
  softmax(dim = -1): Tensor { return ops.softmax(this, dim); }
  logSoftmax(dim = -1): Tensor { return ops.logSoftmax(this, dim); }
  to(dtype: DType | string): Tensor { return ops.to(this, dtype); }
  reshape(...shape: (number | readonly number[])[]): Tensor { return ops.reshape(this, shape.flat() as number[]); }
  /** PyTorch's view(): tensors here are always contiguous, so it is reshape, sharing the storage. */
  view(...shape: (number | readonly number[])[]): Tensor { return ops.reshape(this, shape.flat() as number[]); }
  flatten(): Tensor { return ops.reshape(this, [this.size]); }
  unsqueeze(dim: number): Tensor { return ops.unsqueeze(this, dim); }
  squeeze(dim?: number): Tensor { return ops.squeeze(this, dim); }
  transpose(d0 = -2, d1 = -1): Tensor { return ops.transpose(this, d0, d1); }
  get T(): Tensor { return ops.transpose(this, -2, -1); }
  permute(...dims: (number | readonly number[])[]): Tensor { return ops.permute(this, dims.flat() as number[]); }
  expand(...shape: (number | readonly number[])[]): Tensor { return ops.expand(this, shape.flat() as number[]); }
  slice(dim: number, start: number, end?: number): Tensor { return ops.slice(this, dim, start, end); }
  clone(): Tensor { return ops.clone(this); }
  dropout(p: number, options?: ops.DropoutOptions): Tensor { return ops.dropout(this, p, options); }
}

// ---- recording ---------------------------------------------------------------

let backwardHook: ((root: Tensor, grad?: Tensor) => void) | null = null;

/** Installed by the autograd layer. */
export function setBackwardHook(fn: (root: Tensor, grad?: Tensor) => void): void {
  backwardHook = fn;
}

export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && inputs.some((t) => t?.requiresGrad);
}

/**
 * Records `out` as produced by `op` from `inputs`, if any input requires a
 * gradient and recording is on. `save` lists the tensors the backward formula
 * needs; it receives them (as graph-owned aliases) next to the output gradient.
 */
export function record(
  out: Tensor, op: string, inputs: readonly (Tensor | null | undefined)[], save: readonly Tensor[], backward: BackwardFn,
): Tensor {
  if (!needsGrad(inputs)) return out;
  const edges: (Edge | null)[] = inputs.map((t) => {
    if (!t || !t.requiresGrad) return null;
    return { node: t.node, leaf: t.node ? null : t, dtype: t.dtype, shape: t.shape };
  });
  out.node = new Node(op, edges, save.map((t) => t.alias()), backward);
  out.requiresGrad = true;
  return out;
}
