// The WGSL of the matmul kernels, one module per MatmulVariant. Products
// accumulate in f32 and are rounded once, when stored.
//
// Two kernels:
// - 'subgroup', for CPU adapters (lavapipe): a workgroup is one subgroup of S
//   lanes computing a (4S x 16) tile; lane L owns rows 4L .. 4L+3.
//   lavapipe runs the S lanes as one SIMD vector and turns every memory access
//   inside a loop into a scalar loop over the lanes (even when all lanes read
//   the same address, and for workgroup memory too), so the kernel loads as
//   little per lane as it can: each lane reads its four rows of A four k at a
//   time (four vec4 loads, along k or, for a transposed A, along m) and 1/S of
//   the B block, which subgroupBroadcast then hands to every lane. The sums are
//   written as dot() of 4-vectors: with separate multiplies, LLVM hoists all
//   the products of a step ahead of the adds and spills them.
// - 'tiled', for GPUs: 16x16 invocations compute a 64x64 tile, 4x4 each, from
//   A and B blocks staged in workgroup memory.
//
// 16-bit outputs are written a whole u32 word at a time. When the elements of a
// row do not start on a word boundary (odd row stride or offset), the output is
// declared atomic and the two words at the ends of each row segment are updated
// with compare-exchange.

import { MatmulError, is16, type MatmulDType, type MatmulVariant } from './matmul-plan.js';
import { declareOperand, operandUsesF16, type OperandLayout } from './vector-io.js';
import { WGSL_NARROW_16 } from './wgsl-helpers.js';

/** The (tile rows, tile columns) of a kernel. */
export function matmulTile(v: Pick<MatmulVariant, 'kernel' | 'lanes' | 'cols'>): { rows: number; cols: number } {
  return v.kernel === 'subgroup' ? { rows: ROWS_PER_LANE * v.lanes, cols: v.cols } : { rows: 64, cols: 64 };
}

const ROWS_PER_LANE = 4;
/** Columns of the subgroup kernel's tile: 16 is the fastest on lavapipe; tests use 4, which compiles faster. */
export const SUBGROUP_COLUMNS = [4, 8, 16] as const;
export const SUBGROUP_SIZES = [4, 8, 16, 32, 64];

// Uniform parameters, one u32 each, in this order.
export const PARAMS = [
  'M', 'N', 'K', 'pad0', 'lda', 'ldb', 'ldc', 'ldp',
  'offA', 'offB', 'offC', 'offP', 'strideA', 'strideB', 'strideC', 'strideP',
  'offBias', 'pad1', 'pad2', 'pad3',
] as const;

const GELU_WGSL = /* wgsl */ `
fn gelu(x: f32) -> f32 {
  // tanh saturates long before |u| = 15; clamping keeps tanh's implementations finite.
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
  return 0.5 * x * (1.0 + tanh(u));
}
`;

// ---------------------------------------------------------------- epilogue ---

/**
 * WGSL that finishes one row segment of the output: adds the bias, stores the
 * pre-GELU value, applies GELU, accumulates into and stores C.
 * `m`: the row (known < M); `n0`: first column (even); `vals`: the f32
 * accumulator expressions for columns n0 .. n0 + vals.length - 1.
 */
function emitRowStore(v: MatmulVariant, m: string, n0: string, vals: string[], biasVals: string[] | null): string {
  const count = vals.length;
  const lines: string[] = [];
  lines.push(`let row_c = p.offC + batch * p.strideC + ${m} * p.ldc + ${n0};`);
  for (let j = 0; j < count; j++) lines.push(`let x${j} = ${vals[j]}${biasVals ? ` + ${biasVals[j]}` : ''};`);
  const finals: string[] = [];
  if (v.pre) {
    lines.push(`let row_p = p.offP + batch * p.strideP + ${m} * p.ldp + ${n0};`);
    lines.push(writeSegment('P', v.pre, v.atomicP, 'row_p', n0, vals.map((_, j) => `x${j}`), false));
  }
  for (let j = 0; j < count; j++) finals.push(v.gelu ? `gelu(x${j})` : `x${j}`);
  lines.push(writeSegment('C', v.c, v.atomicC, 'row_c', n0, finals, v.accumulate));
  return lines.join('\n');
}

