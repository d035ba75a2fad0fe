/// <reference types="@webgpu/types" />
// Command batching, the layer under every kernel: dispatches are recorded into
// one shared command encoder and submitted in groups, with their parameters in
// the uniform arena (uniform-arena.ts), buffers from the pool (buffer-pool.ts)
// and pipelines from the cache (pipeline-cache.ts); and read-back.
//
// Ordering. `queue.writeBuffer` runs before command buffers that are not yet
// submitted. So (1) the uniform arena of a group is written just before that
// group is submitted, and (2) a host write into a buffer that the pending group
// uses (say a pooled buffer that was freed and handed out again) submits the
// group first. GPU-side reuse of a pooled buffer needs nothing: dispatches run
// in the order they were recorded. Destroying pooled buffers (trim) submits the
// pending group first, since recorded commands may use them.

import type { DType } from '../../dtype/dtype.js';
import type { MemoryInfo } from '../backend.js';
import { BackendError } from '../backend.js';
import { BufferPool, GpuBuf, type Block } from './buffer-pool.js';
import { BUFFER_COPY_DST, BUFFER_MAP_READ, MAP_READ } from './constants.js';
import { deviceWait } from './device-wait.js';
import { BufferTooLargeError, DeviceLostError, GPUOutOfMemoryError, GPUValidationError } from './errors.js';
import { PipelineCache, type Arg, type KernelSource, type Physical } from './pipeline-cache.js';
import { Profiler, type KernelProfile } from './profiler.js';
import { UNIFORM_BINDING_BYTES, UniformArena } from './uniform-arena.js';

export { GpuBuf, type Block } from './buffer-pool.js';
export type { Arg, KernelSource, ParamType } from './pipeline-cache.js';
export type { KernelProfile } from './profiler.js';

export interface RuntimeOptions {
  /** Dispatches recorded before a group is submitted (default 48). */
  dispatchesPerSubmit?: number;
  nativeF16: boolean;
  subgroups: boolean;
  /** The fixed subgroup size (0 when subgroups are off or their size varies). */
  subgroupSize: number;
  /** A CPU implementation of WebGPU (lavapipe, SwiftShader): kernels that depend on it choose accordingly. */
  isSoftware: boolean;
  /** Attention kernels: 'auto' (subgroup kernels where the subgroup size is fixed) or 'tiled' (workgroup memory). */
  attention?: 'auto' | 'tiled';
  /** Print WGSL compilation errors with the offending line (debugging). */
  checkShaders?: boolean;
  /** Time every dispatch with timestamp queries (each in its own pass): see Runtime.profile(). Slows things down. */
  profile?: boolean;
  /** Binds at most this many bytes of a buffer (default and upper bound: the device's maxStorageBufferBindingSize). */
  maxBindingBytes?: number;
  /** Makes buffers of at most this many bytes; a larger tensor is held in several (default and upper bound: maxBufferSize). */
  maxBufferBytes?: number;
}

/** A window bound through a copy of its own (Runtime.stageStraddling): the binding, the block and window it stands for, the copy. */
interface Staged {
  p: Physical;
  from: Block;
  window: { offset: number; size: number };
  tmp: GpuBuf;
}

/** Bind groups are cached by buffers; past this many the cache starts over. */
const BIND_GROUP_CACHE_LIMIT = 8192;

/** What binds `p`: its window of its block's buffer, or of the segment holding it (a block held in several). */
function bufferBinding(p: Physical): GPUBufferBinding {
  if (!p.window) return { buffer: p.block.gpu };
  const [piece, more] = p.block.pieces(p.window.offset, p.window.size);
  if (more) throw new BackendError(`webgpu: a window of ${p.window.size} bytes at ${p.window.offset} straddles two buffers of a block`);
  return { buffer: piece!.buffer, offset: piece!.at, size: p.window.size };
}

