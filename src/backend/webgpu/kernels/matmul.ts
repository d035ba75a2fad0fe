// Matrix product C[b] = op(A[b]) @ op(B[b]) (+ bias) (-> tanh-GELU), in WGSL.
//
// op() is a transpose read in place: A is stored [M, K] or, with transA, [K, M];
// B is stored [K, N] or, with transB, [N, K]. Each operand has its own element
// offset, row stride and batch stride (0 shares one matrix across the batch).
// A, B, C, bias and the pre-GELU output may each be float32, float16 or
// bfloat16; a pipeline is generated per combination. Products accumulate in
// f32 and are rounded once, when stored.
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

/// <reference types="@webgpu/types" />

import { declareOperand, operandUsesF16, type OperandDType, type OperandLayout } from './vector-io.js';
import { WGSL_NARROW_16 } from './wgsl-helpers.js';
import { MixprecError, type ErrorCode } from '../../../errors.js';

export type MatmulDType = OperandDType;
export type MatmulKernelKind = 'subgroup' | 'tiled';

export class MatmulError extends MixprecError {
  override readonly code: ErrorCode = 'MATMUL_INVALID';
}

/** One operand: a storage buffer and where the matrix lives in it (all in elements). */
export interface MatmulOperand {
  buffer: GPUBuffer;
  dtype: MatmulDType;
  /** Element offset of matrix 0 (default 0). */
  offset?: number;
  /** Elements between consecutive rows as stored (default: the stored row length). */
  rowStride?: number;
  /** Elements between consecutive batch matrices; 0 broadcasts (default: one dense matrix). */
  batchStride?: number;
}

export interface MatmulCall {
  batch?: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M]. */
  transA?: boolean;
  /** B is stored [N, K]. */
  transB?: boolean;
  a: MatmulOperand;
  b: MatmulOperand;
  c: MatmulOperand;
  /** Added to every row of the product: N elements from `offset`. */
  bias?: { buffer: GPUBuffer; dtype: MatmulDType; offset?: number };
  /** tanh-GELU after the bias. */
  gelu?: boolean;
  /** Where the value before GELU is also stored (the backward pass needs it). */
  preGelu?: MatmulOperand;
  /** C += result instead of C = result. */
  accumulate?: boolean;
}

/** Everything that changes the generated WGSL. */
export interface MatmulVariant {
  kernel: MatmulKernelKind;
  /** Subgroup size the 'subgroup' kernel is generated for (its workgroup size). */
  lanes: number;
  /** Columns of the subgroup kernel's tile (one of SUBGROUP_COLUMNS). */
  cols: number;
  a: MatmulDType;
  b: MatmulDType;
  c: MatmulDType;
  bias: MatmulDType | null;
  pre: MatmulDType | null;
  gelu: boolean;
  accumulate: boolean;
  transA: boolean;
  transB: boolean;
  /** Read float16 operands as f16 (shader-f16) rather than as packed words. */
  nativeF16: boolean;
  /** A can be read 4 elements at a time along its contiguous dimension: aligned offsets and strides. */
  vecA: boolean;
  /** B can be read 4 elements at a time along its contiguous dimension. */
  vecB: boolean;
  /** 16-bit C / pre-GELU output whose rows do not start on word boundaries. */
  atomicC: boolean;
  atomicP: boolean;
}

/** The (tile rows, tile columns) of a kernel. */
export function matmulTile(v: Pick<MatmulVariant, 'kernel' | 'lanes' | 'cols'>): { rows: number; cols: number } {
  return v.kernel === 'subgroup' ? { rows: ROWS_PER_LANE * v.lanes, cols: v.cols } : { rows: 64, cols: 64 };
}

const ROWS_PER_LANE = 4;
/** Columns of the subgroup kernel's tile: 16 is the fastest on lavapipe; tests use 4, which compiles faster. */
export const SUBGROUP_COLUMNS = [4, 8, 16] as const;
const SUBGROUP_SIZES = [4, 8, 16, 32, 64];

// Uniform parameters, one u32 each, in this order.
const PARAMS = [
  'M', 'N', 'K', 'pad0', 'lda', 'ldb', 'ldc', 'ldp',
  'offA', 'offB', 'offC', 'offP', 'strideA', 'strideB', 'strideC', 'strideP',
  'offBias', 'pad1', 'pad2', 'pad3',
] as const;

const is16 = (d: MatmulDType | null) => d === 'float16' || d === 'bfloat16';

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

// -------------------------------------------------------------------- host ---

