/// <reference types="@webgpu/types" />
// The WebGPU backend: WGSL kernels over pooled GPU buffers, recorded into a
// shared command encoder and submitted in groups, so a training step never
// waits for the device unless something is read.
//
// Storage follows storage.ts: float32 and int32 as themselves, float16 and
// bfloat16 as 16-bit halves of u32 words (float16 read natively where the
// adapter has shader-f16); every store to a 16-bit dtype rounds exactly as the
// CPU backend does. float64 is not supported.

import type { DType } from '../../dtype/dtype.js';
import {
  decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16, float32Bits, toBFloat16Bits, toFloat16Bits,
} from '../../dtype/codec.js';
import {
  BackendError, contiguousStrides,
  type AttentionSpec, type Backend, type QuantizedMatmulSpec, type SampleSpec, type Fusions, type BinaryOp, type Buf, type HeadLayout, type HostArray,
  type MatmulSpec, type MemoryInfo, type RawArray, type ReduceOp, type Strided,
  type UnaryOp, type View,
} from '../backend.js';
import { registerBackend } from '../registry.js';
import type { UpdateCall, UpdateRule } from '../update-rule.js';
import { dropoutThreshold } from '../random.js';
import { OFFSET_ALIGN } from './constants.js';
import { acquireDevice, type AdapterInfo, type DeviceOptions } from './device.js';
import { GpuBuf, Runtime } from './runtime.js';
import { is16Bit, nonzeroMask } from './storage.js';
import * as ew from './kernels/elementwise.js';
import { byRowRanges, tooLarge } from './split.js';
import {
  gatherRows, layerNormBackwardInParts, matmulAlongK, matmulFits, matmulParts, reduceInParts, updateRanges, viewRanges,
} from './split-ops.js';
import * as nn from './kernels/nn.js';
import * as embedding from './kernels/embedding.js';
import { IndexChecks } from './kernels/index-check.js';
import * as attn from './kernels/attention.js';
import * as optim from './kernels/optim.js';
import * as stats from './kernels/stats.js';
import { matmulSimple } from './kernels/matmul-simple.js';
import { quantizedMatmul } from './kernels/quantized-matmul.js';
import { sample } from './kernels/sample.js';
import { MatmulKernels, type MatmulCall, type MatmulKernelsOptions } from './kernels/matmul.js';
import { matmulSpans, type MatmulSpan } from './kernels/matmul-plan.js';

export { WebGPUUnavailableError, DeviceLostError, GPUOutOfMemoryError, BufferTooLargeError, GPUValidationError } from './errors.js';
export type { AdapterInfo, DeviceOptions } from './device.js';

export interface WebGPUBackendOptions extends DeviceOptions {
  /** An existing device to run on (the caller keeps ownership of its adapter). */
  device?: GPUDevice;
  /** Dispatches recorded before a group of commands is submitted (default 48). */
  dispatchesPerSubmit?: number;
  /** Register the backend with the registry under 'webgpu' (default true). */
  register?: boolean;
  /** Report WGSL compilation errors on the console with the offending line (debugging). */
  checkShaders?: boolean;
  /** Time every kernel on the device (timestamp queries; slower): see `profile()`. */
  profile?: boolean;
  /** Attention kernels: 'auto' (subgroup kernels where the adapter has a fixed subgroup size) or 'tiled'. */
  attention?: 'auto' | 'tiled';
  /**
   * The matmul kernels: 'fast' (default: the tuned kernels of kernels/matmul.ts, picked for the
   * adapter) or 'simple' (a plain tiled kernel); or options for the tuned kernels.
   */
  matmul?: 'fast' | 'simple' | MatmulKernelsOptions;
  /**
   * Bind at most this many bytes of a buffer (default: the adapter's maxStorageBufferBindingSize;
   * or the environment variable MIXPREC_WEBGPU_MAX_BINDING). Larger tensors are processed in parts
   * (split.ts); a low value makes small models take those paths (tests).
   */
  maxBindingBytes?: number;
  /**
   * Make buffers of at most this many bytes (default: the adapter's maxBufferSize; or the
   * environment variable MIXPREC_WEBGPU_MAX_BUFFER). A larger tensor is held in several buffers;
   * a low value makes small models take that path (tests). Bindings are then no larger either.
   */
  maxBufferBytes?: number;
}

