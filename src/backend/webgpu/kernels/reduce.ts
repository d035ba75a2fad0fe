// Sum, max and min over the middle axis of [outer, r, inner], accumulated in
// f32 and rounded once to the output dtype. Each invocation reduces a run of
// the axis for two adjacent outputs (four, with vector loads, where the layout
// allows). When there are few outputs and a long
// axis, the axis is first cut into chunks reduced in parallel into an f32
// scratch [outer, chunks, inner], which is then reduced the same way: a fixed
// order, so results are deterministic.

import type { ReduceOp as BackendReduceOp, View } from '../../backend.js';
import type { Runtime } from '../runtime.js';

/** The backend's reductions plus the sum of squares (gradient norms). */
export type ReduceOp = BackendReduceOp | 'sumsq';

const WG = 128;
/** Enough parallel work to fill a GPU; below it a long axis is cut into chunks. */
const TARGET_INVOCATIONS = 8192;
const MIN_CHUNK = 32;

const INIT: Record<ReduceOp, string> = { sum: '0.0', sumsq: '0.0', max: '-inf_f32()', min: 'inf_f32()' };
const STEP: Record<ReduceOp, string> = {
  sum: 'acc = acc + v;',
  sumsq: 'acc = acc + v * v;',
  // NaN wins and stays, as in the CPU backend.
  max: 'if (v > acc || is_nan(v)) { acc = v; }',
  min: 'if (v < acc || is_nan(v)) { acc = v; }',
};

const STEP4: Record<ReduceOp, string> = {
  sum: 'acc = acc + v;',
  sumsq: 'acc = acc + v * v;',
  max: 'acc = select(acc, v, (v > acc) | (v != v));',
  min: 'acc = select(acc, v, (v < acc) | (v != v));',
};

/**
 * Each invocation reduces two adjacent outputs, or with `quads` four (when
 * inner is a multiple of 4 and the views are aligned: one vector load per
 * step of the axis).
 */
function source(op: ReduceOp, quads: boolean) {
  const nan4 = op === 'max' || op === 'min'
    // Bit-level NaN test per lane (NaN wins and stays).
    ? 'fn nan4(v: vec4<f32>) -> vec4<bool> { return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u); }' : '';
  const step4 = STEP4[op].replace('(v != v)', 'nan4(v)');
  return {
    key: `reduce:${op}:${quads}`,
    params: [
      ['w0', 'u32'], ['end', 'u32'], ['o_x', 'u32'], ['o_out', 'u32'],
      ['r', 'u32'], ['inner', 'u32'], ['chunks', 'u32'], ['len', 'u32'],
    ] as const,
    body: () => /* wgsl */ `
${nan4}
// Output o of [outer, chunks, inner] reduces x[a, k, c] for k in chunk ch.
fn first(o: u32) -> vec3<u32> {
  let per = P.chunks * P.inner;
  let ch = (o % per) / P.inner;
  let k0 = ch * P.len;
  return vec3<u32>(P.o_x + ((o / per) * P.r + k0) * P.inner + o % P.inner, k0, min(P.r, k0 + P.len));
}
fn reduce_one(o: u32) -> f32 {
  let f = first(o);
  var idx = f.x;
  var acc: f32 = ${INIT[op]};
  for (var k = f.y; k < f.z; k = k + 1u) {
    let v = load_x(idx);
    ${STEP[op]}
    idx = idx + P.inner;
  }
  return acc;
}
${quads ? `fn reduce_four(o: u32) -> vec4<f32> {
  let f = first(o);
  var idx = f.x >> 2u;
  let stride = P.inner >> 2u;
  var acc = vec4<f32>(${INIT[op]});
  for (var k = f.y; k < f.z; k = k + 1u) {
    let v = load4_x(idx);
    ${step4}
    idx = idx + stride;
  }
  return acc;
}` : ''}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat_id(gid, nwg, ${WG}u);
${quads ? `  let q = P.w0 + t;
  let e0 = q * 4u;
  if (e0 >= P.end) { return; }
  if (e0 >= P.o_out && e0 + 4u <= P.end) { put4_out(q, reduce_four(e0 - P.o_out)); return; }
  for (var e = max(e0, P.o_out); e < min(e0 + 4u, P.end); e = e + 1u) { put_out(e, reduce_one(e - P.o_out)); }` : `  let e0 = (P.w0 + t) * 2u;
  if (e0 >= P.end) { return; }
  var m = 0u;
  var v0 = 0.0; var v1 = 0.0;
  if (e0 >= P.o_out) { m = 1u; v0 = reduce_one(e0 - P.o_out); }
  if (e0 + 1u < P.end) { m = m | 2u; v1 = reduce_one(e0 + 1u - P.o_out); }
  put2_out(e0, v0, v1, m);`}
}`,
  };
}

/** One pass: out [outer, chunks, inner] gets the reduction of each chunk of `len` along r. */
export function reducePass(rt: Runtime, op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number, chunks: number, len: number): void {
  const n = outer * chunks * inner;
  const quads = inner % 4 === 0 && x.offset % 4 === 0 && out.offset % 4 === 0 && x.buf !== out.buf;
  const unit = quads ? 4 : 2;
  const w0 = Math.floor(out.offset / unit);
  const count = Math.floor((out.offset + n - 1) / unit) - w0 + 1;
  rt.dispatch(source(op, quads), [
    { name: 'x', buf: x.buf, access: 'read', vec4: quads },
    { name: 'out', buf: out.buf, access: 'read_write', vec4: quads },
  ], [w0, out.offset + n, x.offset, out.offset, r, inner, chunks, len], rt.grid(Math.ceil(count / WG)));
}

/** How many chunks to cut an axis of r into, for `outputs` results. */
export function chunksFor(r: number, outputs: number): number {
  if (r <= 2 * MIN_CHUNK || outputs >= TARGET_INVOCATIONS) return 1;
  const chunks = Math.min(Math.ceil(r / MIN_CHUNK), Math.ceil(TARGET_INVOCATIONS / outputs));
  return Math.ceil(r / Math.ceil(r / chunks));
}

export function reduce(rt: Runtime, op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number): void {
  const outputs = outer * inner;
  if (outputs === 0) return;
  let chunks = chunksFor(r, outputs);
  if (chunks <= 1) {
    reducePass(rt, op, x, out, outer, r, inner, 1, r);
    return;
  }
  const len = Math.ceil(r / chunks);
  chunks = Math.ceil(r / len);
  const scratch = rt.alloc('float32', outer * chunks * inner);
  const sv: View = { buf: scratch, offset: 0, size: scratch.size, dtype: 'float32' };
  reducePass(rt, op, x, sv, outer, r, inner, chunks, len);
  // Partial results combine by their own rule: sums of squares add up.
  reduce(rt, op === 'sumsq' ? 'sum' : op, sv, out, outer, chunks, inner);
  // Freed now, reused by later dispatches: they run after this one.
  rt.release(scratch);
}
