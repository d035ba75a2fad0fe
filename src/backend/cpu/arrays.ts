// Typed-array plumbing for the CPU backend: storage per dtype, widening reads
// and rounding writes.

import type { DType } from '../../dtype/dtype.js';
import { decode16, encode16, isHalf } from '../../dtype/codec.js';
import type { Buf, HostArray, RawArray, View } from '../backend.js';


export class CpuBuf implements Buf {
  readonly data: RawArray;
  constructor(readonly dtype: DType, readonly size: number) {
    this.data = newRawArray(dtype, size);
  }
}

function newRawArray(dtype: DType, size: number): RawArray {
  switch (dtype) {
    case 'float32': return new Float32Array(size);
    case 'float64': return new Float64Array(size);
    case 'int32': return new Int32Array(size);
    case 'float16': case 'bfloat16': return new Uint16Array(size);
  }
}

/** The raw storage elements of a view (no copy). */
export function raw(v: View): RawArray {
  const d = (v.buf as CpuBuf).data;
  return v.offset === 0 && v.size === d.length ? d : d.subarray(v.offset, v.offset + v.size);
}

/** The view's values as numbers: the storage itself for float32/float64/int32, a widened copy for 16-bit floats. */
export function values(v: View): HostArray {
  const r = raw(v);
  return isHalf(v.dtype) ? decode16(v.dtype, r as Uint16Array) : r as HostArray;
}

/**
 * An array to compute results into, and a commit that stores them in the view's
 * dtype. For float32/float64/int32 views it is the storage itself; 16-bit
 * floats are computed into a float32 scratch and rounded once on commit.
 */
export function output(v: View): { arr: HostArray; commit: () => void } {
  const r = raw(v);
  const dtype = v.dtype;
  if (isHalf(dtype)) {
    const arr = new Float32Array(v.size);
    return { arr, commit: () => encode16(dtype, arr, r as Uint16Array) };
  }
  return { arr: r as HostArray, commit: () => {} };
}

/** Like `output`, but starting from the view's current values (for in-place updates). */
export function inout(v: View): { arr: HostArray; commit: () => void } {
  const o = output(v);
  if (o.arr !== raw(v)) o.arr.set(values(v));
  return o;
}

/** Writes numbers into a view, rounding to its dtype. */
export function store(v: View, data: ArrayLike<number>): void {
  const r = raw(v);
  if (isHalf(v.dtype)) encode16(v.dtype, data, r as Uint16Array, v.size);
  else (r as Float32Array | Float64Array | Int32Array).set(data);
}
