// The fusions of the Backend contract composed out of its required primitives,
// for backends that do not offer them (see src/tensor/fusions.ts). Each keeps
// the fused kernel's contract: intermediates in float32 (float64 for float64
// operands), one rounding when the result is stored, the same saved statistics.

import type { Backend, MatmulSpec, View } from '../../backend/backend.js';
import { Scratch, broadcastScalar, computeDtype, perCol, perRow, whole, withScratch } from './scratch.js';

export function cast(b: Backend, x: View, out: View): void {
  b.copy(whole(x), whole(out), [x.size]);
}

/** Fills positions above the causal diagonal through `where` and a mask made on the host. */
export function causalFill(b: Backend, x: View, out: View, rows: number, t: number, s: number, value: number): void {
  withScratch(b, (sc) => {
    const mask = new Float32Array(t * s);
    for (let i = 0; i < t; i++) for (let j = i + (s - t) + 1; j < s; j++) mask[i * s + j] = 1;
    const m = sc.view('float32', t * s);
    b.write(m, mask);
    const shape = [rows, t, s];
    b.where({ view: m, offset: 0, strides: [0, s, 1] }, broadcastScalar(sc.constant(out.dtype, value), 3),
      { view: x, offset: 0, strides: [t * s, s, 1] }, out, shape);
  });
}

/** Row maxima, x - max and the log of the row sums of exp(x - max): the pieces of softmax and log-sum-exp. */
function rowStatistics(b: Backend, sc: Scratch, x: View, rows: number, cols: number) {
  const c = computeDtype(x), n = rows * cols, shape = [rows, cols];
  const max = sc.view(c, rows), shifted = sc.view(c, n), e = sc.view(c, n), sum = sc.view(c, rows), logSum = sc.view(c, rows);
  b.reduce('max', x, max, rows, cols, 1);
  b.binary('sub', whole(x, cols), perRow(max), shifted, shape);
  b.unary('exp', shifted, e);
  b.reduce('sum', e, sum, rows, cols, 1);
  b.unary('log', sum, logSum);
  return { max, shifted, e, sum, logSum };
}

export function softmax(b: Backend, x: View, out: View, rows: number, cols: number, log: boolean): void {
  withScratch(b, (sc) => {
    const r = rowStatistics(b, sc, x, rows, cols);
    if (log) b.binary('sub', whole(r.shifted, cols), perRow(r.logSum), out, [rows, cols]);
    else b.binary('div', whole(r.e, cols), perRow(r.sum), out, [rows, cols]);
  });
}

export function softmaxBackward(b: Backend, y: View, gy: View, out: View, rows: number, cols: number, log: boolean): void {
  withScratch(b, (sc) => {
    const c = computeDtype(y, gy), n = rows * cols, shape = [rows, cols];
    const sum = sc.view(c, rows), t = sc.view(c, n);
    if (log) {
      // gx = gy - exp(y) * sum(gy)
      const p = sc.view(c, n);
      b.reduce('sum', gy, sum, rows, cols, 1);
      b.unary('exp', y, p);
      b.binary('mul', whole(p, cols), perRow(sum), t, shape);
      b.binary('sub', whole(gy, cols), whole(t, cols), out, shape);
    } else {
      // gx = y * (gy - sum(gy * y))
      const prod = sc.view(c, n);
      b.binary('mul', whole(gy), whole(y), prod, [n]);
      b.reduce('sum', prod, sum, rows, cols, 1);
      b.binary('sub', whole(gy, cols), perRow(sum), t, shape);
      b.binary('mul', whole(y, cols), whole(t, cols), out, shape);
    }
  });
}

