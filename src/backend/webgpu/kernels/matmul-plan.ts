// What a matmul call is (operands, transposes, bias, GELU epilogue), its
// checks and defaults, and the WGSL variant it runs.

import type { OperandDType } from './vector-io.js';
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

export const is16 = (d: MatmulDType | null) => d === 'float16' || d === 'bfloat16';

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

/** An operand of a call, by its name in MatmulCall, and the elements [first, end) of its buffer that the call touches. */
export interface MatmulSpan {
  name: 'a' | 'b' | 'c' | 'bias' | 'preGelu';
  operand: MatmulOperand;
  first: number;
  end: number;
}

/** The spans of a call's operands, all its batches included. */
export function matmulSpans(call: MatmulCall): MatmulSpan[] {
  const r = resolveMatmul(call);
  const span = (name: MatmulSpan['name'], operand: MatmulOperand, first: number, stride: number, rows: number, ld: number, cols: number): MatmulSpan =>
    ({ name, operand, first, end: first + (r.batch - 1) * stride + (Math.max(rows, 1) - 1) * ld + Math.max(cols, 1) });
  const out = [
    span('a', call.a, r.offA, r.strideA, r.transA ? r.k : r.m, r.lda, r.transA ? r.m : r.k),
    span('b', call.b, r.offB, r.strideB, r.transB ? r.n : r.k, r.ldb, r.transB ? r.k : r.n),
    span('c', call.c, r.offC, r.strideC, r.m, r.ldc, r.n),
  ];
  if (call.bias) out.push(span('bias', call.bias, r.offBias, 0, 1, r.n, r.n));
  if (call.preGelu) out.push(span('preGelu', call.preGelu, r.offP, r.strideP, r.m, r.ldp, r.n));
  return out;
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
