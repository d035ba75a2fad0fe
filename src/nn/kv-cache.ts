// A key/value cache for incremental decoding: per layer, the keys and values of
// every position seen so far, so that each new token costs one position's
// projections and one row of attention instead of a pass over the whole context.
//
// Layout per layer: [batch, heads, capacity, headDim] (each head's keys
// contiguous, as attention reads them), in the compute dtype: the autocast dtype
// inside a region, else the parameter dtype. The cache owns its tensors: they
// outlive `tidy` scopes and are released by `dispose()`.

import type { Backend } from '../backend/backend.js';
import type { FloatDType } from '../dtype/dtype.js';
import { Tensor, keep } from '../tensor/tensor.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export class KVCacheError extends MixprecError {
  override readonly code: ErrorCode = 'KV_CACHE_MISUSE';
}

export interface KVCacheOptions {
  nLayer: number;
  nHead: number;
  headDim: number;
  batch: number;
  /** Positions it holds at most (a GPT's block size). */
  capacity: number;
  dtype: FloatDType;
  backend: Backend;
}

export class KVCache {
  readonly nLayer: number;
  readonly nHead: number;
  readonly headDim: number;
  readonly batch: number;
  readonly capacity: number;
  readonly dtype: FloatDType;
  readonly backend: Backend;
  /** Per layer: [batch, heads, capacity, headDim]. */
  readonly keys: readonly Tensor[];
  readonly values: readonly Tensor[];
  private filled = 0;

  constructor(opts: KVCacheOptions) {
    for (const k of ['nLayer', 'nHead', 'headDim', 'batch', 'capacity'] as const) {
      if (!Number.isSafeInteger(opts[k]) || opts[k] <= 0) throw new KVCacheError(`KVCache: ${k} must be a positive integer, got ${opts[k]}`);
    }
    ({ nLayer: this.nLayer, nHead: this.nHead, headDim: this.headDim, batch: this.batch, capacity: this.capacity, dtype: this.dtype, backend: this.backend } = opts);
    const shape = [this.batch, this.nHead, this.capacity, this.headDim];
    // Positions past `length` are never read, so the buffers need no clearing.
    const make = () => Array.from({ length: this.nLayer }, () => keep(Tensor.empty(shape, this.dtype, this.backend)));
    this.keys = make();
    this.values = make();
  }

  /** Positions filled so far: the position offset of the next tokens. */
  get length(): number {
    return this.filled;
  }

  /** Records that `n` more positions were written (by a forward over the cache). */
  advance(n: number): void {
    if (!Number.isInteger(n) || n < 0 || this.filled + n > this.capacity) {
      throw new KVCacheError(`KVCache: cannot add ${n} positions to ${this.filled} of ${this.capacity}`);
    }
    this.filled += n;
  }

  /** Forgets every position (the buffers are kept for reuse). */
  reset(): void {
    this.filled = 0;
  }

  get bytes(): number {
    const perElement = this.dtype === 'float64' ? 8 : this.dtype === 'float32' ? 4 : 2;
    return 2 * this.nLayer * this.batch * this.nHead * this.capacity * this.headDim * perElement;
  }

  get isDisposed(): boolean {
    return this.keys[0]!.isDisposed;
  }

  /** Releases every buffer. Idempotent. */
  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}
