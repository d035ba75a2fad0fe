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
// Two implementations:
// - 'subgroup', for adapters with a fixed subgroup size (lavapipe: 8 lanes
//   run as one SIMD vector) and head sizes up to 64: each lane keeps its row
//   in named registers (generated code, one variable per element), and the
//   rows that stream past are loaded cooperatively (each lane 1/S of a row,
//   four elements at a time where aligned) and handed to every lane with
//   subgroupBroadcast. On lavapipe a load whose address differs between lanes
//   costs a scalar load per lane, in workgroup memory too, so this is about 7x
//   faster than tiles in workgroup memory.
// - 'tiled' everywhere else: tiles of keys (or queries) in workgroup memory.
//   Loops over the head dimension are unrolled on GPUs; on CPU adapters they
//   run to a uniform bound (unrolled, LLVM took half a minute to compile one).
//
// q, k, v, o and their gradients are addressed by HeadLayout, so they can be
// column slices of one fused [B, T, 3C] tensor and their gradients of one
// [B, T, 3C] gradient.

import type { AttentionSpec, HeadLayout, View } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, type WriteMode } from '../storage.js';
import { rowHelper } from './wgsl-helpers.js';

function pow2Clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, 2 ** Math.ceil(Math.log2(Math.max(n, 1)))));
}

/** Keys (or queries) per tile in workgroup memory. */
function tileFor(d: number): number {
  return d <= 64 ? 32 : 16;
}

/** Rows of `d` 16-bit elements each start on a word only if every offset and stride is even. */
function headMode(v: View, L: HeadLayout, d: number): WriteMode {
  if (!is16Bit(v.dtype)) return 'owned';
  const even = [v.offset + L.offset, L.sB, L.sH, L.sT, d].every((x) => x % 2 === 0);
  return even ? 'owned' : 'atomic';
}

/** layoutParams of each named operand, in order. */
function headParams(...names: string[]): [string, 'u32'][] {
  return names.flatMap(layoutParams);
}

function layoutParams(name: string): [string, 'u32'][] {
  return [[`${name}_o`, 'u32'], [`${name}_b`, 'u32'], [`${name}_h`, 'u32'], [`${name}_t`, 'u32']];
}

function layoutValues(v: View, L: HeadLayout): number[] {
  return [v.offset + L.offset, L.sB, L.sH, L.sT];
}

/** WGSL: row_<name>, the element index of row t of (b, h), for each name, one per line. */
function rowFns(...names: string[]): string {
  return names.map(rowHelper).join('\n');
}

const COMMON_PARAMS: [string, 'u32' | 'i32' | 'f32'][] = [
  ['hd', 'u32'], ['bh', 'u32'], ['heads', 'u32'], ['tq', 'u32'], ['tk', 'u32'], ['blocks', 'u32'], ['causal', 'u32'], ['shift', 'i32'], ['scale', 'f32'],
];

function commonValues(spec: AttentionSpec, blocks: number): number[] {
  return [spec.headDim, spec.batch * spec.heads, spec.heads, spec.tq, spec.tk, blocks, spec.causal ? 1 : 0, spec.tk - spec.tq, spec.scale];
}

/** WGSL that writes a private row `src` of D values (times `mul`) to `name` starting at element `base`. */
function storeRow(name: string, src: string, base: string, hd: string, mul = ''): string {
  return `for (var c = 0u; c < ${hd}; c = c + 2u) {
      var m = 1u; var v1 = 0.0;
      if (c + 1u < ${hd}) { m = 3u; v1 = ${src}[c + 1u]${mul}; }
      put2_${name}(${base} + c, ${src}[c]${mul}, v1, m);
    }`;
}

/** Index of the last key query i may see (inclusive; negative when none). */
/** A kernel's first lines: its workgroup's (batch, head) pair from the workgroup's index (P.blocks workgroups per pair). */
const WORKGROUP_HEAD = `  let w = wid.x + wid.y * nwg.x;
  let bh = w / P.blocks;
  if (bh >= P.bh) { return; }
  let b = bh / P.heads;
  let h = bh % P.heads;`;