/** What the kernels need to know about the device. */
export interface MatmulDeviceInfo {
  isSoftware: boolean;
  hasF16: boolean;
  hasSubgroups: boolean;
}

export interface MatmulKernelsOptions {
  /** Force a kernel; 'auto' takes 'subgroup' on software adapters with subgroups of a fixed size. */
  kernel?: MatmulKernelKind | 'auto';
  /**
   * Read float16 operands as f16 (default: when the device has shader-f16 and
   * is a GPU; on lavapipe packed words are faster: half the loads per value).
   */
  nativeF16?: boolean;
  /** Subgroup size for the 'subgroup' kernel (default: the adapter's, when min == max). */
  lanes?: number;
  /** Columns of the subgroup kernel's tile (default 16). */
  cols?: number;
}

/** A call with every default filled in, as the kernel sees it. */
export interface ResolvedMatmul {
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  lda: number; ldb: number; ldc: number; ldp: number;
  offA: number; offB: number; offC: number; offP: number; offBias: number;
  strideA: number; strideB: number; strideC: number; strideP: number;
}

function nonNegativeInt(x: number, what: string): number {
  if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new MatmulError(`matmul: ${what} must be a non-negative integer below 2^32, got ${x}`);
  return x;
}

const DTYPES: readonly string[] = ['float32', 'float16', 'bfloat16'];

/** Fills in defaults and checks a call; throws MatmulError naming what is wrong. */
export function resolveMatmul(call: MatmulCall): ResolvedMatmul {
  const batch = nonNegativeInt(call.batch ?? 1, 'batch');
  const m = nonNegativeInt(call.m, 'm'), n = nonNegativeInt(call.n, 'n'), k = nonNegativeInt(call.k, 'k');
  const transA = !!call.transA, transB = !!call.transB;
  for (const [name, o] of [['A', call.a], ['B', call.b], ['C', call.c], ['bias', call.bias], ['preGelu', call.preGelu]] as const) {
    if (o && !DTYPES.includes(o.dtype)) throw new MatmulError(`matmul: ${name} has dtype ${o.dtype}; the WebGPU matmul takes float32, float16 or bfloat16`);
  }
  if (call.preGelu && !call.gelu) throw new MatmulError('matmul: preGelu is given but gelu is not set');
  const lda = nonNegativeInt(call.a.rowStride ?? (transA ? m : k), 'A row stride');
  const ldb = nonNegativeInt(call.b.rowStride ?? (transB ? k : n), 'B row stride');
  const ldc = nonNegativeInt(call.c.rowStride ?? n, 'C row stride');
  const ldp = nonNegativeInt(call.preGelu?.rowStride ?? n, 'preGelu row stride');
  if (lda < (transA ? m : k)) throw new MatmulError(`matmul: A row stride ${lda} is shorter than a stored row (${transA ? m : k})`);
  if (ldb < (transB ? k : n)) throw new MatmulError(`matmul: B row stride ${ldb} is shorter than a stored row (${transB ? k : n})`);
  if (ldc < n) throw new MatmulError(`matmul: C row stride ${ldc} is shorter than a row (${n})`);
  if (call.preGelu && ldp < n) throw new MatmulError(`matmul: preGelu row stride ${ldp} is shorter than a row (${n})`);
  return {
    batch, m, n, k, transA, transB, lda, ldb, ldc, ldp,
    offA: nonNegativeInt(call.a.offset ?? 0, 'A offset'),
    offB: nonNegativeInt(call.b.offset ?? 0, 'B offset'),
    offC: nonNegativeInt(call.c.offset ?? 0, 'C offset'),
    offP: nonNegativeInt(call.preGelu?.offset ?? 0, 'preGelu offset'),
    offBias: nonNegativeInt(call.bias?.offset ?? 0, 'bias offset'),
    strideA: nonNegativeInt(call.a.batchStride ?? (transA ? k * lda : m * lda), 'A batch stride'),
    strideB: nonNegativeInt(call.b.batchStride ?? (transB ? n * ldb : k * ldb), 'B batch stride'),
    strideC: nonNegativeInt(call.c.batchStride ?? m * ldc, 'C batch stride'),
    strideP: nonNegativeInt(call.preGelu?.batchStride ?? m * ldp, 'preGelu batch stride'),
  };
}

const aligned = (x: number, to: number) => x % to === 0;