/** A byte limit: the option, or the environment variable where the option is absent. */
function byteLimit(option: 'maxBindingBytes' | 'maxBufferBytes', given: number | undefined, variable: string): number | undefined {
  const env = typeof process !== 'undefined' ? process.env?.[variable] : undefined;
  const value = given ?? (env ? Number(env) : undefined);
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 4096) {
    const source = given !== undefined ? `the option ${option}` : variable;
    throw new BackendError(`webgpu: ${source} is ${given ?? env}; it must be a whole number of bytes, at least 4096`);
  }
  return value;
}

/** The binding and buffer limits the options or the environment set. */
function byteLimits(opts: WebGPUBackendOptions): { maxBindingBytes?: number; maxBufferBytes?: number } {
  return {
    maxBindingBytes: byteLimit('maxBindingBytes', opts.maxBindingBytes, 'MIXPREC_WEBGPU_MAX_BINDING'),
    maxBufferBytes: byteLimit('maxBufferBytes', opts.maxBufferBytes, 'MIXPREC_WEBGPU_MAX_BUFFER'),
  };
}

/**
 * `call` with each operand rebased onto the buffer of its block that holds all it touches (as the
 * tuned kernels bind it: from the aligned start below its first element), or null where one straddles two.
 */
function onSegments(call: MatmulCall, bufs: Record<MatmulSpan['name'], Buf | undefined>): MatmulCall | null {
  const rebased: Partial<MatmulCall> = {};
  for (const s of matmulSpans(call)) {
    const block = (bufs[s.name] as GpuBuf).block;
    const bytes = is16Bit(s.operand.dtype) ? 2 : 4;
    const start = Math.floor((s.first * bytes) / OFFSET_ALIGN) * OFFSET_ALIGN;
    const [piece, more] = block.pieces(start, Math.min(block.bytes, Math.ceil((s.end * bytes) / 16) * 16) - start);
    if (more) return null;
    const segmentStart = start - piece!.at;
    rebased[s.name] = { ...s.operand, buffer: piece!.buffer, offset: s.first - segmentStart / bytes };
  }
  return { ...call, ...rebased };
}

function contiguous1(v: View): Strided {
  return { view: v, offset: 0, strides: [1] };
}

/** The bits of `value` stored as `dtype` (fill constants), rounded as the CPU backend rounds them. */
function constantBits(value: number, dtype: DType): number {
  switch (dtype) {
    case 'float32': return float32Bits(value);
    case 'int32': return value | 0;
    case 'float16': return toFloat16Bits(value);
    case 'bfloat16': return toBFloat16Bits(value);
    case 'float64': throw new BackendError('webgpu: float64 is not supported');
  }
}

/** Implements every primitive and offers every fusion. */
export class WebGPUBackend implements Backend, Fusions {
  readonly name = 'webgpu';
  readonly description: string;
  readonly rt: Runtime;
  /** Held so that Dawn keeps delivering callbacks (mapAsync, work done) in Node; dropped by destroy(). */
  private gpu: GPU | null;
  /** The tuned matmul kernels, or null for the simple one. */
  private readonly matmulKernels: MatmulKernels | null;
  /** Range checks of ids and targets, raised at the next read or sync. */
  private readonly indexChecks: IndexChecks;

