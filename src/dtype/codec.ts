// Bit-exact float16 and bfloat16 codecs.
//
// Narrowing goes through float32 first (a JS number is rounded to float32, then to
// 16 bits), which is what a GPU computing in f32 and storing f16 does, and what
// PyTorch's float -> half / bfloat16 casts do. Rounding is to nearest, ties to even;
// overflow gives infinity, subnormals are kept, signed zeros are kept and every NaN
// becomes the canonical quiet NaN (0x7E00 for float16, 0x7FC0 for bfloat16).

import type { DType } from './dtype.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 bit pattern of `x` (after rounding `x` to float32). */
export function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The float32 value with bit pattern `bits`. */
export function fromFloat32Bits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** float32 bit pattern -> float16 bit pattern, round to nearest even. */
export function float32BitsToFloat16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? 0x7e00 : sign | 0x7c00;
  const e = exp - 127 + 15; // float16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e > 0) {
    // Normal: drop 13 mantissa bits; a carry out of the mantissa bumps the exponent (up to infinity).
    let h = sign | (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
    return h;
  }
  // Subnormal result: shift the full significand right by 14 - e bits.
  const shift = 14 - e;
  if (shift > 24) return sign; // below half the smallest subnormal
  const m = mant | 0x800000;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) !== 0)) h++;
  return sign | h;
}

/** float32 bit pattern -> bfloat16 bit pattern, round to nearest even (PyTorch's rule). */
export function float32BitsToBFloat16Bits(b: number): number {
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return 0x7fc0;
  return ((b >>> 0) + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** Every float16 bit pattern decoded, so that widening is one table read. */
export const FLOAT16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 0x1f) t[h] = m ? NaN : sign * Infinity;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

export function toFloat16Bits(x: number): number {
  return float32BitsToFloat16Bits(float32Bits(x));
}

export function fromFloat16Bits(bits: number): number {
  return FLOAT16_TABLE[bits & 0xffff]!;
}

export function toBFloat16Bits(x: number): number {
  return float32BitsToBFloat16Bits(float32Bits(x));
}

export function fromBFloat16Bits(bits: number): number {
  return fromFloat32Bits((bits & 0xffff) << 16);
}

/** `x` rounded to the nearest value representable in `dtype` (int32 truncates toward zero, as a cast does). */
export function roundTo(x: number, dtype: DType): number {
  switch (dtype) {
    case 'float64': return x;
    case 'float32': return Math.fround(x);
    case 'float16': return FLOAT16_TABLE[toFloat16Bits(x)]!;
    case 'bfloat16': return fromBFloat16Bits(toBFloat16Bits(x));
    case 'int32': return Number.isFinite(x) ? Math.trunc(x) | 0 : 0;
  }
}

// Bulk conversions: one pass, no per-element allocation.

export function encodeFloat16(src: ArrayLike<number>, dst: Uint16Array, n = src.length): void {
  for (let i = 0; i < n; i++) {
    f32[0] = src[i]!;
    dst[i] = float32BitsToFloat16Bits(u32[0]!);
  }
}

export function decodeFloat16(src: Uint16Array, dst: Float32Array | Float64Array, n = src.length): void {
  const t = FLOAT16_TABLE;
  for (let i = 0; i < n; i++) dst[i] = t[src[i]!]!;
}

export function encodeBFloat16(src: ArrayLike<number>, dst: Uint16Array, n = src.length): void {
  for (let i = 0; i < n; i++) {
    f32[0] = src[i]!;
    dst[i] = float32BitsToBFloat16Bits(u32[0]!);
  }
}

export function decodeBFloat16(src: Uint16Array, dst: Float32Array | Float64Array, n = src.length): void {
  for (let i = 0; i < n; i++) {
    u32[0] = src[i]! << 16;
    dst[i] = f32[0]!;
  }
}

/** The dtypes stored as 16-bit patterns. */
export type HalfDType = 'float16' | 'bfloat16';

export function isHalf(dtype: DType): dtype is HalfDType {
  return dtype === 'float16' || dtype === 'bfloat16';
}

/** Stored float16 / bfloat16 bits widened to float32 values (exact), into `out` or a new array. */
export function decode16(dtype: HalfDType, bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  if (dtype === 'float16') decodeFloat16(bits, out);
  else decodeBFloat16(bits, out);
  return out;
}

/** The first `n` values rounded to float16 / bfloat16 bits (to nearest even), into `out` or a new array. */
export function encode16(dtype: HalfDType, values: ArrayLike<number>, out: Uint16Array = new Uint16Array(values.length), n = values.length): Uint16Array {
  if (dtype === 'float16') encodeFloat16(values, out, n);
  else encodeBFloat16(values, out, n);
  return out;
}

export interface FInfo {
  dtype: DType;
  bits: number;
  /** Largest finite value. */
  max: number;
  /** Most negative finite value. */
  min: number;
  /** Smallest positive normal value (PyTorch's `tiny`). */
  smallestNormal: number;
  /** Smallest positive subnormal value. */
  smallestSubnormal: number;
  /** Distance from 1 to the next representable value. */
  eps: number;
}

const FINFO: Record<string, FInfo> = {
  float16: info('float16', 16, 65504, 2 ** -14, 2 ** -24, 2 ** -10),
  bfloat16: info('bfloat16', 16, fromBFloat16Bits(0x7f7f), 2 ** -126, 2 ** -133, 2 ** -7),
  float32: info('float32', 32, fromFloat32Bits(0x7f7fffff), 2 ** -126, 2 ** -149, 2 ** -23),
  float64: info('float64', 64, Number.MAX_VALUE, 2 ** -1022, Number.MIN_VALUE, Number.EPSILON),
};

function info(dtype: DType, bits: number, max: number, smallestNormal: number, smallestSubnormal: number, eps: number): FInfo {
  return Object.freeze({ dtype, bits, max, min: -max, smallestNormal, smallestSubnormal, eps });
}

/** Machine limits of a floating-point dtype, like `torch.finfo`. */
export function finfo(dtype: DType): FInfo {
  const f = FINFO[dtype];
  if (!f) throw new TypeError(`finfo: '${dtype}' is not a floating-point dtype`);
  return f;
}
