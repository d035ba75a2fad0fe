// Tensor statistics: magnitude counts (see Fusions.magnitudeCounts) with one
// counting pass per tensor. Magnitudes are compared as bits: for non-negative
// floats (and +inf) the order of the u32 patterns is the order of the values,
// so subnormals count exactly even where the device flushes them in arithmetic.
//
// A workgroup bins its elements by a binary search over the thresholds into a
// histogram in workgroup memory, then adds it to the tensor's slot of a u32
// scratch with atomics (a tensor split into windows adds into the same slot).
// A last pass turns every slot into counts of |x| >= threshold, max and min.

import { BackendError, type View } from '../../backend.js';
import type { KernelSource, Runtime } from '../runtime.js';
import { viewRanges } from '../split-ops.js';

const WG = 256;
/** Elements per workgroup of the counting pass. */
const PER_GROUP = WG * 16;
const INF_BITS = 0x7f800000;

interface Kernels {
  init: KernelSource;
  count: KernelSource;
  finish: KernelSource;
}

const cache = new Map<string, Kernels>();

/** The three kernels for one list of thresholds, baked in as their float32 bit patterns. */
function kernels(thresholds: readonly number[]): Kernels {
  const bits = [...new Uint32Array(Float32Array.from(thresholds).buffer)];
  const key = bits.join(',');
  let k = cache.get(key);
  if (k) return k;
  const t = bits.length, slot = t + 3;
  // Slot layout: bins 0..t (elements with exactly p thresholds at or below |x|), max bits, min nonzero bits.
  const id = `magnitudeCounts:${cache.size}`;
  k = {
    init: {
      key: `${id}:init`,
      params: [['n', 'u32']],
      body: () => /* wgsl */ `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_id(gid, nwg, ${WG}u);
  if (i < P.n) { atomicStore(&b0[i], select(0u, ${INF_BITS}u, i % ${slot}u == ${slot - 1}u)); }
}`,
    },
    count: {
      key: `${id}:count`,
      params: [['n', 'u32'], ['o_x', 'u32'], ['base', 'u32']],
      body: () => /* wgsl */ `
var<private> TH: array<u32, ${t}> = array<u32, ${t}>(${bits.map((b) => `${b}u`).join(', ')});
var<workgroup> bins: array<atomic<u32>, ${t + 1}>;
var<workgroup> wmax: atomic<u32>;
var<workgroup> wmin: atomic<u32>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var j = lid; j <= ${t}u; j = j + ${WG}u) { atomicStore(&bins[j], 0u); }
  if (lid == 0u) { atomicStore(&wmax, 0u); atomicStore(&wmin, ${INF_BITS}u); }
  workgroupBarrier();
  let start = (wid.x + wid.y * nwg.x) * ${PER_GROUP}u;
  let end = min(P.n, start + ${PER_GROUP}u);
  var mx = 0u;
  var mn = ${INF_BITS}u;
  for (var i = start + lid; i < end; i = i + ${WG}u) {
    let a = bitcast<u32>(load_x(P.o_x + i)) & 0x7fffffffu;
    if (a <= ${INF_BITS}u) {
      var lo = 0u;
      var hi = ${t}u;
      while (lo < hi) {
        let mid = (lo + hi) >> 1u;
        if (TH[mid] <= a) { lo = mid + 1u; } else { hi = mid; }
      }
      atomicAdd(&bins[lo], 1u);
      mx = max(mx, a);
      if (a != 0u) { mn = min(mn, a); }
    }
  }
  atomicMax(&wmax, mx);
  atomicMin(&wmin, mn);
  workgroupBarrier();
  for (var j = lid; j <= ${t}u; j = j + ${WG}u) {
    let c = atomicLoad(&bins[j]);
    if (c != 0u) { atomicAdd(&b0[P.base + j], c); }
  }
  if (lid == 0u) {
    atomicMax(&b0[P.base + ${t + 1}u], atomicLoad(&wmax));
    atomicMin(&b0[P.base + ${t + 2}u], atomicLoad(&wmin));
  }
}`,
    },
    finish: {
      key: `${id}:finish`,
      params: [['n', 'u32'], ['o_out', 'u32']],
      body: () => /* wgsl */ `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_id(gid, nwg, ${WG}u);
  if (i >= P.n) { return; }
  let k = i / ${t + 2}u;
  let j = i % ${t + 2}u;
  let base = k * ${slot}u;
  if (j >= ${t}u) { put_out(P.o_out + i, bitcast<f32>(atomicLoad(&b0[base + j + 1u]))); return; }
  var above = 0u;
  for (var p = j + 1u; p <= ${t}u; p = p + 1u) { above = above + atomicLoad(&b0[base + p]); }
  put_out(P.o_out + i, f32(above));
}`,
    },
  };
  cache.set(key, k);
  return k;
}

export function magnitudeCounts(rt: Runtime, views: readonly View[], thresholds: readonly number[], out: View): void {
  if (out.dtype !== 'float32') throw new BackendError(`webgpu: magnitudeCounts writes float32 counts, got a ${out.dtype} output`);
  if (views.length === 0) return;
  const k = kernels(thresholds), t = thresholds.length, slot = t + 3;
  const words = views.length * slot;
  const scratch = rt.alloc('int32', words);
  // The scratch is the first argument, so its atomic array is the binding the kernels name b0.
  const counts = { name: 'counts', buf: scratch, access: 'read_write' as const, mode: 'atomic' as const };
  rt.dispatch(k.init, [counts], [words], rt.grid(Math.ceil(words / WG)));
  views.forEach((v, i) => {
    for (const r of viewRanges(rt, [v])) {
      rt.dispatch(k.count, [counts, { name: 'x', buf: r.buf, access: 'read' }], [r.size, r.offset, i * slot], rt.grid(Math.ceil(r.size / PER_GROUP)));
    }
  });
  const n = views.length * (t + 2);
  rt.dispatch(k.finish, [counts, { name: 'out', buf: out.buf, access: 'read_write' }], [n, out.offset], rt.grid(Math.ceil(n / WG)));
  // Freed now, reused by later dispatches: they run after these.
  rt.release(scratch);
}
