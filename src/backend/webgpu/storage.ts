// How each dtype is laid out in a GPU buffer. The WGSL that reads and writes
// these layouts is in kernels/wgsl-helpers.ts, one helper per name.
//
// - float32: array<f32>; int32: array<i32>.
// - float16 and bfloat16: 16-bit halves, two per u32 word, element i in word
//   i >> 1 (low half for even i): the same bytes as a native f16 array.
//   Widening is exact. Narrowing is done with integer arithmetic, round to
//   nearest even, so results are bit-identical to the CPU backend (WGSL leaves
//   the rounding of f32 -> f16 conversions to the implementation). A kernel
//   that writes 16-bit output writes whole words: one invocation owns both
//   halves of a word; where it cannot ('atomic' mode: odd offsets, strided
//   scatters), halves are written with atomicAnd/atomicOr.
// - With the `shader-f16` feature, float16 inputs may be read as array<f16>
//   instead (`nativeF16`); outputs still go through the exact narrowing.

import type { DType } from '../../dtype/dtype.js';
import { isHalf } from '../../dtype/codec.js';

export type Access = 'read' | 'read_write';

/** Whether a dtype is stored as 16-bit halves (float16, bfloat16). */
export { isHalf as is16Bit };

/** The bits of a stored element that make it nonzero as a number (a float's -0 is zero; NaN is not). */
export function nonzeroMask(dtype: DType): number {
  return dtype === 'int32' ? 0xffffffff : isHalf(dtype) ? 0x7fff : 0x7fffffff;
}

/** Bytes a buffer of `size` elements takes (16-bit types padded to whole words). */
export function bufferBytes(dtype: DType, size: number): number {
  switch (dtype) {
    case 'float16': case 'bfloat16': return Math.ceil(size / 2) * 4;
    case 'float64': throw new Error('float64 is not stored on the GPU');
    default: return size * 4;
  }
}

/**
 * How a kernel writes a binding. 'owned': every 32-bit word it writes belongs
 * to one invocation, so plain stores are safe (the usual case: contiguous
 * outputs written a word at a time, rows of even length at even offsets).
 * 'atomic': invocations share words (16-bit elements at odd offsets, strided
 * scatters), so halves are written with atomicAnd/atomicOr; the array is
 * declared array<atomic<u32>> and every access to it is atomic.
 */
export type WriteMode = 'owned' | 'atomic';
