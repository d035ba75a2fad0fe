// The Backend contract: what a device must do for mixprec to run on it.
//
// A backend owns typed buffers and runs kernels over contiguous views of them.
// It knows nothing of autograd, autocast or tensors: the layers above decide
// what to compute and in which dtype; a backend computes it. Every kernel reads
// its inputs in their storage dtype, computes and accumulates in at least
// float32 (the CPU reference in float64, a GPU kernel in float32), and rounds
// once when it stores to the output's dtype.
//
// Kernels are "fire and forget": a device backend may queue them and run them
// later, in order. Only `read` waits, so a training step never synchronises with
// the host unless somebody asks for a value.
//
// The contract has two parts. The required primitives (memory, transfers,
// elementwise, reduction, matmul, indexing, dropout and the optimizer kernels)
// are what every backend implements. The fusions (`Fusions`) are optional: a
// backend offers a group (a forward with its backward) or leaves it out, and the
// tensor layer then composes the same computation out of primitives
// (src/tensor/fusions.ts), forward and backward.

import type { DType } from '../dtype/dtype.js';
import { MixprecError, type ErrorCode } from '../errors.js';
import type { QuantLayout } from '../dtype/quant.js';
import type { UpdateCall, UpdateRule } from './update-rule.js';

/** A typed allocation on a backend. Opaque above the backend. */
export interface Buf {
  readonly dtype: DType;
  /** Elements. */
  readonly size: number;
}

/** A contiguous run of `size` elements of `buf`, starting at element `offset`. */
export interface View {
  readonly buf: Buf;
  readonly offset: number;
  readonly size: number;
  readonly dtype: DType;
}

export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'relu' | 'gelu' | 'sigmoid'
  | 'abs' | 'square' | 'reciprocal' | 'sign'
  /** x ** scalar */
  | 'pow'
  /** x * scalar + scalar2 */
  | 'affine';

export type BinaryOp =
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum'
  /** Comparisons give 1 or 0 in the output dtype. */
  | 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le'
  /** Backward helpers: first operand is the forward input (or output for tanh/sigmoid), second the output gradient. */
  | 'relu_grad' | 'gelu_grad' | 'tanh_grad' | 'sigmoid_grad';

export type ReduceOp = 'sum' | 'max' | 'min';

/** Element strides and offset of an operand inside a broadcast or permuted iteration space. */
export interface Strided {
  view: View;
  /** Extra element offset into the view. */
  offset: number;
  /** One stride per dimension of the iteration shape; 0 broadcasts. */
  strides: readonly number[];
}

/** Shape of a (batched) matrix product C[b] = op(A[b]) @ op(B[b]): what the required `matmul` takes. */
export interface MatmulShape {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M] (read transposed). */
  transA: boolean;
  /** B is stored [N, K] (read transposed). */
  transB: boolean;
  /** Element stride between consecutive batch matrices; 0 shares one matrix across the batch. */
  strideA: number;
  strideB: number;
}

/** Work fused into a product's store (the optional `matmulEpilogue`), in this order. */
export interface MatmulEpilogue {
  /** Optional bias of length N added to every row. */
  bias?: View;
  /** Apply tanh-GELU after the bias; if `preGelu` is given, the value before it is stored there too. */
  gelu?: boolean;
  preGelu?: View;
  /** Accumulate into C (C += product) instead of overwriting it. */
  accumulate?: boolean;
}

/** A product with its epilogue. */
export type MatmulSpec = MatmulShape & MatmulEpilogue;

/** x [m, k] times a weight-only quantized matrix [n, k] (dtype/quant.ts), with an optional bias and GELU. */
export interface QuantizedMatmulSpec extends QuantLayout {
  m: number;
  bias?: View;
  gelu?: boolean;
}

/**
 * Addressing of one of q, k, v or o in attention: element (b, h, t, d) lives at
 * offset + b*sB + h*sH + t*sT + d. This lets attention read q, k and v straight
 * out of a fused [B, T, 3*D] projection and write o as [B, T, D] without copies.
 */
export interface HeadLayout {
  offset: number;
  sB: number;
  sH: number;
  sT: number;
}

export interface AttentionSpec {
  batch: number;
  heads: number;
  /** Query length and key length. */
  tq: number;
  tk: number;
  headDim: number;
  scale: number;
  causal: boolean;
}

/** How `sample` picks one token per row of logits. */
export interface SampleSpec {
  rows: number;
  cols: number;
  /** Divides the logits; 0 takes the first largest logit. */
  temperature: number;
  /** Keeps the topK largest logits (ties with the k-th kept); 0 keeps all. */
  topK: number;
  /** Then keeps the most probable tokens whose probabilities first reach topP of the total (ties kept); 1 keeps all. */
  topP: number;
}