/** Picks the WGSL variant for a resolved call. */
export function matmulVariant(call: MatmulCall, r: ResolvedMatmul, kernel: MatmulKernelKind, lanes: number, cols: number, nativeF16: boolean): MatmulVariant {
  const sub = kernel === 'subgroup';
  const vecA = sub && aligned(r.lda, 4) && aligned(r.offA, 4) && (r.batch === 1 || aligned(r.strideA, 4));
  const vecB = sub && aligned(r.ldb, 4) && aligned(r.offB, 4) && (r.batch === 1 || aligned(r.strideB, 4));
  const oddRows = (ld: number, off: number, stride: number) => !aligned(ld, 2) || !aligned(off, 2) || (r.batch > 1 && !aligned(stride, 2));
  return {
    kernel, lanes: sub ? lanes : 0, cols: sub ? cols : 0,
    a: call.a.dtype, b: call.b.dtype, c: call.c.dtype,
    bias: call.bias?.dtype ?? null, pre: call.preGelu?.dtype ?? null,
    gelu: !!call.gelu, accumulate: !!call.accumulate,
    transA: r.transA, transB: r.transB,
    nativeF16: nativeF16 && [call.a.dtype, call.b.dtype, call.bias?.dtype].includes('float16'),
    vecA, vecB,
    atomicC: is16(call.c.dtype) && oddRows(r.ldc, r.offC, r.strideC),
    atomicP: !!call.preGelu && is16(call.preGelu.dtype) && oddRows(r.ldp, r.offP, r.strideP),
  };
}

const MAX_PARAM_BUFFERS = 1024;
const MAX_BIND_GROUPS = 4096;

function overlaps(x: GPUBufferBinding, y: GPUBufferBinding): boolean {
  const [xs, ys] = [x.offset ?? 0, y.offset ?? 0];
  return xs < ys + (y.size ?? 0) && ys < xs + (x.size ?? 0);
}

/**
 * The part of `operand.buffer` a matrix occupies, bound from the aligned byte
 * offset at or below its first element; `offset` is the first element relative
 * to that binding. Throws when the buffer is too small for the matrix.
 */
function bindingRange(
  name: string, operand: { buffer: GPUBuffer; dtype: MatmulDType }, first: number,
  batch: number, batchStride: number, rows: number, rowStride: number, cols: number, align: number,
): { resource: GPUBufferBinding; offset: number; wholeVectors: boolean } {
  const bytesPer = operand.dtype === 'float32' ? 4 : 2;
  const last = first + (batch - 1) * batchStride + (rows - 1) * rowStride + cols; // one past the last element
  const endBytes = Math.ceil((last * bytesPer) / 4) * 4;
  if (rows > 0 && cols > 0 && endBytes > operand.buffer.size) {
    throw new MatmulError(`matmul: ${name} needs ${endBytes} bytes (elements up to ${last} of ${operand.dtype}) but its buffer has ${operand.buffer.size}`);
  }
  const start = Math.floor((first * bytesPer) / align) * align;
  // Whole 16-byte vectors past the end stay inside the binding where the buffer allows.
  const size = Math.max(4, Math.min(operand.buffer.size, Math.ceil(endBytes / 16) * 16) - start);
  // 4-element loads need the binding to hold the last group of 4 whole: arrays of
  // vectors end at the last whole vector.
  const wholeVectors = start + size >= Math.ceil(last / 4) * 4 * bytesPer;
  return { resource: { buffer: operand.buffer, offset: start, size }, offset: first - start / bytesPer, wholeVectors };
}

/**
 * Matmul pipelines for one device: generates, compiles and caches a pipeline
 * per variant, keeps the small uniform buffers of recent shapes, and records
 * dispatches into a caller's compute pass.
 */
