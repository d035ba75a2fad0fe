// The subgroup attention kernels, for adapters with a fixed subgroup size and
// head sizes up to SUBGROUP_MAX_D: each lane keeps its rows in named
// registers (generated code, one variable per element) and the rows that
// stream past are loaded cooperatively and handed to every lane with
// subgroupBroadcast.

import type { HeadLayout, View } from '../../backend.js';
import type { KernelSource, ParamType, Runtime } from '../runtime.js';
import { COMMON_PARAMS, headParams, LAST_KEY, rowFns, WORKGROUP_HEAD } from './attention-prologue.js';

/** The shape of the subgroup kernels: a workgroup is one subgroup of `s` lanes. */
export interface SubgroupShape {
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

export function subgroupShape(rt: Runtime, d: number, aligned: boolean): SubgroupShape | null {
  const s = rt.opts.subgroupSize;
  if (!rt.opts.subgroups || s < 1 || s > 128 || d > SUBGROUP_MAX_D || rt.opts.attention === 'tiled') return null;
  // Two rows per lane up to d = 32; at d = 64 that doubles LLVM's compile time (half a minute) for little gain.
  return { s, d, rows: d <= 32 ? 2 : 1, quads: aligned && d % 4 === 0 };
}

/** Every row of these (view, layout) pairs starts on a multiple of 4 elements. */
export function quadAligned(...ls: [View, HeadLayout][]): boolean {
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

/** A subgroup kernel's source, keyed by its shape. */
function subgroupSource(name: string, g: SubgroupShape, params: [string, ParamType][], body: () => string): KernelSource {
  return { key: `${name}:${g.d}:${g.s}:${g.rows}:${g.quads}`, subgroups: true, params, body };
}

/** Forward: each lane owns `rows` queries; keys and values stream through the subgroup (online softmax). */
export function forwardSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return subgroupSource('attentionSG', g,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'o'), ['lse_o', 'u32']],
    () => `${rowFns('q', 'k', 'v', 'o')}
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
}`);
}

/** D_i = dO_i . O_i for every query, into an f32 scratch [B * H * tq]. */
export function deltaSource(): KernelSource {
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
export function backwardKVSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return subgroupSource('attentionBackwardKVSG', g,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'go', 'gk', 'gv'), ['lse_o', 'u32']],
    () => `${rowFns('q', 'k', 'v', 'go', 'gk', 'gv')}
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
}`);
}

/** dQ: each lane owns `rows` queries; key and value rows stream through the subgroup. */
export function backwardQSubgroupSource(g: SubgroupShape): KernelSource {
  const { d, s } = g;
  const Q = quadsOf(d);
  return subgroupSource('attentionBackwardQSG', g,
    [...COMMON_PARAMS, ...headParams('q', 'k', 'v', 'go', 'gq'), ['lse_o', 'u32']],
    () => `${rowFns('q', 'k', 'v', 'go', 'gq')}
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
}`);
}
