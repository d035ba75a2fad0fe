// Attention that never stores the T x T score matrix (flash-attention style).
//
// Forward: one invocation per query. Keys and values stream past a block of
// queries; each query keeps a running max, sum and weighted sum of values
// (online softmax) and finally writes its output row and its log-sum-exp.
//
// Backward recomputes probabilities from the saved log-sum-exp, in two
// kernels so that every gradient element has exactly one writer (WGSL has no
// float atomics): one invocation per key accumulates dK and dV over the
// queries that see it; one invocation per query accumulates dQ over the keys
// it sees. D_i = dO_i . O_i is precomputed (subgroup kernels) or recomputed.
//
// Two implementations, picked here per call:
// - 'subgroup' (attention-subgroup.ts), for adapters with a fixed subgroup size (lavapipe: 8 lanes
//   run as one SIMD vector) and head sizes up to 64: each lane keeps its row
//   in named registers (generated code, one variable per element), and the
//   rows that stream past are loaded cooperatively (each lane 1/S of a row,
//   four elements at a time where aligned) and handed to every lane with
//   subgroupBroadcast. On lavapipe a load whose address differs between lanes
//   costs a scalar load per lane, in workgroup memory too, so this is about 7x
//   faster than tiles in workgroup memory.
// - 'tiled' (attention-tiled.ts) everywhere else: tiles of keys (or queries) in workgroup memory.
//   Loops over the head dimension are unrolled on GPUs; on CPU adapters they
//   run to a uniform bound (unrolled, LLVM took half a minute to compile one).
//
// q, k, v, o and their gradients are addressed by HeadLayout, so they can be
// column slices of one fused [B, T, 3C] tensor and their gradients of one
// [B, T, 3C] gradient. Operands larger than one binding are processed by
// ranges of (batch, head) pairs (split-attention.ts).

import type { AttentionSpec, HeadLayout, View } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, type WriteMode } from '../storage.js';
import { attentionInParts, type HeadOperand } from '../split-attention.js';
import {
  backwardKVSubgroupSource, backwardQSubgroupSource, deltaSource, forwardSubgroupSource, quadAligned, subgroupShape, type SubgroupShape,
} from './attention-subgroup.js';
import { backwardKVSource, backwardQSource, forwardSource, tileFor } from './attention-tiled.js';

function pow2Clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, 2 ** Math.ceil(Math.log2(Math.max(n, 1)))));
}

/** Rows of `d` 16-bit elements each start on a word only if every offset and stride is even. */
function headMode(v: View, L: HeadLayout, d: number): WriteMode {
  if (!is16Bit(v.dtype)) return 'owned';
  const even = [v.offset + L.offset, L.sB, L.sH, L.sT, d].every((x) => x % 2 === 0);
  return even ? 'owned' : 'atomic';
}

function layoutValues(v: View, L: HeadLayout): number[] {
  return [v.offset + L.offset, L.sB, L.sH, L.sT];
}

function commonValues(spec: AttentionSpec, blocks: number): number[] {
  return [spec.headDim, spec.batch * spec.heads, spec.heads, spec.tq, spec.tk, blocks, spec.causal ? 1 : 0, spec.tk - spec.tq, spec.scale];
}

const operand = (view: View, layout: HeadLayout, rows: 'q' | 'k'): HeadOperand => ({ view, layout, rows });

export function attention(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
): void {
  if (spec.batch * spec.heads * spec.tq === 0) return;
  const ops = [operand(q, qL, 'q'), operand(k, kL, 'k'), operand(v, vL, 'k'), operand(o, oL, 'q')];
  attentionInParts(rt, 'attention', spec, ops, lse, ([q, k, v, o], [qL, kL, vL, oL], lse2, part) => attentionPart(
    rt, q!, qL!, k!, kL!, v!, vL!, o!, oL!, lse2, part));
}

function attentionPart(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
): void {
  const { batch, heads, tq, headDim: d } = spec;
  // q shares its buffer with k and v in the fused layout, so it is declared like them.
  const sg = subgroupShape(rt, d, quadAligned([q, qL], [k, kL], [v, vL]));
  const wg = pow2Clamp(tq, 16, 64);
  const bk = tileFor(d);
  const blocks = Math.ceil(tq / (sg ? sg.rows * sg.s : wg));
  const quads = !!sg?.quads;
  const args: Arg[] = [
    { name: 'q', buf: q.buf, access: 'read', vec4: quads },
    { name: 'k', buf: k.buf, access: 'read', vec4: quads },
    { name: 'v', buf: v.buf, access: 'read', vec4: quads },
    { name: 'o', buf: o.buf, access: 'read_write', mode: headMode(o, oL, d) },
    { name: 'lse', buf: lse.buf, access: 'read_write', mode: is16Bit(lse.dtype) ? 'atomic' : 'owned' },
  ];
  rt.dispatch(sg ? forwardSubgroupSource(sg) : forwardSource(d, wg, bk, !rt.opts.isSoftware), args, [
    ...commonValues(spec, blocks), ...layoutValues(q, qL), ...layoutValues(k, kL), ...layoutValues(v, vL), ...layoutValues(o, oL), lse.offset,
  ], rt.grid(batch * heads * blocks));
}

/** The gradients attention backward writes, each with its layout. */
interface HeadGrads {
  gq: View; gqL: HeadLayout;
  gk: View; gkL: HeadLayout;
  gv: View; gvL: HeadLayout;
}

