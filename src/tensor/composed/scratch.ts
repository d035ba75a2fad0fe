// Building blocks of the composed fusions: scratch buffers released when the
// composition ends (or throws), and the few addressing patterns they use.

import { view, type Backend, type Buf, type Strided, type View } from '../../backend/backend.js';
import type { DType } from '../../dtype/dtype.js';

/** Scratch views on one backend, all freed together by `withScratch`. */
export class Scratch {
  private readonly bufs: Buf[] = [];
  constructor(private readonly b: Backend) {}

  view(dtype: DType, size: number): View {
    const buf = this.b.alloc(dtype, size);
    this.bufs.push(buf);
    return view(buf);
  }

  /** A one-element view holding `value`. */
  constant(dtype: DType, value: number): View {
    const v = this.view(dtype, 1);
    this.b.fill(v, value);
    return v;
  }

  release(): void {
    for (const buf of this.bufs.splice(0)) this.b.free(buf);
  }
}

/** Runs a composition with scratch views that are freed when it returns or throws. */
export function withScratch(b: Backend, fn: (s: Scratch) => void): void {
  const s = new Scratch(b);
  try {
    fn(s);
  } finally {
    s.release();
  }
}

/** Intermediate dtype of a composition: float64 when any operand is float64, else float32 (the kernels' accumulate type). */
export function computeDtype(...vs: View[]): 'float32' | 'float64' {
  return vs.some((v) => v.dtype === 'float64') ? 'float64' : 'float32';
}

/** v read as contiguous elements (1-D, or rows x cols for 2-D shapes). */
export function whole(v: View, cols?: number): Strided {
  return { view: v, offset: 0, strides: cols === undefined ? [1] : [cols, 1] };
}

/** A per-row vector [rows] read as [rows, cols]. */
export function perRow(v: View): Strided {
  return { view: v, offset: 0, strides: [1, 0] };
}

/** A per-column vector [cols] read as [rows, cols]. */
export function perCol(v: View): Strided {
  return { view: v, offset: 0, strides: [0, 1] };
}

/** A one-element view read as any shape of `ndim` dimensions. */
export function broadcastScalar(v: View, ndim: number): Strided {
  return { view: v, offset: 0, strides: new Array<number>(ndim).fill(0) };
}
