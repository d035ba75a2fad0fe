// How ops consult autocast. The amp layer installs the active region's policy
// here; ops call `lowerPrecision` (matmul-class ops) or `float32Output`
// (precision-sensitive ops) and need not know anything else about autocast.

import type { DType } from '../dtype/dtype.js';
import type { Tensor } from './tensor.js';

/** The categories of PyTorch's autocast op reference. */
export type AutocastCategory = 'lower' | 'float32' | 'promote' | 'none';

export interface AutocastRegion {
  /** float16 or bfloat16. */
  readonly dtype: DType;
  /** Casts a floating-point tensor to `dtype`, using the region's cast cache where it applies. */
  castLower(t: Tensor): Tensor;
}

let region: AutocastRegion | null = null;

export function activeAutocast(): AutocastRegion | null {
  return region;
}

/** Installs (or clears, with null) the autocast region; returns the previous one. */
export function setAutocast(r: AutocastRegion | null): AutocastRegion | null {
  const prev = region;
  region = r;
  return prev;
}

/** Runs fn with autocast off (backward passes run in the dtypes the forward ops chose). */
export function withoutAutocast<T>(fn: () => T): T {
  const prev = setAutocast(null);
  try {
    return fn();
  } finally {
    setAutocast(prev);
  }
}

function castable(t: Tensor): boolean {
  return t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16';
}

/** Inputs of a lower-precision op (matmul, linear, attention), cast to the region's dtype. */
export function lowerPrecision<T extends (Tensor | null | undefined)[]>(...inputs: T): T {
  const r = region;
  if (!r) return inputs;
  return inputs.map((t) => (t && castable(t) && t.dtype !== r.dtype ? r.castLower(t) : t)) as T;
}

/** The output dtype of a float32-category op (softmax, layer norm, losses, sums, exp, log, ...). */
export function float32Output(dtype: DType): DType {
  return region && (dtype === 'float16' || dtype === 'bfloat16') ? 'float32' : dtype;
}
