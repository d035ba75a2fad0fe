// Attention composed out of the required primitives: q, k and v are copied
// into contiguous [batch * heads, time, headDim] blocks, then batched matmuls,
// a causal mask and a row softmax; the backward recomputes the probabilities
// from the saved log-sum-exp, as the fused kernels do.

import type { AttentionSpec, Backend, Fusions, HeadLayout, MatmulShape, View } from '../../backend/backend.js';
import { causalFill } from './nn.js';
import { Scratch, computeDtype, perRow, whole, withScratch } from './scratch.js';

interface Blocks {
  b: Backend;
  sc: Scratch;
  spec: AttentionSpec;
  c: 'float32' | 'float64';
}

/** A [batch, heads, t, d] tensor addressed by `layout`, copied into a contiguous block. */
function pack(k: Blocks, v: View, layout: HeadLayout, t: number): View {
  const { batch, heads, headDim: d } = k.spec;
  const out = k.sc.view(k.c, batch * heads * t * d);
  k.b.copy({ view: v, offset: layout.offset, strides: [layout.sB, layout.sH, layout.sT, 1] },
    { view: out, offset: 0, strides: [heads * t * d, t * d, d, 1] }, [batch, heads, t, d]);
  return out;
}

function unpack(k: Blocks, block: View, v: View, layout: HeadLayout, t: number): void {
  const { batch, heads, headDim: d } = k.spec;
  k.b.copy({ view: block, offset: 0, strides: [heads * t * d, t * d, d, 1] },
    { view: v, offset: layout.offset, strides: [layout.sB, layout.sH, layout.sT, 1] }, [batch, heads, t, d]);
}

/** A batched product over (batch, head) of blocks [m, k] and [k, n] (either stored transposed). */
function product(k: Blocks, a: View, bm: View, m: number, n: number, inner: number, trans: { a?: boolean; b?: boolean } = {}): View {
  const bh = k.spec.batch * k.spec.heads;
  const out = k.sc.view(k.c, bh * m * n);
  const shape: MatmulShape = {
    batch: bh, m, n, k: inner, transA: !!trans.a, transB: !!trans.b, strideA: m * inner, strideB: inner * n,
  };
  k.b.matmul(a, bm, out, shape);
  return out;
}

/** scale * q k^T, with positions past the causal diagonal at -inf: [batch * heads * tq, tk]. */
function scores(k: Blocks, q: View, kk: View): View {
  const { batch, heads, tq, tk, headDim: d, scale, causal } = k.spec;
  const raw = product(k, q, kk, tq, tk, d, { b: true });
  const scaled = k.sc.view(k.c, raw.size);
  k.b.unary('affine', raw, scaled, scale, 0);
  if (!causal) return scaled;
  const masked = k.sc.view(k.c, raw.size);
  causalFill(k.b, scaled, masked, batch * heads, tq, tk, -Infinity);
  return masked;
}

export function attention(
  b: Backend, q: View, qL: HeadLayout, kv: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
): void {
  withScratch(b, (sc) => {
    const k: Blocks = { b, sc, spec, c: computeDtype(q) };
    const { tq, tk, headDim: d } = spec;
    const rows = spec.batch * spec.heads * tq;
    const s = scores(k, pack(k, q, qL, tq), pack(k, kv, kL, tk));
    const max = sc.view(k.c, rows), shifted = sc.view(k.c, s.size), e = sc.view(k.c, s.size), sum = sc.view(k.c, rows);
    const logSum = sc.view(k.c, rows), p = sc.view(k.c, s.size);
    b.reduce('max', s, max, rows, tk, 1);
    b.binary('sub', whole(s, tk), perRow(max), shifted, [rows, tk]);
    b.unary('exp', shifted, e);
    b.reduce('sum', e, sum, rows, tk, 1);
    b.unary('log', sum, logSum);
    b.binary('add', whole(max), whole(logSum), lse, [rows]);
    b.binary('div', whole(e, tk), perRow(sum), p, [rows, tk]);
    unpack(k, product(k, p, pack(k, v, vL, tk), tq, d, tk), o, oL, tq);
  });
}

export function attentionBackward(b: Backend, ...args: Parameters<Fusions['attentionBackward']>): void {
  const [q, qL, kv, kL, v, vL, o, oL, lse, go, goL, gq, gqL, gk, gkL, gv, gvL, spec] = args;
  withScratch(b, (sc) => {
    const k: Blocks = { b, sc, spec, c: computeDtype(q, go) };
    const { tq, tk, headDim: d, scale } = spec;
    const rows = spec.batch * spec.heads * tq;
    const Q = pack(k, q, qL, tq), K = pack(k, kv, kL, tk), V = pack(k, v, vL, tk), O = pack(k, o, oL, tq), GO = pack(k, go, goL, tq);
    // P = exp(scores - lse), recomputed.
    const s = scores(k, Q, K);
    const shifted = sc.view(k.c, s.size), p = sc.view(k.c, s.size);
    b.binary('sub', whole(s, tk), perRow(lse), shifted, [rows, tk]);
    b.unary('exp', shifted, p);
    // dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dO * O)) * scale; dQ = dS K; dK = dS^T Q.
    const gV = product(k, p, GO, tk, d, tq, { a: true });
    const dP = product(k, GO, V, tq, tk, d, { b: true });
    const prod = sc.view(k.c, rows * d), D = sc.view(k.c, rows);
    b.binary('mul', whole(GO), whole(O), prod, [rows * d]);
    b.reduce('sum', prod, D, rows, d, 1);
    const centred = sc.view(k.c, s.size), weighted = sc.view(k.c, s.size), dS = sc.view(k.c, s.size);
    b.binary('sub', whole(dP, tk), perRow(D), centred, [rows, tk]);
    b.binary('mul', whole(p), whole(centred), weighted, [s.size]);
    b.unary('affine', weighted, dS, scale, 0);
    unpack(k, product(k, dS, K, tq, d, tk), gq, gqL, tq);
    unpack(k, product(k, dS, Q, tk, d, tq, { a: true }), gk, gkL, tk);
    unpack(k, gV, gv, gvL, tk);
  });
}
