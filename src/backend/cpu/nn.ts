// Fused transformer kernels of the CPU backend: softmax, layer norm, embedding,
// cross-entropy and causal attention, each with its backward.

import type { AttentionSpec, HeadLayout, View } from '../backend.js';
import { inout, output, values } from './arrays.js';

export function softmax(x: View, out: View, rows: number, cols: number, log: boolean): void {
  const xs = values(x);
  const o = output(out);
  const y = o.arr;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (xs[b + j]! > max) max = xs[b + j]!;
    if (max === -Infinity) max = 0; // a fully masked row: exp gives 0s, the sum 0, the result NaN (as PyTorch)
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += Math.exp(xs[b + j]! - max);
    if (log) {
      const lse = max + Math.log(sum);
      for (let j = 0; j < cols; j++) y[b + j] = xs[b + j]! - lse;
    } else {
      for (let j = 0; j < cols; j++) y[b + j] = Math.exp(xs[b + j]! - max) / sum;
    }
  }
  o.commit();
}

export function softmaxBackward(yv: View, gyv: View, out: View, rows: number, cols: number, log: boolean): void {
  const y = values(yv), gy = values(gyv);
  const o = output(out);
  const gx = o.arr;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    let dot = 0;
    if (log) {
      for (let j = 0; j < cols; j++) dot += gy[b + j]!;
      for (let j = 0; j < cols; j++) gx[b + j] = gy[b + j]! - Math.exp(y[b + j]!) * dot;
    } else {
      for (let j = 0; j < cols; j++) dot += gy[b + j]! * y[b + j]!;
      for (let j = 0; j < cols; j++) gx[b + j] = y[b + j]! * (gy[b + j]! - dot);
    }
  }
  o.commit();
}

export function layerNorm(
  x: View, weight: View | null, bias: View | null, out: View, mean: View, rstd: View,
  rows: number, cols: number, eps: number,
): void {
  const xs = values(x);
  const w = weight ? values(weight) : null, bs = bias ? values(bias) : null;
  const o = output(out), mo = output(mean), ro = output(rstd);
  const y = o.arr;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    let s = 0;
    for (let j = 0; j < cols; j++) s += xs[b + j]!;
    const mu = s / cols;
    let v = 0;
    for (let j = 0; j < cols; j++) { const d = xs[b + j]! - mu; v += d * d; }
    const rs = 1 / Math.sqrt(v / cols + eps);
    // Store the statistics as the kernel will use them in backward (rounded to their dtype).
    mo.arr[r] = mu;
    ro.arr[r] = rs;
    for (let j = 0; j < cols; j++) {
      let n = (xs[b + j]! - mu) * rs;
      if (w) n *= w[j]!;
      if (bs) n += bs[j]!;
      y[b + j] = n;
    }
  }
  o.commit(); mo.commit(); ro.commit();
}

export function layerNormBackward(
  x: View, weight: View | null, mean: View, rstd: View, gyv: View,
  gxv: View, gwv: View | null, gbv: View | null, rows: number, cols: number,
): void {
  const xs = values(x), mu = values(mean), rs = values(rstd), gy = values(gyv);
  const w = weight ? values(weight) : null;
  const gx = output(gxv);
  const gw = gwv ? new Float64Array(cols) : null, gb = gbv ? new Float64Array(cols) : null;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    const m = mu[r]!, s = rs[r]!;
    // dxhat = gy * w; gx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    let sumD = 0, sumDX = 0;
    for (let j = 0; j < cols; j++) {
      const xhat = (xs[b + j]! - m) * s;
      const d = gy[b + j]! * (w ? w[j]! : 1);
      sumD += d;
      sumDX += d * xhat;
      if (gw) gw[j]! += gy[b + j]! * xhat;
      if (gb) gb[j]! += gy[b + j]!;
    }
    const meanD = sumD / cols, meanDX = sumDX / cols;
    for (let j = 0; j < cols; j++) {
      const xhat = (xs[b + j]! - m) * s;
      const d = gy[b + j]! * (w ? w[j]! : 1);
      gx.arr[b + j] = s * (d - meanD - xhat * meanDX);
    }
  }
  gx.commit();
  if (gwv && gw) { const o = output(gwv); o.arr.set(gw); o.commit(); }
  if (gbv && gb) { const o = output(gbv); o.arr.set(gb); o.commit(); }
}

export function gather(table: View, ids: View, out: View, n: number, dim: number): void {
  const t = values(table), id = values(ids);
  const o = output(out);
  for (let i = 0; i < n; i++) {
    const row = id[i]!;
    o.arr.set(t.subarray(row * dim, row * dim + dim), i * dim);
  }
  o.commit();
}

export function scatterAdd(g: View, ids: View, out: View, n: number, dim: number): void {
  const gs = values(g), id = values(ids);
  const o = inout(out);
  const y = o.arr;
  for (let i = 0; i < n; i++) {
    const b = id[i]! * dim;
    for (let j = 0; j < dim; j++) y[b + j]! += gs[i * dim + j]!;
  }
  o.commit();
}

export function crossEntropy(
  logits: View, targets: View, loss: View, lse: View, count: View,
  rows: number, cols: number, ignoreIndex: number,
): void {
  const x = values(logits), t = values(targets);
  const lo = output(lse);
  let total = 0, counted = 0;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (x[b + j]! > max) max = x[b + j]!;
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += Math.exp(x[b + j]! - max);
    const l = max + Math.log(sum);
    lo.arr[r] = l;
    const target = t[r]!;
    if (target === ignoreIndex) continue;
    total += l - x[b + target]!;
    counted++;
  }
  lo.commit();
  const out = output(loss); out.arr[0] = total / counted; out.commit();
  const c = output(count); c.arr[0] = counted; c.commit();
}

