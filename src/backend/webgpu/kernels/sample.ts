// Sampling on the device (Fusions.sample): one workgroup per row of logits, so
// that only the sampled ids go back to the host. The top-k cutoff and the top-p
// floor are found by bisection over the ordered bit patterns of the values (32
// workgroup-wide counts or sums each), which keeps ties as the CPU reference
// does; the draw scans chunk sums, then one chunk, in index order.

import type { SampleSpec, View } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';

const WG = 256;

/** The body of a WGSL workgroup sum of one value `v` per invocation `t`, through the workgroup array `scratch`. */
function workgroupSumBody(scratch: string): string {
  return /* wgsl */ `
  ${scratch}[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { ${scratch}[t] = ${scratch}[t] + ${scratch}[t + s]; }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&${scratch}[0]);
`;
}

const SOURCE: KernelSource = {
  key: 'sample',
  params: [['cols', 'u32'], ['top_k', 'u32'], ['temperature', 'f32'], ['top_p', 'f32'], ['o_l', 'u32'], ['o_u', 'u32'], ['o_out', 'u32']],
  body: () => /* wgsl */ `
var<workgroup> red_f: array<f32, ${WG}>;
var<workgroup> red_u: array<u32, ${WG}>;
var<workgroup> red_i: array<u32, ${WG}>;
var<workgroup> result: f32;

/** Unsigned keys in the order of the floats (zeros of both signs equal). */
fn order_key(v0: f32) -> u32 {
  let b = bitcast<u32>(select(v0, 0.0, v0 == 0.0));
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}
fn wg_sum(t: u32, v: f32) -> f32 {${workgroupSumBody('red_f')}}
fn wg_count(t: u32, v: u32) -> u32 {${workgroupSumBody('red_u')}}
fn prob(v: f32, mx: f32) -> f32 { return exp(v / P.temperature - mx / P.temperature); }

@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = lid.x;
  let row = wid.x;
  let base = P.o_l + row * P.cols;
  // The first largest logit, and whether any is not finite.
  var mx = load_l(base);
  var best = 0u;
  var bad = 0u;
  for (var i = t; i < P.cols; i = i + ${WG}u) {
    let v = load_l(base + i);
    if (!is_finite(v)) { bad = 1u; }
    if (v > mx || (v == mx && i < best)) { mx = v; best = i; }
  }
  red_f[t] = mx;
  red_i[t] = best;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) {
      let a = red_f[t];
      let b = red_f[t + s];
      if (b > a || (b == a && red_i[t + s] < red_i[t])) { red_f[t] = b; red_i[t] = red_i[t + s]; }
    }
    workgroupBarrier();
  }
  let any_bad = wg_count(t, bad);
  let top = workgroupUniformLoad(&red_i[0]);
  let m = workgroupUniformLoad(&red_f[0]);
  if (any_bad != 0u || P.temperature == 0.0) {
    if (t == 0u) { put_out(P.o_out + row, select(f32(top), -1.0, any_bad != 0u)); }
    return;
  }
  // Top-k: the largest key c with at least top_k logits at or above it.
  var cut = 0u;
  if (P.top_k > 0u && P.top_k < P.cols) {
    var lo = 0u;
    var hi = 0xffffffffu;
    for (var it = 0u; it < 32u; it = it + 1u) {
      let mid = lo + (hi - lo) / 2u + (hi - lo) % 2u;
      var c = 0u;
      for (var i = t; i < P.cols; i = i + ${WG}u) { c = c + select(0u, 1u, order_key(load_l(base + i)) >= mid); }
      if (wg_count(t, c) >= P.top_k) { lo = mid; } else { hi = mid - 1u; }
    }
    cut = lo;
  }
  var part = 0.0;
  for (var i = t; i < P.cols; i = i + ${WG}u) {
    let v = load_l(base + i);
    if (order_key(v) >= cut) { part = part + prob(v, m); }
  }
  let total = wg_sum(t, part);
  // Top-p: the largest probability p such that the probabilities at or above it reach top_p of the total.
  var floor_p = 0.0;
  if (P.top_p < 1.0) {
    var lo = 0u;
    var hi = 0xffffffffu;
    for (var it = 0u; it < 32u; it = it + 1u) {
      let mid = lo + (hi - lo) / 2u + (hi - lo) % 2u;
      var acc = 0.0;
      for (var i = t; i < P.cols; i = i + ${WG}u) {
        let v = load_l(base + i);
        let p = prob(v, m);
        if (order_key(v) >= cut && order_key(p) >= mid) { acc = acc + p; }
      }
      if (wg_sum(t, acc) >= P.top_p * total) { lo = mid; } else { hi = mid - 1u; }
    }
    floor_p = from_key(lo);
  }
  // Chunk sums of the kept probabilities, then the first index reaching u * their total.
  let chunk = (P.cols + ${WG - 1}u) / ${WG}u;
  let c0 = min(t * chunk, P.cols);
  let c1 = min(c0 + chunk, P.cols);
  var sum = 0.0;
  var last = 0u;
  var has = 0u;
  for (var i = c0; i < c1; i = i + 1u) {
    let v = load_l(base + i);
    let p = prob(v, m);
    if (order_key(v) >= cut && p >= floor_p && p > 0.0) { sum = sum + p; last = i; has = 1u; }
  }
  red_f[t] = sum;
  red_u[t] = select(0u, last + 1u, has != 0u);
  workgroupBarrier();
  if (t == 0u) {
    var kept = 0.0;
    for (var j = 0u; j < ${WG}u; j = j + 1u) { kept = kept + red_f[j]; }
    var goal = load_u(P.o_u + row) * kept;
    var pick = 0u;
    var found = false;
    var fallback = top;
    for (var j = 0u; j < ${WG}u && !found; j = j + 1u) {
      if (red_u[j] != 0u) { fallback = red_u[j] - 1u; }
      if (goal - red_f[j] > 0.0) { goal = goal - red_f[j]; continue; }
      let e = min(j * chunk + chunk, P.cols);
      for (var i = j * chunk; i < e; i = i + 1u) {
        let v = load_l(base + i);
        let p = prob(v, m);
        if (!(order_key(v) >= cut && p >= floor_p && p > 0.0)) { continue; }
        goal = goal - p;
        if (goal <= 0.0) { pick = i; found = true; break; }
      }
    }
    put_out(P.o_out + row, f32(select(fallback, pick, found)));
  }
}`,
};

export function sample(rt: Runtime, logits: View, uniforms: View, out: View, spec: SampleSpec): void {
  if (spec.rows === 0) return;
  const args: Arg[] = [
    { name: 'l', buf: logits.buf, access: 'read' },
    { name: 'u', buf: uniforms.buf, access: 'read' },
    { name: 'out', buf: out.buf, access: 'read_write' },
  ];
  rt.dispatch(SOURCE, args, [spec.cols, spec.topK, spec.temperature, spec.topP, logits.offset, uniforms.offset, out.offset], [spec.rows]);
}
