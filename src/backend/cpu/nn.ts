// Fused transformer kernels of the CPU backend: softmax, layer norm, embedding,
// cross-entropy and causal attention, each with its backward.

import { IndexOutOfRangeError, type AttentionSpec, type HeadLayout, type HostArray, type View } from '../backend.js';
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

/** Throws IndexOutOfRangeError for the first entry of ids[0, n) outside [0, limit) that is not `allowed`. */
function checkIndices(
  ids: ArrayLike<number>, n: number, limit: number, what: IndexOutOfRangeError['what'], allowed?: number,
): void {
  for (let i = 0; i < n; i++) {
    const v = ids[i]!;
    if ((v < 0 || v >= limit) && v !== allowed) throw new IndexOutOfRangeError(what, i, v, limit, allowed);
  }
}

export function gather(table: View, ids: View, out: View, n: number, dim: number): void {
  const t = values(table), id = values(ids);
  checkIndices(id, n, table.size / dim, 'token id');
  const o = output(out);
  for (let i = 0; i < n; i++) {
    const row = id[i]!;
    o.arr.set(t.subarray(row * dim, row * dim + dim), i * dim);
  }
  o.commit();
}

export function scatterAdd(g: View, ids: View, out: View, n: number, dim: number): void {
  const gs = values(g), id = values(ids);
  checkIndices(id, n, out.size / dim, 'token id');
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
  checkIndices(t, rows, cols, 'target', ignoreIndex);
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

/** Copies the rows of one (batch, head) into a contiguous [t, d] float64 block. */
function packHead(src: ArrayLike<number>, L: HeadLayout, b: number, h: number, t: number, d: number, out: Float64Array): Float64Array {
  for (let i = 0; i < t; i++) {
    const s = at(L, b, h, i);
    for (let c = 0; c < d; c++) out[i * d + c] = src[s + c]!;
  }
  return out;
}

function unpackHead(block: Float64Array, dst: HostArray, L: HeadLayout, b: number, h: number, t: number, d: number): void {
  for (let i = 0; i < t; i++) {
    const s = at(L, b, h, i);
    for (let c = 0; c < d; c++) dst[s + c] = block[i * d + c]!;
  }
}

/** The last key position query i may attend to. */
function lastKey(spec: AttentionSpec, i: number): number {
  return spec.causal ? Math.min(spec.tk - 1, i + spec.tk - spec.tq) : spec.tk - 1;
}

/**
 * Attention per (batch, head) on contiguous float64 copies of q, k and v:
 * scores, softmax and the weighted sum of one query row never leave a row buffer.
 */
export function attention(
  qv: View, qL: HeadLayout, kv: View, kL: HeadLayout, vv: View, vL: HeadLayout,
  ov: View, oL: HeadLayout, lsev: View, spec: AttentionSpec,
): void {
  const q = values(qv), k = values(kv), v = values(vv);
  const o = inout(ov), lo = output(lsev);
  const { batch, heads, tq, tk, headDim: d, scale } = spec;
  const Q = new Float64Array(tq * d), K = new Float64Array(tk * d), V = new Float64Array(tk * d), O = new Float64Array(tq * d);
  const p = new Float64Array(tk);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) {
    packHead(q, qL, b, h, tq, d, Q);
    packHead(k, kL, b, h, tk, d, K);
    packHead(v, vL, b, h, tk, d, V);
    O.fill(0);
    for (let i = 0; i < tq; i++) {
      const last = lastKey(spec, i), qi = i * d, oi = i * d;
      let max = -Infinity;
      for (let j = 0; j <= last; j++) {
        let s = 0;
        const kj = j * d;
        for (let c = 0; c < d; c++) s += Q[qi + c]! * K[kj + c]!;
        s *= scale;
        p[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j <= last; j++) { const e = Math.exp(p[j]! - max); p[j] = e; sum += e; }
      const inv = 1 / sum;
      for (let j = 0; j <= last; j++) {
        const w = p[j]! * inv, vj = j * d;
        for (let c = 0; c < d; c++) O[oi + c]! += w * V[vj + c]!;
      }
      lo.arr[(b * heads + h) * tq + i] = max + Math.log(sum);
    }
    unpackHead(O, o.arr, oL, b, h, tq, d);
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
  const { batch, heads, tq, tk, headDim: d, scale } = spec;
  // Gradients accumulate in float64 and are stored once. gq, gk and gv may be one fused buffer:
  // then they must share one output, or 16-bit commits would clobber each other. Views are compared
  // by what they address, not by object identity (each `tensor.storageView` is a fresh object).
  const same = (x: View, y: View) => x.buf === y.buf && x.offset === y.offset && x.size === y.size;
  const gq = inout(gqv);
  const gk = same(gkv, gqv) ? gq : inout(gkv);
  const gv = same(gvv, gqv) ? gq : same(gvv, gkv) ? gk : inout(gvv);
  const Q = new Float64Array(tq * d), K = new Float64Array(tk * d), V = new Float64Array(tk * d);
  const O = new Float64Array(tq * d), GO = new Float64Array(tq * d);
  const GQ = new Float64Array(tq * d), GK = new Float64Array(tk * d), GV = new Float64Array(tk * d);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) {
    packHead(q, qL, b, h, tq, d, Q);
    packHead(k, kL, b, h, tk, d, K);
    packHead(v, vL, b, h, tk, d, V);
    packHead(o, oL, b, h, tq, d, O);
    packHead(go, goL, b, h, tq, d, GO);
    GQ.fill(0); GK.fill(0); GV.fill(0);
    for (let i = 0; i < tq; i++) {
      const last = lastKey(spec, i), qi = i * d;
      const l = lse[(b * heads + h) * tq + i]!;
      // D_i = sum_c dO_ic O_ic, the softmax-backward row term.
      let di = 0;
      for (let c = 0; c < d; c++) di += GO[qi + c]! * O[qi + c]!;
      for (let j = 0; j <= last; j++) {
        const kj = j * d;
        let s = 0, dp = 0;
        for (let c = 0; c < d; c++) { s += Q[qi + c]! * K[kj + c]!; dp += GO[qi + c]! * V[kj + c]!; }
        const pij = Math.exp(s * scale - l);
        const ds = pij * (dp - di) * scale;
        for (let c = 0; c < d; c++) {
          GV[kj + c]! += pij * GO[qi + c]!;
          GQ[qi + c]! += ds * K[kj + c]!;
          GK[kj + c]! += ds * Q[qi + c]!;
        }
      }
    }
    unpackHead(GQ, gq.arr, gqL, b, h, tq, d);
    unpackHead(GK, gk.arr, gkL, b, h, tk, d);
    unpackHead(GV, gv.arr, gvL, b, h, tk, d);
  }
  for (const out of new Set([gq, gk, gv])) out.commit();
}