/**
 * Stores `vals` at elements e0 .. e0 + count - 1 of output `o` (columns n0 ..),
 * skipping columns >= N, optionally adding the old contents.
 */
function writeSegment(o: string, dtype: MatmulDType, atomic: boolean, e0: string, n0: string, vals: string[], accumulate: boolean): string {
  const count = vals.length;
  const out: string[] = [];
  if (!is16(dtype)) {
    for (let j = 0; j < count; j++) {
      const val = accumulate ? `load_${o}(${e0} + ${j}u) + ${vals[j]}` : vals[j];
      out.push(`if (${n0} + ${j}u < p.N) { store_${o}(${e0} + ${j}u, ${val}); }`);
    }
    return `{\n${out.join('\n')}\n}`;
  }
  // Pairs (j, j + 1) starting at an even element; a lone element at either end.
  const pair = (j: number) => {
    const old = accumulate ? `load2_${o}(${e0} + ${j}u) + ` : '';
    const one = accumulate ? `load_${o}(${e0} + ${j}u) + ` : '';
    return `if (${n0} + ${j + 1}u < p.N) { store2_${o}(${e0} + ${j}u, ${old}vec2<f32>(${vals[j]}, ${vals[j + 1]})); }`
      + ` else if (${n0} + ${j}u < p.N) { store1_${o}(${e0} + ${j}u, ${one}${vals[j]}); }`;
  };
  const single = (j: number) => {
    const one = accumulate ? `load_${o}(${e0} + ${j}u) + ` : '';
    return `if (${n0} + ${j}u < p.N) { store1_${o}(${e0} + ${j}u, ${one}${vals[j]}); }`;
  };
  const even: string[] = [];
  for (let j = 0; j + 1 < count; j += 2) even.push(pair(j));
  if (!atomic) return `{\n${even.join('\n')}\n}`;
  const odd: string[] = [single(0)];
  for (let j = 1; j + 1 < count; j += 2) odd.push(pair(j));
  odd.push(single(count - 1));
  return `if ((${e0} & 1u) == 0u) {\n${even.join('\n')}\n} else {\n${odd.join('\n')}\n}`;
}

// ------------------------------------------------------------- declarations ---

function declarations(v: MatmulVariant): string {
  const f16 = v.nativeF16;
  const ops = [
    { name: 'A', dtype: v.a, binding: 1, access: 'read' as const, layout: (v.vecA ? 'vec4' : 'scalar') as OperandLayout },
    { name: 'B', dtype: v.b, binding: 2, access: 'read' as const, layout: (v.vecB ? 'vec4' : 'scalar') as OperandLayout },
    { name: 'C', dtype: v.c, binding: 3, access: 'read_write' as const, layout: outLayout(v.c, v.atomicC) },
  ];
  if (v.bias) ops.push({ name: 'bias', dtype: v.bias, binding: 4, access: 'read', layout: 'scalar' });
  if (v.pre) ops.push({ name: 'P', dtype: v.pre, binding: 5, access: 'read_write', layout: outLayout(v.pre, v.atomicP) });
  const specs = ops.map((o) => ({ ...o, nativeF16: f16 }));
  const enables: string[] = [];
  if (specs.some(operandUsesF16)) enables.push('enable f16;');
  if (v.kernel === 'subgroup') enables.push('enable subgroups;');
  const params = `struct Params {\n${PARAMS.map((p) => `  ${p}: u32,`).join('\n')}\n}\n@group(0) @binding(0) var<uniform> p: Params;`;
  const roundsTo16 = is16(v.c) || is16(v.pre);
  return [
    enables.join('\n'),
    params,
    ...specs.map(declareOperand),
    roundsTo16 ? WGSL_NARROW_16 : '',
    v.gelu ? GELU_WGSL : '',
  ].filter(Boolean).join('\n');
}

function outLayout(dtype: MatmulDType, atomic: boolean): OperandLayout {
  if (!is16(dtype)) return 'scalar';
  return atomic ? 'atomic-words' : 'words';
}

// --------------------------------------------------------- subgroup kernel ---