export function crossEntropyBackward(
  logits: View, targets: View, lse: View, count: View, gy: View, out: View,
  rows: number, cols: number, ignoreIndex: number,
): void {
  const x = values(logits), t = values(targets), l = values(lse);
  const scale = values(gy)[0]! / values(count)[0]!;
  const o = output(out);
  const g = o.arr;
  for (let r = 0; r < rows; r++) {
    const b = r * cols;
    const target = t[r]!;
    if (target === ignoreIndex) { g.fill(0, b, b + cols); continue; }
    const lr = l[r]!;
    for (let j = 0; j < cols; j++) g[b + j] = Math.exp(x[b + j]! - lr) * scale;
    g[b + target]! -= scale;
  }
  o.commit();
}

function at(L: HeadLayout, b: number, h: number, t: number): number {
  return L.offset + b * L.sB + h * L.sH + t * L.sT;
}

/** Causal attention, one query row at a time: scores, softmax and weighted sum never leave a row buffer. */
export function attention(
  qv: View, qL: HeadLayout, kv: View, kL: HeadLayout, vv: View, vL: HeadLayout,
  ov: View, oL: HeadLayout, lsev: View, spec: AttentionSpec,
): void {
  const q = values(qv), k = values(kv), v = values(vv);
  const o = inout(ov), lo = output(lsev);
  const { batch, heads, tq, tk, headDim: d, scale, causal } = spec;
  const p = new Float64Array(tk);
  const acc = new Float64Array(d);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < tq; i++) {
    const qi = at(qL, b, h, i);
    const last = causal ? Math.min(tk - 1, i + tk - tq) : tk - 1;
    let max = -Infinity;
    for (let j = 0; j <= last; j++) {
      const kj = at(kL, b, h, j);
      let s = 0;
      for (let c = 0; c < d; c++) s += q[qi + c]! * k[kj + c]!;
      s *= scale;
      p[j] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let j = 0; j <= last; j++) { p[j] = Math.exp(p[j]! - max); sum += p[j]!; }
    acc.fill(0);
    for (let j = 0; j <= last; j++) {
      const vj = at(vL, b, h, j);
      const w = p[j]! / sum;
      for (let c = 0; c < d; c++) acc[c]! += w * v[vj + c]!;
    }
    const oi = at(oL, b, h, i);
    for (let c = 0; c < d; c++) o.arr[oi + c] = acc[c]!;
    lo.arr[(b * heads + h) * tq + i] = max + Math.log(sum);
  }
  o.commit(); lo.commit();
}

export function attentionBackward(
  qv: View, qL: HeadLayout, kv: View, kL: HeadLayout, vv: View, vL: HeadLayout,
  ov: View, oL: HeadLayout, lsev: View, gov: View, goL: HeadLayout,
  gqv: View, gqL: HeadLayout, gkv: View, gkL: HeadLayout, gvv: View, gvL: HeadLayout,
  spec: AttentionSpec,
): void {
  const q = values(qv), k = values(kv), v = values(vv), o = values(ov), lse = values(lsev), go = values(gov);
  const { batch, heads, tq, tk, headDim: d, scale, causal } = spec;
  // Gradients accumulate over query rows in float64, then are stored once. gq, gk and gv
  // may be one fused buffer: then they must share one output, or 16-bit commits would clobber each other.
  // Views are compared by what they address, not by object identity (each `tensor.view` is a fresh object).
  const same = (x: View, y: View) => x.buf === y.buf && x.offset === y.offset && x.size === y.size;
  const gq = inout(gqv);
  const gk = same(gkv, gqv) ? gq : inout(gkv);
  const gv = same(gvv, gqv) ? gq : same(gvv, gkv) ? gk : inout(gvv);
  const gkAcc = new Float64Array(tk * d), gvAcc = new Float64Array(tk * d), gqAcc = new Float64Array(d);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) {
    gkAcc.fill(0); gvAcc.fill(0);
    for (let i = 0; i < tq; i++) {
      const qi = at(qL, b, h, i), oi = at(oL, b, h, i), gi = at(goL, b, h, i);
      const last = causal ? Math.min(tk - 1, i + tk - tq) : tk - 1;
      const l = lse[(b * heads + h) * tq + i]!;
      // D_i = sum_c dO_ic O_ic, the softmax-backward row term.
      let di = 0;
      for (let c = 0; c < d; c++) di += go[gi + c]! * o[oi + c]!;
      gqAcc.fill(0);
      for (let j = 0; j <= last; j++) {
        const kj = at(kL, b, h, j), vj = at(vL, b, h, j);
        let s = 0;
        for (let c = 0; c < d; c++) s += q[qi + c]! * k[kj + c]!;
        const pij = Math.exp(s * scale - l);
        let dp = 0;
        for (let c = 0; c < d; c++) { dp += go[gi + c]! * v[vj + c]!; gvAcc[j * d + c]! += pij * go[gi + c]!; }
        const ds = pij * (dp - di) * scale;
        for (let c = 0; c < d; c++) { gqAcc[c]! += ds * k[kj + c]!; gkAcc[j * d + c]! += ds * q[qi + c]!; }
      }
      const gqi = at(gqL, b, h, i);
      for (let c = 0; c < d; c++) gq.arr[gqi + c] = gqAcc[c]!;
    }
    for (let j = 0; j < tk; j++) {
      const gkj = at(gkL, b, h, j), gvj = at(gvL, b, h, j);
      for (let c = 0; c < d; c++) { gk.arr[gkj + c] = gkAcc[j * d + c]!; gv.arr[gvj + c] = gvAcc[j * d + c]!; }
    }
  }
  for (const o of new Set([gq, gk, gv])) o.commit();
}