export function layerNorm(
  b: Backend, x: View, weight: View | null, bias: View | null, out: View, mean: View, rstd: View,
  rows: number, cols: number, eps: number,
): void {
  withScratch(b, (sc) => {
    const c = computeDtype(x), n = rows * cols, shape = [rows, cols];
    const sum = sc.view(c, rows), centred = sc.view(c, n), sq = sc.view(c, n), variance = sc.view(c, rows);
    b.reduce('sum', x, sum, rows, cols, 1);
    b.unary('affine', sum, mean, 1 / cols, 0);
    b.binary('sub', whole(x, cols), perRow(mean), centred, shape);
    b.unary('square', centred, sq);
    b.reduce('sum', sq, variance, rows, cols, 1);
    const shifted = sc.view(c, rows);
    b.unary('affine', variance, shifted, 1 / cols, eps);
    b.unary('rsqrt', shifted, rstd);
    // y = ((x - mean) * rstd) [* weight] [+ bias], intermediates unrounded, stored once.
    const xhat = sc.view(c, n), scaled = weight ? sc.view(c, n) : xhat;
    b.binary('mul', whole(centred, cols), perRow(rstd), xhat, shape);
    if (weight) b.binary('mul', whole(xhat, cols), perCol(weight), scaled, shape);
    if (bias) b.binary('add', whole(scaled, cols), perCol(bias), out, shape);
    else cast(b, scaled, out);
  });
}

export function layerNormBackward(
  b: Backend, x: View, weight: View | null, mean: View, rstd: View, gy: View,
  gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
): void {
  withScratch(b, (sc) => {
    const c = computeDtype(x, gy), n = rows * cols, shape = [rows, cols];
    const centred = sc.view(c, n), xhat = sc.view(c, n);
    b.binary('sub', whole(x, cols), perRow(mean), centred, shape);
    b.binary('mul', whole(centred, cols), perRow(rstd), xhat, shape);
    // d = gy * w; gx = rstd * (d - mean(d) - xhat * mean(d * xhat))
    let d = gy;
    if (weight) {
      d = sc.view(c, n);
      b.binary('mul', whole(gy, cols), perCol(weight), d, shape);
    }
    const meanOf = (v: View): View => {
      const s = sc.view(c, rows), m = sc.view(c, rows);
      b.reduce('sum', v, s, rows, cols, 1);
      b.unary('affine', s, m, 1 / cols, 0);
      return m;
    };
    const dx = sc.view(c, n);
    b.binary('mul', whole(d), whole(xhat), dx, [n]);
    const meanD = meanOf(d), meanDX = meanOf(dx);
    const t = sc.view(c, n), u = sc.view(c, n), v = sc.view(c, n);
    b.binary('mul', whole(xhat, cols), perRow(meanDX), t, shape);
    b.binary('sub', whole(d, cols), perRow(meanD), u, shape);
    b.binary('sub', whole(u), whole(t), v, [n]);
    b.binary('mul', whole(v, cols), perRow(rstd), gx, shape);
    if (gw) {
      const p = sc.view(c, n);
      b.binary('mul', whole(gy), whole(xhat), p, [n]);
      b.reduce('sum', p, gw, 1, rows, cols);
    }
    if (gb) b.reduce('sum', gy, gb, 1, rows, cols);
  });
}

/**
 * Which rows count (1 or 0, float) and where each row's target logit is
 * (r * cols + target, or r * cols on ignored rows so that every index is valid).
 */
function targetPositions(b: Backend, sc: Scratch, targets: View, rows: number, cols: number, ignoreIndex: number, c: 'float32' | 'float64') {
  const counted = sc.view(c, rows), rowStart = sc.view('int32', rows), at = sc.view('int32', rows), ids = sc.view('int32', rows);
  b.binary('ne', whole(targets), broadcastScalar(sc.constant('int32', ignoreIndex), 1), counted, [rows]);
  b.write(rowStart, Int32Array.from({ length: rows }, (_, r) => r * cols));
  b.binary('add', whole(rowStart), whole(targets), at, [rows]);
  b.where(whole(counted), whole(at), whole(rowStart), ids, [rows]);
  return { counted, ids };
}