  constructor(device: GPUDevice, readonly adapterInfo: AdapterInfo, opts: WebGPUBackendOptions = {}, gpu: GPU | null = null) {
    this.gpu = gpu;
    this.rt = new Runtime(device, {
      nativeF16: adapterInfo.hasF16,
      subgroups: adapterInfo.hasSubgroups,
      subgroupSize: adapterInfo.subgroupSize,
      isSoftware: adapterInfo.isSoftware,
      dispatchesPerSubmit: opts.dispatchesPerSubmit,
      checkShaders: opts.checkShaders,
      profile: opts.profile,
      attention: opts.attention,
      ...byteLimits(opts),
    });
    this.indexChecks = new IndexChecks(this.rt);
    this.description = `WebGPU: ${adapterInfo.description}${adapterInfo.hasF16 ? ', shader-f16' : ''}`;
    const mm = opts.matmul ?? 'fast';
    this.matmulKernels = mm === 'simple' ? null : new MatmulKernels(device, adapterInfo, mm === 'fast' ? {} : mm);
  }

  supports(dtype: DType): boolean {
    return dtype !== 'float64';
  }

  // ---- memory and transfers ----

  alloc(dtype: DType, size: number): Buf {
    if (dtype === 'float64') throw new BackendError('webgpu: float64 is not supported on WebGPU (use float32)');
    return this.rt.alloc(dtype, size);
  }

  free(buf: Buf): void {
    this.rt.release(buf as GpuBuf);
  }

  /** Live buffers plus the pool's free blocks (see Runtime.memory); flat from one training step to the next. */
  memory(): MemoryInfo {
    return this.rt.memory();
  }

  /** Gives the pool's free blocks back to the device. */
  trim(): void {
    this.rt.trim();
    this.matmulKernels?.clearBindGroups();
  }

  write(dst: View, data: ArrayLike<number>): void {
    if (data.length !== dst.size) throw new BackendError(`webgpu: write of ${data.length} values into ${dst.size} elements`);
    let raw: RawArray;
    switch (dst.dtype) {
      case 'float32': raw = data instanceof Float32Array ? data : Float32Array.from(data); break;
      case 'int32': raw = data instanceof Int32Array ? data : Int32Array.from(data); break;
      case 'float16': raw = new Uint16Array(dst.size); encodeFloat16(data, raw); break;
      case 'bfloat16': raw = new Uint16Array(dst.size); encodeBFloat16(data, raw); break;
      default: throw new BackendError(`webgpu: cannot write ${dst.dtype}`);
    }
    this.writeRaw(dst, raw);
  }

  writeRaw(dst: View, data: RawArray): void {
    if (data.length !== dst.size) throw new BackendError(`webgpu: write of ${data.length} values into ${dst.size} elements`);
    if (dst.size === 0) return;
    const buf = dst.buf as GpuBuf;
    if (buf.freed) throw new BackendError('webgpu: write into a freed buffer');
    const width = is16Bit(dst.dtype) ? 2 : 4;
    if (data.BYTES_PER_ELEMENT !== width) {
      throw new BackendError(`webgpu: raw write into ${dst.dtype} needs ${width}-byte elements, got ${data.constructor.name}`);
    }
    if (width === 4) {
      this.rt.writeBytes(buf.block, dst.offset * 4, data);
      return;
    }
    const even = dst.offset % 2 === 0;
    if (even && dst.size % 2 === 0) {
      this.rt.writeBytes(buf.block, dst.offset * 2, data);
    } else if (even && dst.offset + dst.size === buf.size) {
      // The half after the last element is padding: write it too.
      const padded = new Uint16Array(dst.size + 1);
      padded.set(data as Uint16Array);
      this.rt.writeBytes(buf.block, dst.offset * 2, padded);
    } else {
      // The edge words hold neighbours' halves: stage the data and copy it on the device.
      const tmp = this.rt.alloc(dst.dtype, dst.size);
      try {
        const padded = new Uint16Array(dst.size + (dst.size % 2));
        padded.set(data as Uint16Array);
        this.rt.writeBytes(tmp.block, 0, padded);
        this.copy(contiguous1({ buf: tmp, offset: 0, size: dst.size, dtype: dst.dtype }), contiguous1(dst), [dst.size]);
      } finally {
        this.rt.release(tmp);
      }
    }
  }

  async readRaw(src: View): Promise<RawArray> {
    // Both copies are recorded before either wait, so the index-check record costs no second round trip.
    const [raw] = await Promise.all([this.readBits(src), this.indexChecks.raise()]);
    return raw;
  }

