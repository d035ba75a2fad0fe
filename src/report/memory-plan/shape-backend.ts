/// <reference types="@webgpu/types" />
// A backend that stores nothing and computes nothing: it only counts the bytes
// a real backend would hold, so that a training step can be run on it to plan
// memory (like PyTorch's meta device). The step is the real one (the model's
// forward, autograd, autocast's casts, the optimizer), so every tensor it
// allocates and frees, in order, is the real step's; kernels are no-ops and
// reads return zeros. Bytes are counted as the CPU backend counts them
// (elements x item size), or through the WebGPU backend's own buffer pool
// (size classes, reuse of freed blocks, 16-bit values padded to words), given
// the adapter's limits.

import type { Backend, Buf, Fusions, HostArray, MemoryInfo, RawArray, View } from '../../backend/backend.js';
import { BufferPool, type GpuBuf } from '../../backend/webgpu/buffer-pool.js';
import { itemSize, type DType } from '../../dtype/dtype.js';

/** How the planned backend allocates: the CPU backend's exact sizes, or WebGPU's pool under these limits. */
export type Allocator = { kind: 'cpu' } | { kind: 'webgpu'; maxBufferSize: number; maxBindingBytes: number };

interface Counter {
  alloc(dtype: DType, size: number): Buf;
  free(buf: Buf): void;
  memory(): MemoryInfo;
}

/** The CPU backend's byte count: every buffer exactly its elements times their size. */
class ExactCounter implements Counter {
  private bytes = 0;
  private peak = 0;
  private buffers = 0;
  alloc(dtype: DType, size: number): Buf {
    this.bytes += size * itemSize(dtype);
    this.buffers++;
    this.peak = Math.max(this.peak, this.bytes);
    return { dtype, size };
  }
  free(buf: Buf): void {
    this.bytes -= buf.size * itemSize(buf.dtype);
    this.buffers--;
  }
  memory(): MemoryInfo {
    return { buffers: this.buffers, bytes: this.bytes, peakBytes: this.peak };
  }
}

/** Just enough of a GPUDevice for the buffer pool: buffers that hold nothing. */
function placeholderDevice(maxBufferSize: number): GPUDevice {
  const device = {
    limits: { maxBufferSize },
    pushErrorScope: () => {},
    popErrorScope: () => Promise.resolve(null),
    createBuffer: () => ({ destroy: () => {} }),
  };
  return device as unknown as GPUDevice;
}

/** WebGPU's count: the real buffer pool, over buffers that hold nothing. */
class PoolCounter implements Counter {
  private readonly pool: BufferPool;
  constructor(a: { maxBufferSize: number; maxBindingBytes: number }) {
    this.pool = new BufferPool(placeholderDevice(a.maxBufferSize), (e) => { throw e; }, a.maxBindingBytes);
  }
  alloc(dtype: DType, size: number): Buf {
    return this.pool.alloc(dtype, size);
  }
  free(buf: Buf): void {
    this.pool.release(buf as GpuBuf);
  }
  memory(): MemoryInfo {
    const m = this.pool.memory();
    return { buffers: m.buffers, bytes: m.bytes, peakBytes: m.peakBytes };
  }
}

const nothing = (): void => {};

export class ShapeBackend implements Backend, Fusions {
  readonly name = 'shape';
  readonly description: string;
  private readonly counter: Counter;
  private readonly float64: boolean;
  /** The largest single buffer asked for, in bytes of its elements. */
  largest = { bytes: 0, dtype: 'float32' as DType, size: 0 };
  /** Called whenever the peak rises. */
  onPeak: (() => void) | null = null;
  /** Allocations so far: each live buffer's serial number, and its bytes (elements x item size). */
  serial = 0;
  private readonly live = new Map<Buf, { serial: number; bytes: number }>();
  private readonly overLimit = new Set<string>();

  constructor(readonly allocator: Allocator = { kind: 'cpu' }) {
    this.counter = allocator.kind === 'cpu' ? new ExactCounter() : new PoolCounter(allocator);
    this.float64 = allocator.kind === 'cpu';
    this.description = `shape-only (${allocator.kind === 'cpu' ? "the CPU backend's byte counts" : "the WebGPU buffer pool's byte counts"})`;
  }

  supports(dtype: DType): boolean {
    return dtype !== 'float64' || this.float64;
  }

  alloc(dtype: DType, size: number): Buf {
    const before = this.counter.memory().peakBytes;
    const buf = this.counter.alloc(dtype, size);
    const bytes = size * itemSize(dtype);
    this.live.set(buf, { serial: this.serial++, bytes });
    if (bytes > this.largest.bytes) this.largest = { bytes, dtype, size };
    if (this.allocator.kind === 'webgpu' && bytes > this.allocator.maxBindingBytes) this.overLimit.add(`${dtype} ${size}`);
    if (this.counter.memory().peakBytes > before) this.onPeak?.();
    return buf;
  }

  free(buf: Buf): void {
    this.live.delete(buf);
    this.counter.free(buf);
  }

  /** The live buffers allocated since `serial`: their bytes by serial number. */
  liveSince(serial: number): Map<number, number> {
    const out = new Map<number, number>();
    for (const b of this.live.values()) if (b.serial >= serial) out.set(b.serial, b.bytes);
    return out;
  }

  /** How many tensor shapes were larger than one binding (WebGPU's maxStorageBufferBindingSize). */
  get overBinding(): number {
    return this.overLimit.size;
  }

  memory(): MemoryInfo {
    return this.counter.memory();
  }

  readSync(src: View): HostArray {
    return src.dtype === 'int32' ? new Int32Array(src.size) : src.dtype === 'float64' ? new Float64Array(src.size) : new Float32Array(src.size);
  }

  read(src: View): Promise<HostArray> {
    return Promise.resolve(this.readSync(src));
  }

  readRaw(src: View): Promise<RawArray> {
    const d = src.dtype;
    return Promise.resolve(d === 'float16' || d === 'bfloat16' ? new Uint16Array(src.size) : (this.readSync(src) as RawArray));
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  // Every kernel is a no-op: only the allocations around them matter here.
  write = nothing;
  writeRaw = nothing;
  fill = nothing;
  unary = nothing;
  binary = nothing;
  where = nothing;
  copy = nothing;
  dropout = nothing;
  reduce = nothing;
  matmul = nothing;
  gather = nothing;
  scatterAdd = nothing;
  update = nothing;
  cast = nothing;
  causalFill = nothing;
  softmax = nothing;
  softmaxBackward = nothing;
  layerNorm = nothing;
  layerNormBackward = nothing;
  crossEntropy = nothing;
  crossEntropyBackward = nothing;
  attention = nothing;
  attentionBackward = nothing;
  matmulEpilogue = nothing;
  sumOfSquares = nothing;
  magnitudeCounts = nothing;
  quantizedMatmul = nothing;
  sample = nothing;
}