export function attentionBackward(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout,
  gq: View, gqL: HeadLayout, gk: View, gkL: HeadLayout, gv: View, gvL: HeadLayout,
  spec: AttentionSpec,
): void {
  if (spec.batch * spec.heads === 0) return;
  const ops = [
    operand(q, qL, 'q'), operand(k, kL, 'k'), operand(v, vL, 'k'), operand(o, oL, 'q'), operand(go, goL, 'q'),
    operand(gq, gqL, 'q'), operand(gk, gkL, 'k'), operand(gv, gvL, 'k'),
  ];
  attentionInParts(rt, 'attention backward', spec, ops, lse, ([q, k, v, o, go, gq, gk, gv], [qL, kL, vL, oL, goL, gqL, gkL, gvL], lse2, part) => {
    const grads: HeadGrads = { gq: gq!, gqL: gqL!, gk: gk!, gkL: gkL!, gv: gv!, gvL: gvL! };
    attentionBackwardPart(rt, q!, qL!, k!, kL!, v!, vL!, o!, oL!, lse2, go!, goL!, grads, part);
  });
}

function attentionBackwardPart(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout, grads: HeadGrads, spec: AttentionSpec,
): void {
  const { tq, tk, headDim: d } = spec;
  const sg = subgroupShape(rt, d, quadAligned([q, qL], [k, kL], [v, vL], [go, goL]));
  if (sg) {
    attentionBackwardSubgroup(rt, sg, q, qL, k, kL, v, vL, o, oL, lse, go, goL, grads, spec);
    return;
  }
  const tile = tileFor(d);
  const inputs: Arg[] = [
    { name: 'q', buf: q.buf, access: 'read' }, { name: 'k', buf: k.buf, access: 'read' }, { name: 'v', buf: v.buf, access: 'read' },
    { name: 'o', buf: o.buf, access: 'read' }, { name: 'lse', buf: lse.buf, access: 'read' }, { name: 'go', buf: go.buf, access: 'read' },
  ];
  const layouts = [...layoutValues(q, qL), ...layoutValues(k, kL), ...layoutValues(v, vL), ...layoutValues(o, oL), ...layoutValues(go, goL)];
  const kvWg = pow2Clamp(tk, 16, 64);
  const qWg = pow2Clamp(tq, 16, 64);
  dispatchGradients(rt, spec, inputs, layouts, lse, grads,
    { source: backwardKVSource(d, kvWg, tile, !rt.opts.isSoftware), blocks: Math.ceil(tk / kvWg) },
    { source: backwardQSource(d, qWg, tile, !rt.opts.isSoftware), blocks: Math.ceil(tq / qWg) });
}

function attentionBackwardSubgroup(
  rt: Runtime, sg: SubgroupShape, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout, grads: HeadGrads, spec: AttentionSpec,
): void {
  const { batch, heads, tq, tk, headDim: d } = spec;
  const rows = batch * heads * tq;
  const dd = rt.alloc('float32', Math.max(rows, 1));
  if (rows > 0) {
    rt.dispatch(deltaSource(), [
      { name: 'o', buf: o.buf, access: 'read' }, { name: 'go', buf: go.buf, access: 'read' }, { name: 'dd', buf: dd, access: 'read_write' },
    ], [d, rows, heads, tq, ...layoutValues(o, oL), ...layoutValues(go, goL)], rt.grid(Math.ceil(rows / 64)));
  }
  const quads = sg.quads;
  const inputs: Arg[] = [
    { name: 'q', buf: q.buf, access: 'read', vec4: quads }, { name: 'k', buf: k.buf, access: 'read', vec4: quads },
    { name: 'v', buf: v.buf, access: 'read', vec4: quads }, { name: 'go', buf: go.buf, access: 'read', vec4: quads },
    { name: 'lse', buf: lse.buf, access: 'read' }, { name: 'dd', buf: dd, access: 'read' },
  ];
  const layouts = [...layoutValues(q, qL), ...layoutValues(k, kL), ...layoutValues(v, vL), ...layoutValues(go, goL)];
  const perBlock = sg.rows * sg.s;
  dispatchGradients(rt, spec, inputs, layouts, lse, grads,
    { source: backwardKVSubgroupSource(sg), blocks: Math.ceil(tk / perBlock) },
    { source: backwardQSubgroupSource(sg), blocks: Math.ceil(tq / perBlock) });
  rt.release(dd);
}

/** A backward kernel and its number of workgroups per (batch, head) pair. */
interface GradientKernel {
  source: KernelSource;
  blocks: number;
}

/**
 * Dispatches the dK/dV kernel (blocks of keys) and the dQ kernel (blocks of
 * queries) of either implementation: both take the same inputs, then their
 * gradients' layouts and the log-sum-exp offset.
 */
function dispatchGradients(
  rt: Runtime, spec: AttentionSpec, inputs: Arg[], layouts: number[], lse: View, g: HeadGrads,
  kv: GradientKernel, dq: GradientKernel,
): void {
  const { batch, heads, tq, tk, headDim: d } = spec;
  if (tk > 0) {
    rt.dispatch(kv.source, [
      ...inputs,
      { name: 'gk', buf: g.gk.buf, access: 'read_write', mode: headMode(g.gk, g.gkL, d) },
      { name: 'gv', buf: g.gv.buf, access: 'read_write', mode: headMode(g.gv, g.gvL, d) },
    ], [...commonValues(spec, kv.blocks), ...layouts, ...layoutValues(g.gk, g.gkL), ...layoutValues(g.gv, g.gvL), lse.offset],
    rt.grid(batch * heads * kv.blocks));
  }
  if (tq > 0) {
    rt.dispatch(dq.source, [
      ...inputs,
      { name: 'gq', buf: g.gq.buf, access: 'read_write', mode: headMode(g.gq, g.gqL, d) },
    ], [...commonValues(spec, dq.blocks), ...layouts, ...layoutValues(g.gq, g.gqL), lse.offset],
    rt.grid(batch * heads * dq.blocks));
  }
}
