// The tiled attention kernels, for adapters without a fixed subgroup size or
// with head sizes past the subgroup kernels': tiles of keys (or queries) in
// workgroup memory, one row of the output per invocation.

import type { KernelSource, ParamType } from '../runtime.js';
import { COMMON_PARAMS, headParams, LAST_KEY, rowFns, WORKGROUP_HEAD } from './attention-prologue.js';

/** Keys (or queries) per tile in workgroup memory. */
export function tileFor(d: number): number {
  return d <= 64 ? 32 : 16;
}

/** WGSL that writes a private row `src` of D values (times `mul`) to `name` starting at element `base`. */
function storeRow(name: string, src: string, base: string, hd: string, mul = ''): string {
  return `for (var c = 0u; c < ${hd}; c = c + 2u) {
      var m = 1u; var v1 = 0.0;
      if (c + 1u < ${hd}) { m = 3u; v1 = ${src}[c + 1u]${mul}; }
      put2_${name}(${base} + c, ${src}[c]${mul}, v1, m);
    }`;
}

/** The entry point of the tiled kernels (one row per invocation) and their first lines. */
const TILED_HEAD = (wg: number) => `@compute @workgroup_size(${wg}) fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
${WORKGROUP_HEAD}`;

/**
 * The first lines of the kernels with one invocation per query (forward, dQ):
 * key and value tiles in workgroup memory, the block's first query i0, this
 * invocation's query i and whether it is inside the sequence.
 */
function queryBlockHead(d: number, bk: number, wg: number): string {
  return `${LAST_KEY}
var<workgroup> ks: array<f32, ${bk * d}>;
var<workgroup> vs: array<f32, ${bk * d}>;
${TILED_HEAD(wg)}
  let i0 = (w % P.blocks) * ${wg}u;
  let i = i0 + lid;
  let live = i < P.tq;`;
}

/** Loads keys [j0, j0 + BK) of k and v into workgroup memory (all invocations take part). */
function loadKV(d: number, bk: number, wg: number): string {
  return `for (var e = lid; e < ${bk * d}u; e = e + ${wg}u) {
      let j = j0 + e / ${d}u;
      let c = e % ${d}u;
      if (j < P.tk) { ks[e] = load_k(row_k(b, h, j) + c); vs[e] = load_v(row_v(b, h, j) + c); }
    }`;
}

/**
 * A tiled kernel's source. GPU compilers unroll loops over a constant head size
 * into registers; on CPU adapters (no `unroll`) that takes LLVM minutes, so
 * there the loops run to the uniform P.hd.
 */
function tiledSource(
  name: string, d: number, wg: number, tile: number, unroll: boolean,
  params: [string, ParamType][], body: (hd: string) => string,
): KernelSource {
  const hd = unroll ? `${d}u` : 'P.hd';
  return { key: `${name}:${d}:${wg}:${tile}:${unroll}`, params, body: () => body(hd) };
}

/** Forward: one invocation per query, keys and values streamed through workgroup memory (online softmax). */
export function forwardSource(d: number, wg: number, bk: number, unroll: boolean): KernelSource {
  return tiledSource('attention', d, wg, bk, unroll,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o'), ['lse_o', 'u32']],
    (hd) => `${rowFns('q', 'k', 'v', 'o')}
${queryBlockHead(d, bk, wg)}
  let last = last_key(min(i, P.tq - 1u));
  // Keys any query of this block may see.
  let kend = u32(clamp(last_key(min(i0 + ${wg - 1}u, P.tq - 1u)) + 1, 0, i32(P.tk)));
  var q: array<f32, ${d}>;
  var acc: array<f32, ${d}>;
  let qb = row_q(b, h, min(i, P.tq - 1u));
  for (var c = 0u; c < ${hd}; c = c + 1u) { q[c] = load_q(qb + c); acc[c] = 0.0; }
  var mx = -inf_f32();
  var l = 0.0;
  for (var j0 = 0u; j0 < kend; j0 = j0 + ${bk}u) {
    ${loadKV(d, bk, wg)}
    workgroupBarrier();
    // A run-time trip count keeps the compiler from unrolling the tile (slow to compile, no faster).
    let jn = min(${bk}u, kend - j0);
    if (live) {
      var s: array<f32, ${bk}>;
      var tmax = -inf_f32();
      for (var jj = 0u; jj < jn; jj = jj + 1u) {
        s[jj] = -inf_f32();
        if (i32(j0 + jj) <= last) {
          var dot = 0.0;
          for (var c = 0u; c < ${hd}; c = c + 1u) { dot = dot + q[c] * ks[jj * ${d}u + c]; }
          s[jj] = dot * P.scale;
          tmax = max(tmax, s[jj]);
        }
      }
      if (tmax > -inf_f32()) {
        let mnew = max(mx, tmax);
        let corr = exp(mx - mnew);
        l = l * corr;
        for (var c = 0u; c < ${hd}; c = c + 1u) { acc[c] = acc[c] * corr; }
        for (var jj = 0u; jj < jn; jj = jj + 1u) {
          let p = exp(s[jj] - mnew);
          l = l + p;
          for (var c = 0u; c < ${hd}; c = c + 1u) { acc[c] = acc[c] + p * vs[jj * ${d}u + c]; }
        }
        mx = mnew;
      }
    }
    workgroupBarrier();
  }
  if (live) {
    // A query that sees no key gets zeros (and lse = -inf), as in the CPU backend.
    let inv = select(1.0 / l, 0.0, l == 0.0);
    let ob = row_o(b, h, i);
    ${storeRow('o', 'acc', 'ob', hd, ' * inv')}
    put_lse(P.lse_o + bh * P.tq + i, mx + log(l));
  }
}`);
}