  private async readBits(src: View): Promise<RawArray> {
    const buf = src.buf as GpuBuf;
    if (buf.freed) throw new BackendError('webgpu: read of a freed buffer');
    if (src.size === 0) return is16Bit(src.dtype) ? new Uint16Array(0) : src.dtype === 'int32' ? new Int32Array(0) : new Float32Array(0);
    if (!is16Bit(src.dtype)) {
      const bytes = await this.rt.readBytes(buf.block, src.offset * 4, src.size * 4);
      return src.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
    }
    const w0 = Math.floor(src.offset / 2), w1 = Math.ceil((src.offset + src.size) / 2);
    const bytes = await this.rt.readBytes(buf.block, w0 * 4, (w1 - w0) * 4);
    const first = src.offset % 2;
    return new Uint16Array(bytes).slice(first, first + src.size);
  }

  async read(src: View): Promise<HostArray> {
    const raw = await this.readRaw(src);
    if (src.dtype === 'float16') { const out = new Float32Array(src.size); decodeFloat16(raw as Uint16Array, out); return out; }
    if (src.dtype === 'bfloat16') { const out = new Float32Array(src.size); decodeBFloat16(raw as Uint16Array, out); return out; }
    return raw as HostArray;
  }

  async sync(): Promise<void> {
    await this.rt.sync();
    await this.indexChecks.raise();
  }

  /** Device milliseconds and calls per kernel so far (with the `profile` option). */
  profile(): Promise<Map<string, { count: number; ms: number }>> {
    return this.rt.profile();
  }

  /** Releases the device and its buffers; the backend cannot be used afterwards. */
  destroy(): void {
    this.rt.destroy();
    this.gpu = null;
  }

  // ---- elementwise ----

  fill(out: View, value: number): void {
    ew.elementwise(this.rt, {
      key: 'fill', out: contiguous1(out), shape: [out.size], body: 'return P.u0;', bits: true, u: [constantBits(value, out.dtype)],
    });
  }

  cast(x: View, out: View): void {
    if (x.size !== out.size) throw new BackendError(`webgpu: cast of ${x.size} elements into ${out.size}`);
    this.copy(contiguous1(x), contiguous1(out), [out.size]);
  }

  unary(op: UnaryOp, x: View, out: View, scalar = 0, scalar2 = 0): void {
    const f = op === 'affine' ? [scalar ?? 1, scalar2 ?? 0] : op === 'pow' ? [scalar] : [];
    ew.elementwise(this.rt, {
      key: `unary:${op}`, out: contiguous1(out), shape: [out.size],
      inputs: [{ name: 'x', src: contiguous1(x) }], body: `return ${ew.UNARY_WGSL[op]};`, f,
    });
  }

  binary(op: BinaryOp, a: Strided, b: Strided, out: View, shape: readonly number[]): void {
    ew.elementwise(this.rt, {
      key: `binary:${op}`, out: { view: out, offset: 0, strides: contiguousStrides(shape) }, shape,
      inputs: [{ name: 'a', src: a }, { name: 'b', src: b }], body: `return ${ew.BINARY_WGSL[op]};`,
    });
  }

  where(cond: Strided, a: Strided, b: Strided, out: View, shape: readonly number[]): void {
    const bits = a.view.dtype === out.dtype && b.view.dtype === out.dtype;
    ew.elementwise(this.rt, {
      key: 'where', out: { view: out, offset: 0, strides: contiguousStrides(shape) }, shape, bits,
      inputs: [{ name: 'c', src: cond, raw: true }, { name: 'a', src: a }, { name: 'b', src: b }],
      body: 'if ((c & P.u0) != 0u) { return a; } return b;', u: [nonzeroMask(cond.view.dtype)],
    });
  }

  copy(src: Strided, dst: Strided, shape: readonly number[]): void {
    ew.elementwise(this.rt, {
      key: 'copy', out: dst, shape, bits: src.view.dtype === dst.view.dtype,
      inputs: [{ name: 'x', src }], body: 'return x;',
    });
  }

