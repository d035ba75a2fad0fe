// Blocked matrix product for the CPU backend.
//
// Operands are packed into float64 panels of 4 rows (A) and 4 columns (B),
// interleaved along K, so that the inner loop keeps a 4x4 block of C in
// registers and reads both panels contiguously. Packing also widens fp16/bf16
// and absorbs transposes, so the kernel has one shape only.
//
// Products accumulate in float64 and are rounded once on store: the reference
// is then the nearly exact result, whatever order a GPU sums in (README, "The
// CPU reference and a GPU").

import type { HostArray, MatmulSpec, View } from '../backend.js';
import { inout, output, values } from './arrays.js';
import { gelu } from './elementwise.js';

const ROW_BLOCK = 64;

/** Packs rows [0, rows) of a (rows x k) operand into 4-row panels: panel p, k, lane r at (p*k + kk)*4 + r. */
function packPanels(src: HostArray, base: number, rows: number, k: number, rowStride: number, kStride: number, dst: Float64Array): void {
  const panels = Math.ceil(rows / 4);
  for (let p = 0; p < panels; p++) {
    const o = p * k * 4;
    for (let r = 0; r < 4; r++) {
      const row = p * 4 + r;
      if (row >= rows) { for (let kk = 0; kk < k; kk++) dst[o + kk * 4 + r] = 0; continue; }
      let s = base + row * rowStride;
      for (let kk = 0; kk < k; kk++, s += kStride) dst[o + kk * 4 + r] = src[s]!;
    }
  }
}

/** C(m x n) = Ap * Bp^T on packed panels, written into acc (row-major m x n). */
function kernel(ap: Float64Array, bp: Float64Array, acc: Float64Array, m: number, n: number, k: number): void {
  const mp = Math.ceil(m / 4), np = Math.ceil(n / 4);
  for (let ib = 0; ib < mp; ib += ROW_BLOCK / 4) {
    const ie = Math.min(mp, ib + ROW_BLOCK / 4);
    for (let jp = 0; jp < np; jp++) {
      const bo = jp * k * 4;
      const j = jp * 4;
      for (let ip = ib; ip < ie; ip++) {
        const ao = ip * k * 4;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let kk = 0; kk < k; kk++) {
          const p = ao + 4 * kk, q = bo + 4 * kk;
          const a0 = ap[p]!, a1 = ap[p + 1]!, a2 = ap[p + 2]!, a3 = ap[p + 3]!;
          const b0 = bp[q]!, b1 = bp[q + 1]!, b2 = bp[q + 2]!, b3 = bp[q + 3]!;
          c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
          c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
          c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
          c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
        }
        const i = ip * 4;
        if (i + 4 <= m && j + 4 <= n) {
          let o = i * n + j;
          acc[o] = c00; acc[o + 1] = c01; acc[o + 2] = c02; acc[o + 3] = c03; o += n;
          acc[o] = c10; acc[o + 1] = c11; acc[o + 2] = c12; acc[o + 3] = c13; o += n;
          acc[o] = c20; acc[o + 1] = c21; acc[o + 2] = c22; acc[o + 3] = c23; o += n;
          acc[o] = c30; acc[o + 1] = c31; acc[o + 2] = c32; acc[o + 3] = c33;
        } else {
          const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
          for (let r = 0; r < 4 && i + r < m; r++) for (let c = 0; c < 4 && j + c < n; c++) acc[(i + r) * n + j + c] = tile[r * 4 + c]!;
        }
      }
    }
  }
}

export function matmul(a: View, b: View, out: View, spec: MatmulSpec): void {
  const { batch, m, n, k } = spec;
  const av = values(a), bv = values(b);
  const o = spec.accumulate ? inout(out) : output(out);
  const c = o.arr;
  const pre = spec.preGelu ? output(spec.preGelu) : null;
  const bias = spec.bias ? values(spec.bias) : null;
  const ap = new Float64Array(Math.ceil(m / 4) * 4 * k);
  const bp = new Float64Array(Math.ceil(n / 4) * 4 * k);
  const acc = new Float64Array(m * n);
  // A is (m x k): row stride k, unit k step; transposed storage is (k x m).
  const [aRow, aK] = spec.transA ? [1, m] : [k, 1];
  // B^T is (n x k): B stored (k x n) has row stride 1 and k step n; transposed storage (n x k) is direct.
  const [bRow, bK] = spec.transB ? [k, 1] : [1, n];
  for (let bi = 0; bi < batch; bi++) {
    if (bi === 0 || spec.strideA !== 0) packPanels(av, bi * spec.strideA, m, k, aRow, aK, ap);
    if (bi === 0 || spec.strideB !== 0) packPanels(bv, bi * spec.strideB, n, k, bRow, bK, bp);
    kernel(ap, bp, acc, m, n, k);
    const co = bi * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let v = acc[i * n + j]!;
        if (bias) v += bias[j]!;
        if (pre) pre.arr[co + i * n + j] = v;
        if (spec.gelu) v = gelu(v);
        if (spec.accumulate) c[co + i * n + j]! += v;
        else c[co + i * n + j] = v;
      }
    }
  }
  o.commit();
  pre?.commit();
}