function subgroupKernel(v: MatmulVariant): string {
  const S = v.lanes;
  const R = ROWS_PER_LANE;
  const T = v.cols;
  const L: string[] = [];
  const u = (x: number) => `${x}u`;

  L.push(`@compute @workgroup_size(${S})`);
  L.push(`fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {`);
  L.push(`let batch = wg.z;`);
  L.push(`let m0 = wg.y * ${u(R * S)};`);
  L.push(`let n0 = wg.x * ${u(T)};`);
  L.push(`let base_a = p.offA + batch * p.strideA;`);
  L.push(`let base_b = p.offB + batch * p.strideB;`);
  L.push(`let last_m = p.M - 1u;`);
  L.push(`let last_n = p.N - 1u;`);
  // Lane L owns rows m0 + 4L .. m0 + 4L + 3, clamped so that loads stay inside A
  // (rows >= M are computed but never stored).
  if (v.transA && v.vecA) {
    // A stored [K, M]: one vec4 per k holds the lane's four rows.
    L.push(`let a_at = base_a + min(m0 + 4u * lane, last_m & ~3u);`);
  } else {
    for (let r = 0; r < R; r++) {
      L.push(`let a_at${r} = base_a + min(m0 + 4u * lane + ${u(r)}, last_m)${v.transA ? '' : ' * p.lda'};`);
    }
  }
  // The element (row r, k) of A.
  const aIndex = (r: number, k: string) => (v.transA ? `a_at${r} + (${k}) * p.lda` : `a_at${r} + ${k}`);

  // Cooperative B loads: the 4 x T block of B for k .. k + 3 is spread over the
  // lanes, G values or vectors each; value (q, j) of the block is component
  // `comp` (-1: the scalar itself) of the value `slot` loaded by lane `src`.
  type Source = { slot: number; src: number; comp: number };
  let bSource: (q: number, j: number) => Source;
  const bSetup: string[] = [];
  let bLoad: (k: string) => string[];
  if (v.vecB && !v.transB) {
    // T vectors: vector t = NV q + jv holds B[k + q, n0 + 4jv .. + 3].
    const NV = T / 4, G = Math.ceil(T / S);
    for (let g = 0; g < G; g++) {
      bSetup.push(`let bt${g} = min(lane + ${u(g * S)}, ${u(T - 1)});`);
      bSetup.push(`let b_at${g} = base_b + (bt${g} / ${u(NV)}) * p.ldb + min(n0 + (bt${g} % ${u(NV)}) * 4u, last_n & ~3u);`);
    }
    bLoad = (k) => Array.from({ length: G }, (_, g) => `let bv${g} = select(vec4<f32>(0.0), load4_B(b_at${g} + (${k}) * p.ldb), live[bt${g} / ${u(NV)}]);`);
    bSource = (q, j) => { const t = NV * q + (j >> 2); return { slot: Math.floor(t / S), src: t % S, comp: j & 3 }; };
  } else if (v.vecB && v.transB) {
    // T vectors: vector j holds B[k .. k + 3, n0 + j] (B stored [N, K]).
    const G = Math.ceil(T / S);
    for (let g = 0; g < G; g++) bSetup.push(`let b_at${g} = base_b + min(n0 + min(lane + ${u(g * S)}, ${u(T - 1)}), last_n) * p.ldb;`);
    bLoad = (k) => Array.from({ length: G }, (_, g) => `let bv${g} = select(vec4<f32>(0.0), load4_B(b_at${g} + ${k}), live);`);
    bSource = (q, j) => ({ slot: Math.floor(j / S), src: j % S, comp: q });
  } else {
    // 4T scalars: value e = T q + j.
    const G = Math.ceil((4 * T) / S);
    for (let g = 0; g < G; g++) {
      bSetup.push(`let be${g} = min(lane + ${u(g * S)}, ${u(4 * T - 1)});`);
      bSetup.push(v.transB
        ? `let b_at${g} = base_b + min(n0 + be${g} % ${u(T)}, last_n) * p.ldb + be${g} / ${u(T)};`
        : `let b_at${g} = base_b + (be${g} / ${u(T)}) * p.ldb + min(n0 + be${g} % ${u(T)}, last_n);`);
    }
    bLoad = (k) => Array.from({ length: G }, (_, g) => `let bv${g} = select(0.0, load_B(b_at${g} + ${v.transB ? k : `(${k}) * p.ldb`}), live[be${g} / ${u(T)}]);`);
    bSource = (q, j) => { const e = T * q + j; return { slot: Math.floor(e / S), src: e % S, comp: -1 }; };
  }
  L.push(...bSetup);
  for (let r = 0; r < R; r++) for (let j = 0; j < T; j++) L.push(`var acc${r}_${j} = 0.0;`);

  const broadcastColumn = (j: number): string => {
    const parts = [0, 1, 2, 3].map((q) => bSource(q, j));
    const same = parts.every((s) => s.slot === parts[0]!.slot && s.src === parts[0]!.src);
    if (same && parts.every((s, q) => s.comp === q)) return `subgroupBroadcast(bv${parts[0]!.slot}, ${u(parts[0]!.src)})`;
    const comp = (s: Source) => (s.comp < 0 ? `bv${s.slot}` : `bv${s.slot}[${s.comp}]`);
    return `vec4<f32>(${parts.map((s) => `subgroupBroadcast(${comp(s)}, ${u(s.src)})`).join(', ')})`;
  };
  const multiply = (): string[] => {
    const out: string[] = [];
    for (let j = 0; j < T; j++) {
      out.push(`{ let b = ${broadcastColumn(j)};`);
      for (let r = 0; r < R; r++) out.push(`acc${r}_${j} += dot(a${r}, b);`);
      out.push('}');
    }
    return out;
  };

  // Four k per step. The last step may run past K: those values are zeroed with
  // select (never multiplied, since what lies past K may be NaN), and reads past
  // the end of a buffer are clamped by WebGPU's bounds checks.
  L.push(`for (var k = 0u; k < p.K; k += 4u) {`);
  L.push(`let live = vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(p.K);`);
  if (v.transA && v.vecA) {
    // Four rows of k .. k + 3, transposed in registers into the four rows' vectors.
    for (let q = 0; q < 4; q++) L.push(`let at${q} = select(vec4<f32>(0.0), load4_A(a_at + (k + ${u(q)}) * p.lda), vec4<bool>(live[${q}]));`);
    for (let r = 0; r < R; r++) L.push(`let a${r} = vec4<f32>(at0[${r}], at1[${r}], at2[${r}], at3[${r}]);`);
  } else {
    for (let r = 0; r < R; r++) {
      const a = v.vecA
        ? `load4_A(${aIndex(r, 'k')})`
        : `vec4<f32>(${[0, 1, 2, 3].map((q) => `load_A(${aIndex(r, `k + ${u(q)}`)})`).join(', ')})`;
      L.push(`let a${r} = select(vec4<f32>(0.0), ${a}, live);`);
    }
  }
  L.push(...bLoad('k'));
  L.push(...multiply());
  L.push('}');

  // Epilogue: one row per iteration of a loop rather than unrolled, which keeps
  // the (per-lane, branchy) store code small enough to compile quickly.
  const biasVals = v.bias ? Array.from({ length: T }, (_, j) => `bias${j}`) : null;
  if (v.bias) for (let j = 0; j < T; j++) L.push(`let bias${j} = load_bias(p.offBias + min(n0 + ${u(j)}, last_n));`);
  L.push(`var rows: array<array<f32, ${T}>, ${R}>;`);
  for (let r = 0; r < R; r++) L.push(`rows[${r}] = array<f32, ${T}>(${Array.from({ length: T }, (_, j) => `acc${r}_${j}`).join(', ')});`);
  L.push(`for (var r = 0u; r < ${u(R)}; r++) {`);
  L.push(`let m = m0 + 4u * lane + r;`);
  L.push(`if (m < p.M) {`);
  L.push(`let row = rows[r];`);
  L.push(emitRowStore(v, 'm', 'n0', Array.from({ length: T }, (_, j) => `row[${j}]`), biasVals));
  L.push('} }');
  L.push('}');
  return L.join('\n');
}