  dropout(x: View, out: View, p: number, key: number, start: number): void {
    const threshold = dropoutThreshold(p);
    ew.elementwise(this.rt, {
      key: 'dropout', out: contiguous1(out), shape: [out.size], random: true,
      inputs: [{ name: 'x', src: contiguous1(x) }],
      body: 'if ((random_bits(P.u0, P.u1 + i) >> 8u) >= P.u2) { return x * P.f0; } return 0.0;',
      f: [1 / (1 - p)], u: [key, start, threshold],
    });
  }

  causalFill(x: View, out: View, rows: number, t: number, s: number, value: number): void {
    const bits = x.dtype === out.dtype;
    ew.elementwise(this.rt, {
      key: 'causalFill', out: contiguous1(out), shape: [rows * t * s], bits,
      inputs: [{ name: 'x', src: contiguous1(x) }],
      body: `let j = i % P.u0; let r = (i / P.u0) % P.u1;
  if (i32(j) > i32(r) + bitcast<i32>(P.u2)) { return ${bits ? 'P.u3' : 'P.f0'}; }
  return x;`,
      u: bits ? [s, t, s - t, constantBits(value, out.dtype)] : [s, t, s - t], f: bits ? [] : [value],
    });
  }

  reduce(op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number): void {
    reduceInParts(this.rt, op, x, out, outer, r, inner);
  }

  matmul(a: View, b: View, out: View, spec: MatmulSpec): void {
    const kernels = this.matmulKernels;
    if ([a, b, out].some((v) => v.dtype === 'int32')) throw new BackendError(`webgpu: matmul of ${a.dtype} x ${b.dtype} -> ${out.dtype}: integer matmul is not supported`);
    // A block held in several buffers is named by its first here; onSegments rebases the parts onto the right ones.
    const operand = (v: View) => ({ buffer: (v.buf as GpuBuf).block.segments[0]!, dtype: v.dtype as 'float32', offset: v.offset });
    const call: MatmulCall = {
      batch: spec.batch, m: spec.m, n: spec.n, k: spec.k, transA: spec.transA, transB: spec.transB,
      a: { ...operand(a), batchStride: spec.strideA },
      b: { ...operand(b), batchStride: spec.strideB },
      c: operand(out),
      bias: spec.bias && operand(spec.bias),
      gelu: spec.gelu,
      preGelu: spec.preGelu && operand(spec.preGelu),
      accumulate: spec.accumulate,
    };
    const views = [a, b, out, spec.bias, spec.preGelu].filter((v): v is View => !!v);
    for (const v of views) if ((v.buf as GpuBuf).freed) throw new BackendError('webgpu: matmul used a freed buffer');
    // Profiles name the shape, so the costs of the forward and the two backward products show apart.
    const label = this.rt.opts.profile
      ? `matmul ${spec.batch > 1 ? `${spec.batch}x` : ''}${spec.m}x${spec.n}x${spec.k} ${spec.transA ? 'T' : 'N'}${spec.transB ? 'T' : 'N'} ${[a, b, out].map((v) => v.dtype.replace('float', 'f').replace('bf', 'bf')).join(',')}`
      : 'matmul';
    const parts = matmulFits(this.rt, call) ? [call] : matmulParts(this.rt, call);
    if ((out.dtype !== 'float32' || spec.gelu) && parts.some((p) => p.k < call.k)) {
      matmulAlongK(this, (acc, s) => this.matmul(a, b, acc, s), out, spec);
      return;
    }
    const bufs = { a: a.buf, b: b.buf, c: out.buf, bias: spec.bias?.buf, preGelu: spec.preGelu?.buf };
    if (!kernels) {
      for (const p of parts) matmulSimple(this.rt, p, bufs);
      return;
    }
    const blocks = views.map((v) => (v.buf as GpuBuf).block);
    if (blocks.every((b) => b.segments.length === 1)) {
      this.rt.encodeExternal(label, blocks, (pass) => { for (const p of parts) kernels.encode(pass, p); });
      return;
    }
    // Operands held in several buffers: a part whose operands each lie in one of their buffers takes the
    // tuned kernels on those; a part with one that straddles two takes the simple kernel, which stages it.
    for (const p of parts) {
      const local = onSegments(p, bufs);
      if (local) this.rt.encodeExternal(label, blocks, (pass) => kernels.encode(pass, local));
      else matmulSimple(this.rt, p, bufs);
    }
  }