export function crossEntropy(
  b: Backend, logits: View, targets: View, loss: View, lse: View, count: View,
  rows: number, cols: number, ignoreIndex: number,
): void {
  withScratch(b, (sc) => {
    const c = computeDtype(logits);
    const r = rowStatistics(b, sc, logits, rows, cols);
    b.binary('add', whole(r.max), whole(r.logSum), lse, [rows]);
    const { counted, ids } = targetPositions(b, sc, targets, rows, cols, ignoreIndex, c);
    const picked = sc.view(c, rows), nll = sc.view(c, rows), kept = sc.view(c, rows), total = sc.view(c, 1);
    b.gather(logits, ids, picked, rows, 1);
    b.binary('sub', whole(lse), whole(picked), nll, [rows]);
    b.where(whole(counted), whole(nll), broadcastScalar(sc.constant(c, 0), 1), kept, [rows]);
    b.reduce('sum', kept, total, 1, rows, 1);
    b.reduce('sum', counted, count, 1, rows, 1);
    b.binary('div', whole(total), whole(count), loss, [1]);
  });
}

export function crossEntropyBackward(
  b: Backend, logits: View, targets: View, lse: View, count: View, gy: View, out: View,
  rows: number, cols: number, ignoreIndex: number,
): void {
  withScratch(b, (sc) => {
    const c = computeDtype(logits, gy), n = rows * cols, shape = [rows, cols];
    const shifted = sc.view(c, n), p = sc.view(c, n), scale = sc.view(c, 1), g = sc.view(c, n);
    b.binary('sub', whole(logits, cols), perRow(lse), shifted, shape);
    b.unary('exp', shifted, p);
    b.binary('div', whole(gy), whole(count), scale, [1]);
    b.binary('mul', whole(p), broadcastScalar(scale, 1), g, [n]);
    // Subtract the scale at each counted row's target, then zero the ignored rows.
    const { counted, ids } = targetPositions(b, sc, targets, rows, cols, ignoreIndex, c);
    const rowScale = sc.view(c, rows), minus = sc.view(c, rows);
    b.binary('mul', whole(counted), broadcastScalar(scale, 1), rowScale, [rows]);
    b.unary('neg', rowScale, minus);
    b.scatterAdd(minus, ids, g, rows, 1);
    b.where(perRow(counted), whole(g, cols), broadcastScalar(sc.constant(c, 0), 2), out, shape);
  });
}

/** The product into a float32 (float64) scratch, then bias, pre-GELU copy, GELU and accumulation, stored once. */
export function matmulEpilogue(b: Backend, a: View, bm: View, out: View, spec: MatmulSpec): void {
  withScratch(b, (sc) => {
    const { bias, gelu, preGelu, accumulate, ...shape } = spec;
    const c = computeDtype(out), rows = shape.batch * shape.m, total = rows * shape.n;
    let cur = sc.view(c, total);
    b.matmul(a, bm, cur, shape);
    const next = (f: (to: View) => void) => { const to = sc.view(c, total); f(to); cur = to; };
    if (bias) next((to) => b.binary('add', whole(cur, shape.n), perCol(bias), to, [rows, shape.n]));
    if (preGelu) cast(b, cur, preGelu);
    if (gelu) next((to) => b.unary('gelu', cur, to));
    if (accumulate) next((to) => b.binary('add', whole(out), whole(cur), to, [total]));
    cast(b, cur, out);
  });
}

/** Squares each view and sums it into a running total, one view at a time. */
export function sumOfSquares(b: Backend, views: readonly View[], out: View): void {
  withScratch(b, (sc) => {
    const c = computeDtype(out);
    const total = sc.constant(c, 0), part = sc.view(c, 1);
    for (const v of views) {
      if (v.size === 0) continue;
      const sq = sc.view(c, v.size);
      b.unary('square', v, sq);
      b.reduce('sum', sq, part, 1, v.size, 1);
      b.binary('add', whole(total), whole(part), total, [1]);
    }
    cast(b, total, out);
  });
}
