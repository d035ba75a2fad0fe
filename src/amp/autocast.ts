// autocast: automatic mixed precision for a region of code, with the op
// categories and cast cache of PyTorch's CUDA autocast.
//
// Inside a region, lower-precision ops (matmul and friends) cast their float
// inputs to the region's dtype and accumulate in float32; float32 ops
// (softmax, norms, losses, reductions, exp/log/pow) compute and return float32;
// promote ops (add, sub, mul, div, cat, where) run in the widest input dtype;
// every other op runs in its input dtype. int32 and float64 tensors are never
// cast. The cast of a float32 leaf that requires grad (a parameter) is made
// once per outermost region and reused, as PyTorch does.

import type { DType, FloatDType } from '../dtype/dtype.js';
import { parseDType } from '../dtype/dtype.js';
import { activeAutocast, setAutocast, type AutocastCategory, type AutocastRegion } from '../tensor/dispatch.js';
import { TensorError } from '../tensor/errors.js';
import { Tensor, keep } from '../tensor/tensor.js';
import { to } from '../tensor/ops.js';

export type AutocastDType = 'float16' | 'bfloat16';

export interface AutocastOptions {
  /** The lower-precision dtype (default float16). */
  dtype?: AutocastDType | 'f16' | 'bf16';
  /** false turns casting off inside this region, also inside an enabled outer region. */
  enabled?: boolean;
  /** Cache casts of float32 leaf tensors that require grad for the outermost region (default true). */
  cacheEnabled?: boolean;
}

/**
 * The op lists, one place for the docs and the tests. Each op named here is
 * exported from mixprec under the same name (or as a Tensor method).
 */
export const AUTOCAST_OPS: Readonly<Record<Exclude<AutocastCategory, 'none'>, readonly string[]>> = {
  lower: ['matmul', 'linear', 'addmm', 'scaledDotProductAttention', 'causalSelfAttention', 'cachedSelfAttention'],
  float32: ['softmax', 'logSoftmax', 'layerNorm', 'crossEntropy', 'sum', 'mean', 'exp', 'log', 'pow', 'sqrt', 'rsqrt', 'reciprocal', 'clipGradNorm (norms)'],
  promote: ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'cat', 'where'],
};

/** The cast cache shared by nested regions; created by the outermost enabled region. */
class CastCache {
  private map = new Map<Tensor, Map<DType, Tensor>>();
  get(t: Tensor, dtype: DType): Tensor | undefined {
    return this.map.get(t)?.get(dtype);
  }
  set(t: Tensor, dtype: DType, cast: Tensor): void {
    let m = this.map.get(t);
    if (!m) this.map.set(t, (m = new Map()));
    m.set(dtype, keep(cast));
  }
  /** Releases the cached casts; graphs recorded in the region keep what backward needs. */
  clear(): void {
    for (const m of this.map.values()) for (const t of m.values()) t.dispose();
    this.map.clear();
  }
}

let cache: CastCache | null = null;
let depth = 0;

function makeRegion(dtype: DType, cacheEnabled: boolean): AutocastRegion {
  return {
    dtype,
    castLower(t: Tensor): Tensor {
      const cacheable = cacheEnabled && cache && t.dtype === 'float32' && t.requiresGrad && t.isLeaf;
      if (!cacheable) return to(t, dtype);
      const hit = cache!.get(t, dtype);
      if (hit && !hit.isDisposed) return hit;
      const cast = to(t, dtype);
      cache!.set(t, dtype, cast);
      return cast;
    },
  };
}

/**
 * Runs fn with automatic mixed precision, like `with torch.autocast(...)`.
 * Regions nest; the previous state is restored on exit, also when fn throws.
 * fn must be synchronous (a region cannot follow work across an await).
 */
export function autocast<T>(opts: AutocastOptions, fn: () => T): T {
  const enabled = opts.enabled ?? true;
  const dtype = parseDType(opts.dtype ?? 'float16', 'autocast dtype');
  if (dtype !== 'float16' && dtype !== 'bfloat16') {
    throw new TensorError(`autocast: dtype must be float16 or bfloat16, got ${dtype}`);
  }
  const outermost = depth === 0;
  if (outermost) cache = new CastCache();
  depth++;
  const prev = setAutocast(enabled ? makeRegion(dtype, opts.cacheEnabled ?? true) : null);
  try {
    const result = fn();
    if (result instanceof Promise) throw new TensorError('autocast: the function must be synchronous (it returned a Promise)');
    return result;
  } finally {
    setAutocast(prev);
    depth--;
    if (outermost) {
      cache!.clear();
      cache = null;
    }
  }
}

export function isAutocastEnabled(): boolean {
  return activeAutocast() !== null;
}

/** The active region's dtype, or null outside autocast. */
export function autocastDtype(): FloatDType | null {
  return (activeAutocast()?.dtype as FloatDType | undefined) ?? null;
}