  /** The tuned kernels apply the epilogue as they store. */
  matmulEpilogue(a: View, b: View, out: View, spec: MatmulSpec): void {
    this.matmul(a, b, out, spec);
  }

  quantizedMatmul(x: View, words: View, scales: View, out: View, spec: QuantizedMatmulSpec): void {
    quantizedMatmul(this.rt, x, words, scales, out, spec);
  }

  sample(logits: View, uniforms: View, out: View, spec: SampleSpec): void {
    sample(this.rt, logits, uniforms, out, spec);
  }

  // ---- fused transformer kernels ----

  softmax(x: View, out: View, rows: number, cols: number, log: boolean): void {
    byRowRanges(this.rt, 'softmax', rows, [{ view: x, perRow: cols }, { view: out, perRow: cols }],
      ([xp, op], n) => nn.softmax(this.rt, xp!, op!, n, cols, log));
  }

  softmaxBackward(y: View, gy: View, out: View, rows: number, cols: number, log: boolean): void {
    byRowRanges(this.rt, 'softmaxBackward', rows, [{ view: y, perRow: cols }, { view: gy, perRow: cols }, { view: out, perRow: cols }],
      ([yp, gp, op], n) => nn.softmaxBackward(this.rt, yp!, gp!, op!, n, cols, log));
  }

  layerNorm(x: View, weight: View | null, bias: View | null, out: View, mean: View, rstd: View, rows: number, cols: number, eps: number): void {
    byRowRanges(this.rt, 'layerNorm', rows, [
      { view: x, perRow: cols }, { view: weight, perRow: 0 }, { view: bias, perRow: 0 },
      { view: out, perRow: cols }, { view: mean, perRow: 1 }, { view: rstd, perRow: 1 },
    ], ([xp, w, b, op, mp, rp], n) => nn.layerNorm(this.rt, xp!, w!, b!, op!, mp!, rp!, n, cols, eps));
  }

  layerNormBackward(
    x: View, weight: View | null, mean: View, rstd: View, gy: View,
    gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
  ): void {
    layerNormBackwardInParts(this.rt, x, weight, mean, rstd, gy, gx, gw, gb, rows, cols);
  }

  gather(table: View, ids: View, out: View, n: number, dim: number): void {
    const bits = table.dtype === out.dtype;
    const rows = table.size / dim;
    // An id out of range gives a row of zeros (all-zero bits in every dtype) and the error at the next read.
    if (tooLarge(this.rt, [table.buf])) gatherRows(this.rt, table, ids, out, n, dim);
    else ew.elementwise(this.rt, {
      key: 'gather', out: contiguous1(out), shape: [n * dim], bits,
      aux: [{ name: 'ids', view: ids }, { name: 'table', view: table, bits }],
      body: `let row = loadi_ids(P.o_ids + i / P.u0);
  if (row < 0 || u32(row) >= P.u1) { return ${bits ? '0u' : '0.0'}; }
  return ${bits ? 'loadbits_table' : 'load_table'}(P.o_table + u32(row) * P.u0 + i % P.u0);`,
      u: [dim, rows],
    });
    this.indexChecks.check(ids, n, rows, 'token id');
  }

  scatterAdd(g: View, ids: View, out: View, n: number, dim: number): void {
    embedding.scatterAdd(this.rt, g, ids, out, n, dim);
    this.indexChecks.check(ids, n, out.size / dim, 'token id');
  }

  crossEntropy(logits: View, targets: View, loss: View, lse: View, count: View, rows: number, cols: number, ignoreIndex: number): void {
    this.indexChecks.check(targets, rows, cols, 'target', ignoreIndex);
    nn.crossEntropy(this.rt, logits, targets, loss, lse, count, rows, cols, ignoreIndex);
  }