export interface MemoryInfo {
  /** Live buffers and their bytes as allocated (including a pool's free blocks, if any). */
  buffers: number;
  bytes: number;
  /** Peak of `bytes` since the backend was created. */
  peakBytes: number;
}

export type HostArray = Float32Array | Float64Array | Int32Array;
/** Raw storage bits: fp16/bf16 as Uint16Array, the rest as their own typed array. */
export type RawArray = Float32Array | Float64Array | Int32Array | Uint16Array;

/**
 * Optional kernels: fused (or specialised) forms of computations the tensor
 * layer can also compose out of the required primitives. Each is a kernel of
 * its own on the CPU and WebGPU backends.
 */
export interface Fusions {
  /** Converts (or copies, for equal dtypes) x into out. Composed: a contiguous `copy`. */
  cast(x: View, out: View): void;
  /** Upper-triangle fill: for the last two dims [.., T, S], positions with s > t + (S - T) get `value`. */
  causalFill(x: View, out: View, rows: number, t: number, s: number, value: number): void;
  /** Softmax (or log-softmax) of rows x cols, reduced over cols. */
  softmax(x: View, out: View, rows: number, cols: number, log: boolean): void;
  softmaxBackward(y: View, gy: View, out: View, rows: number, cols: number, log: boolean): void;
  layerNorm(x: View, weight: View | null, bias: View | null, out: View, mean: View, rstd: View, rows: number, cols: number, eps: number): void;
  layerNormBackward(
    x: View, weight: View | null, mean: View, rstd: View, gy: View,
    gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
  ): void;
  /**
   * Mean cross-entropy of logits [rows, cols] against int32 targets, ignoring
   * targets equal to ignoreIndex. Writes the mean to loss[0], the number of
   * counted rows to count[0] and each row's log-sum-exp to lse. Any other target
   * outside [0, cols) raises IndexOutOfRangeError, when gather would.
   */
  crossEntropy(logits: View, targets: View, loss: View, lse: View, count: View, rows: number, cols: number, ignoreIndex: number): void;
  /** out = (softmax(logits) - onehot(targets)) * gy[0] / count[0], zero on ignored rows. */
  crossEntropyBackward(
    logits: View, targets: View, lse: View, count: View, gy: View, out: View,
    rows: number, cols: number, ignoreIndex: number,
  ): void;
  /** softmax(q k^T * scale, causal) v per (batch, head); lse gets each query's log-sum-exp [batch, heads, tq]. */
  attention(
    q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
    o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
  ): void;
  attentionBackward(
    q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
    o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout,
    gq: View, gqL: HeadLayout, gk: View, gkL: HeadLayout, gv: View, gvL: HeadLayout,
    spec: AttentionSpec,
  ): void;
  /** A product with bias, GELU (saving the value before it) or accumulation applied as it is stored. */
  matmulEpilogue(a: View, b: View, out: View, spec: MatmulSpec): void;
  /**
   * out[m, j] = gelu?(bias[j] + sum over groups g of scales[j, g] * sum over i in g of x[m, i] * q[j, i]),
   * dequantizing the packed int32 words of q inside the product (no float copy of
   * the matrix), accumulating in float32. Composed: dequantize, then matmul.
   */
  quantizedMatmul(x: View, words: View, scales: View, out: View, spec: QuantizedMatmulSpec): void;
  /**
   * One token id per row of logits [rows, cols] into int32 out [rows]: the first
   * index whose running sum of kept probabilities (exp(logit / temperature - max / temperature),
   * in index order) reaches uniforms[row] (in [0, 1)) times their total; -1 for a
   * row holding a non-finite logit. Composed: the CPU reference over synchronous reads.
   */
  sample(logits: View, uniforms: View, out: View, spec: SampleSpec): void;
  /** Sum of squares of every element of every view, accumulated in at least float32 into out[0] (overwritten): gradient norms in one pass. */
  sumOfSquares(views: readonly View[], out: View): void;
  /**
   * Magnitude counts of each view k into float32 out[k * (T + 2) ..] for T ascending
   * float32 `thresholds` >= 0: the number of elements with |x| >= thresholds[j]
   * (NaN counts nowhere), then the largest |x| (0 when every value is NaN) and the
   * smallest nonzero |x| (Infinity when there is none): tensor statistics in one pass per view.
   */
  magnitudeCounts(views: readonly View[], thresholds: readonly number[], out: View): void;
}

/** The fusions in the groups a backend offers together (a forward with its backward): a partial group is not used. */
export const FUSION_GROUPS = [
  ['cast'], ['causalFill'], ['softmax', 'softmaxBackward'], ['layerNorm', 'layerNormBackward'],
  ['crossEntropy', 'crossEntropyBackward'], ['attention', 'attentionBackward'], ['matmulEpilogue'], ['sumOfSquares'], ['magnitudeCounts'], ['quantizedMatmul'], ['sample'],
] as const satisfies readonly (readonly (keyof Fusions)[])[];