/** The entry point of the tiled kernels (one row per invocation) and their first lines. */
const TILED_HEAD = (wg: number) => `@compute @workgroup_size(${wg}) fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
${WORKGROUP_HEAD}`;

const LAST_KEY = `fn last_key(i: u32) -> i32 { if (P.causal != 0u) { return min(i32(i) + P.shift, i32(P.tk) - 1); } return i32(P.tk) - 1; }`;

/** Loads keys [j0, j0 + BK) of k and v into workgroup memory (all invocations take part). */
function loadKV(d: number, bk: number, wg: number): string {
  return `for (var e = lid; e < ${bk * d}u; e = e + ${wg}u) {
      let j = j0 + e / ${d}u;
      let c = e % ${d}u;
      if (j < P.tk) { ks[e] = load_k(row_k(b, h, j) + c); vs[e] = load_v(row_v(b, h, j) + c); }
    }`;
}

function forwardSource(d: number, wg: number, bk: number, unroll: boolean): KernelSource {
  // GPU compilers unroll loops over a constant head size into registers; on CPU adapters that takes LLVM minutes.
  const hd = unroll ? `${d}u` : 'P.hd';
  return {
    key: `attention:${d}:${wg}:${bk}:${unroll}`,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'o')}
${LAST_KEY}
var<workgroup> ks: array<f32, ${bk * d}>;
var<workgroup> vs: array<f32, ${bk * d}>;
${TILED_HEAD(wg)}
  let i0 = (w % P.blocks) * ${wg}u;
  let i = i0 + lid;
  let live = i < P.tq;
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
}`,
  };
}


// ---- subgroup kernels --------------------------------------------------------

/** The shape of the subgroup kernels: a workgroup is one subgroup of `s` lanes. */
interface SubgroupShape {
  s: number;
  d: number;
  /**
   * Rows (queries, or keys) each lane owns. A row that streams past is loaded
   * and broadcast once for all of them: on lavapipe the loads and broadcasts,
   * not the arithmetic, are most of the cost, so four rows per lane run about
   * twice as fast as one.
   */
  rows: number;
  /** Rows shared through the subgroup are loaded four elements per lane (aligned layouts). */
  quads: boolean;
}

/** Head sizes up to this use the subgroup kernels (beyond, registers spill and LLVM takes minutes to compile them). */
const SUBGROUP_MAX_D = 64;

function subgroupShape(rt: Runtime, d: number, aligned: boolean): SubgroupShape | null {
  const s = rt.opts.subgroupSize;
  if (!rt.opts.subgroups || s < 1 || s > 128 || d > SUBGROUP_MAX_D || rt.opts.attention === 'tiled') return null;
  // Two rows per lane up to d = 32; at d = 64 that doubles LLVM's compile time (half a minute) for little gain.
  return { s, d, rows: d <= 32 ? 2 : 1, quads: aligned && d % 4 === 0 };
}

/** Every row of these (view, layout) pairs starts on a multiple of 4 elements. */
function quadAligned(...ls: [View, HeadLayout][]): boolean {
  return ls.every(([v, L]) => [v.offset + L.offset, L.sB, L.sH, L.sT].every((x) => x % 4 === 0));
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Rows are held as vec4s (elements past d are zero): four elements per operation in the generated code. */
const quadsOf = (d: number) => Math.ceil(d / 4);

/**
 * Lane `sl` loads elements r*S + sl of a row (clamped inside the row; the
 * broadcasts only take c < d), or with quads the four elements of quad r*S + sl.
 */
function coopLoad(g: SubgroupShape, name: string, reg: string, base: string): string {
  if (g.quads) {
    return range(Math.ceil(g.d / 4 / g.s)).map((r) => `let ${reg}${r} = load4_${name}((${base} >> 2u) + min(${r * g.s}u + sl, ${g.d / 4 - 1}u));`).join('\n    ');
  }
  return range(Math.ceil(g.d / g.s)).map((r) => `let ${reg}${r} = load_${name}(${base} + min(${r * g.s}u + sl, ${g.d - 1}u));`).join('\n    ');
}

/** Elements 4q .. 4q + 3 of a cooperatively loaded row, in every lane. */
function sharedQuad(g: SubgroupShape, reg: string, q: number): string {
  if (g.quads) return `subgroupBroadcast(${reg}${Math.floor(q / g.s)}, ${q % g.s}u)`;
  const el = (c: number) => (c < g.d ? `subgroupBroadcast(${reg}${Math.floor(c / g.s)}, ${c % g.s}u)` : '0.0');
  return `vec4<f32>(${range(4).map((k) => el(4 * q + k)).join(', ')})`;
}

/** `let <prefix><q> = ...` for each quad of a shared row. */
function shareRow(g: SubgroupShape, reg: string, prefix: string): string {
  return range(quadsOf(g.d)).map((q) => `let ${prefix}${q} = ${sharedQuad(g, reg, q)};`).join('\n    ');
}

/** A lane's own row as quads `<prefix><q>`, loaded from element `base` (times `mul`). */
function ownRow(g: SubgroupShape, name: string, prefix: string, base: string, mul = ''): string {
  return range(quadsOf(g.d)).map((q) => {
    const v = g.quads
      ? `load4_${name}((${base} >> 2u) + ${q}u)`
      : `vec4<f32>(${range(4).map((k) => (4 * q + k < g.d ? `load_${name}(${base} + ${4 * q + k}u)` : '0.0')).join(', ')})`;
    return `let ${prefix}${q} = ${v}${mul};`;
  }).join('\n  ');
}

function zeroRow(g: SubgroupShape, prefix: string): string {
  return range(quadsOf(g.d)).map((q) => `var ${prefix}${q} = vec4<f32>(0.0);`).join('\n  ');
}

/**
 * sum_c a_c * b_c over two rows of quads: four partial sums (one per
 * component, c in increasing order), added at the end.
 */
function dot(d: number, a: string, b: string): string {
  const s = range(quadsOf(d)).map((q) => `${a}${q} * ${b}${q}`).join(' + ');
  return `hsum(${s})`;
}

/** Stores quads prefix0 .. (times `mul`) as a row of d elements of `name` at element `base`. */
function storeQuads(name: string, prefix: string, base: string, d: number, mul = ''): string {
  const el = (c: number) => `${prefix}${c >> 2}.${'xyzw'[c & 3]}${mul}`;
  const out: string[] = [];
  for (let c = 0; c < d; c += 2) {
    out.push(c + 1 < d ? `put2_${name}(${base} + ${c}u, ${el(c)}, ${el(c + 1)}, 3u);` : `put2_${name}(${base} + ${c}u, ${el(c)}, 0.0, 1u);`);
  }
  return out.join('\n    ');
}

/** Row r of a lane: rows r*S + sl of the workgroup's block (per-row names get the suffix r). */
const perRow = (g: SubgroupShape, f: (r: number) => string, sep = '\n  ') => range(g.rows).map(f).join(sep);

const SG_HEAD = (g: SubgroupShape) => `@compute @workgroup_size(${g.s}) fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(subgroup_invocation_id) sl: u32) {
${WORKGROUP_HEAD}
  // This workgroup's block of rows.
  let r0 = (w % P.blocks) * ${g.rows * g.s}u;`;

/** Keys (forward, dQ) or queries (dK, dV) per step: the accumulators are read and written once per two rows. */
const STEP = 2;

/**
 * Opens the loop over keys j (STEP at a time) of the forward and dQ kernels: each
 * key and value row is loaded once by the subgroup and shared as quads kq<u>_, vq<u>_.
 */
function keyValueLoop(g: SubgroupShape): string {
  return `for (var j = 0u; j < kend; j = j + ${STEP}u) {
    ${range(STEP).map((u) => `${coopLoad(g, 'k', `k${u}_`, `row_k(b, h, min(j + ${u}u, P.tk - 1u))`)}
    ${coopLoad(g, 'v', `v${u}_`, `row_v(b, h, min(j + ${u}u, P.tk - 1u))`)}
    ${shareRow(g, `k${u}_`, `kq${u}_`)}
    ${shareRow(g, `v${u}_`, `vq${u}_`)}`).join('\n    ')}`;
}

/** Forward: each lane owns `rows` queries; keys and values stream through the subgroup (online softmax). */
function forwardSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return {
    key: `attentionSG:${d}:${s}:${g.rows}:${g.quads}`,
    subgroups: true,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'o')}
${LAST_KEY}
${SG_HEAD(g)}
  let kend = u32(clamp(last_key(min(r0 + ${g.rows * s - 1}u, P.tq - 1u)) + 1, 0, i32(P.tk)));
  ${perRow(g, (r) => `let i${r} = r0 + ${r * s}u + sl;
  let last${r} = last_key(min(i${r}, P.tq - 1u));
  ${ownRow(g, 'q', `q${r}_`, `row_q(b, h, min(i${r}, P.tq - 1u))`, ' * P.scale')}
  ${zeroRow(g, `a${r}_`)}
  var mx${r} = -inf_f32();
  var l${r} = 0.0;`)}
  ${keyValueLoop(g)}
    ${perRow(g, (r) => `{
      ${range(STEP).map((u) => `let ok${u} = i32(j + ${u}u) <= last${r};
      let s${u} = select(-inf_f32(), ${dot(d, `q${r}_`, `kq${u}_`)}, ok${u});`).join('\n      ')}
      let mnew = max(mx${r}, ${range(STEP).map((u) => `s${u}`).reduce((x, y) => `max(${x}, ${y})`)});
      let corr = select(exp(mx${r} - mnew), 1.0, mnew == -inf_f32());
      ${range(STEP).map((u) => `let p${u} = select(0.0, exp(s${u} - mnew), ok${u});`).join('\n      ')}
      l${r} = l${r} * corr + ${range(STEP).map((u) => `p${u}`).join(' + ')};
      ${range(Q).map((q) => `a${r}_${q} = a${r}_${q} * corr + ${range(STEP).map((u) => `p${u} * vq${u}_${q}`).join(' + ')};`).join('\n      ')}
      mx${r} = mnew;
    }`, '\n    ')}
  }
  ${perRow(g, (r) => `if (i${r} < P.tq) {
    // A query that sees no key gets zeros (and lse = -inf), as in the CPU backend.
    let inv = select(1.0 / l${r}, 0.0, l${r} == 0.0);
    let ob = row_o(b, h, i${r});
    ${storeQuads('o', `a${r}_`, 'ob', d, ' * inv')}
    put_lse(P.lse_o + bh * P.tq + i${r}, mx${r} + log(l${r}));
  }`)}
}`,
  };
}