  crossEntropyBackward(
    logits: View, targets: View, lse: View, count: View, gy: View, out: View,
    rows: number, cols: number, ignoreIndex: number,
  ): void {
    byRowRanges(this.rt, 'crossEntropyBackward', rows, [
      { view: logits, perRow: cols }, { view: targets, perRow: 1 }, { view: lse, perRow: 1 }, { view: out, perRow: cols },
    ], ([l, t, s, o], n) => this.crossEntropyBackwardPart(l!, t!, s!, count, gy, o!, n, cols, ignoreIndex));
  }

  private crossEntropyBackwardPart(
    logits: View, targets: View, lse: View, count: View, gy: View, out: View,
    rows: number, cols: number, ignoreIndex: number,
  ): void {
    if (nn.crossEntropyBackwardRows(this.rt, logits, targets, lse, count, gy, out, rows, cols, ignoreIndex)) return;
    ew.elementwise(this.rt, {
      key: 'crossEntropyBackward', out: contiguous1(out), shape: [rows * cols],
      inputs: [{ name: 'x', src: contiguous1(logits) }],
      aux: [{ name: 'targets', view: targets }, { name: 'lse', view: lse }, { name: 'count', view: count }, { name: 'gy', view: gy }],
      body: `let r = i / P.u0;
  let t = loadi_targets(P.o_targets + r);
  if (t == bitcast<i32>(P.u1)) { return 0.0; }
  let scale = load_gy(P.o_gy) / load_count(P.o_count);
  let g = exp(x - load_lse(P.o_lse + r)) * scale;
  return select(g, g - scale, u32(t) == i % P.u0);`,
      u: [cols, ignoreIndex | 0],
    });
  }

  attention(
    q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
    o: View, oL: HeadLayout, lse: View, spec: AttentionSpec,
  ): void {
    attn.attention(this.rt, q, qL, k, kL, v, vL, o, oL, lse, spec);
  }

  attentionBackward(
    q: View, qL: HeadLayout, k: View, kL: HeadLayout, v: View, vL: HeadLayout,
    o: View, oL: HeadLayout, lse: View, go: View, goL: HeadLayout,
    gq: View, gqL: HeadLayout, gk: View, gkL: HeadLayout, gv: View, gvL: HeadLayout,
    spec: AttentionSpec,
  ): void {
    attn.attentionBackward(this.rt, q, qL, k, kL, v, vL, o, oL, lse, go, goL, gq, gqL, gk, gkL, gv, gvL, spec);
  }

  // ---- multi-tensor kernels ----

  sumOfSquares(views: readonly View[], out: View): void {
    optim.sumOfSquares(this.rt, viewRanges(this.rt, views), out);
  }

  magnitudeCounts(views: readonly View[], thresholds: readonly number[], out: View): void {
    stats.magnitudeCounts(this.rt, views, thresholds, out);
  }

  update(rule: UpdateRule, call: UpdateCall): void {
    optim.update(this.rt, rule, updateRanges(this.rt, rule, call));
  }
}

/**
 * A WebGPU backend on the best adapter available (or on `opts.device`),
 * registered as 'webgpu'. Throws WebGPUUnavailableError, saying why, where
 * there is none.
 */
export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
  byteLimits(opts); // a bad value fails before a device is taken
  let backend: WebGPUBackend;
  if (opts.device) {
    const d = opts.device;
    const info: AdapterInfo = {
      description: 'caller-provided device', vendor: '', architecture: '', device: '', isSoftware: false,
      hasF16: opts.useF16 !== false && d.features.has('shader-f16'),
      hasSubgroups: opts.useSubgroups !== false && d.features.has('subgroups'),
      subgroupSize: 0,
    };
    backend = new WebGPUBackend(d, info, opts);
  } else {
    const { device, info, gpu } = await acquireDevice(opts);
    backend = new WebGPUBackend(device, info, opts, gpu);
  }
  if (opts.register !== false) registerBackend(backend);
  return backend;
}