// Every member of Fusions is in a group (a compile error otherwise).
const everyFusionGrouped: [keyof Fusions] extends [(typeof FUSION_GROUPS)[number][number]] ? true : never = true;
void everyFusionGrouped;

/** The required primitives, and whichever fusions the backend offers. */
export interface Backend extends Partial<Fusions> {
  readonly name: string;
  /** Human-readable description of the device, for logs. */
  readonly description: string;
  /** Dtypes this backend can store. */
  supports(dtype: DType): boolean;

  // Memory
  alloc(dtype: DType, size: number): Buf;
  free(buf: Buf): void;
  memory(): MemoryInfo;

  // Transfers
  /** Writes host numbers, rounded to the view's dtype. */
  write(dst: View, data: ArrayLike<number>): void;
  /** Writes raw storage bits (fp16/bf16 as 16-bit patterns). */
  writeRaw(dst: View, data: RawArray): void;
  /** Reads values widened to numbers: float64 as Float64Array, int32 as Int32Array, other floats as Float32Array. */
  read(src: View): Promise<HostArray>;
  readRaw(src: View): Promise<RawArray>;
  /** Synchronous read, where the backend can do it (the CPU backend); undefined elsewhere. A capability, not a primitive. */
  readSync?(src: View): HostArray;
  /** Submits queued work and resolves when the device has finished it. */
  sync(): Promise<void>;

  // Elementwise
  fill(out: View, value: number): void;
  unary(op: UnaryOp, x: View, out: View, scalar?: number, scalar2?: number): void;
  /** out[i] = a[i] op b[i] over `shape`, with a and b addressed by their strides (broadcasting). */
  binary(op: BinaryOp, a: Strided, b: Strided, out: View, shape: readonly number[]): void;
  /** out = cond != 0 ? a : b, broadcasting. */
  where(cond: Strided, a: Strided, b: Strided, out: View, shape: readonly number[]): void;
  /** out (contiguous or strided) gets src addressed by strides over `shape`, converting dtypes: permute, expand, slice, concatenate, cast. */
  copy(src: Strided, dst: Strided, shape: readonly number[]): void;
  /** y = keep ? x / (1 - p) : 0, keep drawn from the counter-based stream (key, start + i). */
  dropout(x: View, out: View, p: number, key: number, start: number): void;

  // Reductions over the middle axis of [outer, r, inner]
  reduce(op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number): void;

  // Linear algebra
  matmul(a: View, b: View, out: View, spec: MatmulShape): void;

  // Indexing
  /**
   * out[i, :] = table[ids[i], :]. An id outside the table raises IndexOutOfRangeError
   * (here, or on a device backend from the next read or sync; the rows it gathered are then zeros).
   */
  gather(table: View, ids: View, out: View, n: number, dim: number): void;
  /** out[ids[i], :] += g[i, :]; out must hold the table's shape (it is accumulated into). Ids are checked as in gather. */
  scatterAdd(g: View, ids: View, out: View, n: number, dim: number): void;

  // Multi-tensor update for mixed-precision training
  /**
   * Applies an update rule (update-rule.ts: the optimizers, gradient unscaling,
   * the loss-scale rule) to every tensor of the call, under the rule's skip flag.
   */
  update(rule: UpdateRule, call: UpdateCall): void;
}

export class BackendError extends MixprecError {
  override readonly code: ErrorCode = 'BACKEND_FAILED';
}

/**
 * A token id outside its embedding table, or a class target outside the logits
 * (and not the ignore index). `position` is the flat index into the ids or
 * targets. The CPU backend throws it from the op; a device backend records the
 * first bad entry on the device and throws it from the next read or sync.
 */
export class IndexOutOfRangeError extends BackendError {
  override readonly code: ErrorCode = 'INDEX_OUT_OF_RANGE';
  constructor(
    readonly what: 'token id' | 'target', readonly position: number, readonly value: number,
    /** Valid values are 0 .. limit - 1 (and ignoreIndex, for targets). */
    readonly limit: number, readonly ignoreIndex?: number,
  ) {
    const valid = what === 'token id'
      ? `the embedding table has ${limit} rows (valid ids 0..${limit - 1})`
      : `the logits have ${limit} classes (valid targets 0..${limit - 1}, or the ignore index ${ignoreIndex})`;
    super(`${what} ${value} at position ${position} is out of range: ${valid}`);
  }
}

export function view(buf: Buf, offset = 0, size = buf.size - offset): View {
  return { buf, offset, size, dtype: buf.dtype };
}

/** Row-major strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function contiguous(v: View, shape: readonly number[]): Strided {
  return { view: v, offset: 0, strides: contiguousStrides(shape) };
}