/** D_i = dO_i . O_i for every query, into an f32 scratch [B * H * tq]. */
function deltaSource(): KernelSource {
  return {
    key: 'attentionDelta',
    params: [['hd', 'u32'], ['n', 'u32'], ['heads', 'u32'], ['tq', 'u32'], ...headParams('o', 'go')],
    body: () => `${rowFns('o', 'go')}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat_id(gid, nwg, 64u);
  if (t >= P.n) { return; }
  let i = t % P.tq;
  let bh = t / P.tq;
  let ob = row_o(bh / P.heads, bh % P.heads, i);
  let gb = row_go(bh / P.heads, bh % P.heads, i);
  var s = 0.0;
  for (var c = 0u; c < P.hd; c = c + 1u) { s = s + load_go(gb + c) * load_o(ob + c); }
  put_dd(t, s);
}`,
  };
}

/** dK and dV: each lane owns `rows` keys; query rows stream through the subgroup. */
function backwardKVSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return {
    key: `attentionBackwardKVSG:${d}:${s}:${g.rows}:${g.quads}`,
    subgroups: true,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'go', 'gk', 'gv'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'go', 'gk', 'gv')}
${SG_HEAD(g)}
  ${perRow(g, (r) => `let j${r} = r0 + ${r * s}u + sl;
  ${ownRow(g, 'k', `k${r}_`, `row_k(b, h, min(j${r}, P.tk - 1u))`)}
  ${ownRow(g, 'v', `v${r}_`, `row_v(b, h, min(j${r}, P.tk - 1u))`)}
  ${zeroRow(g, `dk${r}_`)}
  ${zeroRow(g, `dv${r}_`)}`)}
  // The first query that sees key r0 (query i sees key j when j <= i + shift).
  var istart = 0u;
  if (P.causal != 0u) { istart = u32(max(i32(r0) - P.shift, 0)); }
  // Queries in blocks of S: lane t loads the log-sum-exp and D of query ib + t once; shuffles hand them out.
  for (var ib = istart; ib < P.tq; ib = ib + ${s}u) {
    let lrow = bh * P.tq + min(ib + sl, P.tq - 1u);
    let lb = load_lse(P.lse_o + lrow);
    let db = load_dd(lrow);
    let tn = min(${s}u, P.tq - ib);
    for (var t = 0u; t < tn; t = t + ${STEP}u) {
      ${range(STEP).map((u) => `let i${u} = min(ib + t + ${u}u, P.tq - 1u);
      ${coopLoad(g, 'q', `q${u}_`, `row_q(b, h, i${u})`)}
      ${coopLoad(g, 'go', `g${u}_`, `row_go(b, h, i${u})`)}
      ${shareRow(g, `q${u}_`, `qq${u}_`)}
      ${shareRow(g, `g${u}_`, `gq${u}_`)}
      let li${u} = subgroupShuffle(lb, min(t + ${u}u, ${s - 1}u));
      let di${u} = subgroupShuffle(db, min(t + ${u}u, ${s - 1}u));
      let live${u} = t + ${u}u < tn;`).join('\n      ')}
      ${perRow(g, (r) => `{
        ${range(STEP).map((u) => `let ok${u} = live${u} && (P.causal == 0u || i32(j${r}) <= i32(i${u}) + P.shift);
        let p${u} = select(0.0, exp(${dot(d, `k${r}_`, `qq${u}_`)} * P.scale - li${u}), ok${u});
        let ds${u} = p${u} * (${dot(d, `v${r}_`, `gq${u}_`)} - di${u}) * P.scale;`).join('\n        ')}
        ${range(Q).map((q) => `dv${r}_${q} = dv${r}_${q} + ${range(STEP).map((u) => `p${u} * gq${u}_${q}`).join(' + ')};`).join('\n        ')}
        ${range(Q).map((q) => `dk${r}_${q} = dk${r}_${q} + ${range(STEP).map((u) => `ds${u} * qq${u}_${q}`).join(' + ')};`).join('\n        ')}
      }`, '\n      ')}
    }
  }
  ${perRow(g, (r) => `if (j${r} < P.tk) {
    let ko = row_gk(b, h, j${r});
    ${storeQuads('gk', `dk${r}_`, 'ko', d)}
    let vo = row_gv(b, h, j${r});
    ${storeQuads('gv', `dv${r}_`, 'vo', d)}
  }`)}
}`,
  };
}

/** dQ: each lane owns `rows` queries; key and value rows stream through the subgroup. */
function backwardQSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return {
    key: `attentionBackwardQSG:${d}:${s}:${g.rows}:${g.quads}`,
    subgroups: true,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'go', 'gq'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'go', 'gq')}
${LAST_KEY}
${SG_HEAD(g)}
  let kend = u32(clamp(last_key(min(r0 + ${g.rows * s - 1}u, P.tq - 1u)) + 1, 0, i32(P.tk)));
  ${perRow(g, (r) => `let i${r} = r0 + ${r * s}u + sl;
  let ic${r} = min(i${r}, P.tq - 1u);
  let last${r} = last_key(ic${r});
  ${ownRow(g, 'q', `q${r}_`, `row_q(b, h, ic${r})`)}
  ${ownRow(g, 'go', `g${r}_`, `row_go(b, h, ic${r})`)}
  ${zeroRow(g, `dq${r}_`)}
  let li${r} = load_lse(P.lse_o + bh * P.tq + ic${r});
  let di${r} = load_dd(bh * P.tq + ic${r});`)}
  ${keyValueLoop(g)}
    ${perRow(g, (r) => `{
      ${range(STEP).map((u) => `let ok${u} = i32(j + ${u}u) <= last${r};
      let p${u} = select(0.0, exp(${dot(d, `q${r}_`, `kq${u}_`)} * P.scale - li${r}), ok${u});
      let ds${u} = p${u} * (${dot(d, `g${r}_`, `vq${u}_`)} - di${r}) * P.scale;`).join('\n      ')}
      ${range(Q).map((q) => `dq${r}_${q} = dq${r}_${q} + ${range(STEP).map((u) => `ds${u} * kq${u}_${q}`).join(' + ')};`).join('\n      ')}
    }`, '\n    ')}
  }
  ${perRow(g, (r) => `if (i${r} < P.tq) {
    let qo = row_gq(b, h, i${r});
    ${storeQuads('gq', `dq${r}_`, 'qo', d)}
  }`)}
}`,
  };
}