// ------------------------------------------------------------ tiled kernel ---

function tiledKernel(v: MatmulVariant): string {
  const L: string[] = [];
  L.push(`var<workgroup> tile_a: array<array<f32, 64>, 16>;`); // [k][m]
  L.push(`var<workgroup> tile_b: array<array<f32, 64>, 16>;`); // [k][n]
  L.push(`@compute @workgroup_size(16, 16)`);
  L.push(`fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {`);
  L.push(`let batch = wg.z;`);
  L.push(`let m0 = wg.y * 64u;`);
  L.push(`let n0 = wg.x * 64u;`);
  L.push(`let base_a = p.offA + batch * p.strideA;`);
  L.push(`let base_b = p.offB + batch * p.strideB;`);
  L.push(`var acc: array<vec4<f32>, 4>;`);
  L.push(`for (var k0 = 0u; k0 < p.K; k0 += 16u) {`);
  for (let s = 0; s < 4; s++) {
    L.push(`{ let t = li + ${s * 256}u;`);
    // Consecutive invocations read consecutive addresses of the contiguous dimension.
    L.push(v.transA ? `let mm = t & 63u; let kk = t >> 6u;` : `let mm = t >> 4u; let kk = t & 15u;`);
    L.push(`let m = m0 + mm; let k = k0 + kk;`);
    const ia = v.transA ? `base_a + min(k, p.K - 1u) * p.lda + min(m, p.M - 1u)` : `base_a + min(m, p.M - 1u) * p.lda + min(k, p.K - 1u)`;
    L.push(`tile_a[kk][mm] = select(0.0, load_A(${ia}), m < p.M && k < p.K); }`);
    L.push(`{ let t = li + ${s * 256}u;`);
    L.push(v.transB ? `let nn = t >> 4u; let kk = t & 15u;` : `let nn = t & 63u; let kk = t >> 6u;`);
    L.push(`let n = n0 + nn; let k = k0 + kk;`);
    const ib = v.transB ? `base_b + min(n, p.N - 1u) * p.ldb + min(k, p.K - 1u)` : `base_b + min(k, p.K - 1u) * p.ldb + min(n, p.N - 1u)`;
    L.push(`tile_b[kk][nn] = select(0.0, load_B(${ib}), n < p.N && k < p.K); }`);
  }
  L.push(`workgroupBarrier();`);
  L.push(`for (var kk = 0u; kk < 16u; kk++) {`);
  L.push(`let b = vec4<f32>(tile_b[kk][lid.x * 4u], tile_b[kk][lid.x * 4u + 1u], tile_b[kk][lid.x * 4u + 2u], tile_b[kk][lid.x * 4u + 3u]);`);
  for (let i = 0; i < 4; i++) L.push(`acc[${i}] += tile_a[kk][lid.y * 4u + ${i}u] * b;`);
  L.push('}');
  L.push(`workgroupBarrier();`);
  L.push('}');
  L.push(`let nc = n0 + lid.x * 4u;`);
  const biasVals = v.bias ? [0, 1, 2, 3].map((j) => `bias${j}`) : null;
  if (v.bias) for (let j = 0; j < 4; j++) L.push(`let bias${j} = load_bias(p.offBias + min(nc + ${j}u, p.N - 1u));`);
  L.push(`for (var i = 0u; i < 4u; i++) {`);
  L.push(`let m = m0 + lid.y * 4u + i;`);
  L.push(`if (m < p.M) {`);
  L.push(`let row = acc[i];`);
  L.push(emitRowStore(v, 'm', 'nc', [0, 1, 2, 3].map((j) => `row[${j}]`), biasVals));
  L.push('} }');
  L.push('}');
  return L.join('\n');
}

/** The WGSL of one matmul variant. Bindings: 0 params (uniform), 1 A, 2 B, 3 C, 4 bias, 5 pre-GELU. */
export function matmulWGSL(v: MatmulVariant): string {
  if (v.kernel === 'subgroup' && !SUBGROUP_SIZES.includes(v.lanes)) {
    throw new MatmulError(`matmul: the subgroup kernel needs a subgroup size in ${SUBGROUP_SIZES.join(', ')}, not ${v.lanes}`);
  }
  if (v.kernel === 'subgroup' && !(SUBGROUP_COLUMNS as readonly number[]).includes(v.cols)) {
    throw new MatmulError(`matmul: the subgroup kernel's tile has ${SUBGROUP_COLUMNS.join(', ')} columns, not ${v.cols}`);
  }
  return `${declarations(v)}\n${v.kernel === 'subgroup' ? subgroupKernel(v) : tiledKernel(v)}\n`;
}
