// Data types, their sizes and promotion rules.

import { MixprecError, type ErrorCode } from '../errors.js';

export type FloatDType = 'float32' | 'float16' | 'bfloat16' | 'float64';
export type DType = FloatDType | 'int32';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32', 'float64'];

/** Short spellings accepted wherever a dtype is named (`f16`, `half`, `bf16`, ...). */
const ALIASES: Record<string, DType> = {
  float32: 'float32', f32: 'float32', float: 'float32', fp32: 'float32',
  float16: 'float16', f16: 'float16', half: 'float16', fp16: 'float16',
  bfloat16: 'bfloat16', bf16: 'bfloat16',
  int32: 'int32', i32: 'int32', int: 'int32',
  float64: 'float64', f64: 'float64', double: 'float64', fp64: 'float64',
};

export class DTypeError extends MixprecError {
  override readonly code: ErrorCode = 'DTYPE_INVALID';
}

/** Resolves a dtype name or alias; throws a DTypeError naming the bad value. */
export function parseDType(name: string, what = 'dtype'): DType {
  const d = ALIASES[String(name).toLowerCase()];
  if (!d) throw new DTypeError(`unknown ${what} '${name}' (expected one of ${DTYPES.join(', ')})`);
  return d;
}

export function isFloat(d: DType): d is FloatDType {
  return d !== 'int32';
}

/** Bytes per element as stored: fp16 and bf16 take 2. */
export function itemSize(d: DType): number {
  switch (d) {
    case 'float16': case 'bfloat16': return 2;
    case 'float32': case 'int32': return 4;
    case 'float64': return 8;
  }
}

/** Rank used by promotion: the wider float wins; fp16 and bf16 together promote to fp32 (as in PyTorch). */
const RANK: Record<DType, number> = { int32: 0, float16: 1, bfloat16: 1, float32: 2, float64: 3 };

/** PyTorch type promotion for two tensors. int32 with a float gives that float. */
export function promote(a: DType, b: DType): DType {
  if (a === b) return a;
  if (RANK[a] === RANK[b]) return 'float32'; // float16 with bfloat16
  return RANK[a] > RANK[b] ? a : b;
}

export function promoteAll(ds: readonly DType[]): DType {
  return ds.reduce(promote);
}