export function attention(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
): void {
  const { batch, heads, tq, headDim: d } = spec;
  if (batch * heads * tq === 0) return;
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

/** dK and dV: one invocation per key, queries streamed through workgroup memory. */
function backwardKVSource(d: number, wg: number, bq: number, unroll: boolean): KernelSource {
  // GPU compilers unroll loops over a constant head size into registers; on CPU adapters that takes LLVM minutes.
  const hd = unroll ? `${d}u` : 'P.hd';
  return {
    key: `attentionBackwardKV:${d}:${wg}:${bq}:${unroll}`,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o', 'go', 'gk', 'gv'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'o', 'go', 'gk', 'gv')}
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
}`,
  };
}

/** dQ: one invocation per query, keys streamed through workgroup memory. */
function backwardQSource(d: number, wg: number, bk: number, unroll: boolean): KernelSource {
  // GPU compilers unroll loops over a constant head size into registers; on CPU adapters that takes LLVM minutes.
  const hd = unroll ? `${d}u` : 'P.hd';
  return {
    key: `attentionBackwardQ:${d}:${wg}:${bk}:${unroll}`,
    params: [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o', 'go', 'gq'), ['lse_o', 'u32']],
    body: () => `${rowFns('q', 'k', 'v', 'o', 'go', 'gq')}
${LAST_KEY}
var<workgroup> ks: array<f32, ${bk * d}>;
var<workgroup> vs: array<f32, ${bk * d}>;
${TILED_HEAD(wg)}
  let i0 = (w % P.blocks) * ${wg}u;
  let i = i0 + lid;
  let live = i < P.tq;
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
}`,
  };
}

export function attentionBackward(
  rt: Runtime, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout,
  gq: View, gqL: HeadLayout, gk: View, gkL: HeadLayout, gv: View, gvL: HeadLayout,
  spec: AttentionSpec,
): void {
  const { batch, heads, tq, tk, headDim: d } = spec;
  if (batch * heads === 0) return;
  const sg = subgroupShape(rt, d, quadAligned([q, qL], [k, kL], [v, vL], [go, goL]));
  if (sg) {
    attentionBackwardSubgroup(rt, sg, q, qL, k, kL, v, vL, o, oL, lse, go, goL, gq, gqL, gk, gkL, gv, gvL, spec);
    return;
  }
  const tile = tileFor(d);
  const common = [
    { name: 'q', buf: q.buf, access: 'read' }, { name: 'k', buf: k.buf, access: 'read' }, { name: 'v', buf: v.buf, access: 'read' },
    { name: 'o', buf: o.buf, access: 'read' }, { name: 'lse', buf: lse.buf, access: 'read' }, { name: 'go', buf: go.buf, access: 'read' },
  ] as const satisfies readonly Arg[];
  const inputs = [...layoutValues(q, qL), ...layoutValues(k, kL), ...layoutValues(v, vL), ...layoutValues(o, oL), ...layoutValues(go, goL)];
  if (tk > 0) {
    const wg = pow2Clamp(tk, 16, 64);
    const blocks = Math.ceil(tk / wg);
    rt.dispatch(backwardKVSource(d, wg, tile, !rt.opts.isSoftware), [
      ...common,
      { name: 'gk', buf: gk.buf, access: 'read_write', mode: headMode(gk, gkL, d) },
      { name: 'gv', buf: gv.buf, access: 'read_write', mode: headMode(gv, gvL, d) },
    ], [...commonValues(spec, blocks), ...inputs, ...layoutValues(gk, gkL), ...layoutValues(gv, gvL), lse.offset],
    rt.grid(batch * heads * blocks));
  }
  if (tq > 0) {
    const wg = pow2Clamp(tq, 16, 64);
    const blocks = Math.ceil(tq / wg);
    rt.dispatch(backwardQSource(d, wg, tile, !rt.opts.isSoftware), [
      ...common,
      { name: 'gq', buf: gq.buf, access: 'read_write', mode: headMode(gq, gqL, d) },
    ], [...commonValues(spec, blocks), ...inputs, ...layoutValues(gq, gqL), lse.offset],
    rt.grid(batch * heads * blocks));
  }
}

function attentionBackwardSubgroup(
  rt: Runtime, sg: SubgroupShape, q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
  o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout,
  gq: View, gqL: HeadLayout, gk: View, gkL: HeadLayout, gv: View, gvL: HeadLayout,
  spec: AttentionSpec,
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
  const common: Arg[] = [
    { name: 'q', buf: q.buf, access: 'read', vec4: quads }, { name: 'k', buf: k.buf, access: 'read', vec4: quads },
    { name: 'v', buf: v.buf, access: 'read', vec4: quads }, { name: 'go', buf: go.buf, access: 'read', vec4: quads },
    { name: 'lse', buf: lse.buf, access: 'read' }, { name: 'dd', buf: dd, access: 'read' },
  ];
  const inputs = [...layoutValues(q, qL), ...layoutValues(k, kL), ...layoutValues(v, vL), ...layoutValues(go, goL)];
  if (tk > 0) {
    const blocks = Math.ceil(tk / (sg.rows * sg.s));
    rt.dispatch(backwardKVSubgroupSource(sg), [
      ...common,
      { name: 'gk', buf: gk.buf, access: 'read_write', mode: headMode(gk, gkL, d) },
      { name: 'gv', buf: gv.buf, access: 'read_write', mode: headMode(gv, gvL, d) },
    ], [...commonValues(spec, blocks), ...inputs, ...layoutValues(gk, gkL), ...layoutValues(gv, gvL), lse.offset],
    rt.grid(batch * heads * blocks));
  }
  if (tq > 0) {
    const blocks = Math.ceil(tq / (sg.rows * sg.s));
    rt.dispatch(backwardQSubgroupSource(sg), [
      ...common,
      { name: 'gq', buf: gq.buf, access: 'read_write', mode: headMode(gq, gqL, d) },
    ], [...commonValues(spec, blocks), ...inputs, ...layoutValues(gq, gqL), lse.offset],
    rt.grid(batch * heads * blocks));
  }
  rt.release(dd);
}