export class Runtime {
  readonly device: GPUDevice;
  readonly opts: RuntimeOptions;
  readonly maxBindingBytes: number;
  readonly maxBufferBytes: number;
  readonly maxWorkgroupsPerDim: number;
  /** Serial of the group being recorded; a group gets a new one when it is submitted. */
  serial = 1;
  /** Counters for benchmarks and tests. */
  readonly stats = { dispatches: 0, submits: 0, pipelines: 0, bindGroups: 0, compileMs: 0, staged: 0 };

  private readonly pool: BufferPool;
  private readPool = new Map<number, GPUBuffer[]>();
  private readonly pipelines: PipelineCache;
  private bindGroups = new Map<string, GPUBindGroup>();

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private lastPipeline: GPUComputePipeline | null = null;
  private pending = 0;
  private readonly arena: UniformArena;

  private error: Error | null = null;
  private destroyed = false;
  private readonly profiler: Profiler | null;

  constructor(device: GPUDevice, opts: RuntimeOptions) {
    this.device = device;
    this.opts = opts;
    const lim = device.limits;
    this.maxBufferBytes = Math.min(lim.maxBufferSize, opts.maxBufferBytes ?? Infinity);
    this.maxBindingBytes = Math.min(lim.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Infinity, this.maxBufferBytes);
    this.maxWorkgroupsPerDim = lim.maxComputeWorkgroupsPerDimension;
    this.pool = new BufferPool(device, (e) => { this.error ??= e; }, this.maxBindingBytes, this.maxBufferBytes);
    this.pipelines = new PipelineCache(device, this.stats, !!opts.checkShaders);
    this.arena = new UniformArena(device);
    this.profiler = opts.profile && device.features.has('timestamp-query') ? new Profiler(device) : null;
    device.lost.then((info) => {
      if (!this.destroyed) this.error ??= new DeviceLostError(info.reason ?? 'unknown', info.message);
    });
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      const isOom = err.constructor?.name === 'GPUOutOfMemoryError' || /out of memory/i.test(err.message);
      this.error ??= isOom
        ? new GPUOutOfMemoryError(`webgpu: out of device memory: ${err.message}`)
        : new GPUValidationError(`webgpu: ${err.message}`);
    });
  }

  /** Throws the first asynchronous error (device lost, out of memory, validation) seen so far. */
  check(): void {
    if (this.destroyed) throw new BackendError('webgpu: the backend was destroyed');
    if (this.error) throw this.error;
  }

  // ---- memory ----------------------------------------------------------------

  alloc(dtype: DType, size: number): GpuBuf {
    this.check();
    return this.pool.alloc(dtype, size);
  }

  release(buf: GpuBuf): void {
    this.pool.release(buf);
  }

  /** Destroys the pool's free blocks (the memory a `free` keeps for reuse), after submitting the commands that may use them. */
  trim(): void {
    this.flush();
    this.pool.trim();
    this.bindGroups.clear();
  }

  /** Buffers and bytes held from the device (see BufferPool.memory). */
  memory(): MemoryInfo & { liveBuffers: number; pooledBuffers: number } {
    return this.pool.memory();
  }

  // ---- kernels -----------------------------------------------------------------

  /** Groups (x, y) covering `n` workgroups within the per-dimension limit; kernels flatten them with `flat_id`. */
  grid(n: number): [number, number] {
    const x = Math.max(1, Math.min(n, this.maxWorkgroupsPerDim));
    return [x, Math.max(1, Math.ceil(n / x))];
  }

  /**
   * Records one dispatch of `src` over `groups` workgroups. Arguments that are
   * the same buffer share one binding (read_write and atomic win), so inputs
   * may alias outputs.
   */
  dispatch(src: KernelSource, args: readonly Arg[], params: readonly number[], groups: readonly [number, number?, number?]): void {
    this.check();
    if (params.length !== src.params.length) throw new BackendError(`webgpu: kernel ${src.key} takes ${src.params.length} parameters, got ${params.length}`);
    const x = groups[0], y = groups[1] ?? 1, z = groups[2] ?? 1;
    if (x * y * z === 0) return;
    // Physical bindings, one per distinct block.
    const phys: Physical[] = [];
    const map: number[] = [];
    for (const a of args) {
      const g = a.buf as GpuBuf;
      if (g.freed) throw new BackendError(`webgpu: kernel ${src.key.split('|')[0]} used a freed buffer ('${a.name}')`);
      let k = phys.findIndex((p) => p.block === g.block && p.window?.offset === g.window?.offset);
      const mode = a.access === 'read_write' ? (a.mode ?? 'owned') : 'owned';
      const native = this.opts.nativeF16 && g.dtype === 'float16' && a.access === 'read' && !a.bits;
      if (k < 0) {
        k = phys.length;
        const bound = g.window?.size ?? g.block.bytes;
        if (bound > this.maxBindingBytes) {
          throw new BufferTooLargeError(bound, this.maxBindingBytes, 'maxStorageBufferBindingSize', `binding '${a.name}' of kernel ${src.key.split('|')[0]}`);
        }
        phys.push({ block: g.block, window: g.window, dtype: g.dtype, access: a.access, mode, native, vec4: !!a.vec4 });
      } else {
        const p = phys[k]!;
        if (p.vec4 !== !!a.vec4) throw new BackendError(`webgpu: kernel ${src.key.split('|')[0]} binds one buffer both as vec4 and as scalars ('${a.name}')`);
        if (a.access === 'read_write') p.access = 'read_write';
        if (mode === 'atomic') p.mode = 'atomic';
        p.native = p.native && native;
      }
      map.push(k);
    }
    for (const p of phys) {
      if (p.access === 'read') p.mode = 'owned';
      if (p.access === 'read_write') p.native = false;
    }
    const pipe = this.pipelines.get(src, args, phys, map);

    if (!this.arena.fits(params.length, src.key)) this.flush();
    const offset = this.arena.push(src.params, params);

    const staged = this.stageStraddling(phys);

    // The parameters' slot is part of the bind group (a static offset): on lavapipe a dynamic
    // offset costs about as much again as the rest of a small dispatch. A training step repeats
    // its sequence of dispatches, so its bind groups come from the cache from the second step on.
    let bgKey = pipe.layoutKey + ':' + offset + ':';
    for (const p of phys) bgKey += p.block.id + (p.window ? `@${p.window.offset}+${p.window.size}` : '') + ',';
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE_LIMIT) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = phys.map((p, i) => ({ binding: i, resource: bufferBinding(p) }));
      entries.push({ binding: phys.length, resource: { buffer: this.arena.buffer, offset, size: UNIFORM_BINDING_BYTES } });
      bg = this.device.createBindGroup({ layout: pipe.layout, entries });
      this.bindGroups.set(bgKey, bg);
      this.stats.bindGroups++;
    }

    const pass = this.computePass(src.key.split('|')[0]!);
    if (this.lastPipeline !== pipe.pipeline) {
      pass.setPipeline(pipe.pipeline);
      this.lastPipeline = pipe.pipeline;
    }
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(x, y, z);
    this.unstage(staged);
    this.finishDispatch(phys.map((p) => p.block));
  }

  /**
   * Windows of blocks held in several buffers that straddle two of them: each
   * is bound as a block of its own, filled from the segments before the
   * dispatch (and copied back after it when written, see unstage).
   */
  private stageStraddling(phys: Physical[]): Staged[] {
    const staged: Staged[] = [];
    for (const p of phys) {
      const window = p.window;
      if (!window || p.block.segments.length === 1) continue;
      const pieces = p.block.pieces(window.offset, window.size);
      if (pieces.length === 1) continue;
      const tmp = this.pool.alloc('float32', window.size / 4);
      const enc = this.endPass();
      for (const piece of pieces) enc.copyBufferToBuffer(piece.buffer, piece.at, tmp.block.gpu, piece.from, piece.bytes);
      staged.push({ p, from: p.block, window, tmp });
      this.stats.staged++;
      p.block = tmp.block;
      p.window = undefined;
    }
    return staged;
  }

  private unstage(staged: readonly Staged[]): void {
    for (const { p, from, window, tmp } of staged) {
      if (p.access === 'read_write') {
        const enc = this.endPass();
        for (const piece of from.pieces(window.offset, window.size)) enc.copyBufferToBuffer(tmp.block.gpu, piece.from, piece.buffer, piece.at, piece.bytes);
      }
      from.lastUse = this.serial;
      this.pool.release(tmp);
    }
  }

  private finishDispatch(blocks: readonly Block[]): void {
    for (const b of blocks) b.lastUse = this.serial;
    this.stats.dispatches++;
    if (this.profiler) this.endPass();
    if (++this.pending >= (this.opts.dispatchesPerSubmit ?? 48) || this.profiler?.full) this.flush();
  }

  /** Device time per kernel since the backend was made (needs the `profile` option and timestamp queries). */
  async profile(): Promise<Map<string, KernelProfile>> {
    if (!this.profiler) throw new BackendError('webgpu: profiling needs the profile option and the timestamp-query feature');
    this.flush();
    return this.profiler.settle();
  }

  /**
   * Records commands that other code encodes (the matmul kernels, which bring
   * their own pipelines and uniforms) into the shared compute pass; `blocks`
   * are the buffers they use.
   */
  encodeExternal(label: string, blocks: readonly Block[], record: (pass: GPUComputePassEncoder) => void): void {
    this.check();
    const pass = this.computePass(label);
    record(pass);
    this.lastPipeline = null;
    this.finishDispatch(blocks);
  }

  private computePass(label: string): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      const prof = this.profiler;
      if (prof) {
        const i = prof.labels.length;
        prof.labels.push(label);
        this.pass = this.encoder.beginComputePass({
          timestampWrites: { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
        });
      } else {
        this.pass = this.encoder.beginComputePass();
      }
      this.lastPipeline = null;
    }
    return this.pass;
  }

  private endPass(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  /** Submits the recorded group (no wait). */
  flush(): void {
    if (!this.encoder) return;
    const enc = this.endPass();
    const afterSubmit = this.profiler?.collect(enc);
    this.arena.upload(this.device.queue);
    this.device.queue.submit([enc.finish()]);
    afterSubmit?.();
    this.encoder = null;
    this.pending = 0;
    this.serial++;
    this.stats.submits++;
  }

  /**
   * Submits the pending group before writing (which also makes writing into a block it uses safe):
   * groups then start at the same place in every repetition of a training step (its first host
   * write, the batch), so the step's dispatches get the same uniform offsets and therefore the
   * same cached bind groups every time. (Flushing only when the group used the block let the group
   * boundaries drift from step to step, multiplying the distinct bind groups past the cache's limit.)
   */
  writeBytes(block: Block, byteOffset: number, data: ArrayBufferView): void {
    this.check();
    this.flush();
    for (const piece of block.pieces(byteOffset, data.byteLength)) {
      this.device.queue.writeBuffer(piece.buffer, piece.at, data.buffer, data.byteOffset + piece.from, piece.bytes);
    }
  }

  /** Copies bytes [byteOffset, byteOffset + byteLength) of `block` to the host (both multiples of 4). */
  async readBytes(block: Block, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    const list = this.readPool.get(size);
    const staging = list?.pop() ?? this.device.createBuffer({ size, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
    const enc = this.endPass();
    for (const piece of block.pieces(byteOffset, byteLength)) enc.copyBufferToBuffer(piece.buffer, piece.at, staging, piece.from, piece.bytes);
    this.flush();
    try {
      await deviceWait(staging.mapAsync(MAP_READ, 0, size));
    } catch (e) {
      this.check();
      throw new BackendError(`webgpu: read-back failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange(0, byteLength).slice(0);
    staging.unmap();
    const back = this.readPool.get(size);
    if (back) back.push(staging);
    else this.readPool.set(size, [staging]);
    this.check();
    return out;
  }

  async sync(): Promise<void> {
    this.check();
    this.flush();
    await deviceWait(this.device.queue.onSubmittedWorkDone());
    this.check();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pass = null;
    this.encoder = null;
    this.pipelines.clear();
    this.bindGroups.clear();
    this.pool.clear();
    this.readPool.clear();
    this.device.destroy();
  }
}