/** dK and dV: one invocation per key, queries streamed through workgroup memory. */
export function backwardKVSource(d: number, wg: number, bq: number, unroll: boolean): KernelSource {
  return tiledSource('attentionBackwardKV', d, wg, bq, unroll,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o', 'go', 'gk', 'gv'), ['lse_o', 'u32']],
    (hd) => `${rowFns('q', 'k', 'v', 'o', 'go', 'gk', 'gv')}
var<workgroup> qs: array<f32, ${bq * d}>;
var<workgroup> dos: array<f32, ${bq * d}>;
var<workgroup> lses: array<f32, ${bq}>;
var<workgroup> dd: array<f32, ${bq}>;
${TILED_HEAD(wg)}
  let j0 = (w % P.blocks) * ${wg}u;
  let j = j0 + lid;
  let live = j < P.tk;
  var kr: array<f32, ${d}>;
  var vr: array<f32, ${d}>;
  var dk: array<f32, ${d}>;
  var dv: array<f32, ${d}>;
  let jc = min(j, P.tk - 1u);
  for (var c = 0u; c < ${hd}; c = c + 1u) {
    kr[c] = load_k(row_k(b, h, jc) + c);
    vr[c] = load_v(row_v(b, h, jc) + c);
    dk[c] = 0.0;
    dv[c] = 0.0;
  }
  // The first query that sees key j0 (query i sees key j when j <= i + shift).
  var istart = 0u;
  if (P.causal != 0u) { istart = u32(max(i32(j0) - P.shift, 0)); }
  for (var i0 = istart; i0 < P.tq; i0 = i0 + ${bq}u) {
    for (var e = lid; e < ${bq * d}u; e = e + ${wg}u) {
      let i = i0 + e / ${d}u;
      let c = e % ${d}u;
      if (i < P.tq) { qs[e] = load_q(row_q(b, h, i) + c); dos[e] = load_go(row_go(b, h, i) + c); }
    }
    workgroupBarrier();
    for (var ii = lid; ii < ${bq}u; ii = ii + ${wg}u) {
      let i = i0 + ii;
      if (i < P.tq) {
        var s = 0.0;
        let ob = row_o(b, h, i);
        for (var c = 0u; c < ${hd}; c = c + 1u) { s = s + dos[ii * ${d}u + c] * load_o(ob + c); }
        dd[ii] = s;
        lses[ii] = load_lse(P.lse_o + bh * P.tq + i);
      }
    }
    workgroupBarrier();
    let qn = min(${bq}u, P.tq - i0);
    if (live) {
      for (var ii = 0u; ii < qn; ii = ii + 1u) {
        let i = i0 + ii;
        if (P.causal != 0u && i32(j) > i32(i) + P.shift) { continue; }
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < ${hd}; c = c + 1u) {
          s = s + qs[ii * ${d}u + c] * kr[c];
          dp = dp + dos[ii * ${d}u + c] * vr[c];
        }
        let p = exp(s * P.scale - lses[ii]);
        let ds = p * (dp - dd[ii]) * P.scale;
        for (var c = 0u; c < ${hd}; c = c + 1u) {
          dv[c] = dv[c] + p * dos[ii * ${d}u + c];
          dk[c] = dk[c] + ds * qs[ii * ${d}u + c];
        }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let kb = row_gk(b, h, j);
    ${storeRow('gk', 'dk', 'kb', hd)}
    let vb = row_gv(b, h, j);
    ${storeRow('gv', 'dv', 'vb', hd)}
  }
}`);
}

/** dQ: one invocation per query, keys streamed through workgroup memory. */
export function backwardQSource(d: number, wg: number, bk: number, unroll: boolean): KernelSource {
  return tiledSource('attentionBackwardQ', d, wg, bk, unroll,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o', 'go', 'gq'), ['lse_o', 'u32']],
    (hd) => `${rowFns('q', 'k', 'v', 'o', 'go', 'gq')}
${queryBlockHead(d, bk, wg)}
  let ic = min(i, P.tq - 1u);
  let last = last_key(ic);
  let kend = u32(clamp(last_key(min(i0 + ${wg - 1}u, P.tq - 1u)) + 1, 0, i32(P.tk)));
  var q: array<f32, ${d}>;
  var g: array<f32, ${d}>;
  var dq: array<f32, ${d}>;
  let qb = row_q(b, h, ic);
  let gb = row_go(b, h, ic);
  let ob = row_o(b, h, ic);
  var di = 0.0;
  for (var c = 0u; c < ${hd}; c = c + 1u) {
    q[c] = load_q(qb + c);
    g[c] = load_go(gb + c);
    di = di + g[c] * load_o(ob + c);
    dq[c] = 0.0;
  }
  let l = load_lse(P.lse_o + bh * P.tq + ic);
  for (var j0 = 0u; j0 < kend; j0 = j0 + ${bk}u) {
    ${loadKV(d, bk, wg)}
    workgroupBarrier();
    let jn = min(${bk}u, kend - j0);
    if (live) {
      for (var jj = 0u; jj < jn; jj = jj + 1u) {
        if (i32(j0 + jj) > last) { break; }
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < ${hd}; c = c + 1u) {
          s = s + q[c] * ks[jj * ${d}u + c];
          dp = dp + g[c] * vs[jj * ${d}u + c];
        }
        let p = exp(s * P.scale - l);
        let ds = p * (dp - di) * P.scale;
        for (var c = 0u; c < ${hd}; c = c + 1u) { dq[c] = dq[c] + ds * ks[jj * ${d}u + c]; }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let qo = row_gq(b, h, i);
    ${storeRow('gq', 'dq', 'qo', hd)}
  }
}`);
}