export class MatmulKernels {
  readonly kernel: MatmulKernelKind;
  readonly lanes: number;
  readonly cols: number;
  readonly nativeF16: boolean;
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; id: number }>();
  private readonly params = new Map<string, GPUBuffer>();
  /** Bind groups by pipeline, parameters and bound ranges: a training step repeats its products. */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;

  constructor(readonly device: GPUDevice, info: MatmulDeviceInfo, options: MatmulKernelsOptions = {}) {
    const adapterInfo = (device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
    const fixedSize = adapterInfo?.subgroupMinSize && adapterInfo.subgroupMinSize === adapterInfo.subgroupMaxSize ? adapterInfo.subgroupMinSize : 0;
    const lanes = options.lanes ?? fixedSize;
    const subgroupOk = info.hasSubgroups && SUBGROUP_SIZES.includes(lanes);
    const choice = options.kernel ?? 'auto';
    if (choice === 'subgroup' && !subgroupOk) {
      throw new MatmulError(`matmul: the subgroup kernel needs the subgroups feature and a fixed subgroup size in ${SUBGROUP_SIZES.join(', ')} (this device: subgroups ${info.hasSubgroups ? 'on' : 'off'}, size ${lanes || 'unknown'})`);
    }
    this.kernel = choice === 'auto' ? (info.isSoftware && subgroupOk ? 'subgroup' : 'tiled') : choice;
    this.lanes = this.kernel === 'subgroup' ? lanes : 0;
    this.cols = this.kernel === 'subgroup' ? options.cols ?? 16 : 0;
    this.nativeF16 = options.nativeF16 ?? (info.hasF16 && !info.isSoftware);
    if (this.nativeF16 && !info.hasF16) throw new MatmulError('matmul: nativeF16 needs the shader-f16 feature, which this device does not have');
  }

  /** Number of compiled pipelines (one per variant seen). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** The variant a call would run. */
  variantFor(call: MatmulCall): MatmulVariant {
    return this.plan(call).variant;
  }

  /** The compiled pipeline of a variant (compiled on first use). */
  pipelineFor(v: MatmulVariant): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; id: number } {
    const key = JSON.stringify(v);
    let entry = this.pipelines.get(key);
    if (entry) return entry;
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: 4, buffer: { type: 'uniform' } },
      { binding: 1, visibility: 4, buffer: { type: 'read-only-storage' } },
      { binding: 2, visibility: 4, buffer: { type: 'read-only-storage' } },
      { binding: 3, visibility: 4, buffer: { type: 'storage' } },
    ];
    if (v.bias) entries.push({ binding: 4, visibility: 4, buffer: { type: 'read-only-storage' } });
    if (v.pre) entries.push({ binding: 5, visibility: 4, buffer: { type: 'storage' } });
    const layout = this.device.createBindGroupLayout({ label: `matmul ${key}`, entries });
    const module = this.device.createShaderModule({ label: 'matmul', code: matmulWGSL(v) });
    const pipeline = this.device.createComputePipeline({
      label: 'matmul',
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    entry = { pipeline, layout, id: this.pipelines.size + 1 };
    this.pipelines.set(key, entry);
    return entry;
  }

  private paramBuffer(r: ResolvedMatmul): GPUBuffer {
    const values: Record<(typeof PARAMS)[number], number> = {
      M: r.m, N: r.n, K: r.k, pad0: 0, lda: r.lda, ldb: r.ldb, ldc: r.ldc, ldp: r.ldp,
      offA: r.offA, offB: r.offB, offC: r.offC, offP: r.offP,
      strideA: r.strideA, strideB: r.strideB, strideC: r.strideC, strideP: r.strideP,
      offBias: r.offBias, pad1: 0, pad2: 0, pad3: 0,
    };
    const data = new Uint32Array(PARAMS.map((p) => values[p]));
    const key = data.join(',');
    let buffer = this.params.get(key);
    if (buffer) {
      // Most recently used last, so the oldest is evicted first.
      this.params.delete(key);
      this.params.set(key, buffer);
      return buffer;
    }
    buffer = this.device.createBuffer({ label: 'matmul params', size: data.byteLength, usage: 0x40 /* UNIFORM */, mappedAtCreation: true });
    new Uint32Array(buffer.getMappedRange()).set(data);
    buffer.unmap();
    if (this.params.size >= MAX_PARAM_BUFFERS) {
      // Dropped, not destroyed: a command buffer not yet submitted may still use it.
      const oldest = this.params.keys().next().value as string;
      this.params.delete(oldest);
    }
    this.params.set(key, buffer);
    return buffer;
  }

  /** Workgroup counts of a call: [x, y, z]. */
  dispatchSize(r: ResolvedMatmul): [number, number, number] {
    const tile = matmulTile(this);
    return [Math.ceil(r.n / tile.cols), Math.ceil(r.m / tile.rows), r.batch];
  }

  /** Resolves a call: its bindings, parameters relative to them, and its variant. */
  private plan(call: MatmulCall): { params: ResolvedMatmul; variant: MatmulVariant; entries: GPUBindGroupEntry[] } {
    const r = resolveMatmul(call);
    // WebGPU forbids one buffer bound as read-only and as writable storage in the same dispatch.
    for (const [name, input] of [['A', call.a], ['B', call.b], ['bias', call.bias]] as const) {
      for (const [outName, output] of [['C', call.c], ['preGelu', call.preGelu]] as const) {
        if (input && output && input.buffer === output.buffer) {
          throw new MatmulError(`matmul: ${name} and ${outName} are in the same GPUBuffer; WebGPU cannot bind one buffer as an input and an output of one dispatch (give the output its own buffer)`);
        }
      }
    }
    // Each operand is bound from an aligned start just below its first element,
    // so that operands may live anywhere in large pooled buffers; offsets in the
    // uniform parameters become relative to those starts.
    const align = this.device.limits.minStorageBufferOffsetAlignment;
    const ranges = {
      a: bindingRange('A', call.a, r.offA, r.batch, r.strideA, r.transA ? r.k : r.m, r.lda, r.transA ? r.m : r.k, align),
      b: bindingRange('B', call.b, r.offB, r.batch, r.strideB, r.transB ? r.n : r.k, r.ldb, r.transB ? r.k : r.n, align),
      c: bindingRange('C', call.c, r.offC, r.batch, r.strideC, r.m, r.ldc, r.n, align),
      bias: call.bias ? bindingRange('bias', call.bias, r.offBias, 1, 0, 1, r.n, r.n, align) : null,
      pre: call.preGelu ? bindingRange('preGelu', call.preGelu, r.offP, r.batch, r.strideP, r.m, r.ldp, r.n, align) : null,
    };
    const params: ResolvedMatmul = {
      ...r, offA: ranges.a.offset, offB: ranges.b.offset, offC: ranges.c.offset,
      offBias: ranges.bias?.offset ?? 0, offP: ranges.pre?.offset ?? 0,
    };
    if (ranges.pre && call.preGelu!.buffer === call.c.buffer && overlaps(ranges.c.resource, ranges.pre.resource)) {
      throw new MatmulError('matmul: C and preGelu share a GPUBuffer and their bindings (aligned to the storage offset alignment) overlap');
    }
    const variant = matmulVariant(call, params, this.kernel, this.lanes, this.cols, this.nativeF16);
    variant.vecA &&= ranges.a.wholeVectors;
    variant.vecB &&= ranges.b.wholeVectors;
    const entries: GPUBindGroupEntry[] = [
      { binding: 1, resource: ranges.a.resource },
      { binding: 2, resource: ranges.b.resource },
      { binding: 3, resource: ranges.c.resource },
    ];
    if (ranges.bias) entries.push({ binding: 4, resource: ranges.bias.resource });
    if (ranges.pre) entries.push({ binding: 5, resource: ranges.pre.resource });
    return { params, variant, entries };
  }

  /** Records the matmul into `pass`. Nothing runs until the caller submits. */
  encode(pass: GPUComputePassEncoder, call: MatmulCall): void {
    const r = resolveMatmul(call);
    if (r.m === 0 || r.n === 0 || r.batch === 0) return;
    const { params, variant, entries } = this.plan(call);
    const size = this.dispatchSize(params);
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (size.some((s) => s > max)) {
      throw new MatmulError(`matmul: ${size.join(' x ')} workgroups exceed this device's ${max} per dimension (m=${params.m}, n=${params.n}, batch=${params.batch}); split the call`);
    }
    const { pipeline, layout, id } = this.pipelineFor(variant);
    entries.unshift({ binding: 0, resource: { buffer: this.paramBuffer(params) } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.bindGroupFor(id, layout, entries));
    pass.dispatchWorkgroups(size[0], size[1], size[2]);
  }

  private bindGroupFor(pipelineId: number, layout: GPUBindGroupLayout, entries: GPUBindGroupEntry[]): GPUBindGroup {
    let key = `${pipelineId}`;
    for (const e of entries) {
      const r = e.resource as GPUBufferBinding;
      let id = this.bufferIds.get(r.buffer);
      if (id === undefined) this.bufferIds.set(r.buffer, (id = this.nextBufferId++));
      key += `|${e.binding}:${id}:${r.offset ?? 0}:${r.size ?? ''}`;
    }
    let bg = this.bindGroups.get(key);
    if (!bg) {
      if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
      bg = this.device.createBindGroup({ label: 'matmul', layout, entries });
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  /** Forgets cached bind groups (call when buffers they may use are destroyed). */
  clearBindGroups(): void {
    this.bindGroups.clear();
  }

  /** Destroys the cached uniform buffers; pipelines are released with the device. */
  destroy(): void {
    this.bindGroups.clear();
    for (const b of this.params.values()) b.destroy();
    this.params.clear();
    this.pipelines.clear();
  }
}
