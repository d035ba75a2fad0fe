/// <reference types="@webgpu/types" />
// The machinery under every kernel: a buffer pool, pipelines built from kernel
// sources and cached by key, one shared command encoder that dispatches are
// recorded into and submitted in groups, per-dispatch parameters in a uniform
// arena, and read-back.
//
// Ordering. `queue.writeBuffer` runs before command buffers that are not yet
// submitted. So (1) the uniform arena of a group is written just before that
// group is submitted (earlier groups, already submitted, ran with their own
// contents), and (2) a host write into a buffer that the pending group uses
// (say a pooled buffer that was freed and handed out again) submits the group
// first. GPU-side reuse of a pooled buffer needs nothing: dispatches run in
// the order they were recorded.

import type { DType } from '../../dtype/dtype.js';
import type { Buf, MemoryInfo } from '../backend.js';
import { BackendError } from '../backend.js';
import { WGSL_RANDOM } from '../random.js';
import {
  BufferTooLargeError, DeviceLostError, GPUOutOfMemoryError, GPUValidationError,
} from './errors.js';
import { bufferBytes, type Access, type WriteMode } from './storage.js';
import { argumentHelpers, bindingHelpers, declareStorage, linkHelpers, type BindingKind } from './kernels/wgsl-helpers.js';

// WebGPU constants, spelled out so that nothing depends on the globals a runtime may or may not install.
const BUFFER_MAP_READ = 0x0001;
const BUFFER_COPY_SRC = 0x0004;
const BUFFER_COPY_DST = 0x0008;
const BUFFER_UNIFORM = 0x0040;
const BUFFER_STORAGE = 0x0080;
const MAP_READ = 0x0001;
const STAGE_COMPUTE = 0x4;

/** A pooled GPU buffer. Outlives the `Buf`s that use it. */
export interface Block {
  readonly gpu: GPUBuffer;
  readonly bytes: number;
  readonly id: number;
  /** Serial of the last command group that used it (see Runtime.serial). */
  lastUse: number;
}

/** The backend's `Buf`: a typed window on a pooled block. */
export class GpuBuf implements Buf {
  freed = false;
  /**
   * `window`: bytes [offset, offset + size) of the block, bound instead of the whole block (see
   * split.ts: parts of a block larger than the binding limit); element 0 of the buffer is at `offset`.
   */
  constructor(readonly dtype: DType, readonly size: number, readonly block: Block, readonly window?: { offset: number; size: number }) {}
}

export type ParamType = 'u32' | 'i32' | 'f32';

/** A compute kernel before its bindings are known: WGSL that calls the helpers of kernels/wgsl-helpers.ts by name (`load_x`, `put2_out`, `is_nan`, ...). */
export interface KernelSource {
  /** Identifies `body` and `params`: equal keys must mean equal code. */
  key: string;
  params: readonly (readonly [string, ParamType])[];
  /**
   * WGSL: helper functions and `@compute ... fn main(...)`; parameters are fields of `P`.
   * A function is called only when the pipeline is built (generating WGSL on every dispatch costs more than the dispatch).
   */
  body: string | (() => string);
  /** Include WGSL_RANDOM. */
  random?: boolean;
  /** Needs `enable subgroups;`. */
  subgroups?: boolean;
}

/** One named binding of a dispatch. */
export interface Arg {
  name: string;
  buf: Buf;
  access: Access;
  /** For read_write bindings (default 'owned'). */
  mode?: WriteMode;
  /** Reads raw bits (`loadbits_`): float16 is then declared as u32 words even with shader-f16. */
  bits?: boolean;
  /** Declared four elements at a time: load4_, put4_, ... Every argument on the same buffer must agree. */
  vec4?: boolean;
}

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
}

/** Device time per kernel, from timestamp queries. */
export interface KernelProfile {
  count: number;
  ms: number;
}

const PROFILE_SLOTS = 2048;

/** Timestamps around every dispatch of a group, resolved and read back after the group is submitted. */
class Profiler {
  readonly querySet: GPUQuerySet;
  readonly resolve: GPUBuffer;
  labels: string[] = [];
  readonly totals = new Map<string, KernelProfile>();
  private pending: Promise<void>[] = [];
  constructor(private device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * PROFILE_SLOTS });
    this.resolve = device.createBuffer({ size: 16 * PROFILE_SLOTS, usage: 0x0200 /* QUERY_RESOLVE */ | BUFFER_COPY_SRC });
  }
  get full(): boolean {
    return this.labels.length >= PROFILE_SLOTS;
  }
  /** Before submit: resolve this group's timestamps into a buffer that is read after it ran. */
  collect(enc: GPUCommandEncoder): (() => void) | null {
    const n = this.labels.length;
    if (n === 0) return null;
    const labels = this.labels;
    this.labels = [];
    const read = this.device.createBuffer({ size: 16 * n, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
    enc.resolveQuerySet(this.querySet, 0, 2 * n, this.resolve, 0);
    enc.copyBufferToBuffer(this.resolve, 0, read, 0, 16 * n);
    return () => {
      this.pending.push(read.mapAsync(MAP_READ).then(() => {
        const t = new BigUint64Array(read.getMappedRange());
        labels.forEach((label, i) => {
          const e = this.totals.get(label) ?? { count: 0, ms: 0 };
          e.count++;
          e.ms += Number(t[2 * i + 1]! - t[2 * i]!) / 1e6;
          this.totals.set(label, e);
        });
        read.unmap();
        read.destroy();
      }));
    };
  }
  async settle(): Promise<Map<string, KernelProfile>> {
    await deviceWait(Promise.all(this.pending));
    this.pending = [];
    return this.totals;
  }
}

interface Physical {
  block: Block;
  window: { offset: number; size: number } | undefined;
  dtype: DType;
  access: Access;
  mode: WriteMode;
  native: boolean;
  vec4: boolean;
}

interface Pipeline {
  pipeline: GPUComputePipeline;
  layoutKey: string;
  layout: GPUBindGroupLayout;
}

/**
 * Waits for a device promise without spinning a core. Dawn's Node binding
 * polls for completed GPU work by rescheduling itself with setImmediate for
 * as long as a promise is pending: a busy loop on the main thread that, on a
 * CPU adapter (lavapipe), takes a core from the threads doing the GPU's work
 * (gpt-mini trained 30-45% faster on 2 cores without it). While such a wait
 * is pending, native callbacks given to setImmediate (Dawn's polling) are run
 * 1 ms later instead; JavaScript callbacks are left alone.
 */
let waits = 0;
let originalSetImmediate: typeof setImmediate | null = null;

function isNative(fn: unknown): boolean {
  return typeof fn === 'function' && /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(fn));
}

export async function deviceWait<T>(p: Promise<T>): Promise<T> {
  const g = globalThis as { setImmediate?: typeof setImmediate };
  if (typeof g.setImmediate !== 'function') return p;
  if (waits++ === 0) {
    const original = g.setImmediate;
    originalSetImmediate = original;
    g.setImmediate = ((fn: (...a: unknown[]) => void, ...args: unknown[]) =>
      (isNative(fn) ? setTimeout(fn, 1, ...args) : original(fn, ...args))) as typeof setImmediate;
  }
  try {
    return await p;
  } finally {
    if (--waits === 0 && originalSetImmediate) {
      g.setImmediate = originalSetImmediate;
      originalSetImmediate = null;
    }
  }
}

const UNIFORM_BINDING_BYTES = 256;
const ARENA_BYTES = 1 << 18;
/** Bind groups are cached by buffers; past this many the cache starts over. */
const BIND_GROUP_CACHE_LIMIT = 8192;

/** Pool size class: exact small sizes would rarely be reused, so round up (at most 25% waste above 4 KiB). */
function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return 2 ** Math.ceil(Math.log2(b));
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 4;
  return Math.ceil(b / step) * step;
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
  readonly stats = { dispatches: 0, submits: 0, pipelines: 0, bindGroups: 0, compileMs: 0 };

  private free = new Map<number, Block[]>();
  private nextId = 1;
  private liveBlocks = 0;
  private pooledBlocks = 0;
  private totalBytes = 0;
  private peakBytes = 0;
  private readPool = new Map<number, GPUBuffer[]>();

  private pipelines = new Map<string, Pipeline>();
  private layouts = new Map<string, GPUBindGroupLayout>();
  private bindGroups = new Map<string, GPUBindGroup>();

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private lastPipeline: GPUComputePipeline | null = null;
  private pending = 0;
  private readonly arena: ArrayBuffer;
  private readonly arenaU32: Uint32Array;
  private readonly arenaI32: Int32Array;
  private readonly arenaF32: Float32Array;
  private arenaUsed = 0;
  private readonly arenaAlign: number;
  private readonly uniform: GPUBuffer;

  private error: Error | null = null;
  private destroyed = false;
  private readonly profiler: Profiler | null;

  constructor(device: GPUDevice, opts: RuntimeOptions) {
    this.device = device;
    this.opts = opts;
    const lim = device.limits;
    this.maxBindingBytes = Math.min(lim.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Infinity);
    this.maxBufferBytes = lim.maxBufferSize;
    this.maxWorkgroupsPerDim = lim.maxComputeWorkgroupsPerDimension;
    this.arenaAlign = Math.max(16, lim.minUniformBufferOffsetAlignment);
    this.arena = new ArrayBuffer(ARENA_BYTES);
    this.arenaU32 = new Uint32Array(this.arena);
    this.arenaI32 = new Int32Array(this.arena);
    this.arenaF32 = new Float32Array(this.arena);
    this.uniform = device.createBuffer({ size: ARENA_BYTES + UNIFORM_BINDING_BYTES, usage: BUFFER_UNIFORM | BUFFER_COPY_DST });
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
    if (!Number.isInteger(size) || size < 0) throw new BackendError(`webgpu: cannot allocate ${size} elements of ${dtype}`);
    const need = bufferBytes(dtype, size);
    const what = `a ${dtype} buffer of ${size} elements`;
    if (need > this.maxBufferBytes) throw new BufferTooLargeError(need, this.maxBufferBytes, 'maxBufferSize', what);
    // A buffer that fits one binding gets a block that does too; a larger one is bound in windows (split.ts).
    const cap = need <= this.maxBindingBytes ? this.maxBindingBytes : this.maxBufferBytes;
    const cls = Math.min(sizeClass(need), Math.floor(cap / 16) * 16) || 16;
    const bytes = Math.max(cls, Math.ceil(need / 4) * 4, 16);
    // Free lists are kept in descending id order, so this takes the free block with the smallest id.
    const list = this.free.get(bytes);
    let block = list?.pop();
    if (block) {
      this.pooledBlocks--;
    } else {
      this.device.pushErrorScope('out-of-memory');
      const gpu = this.device.createBuffer({ size: bytes, usage: BUFFER_STORAGE | BUFFER_COPY_SRC | BUFFER_COPY_DST });
      this.device.popErrorScope().then((e) => {
        if (e) this.error ??= new GPUOutOfMemoryError(`webgpu: out of device memory allocating ${bytes} bytes for ${what} (${this.totalBytes} bytes held): ${e.message}`);
      }, () => {});
      block = { gpu, bytes, id: this.nextId++, lastUse: 0 };
      this.totalBytes += bytes;
      this.peakBytes = Math.max(this.peakBytes, this.totalBytes);
    }
    this.liveBlocks++;
    return new GpuBuf(dtype, size, block);
  }

  release(buf: GpuBuf): void {
    if (buf.freed) throw new BackendError('webgpu: buffer freed twice');
    buf.freed = true;
    this.liveBlocks--;
    this.pooledBlocks++;
    const list = this.free.get(buf.block.bytes);
    if (!list) {
      this.free.set(buf.block.bytes, [buf.block]);
      return;
    }
    // Blocks are handed out smallest id first, so a training step that allocates and frees in the
    // same order every time gets the same blocks every time, and its bind groups from the cache.
    // (Last-freed-first would permute them from one step to the next.)
    const id = buf.block.id;
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.id > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf.block);
  }

  /** Destroys the pool's free blocks (the memory a `free` keeps for reuse). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        b.gpu.destroy();
        this.totalBytes -= b.bytes;
      }
    }
    this.pooledBlocks = 0;
    this.free.clear();
    this.bindGroups.clear();
  }

  /**
   * Buffers and bytes held from the device: live buffers and the pool's free
   * blocks both count (a freed buffer stays allocated for reuse, so this does
   * not fall when tensors are disposed, but it stops growing once a training
   * step's allocations repeat). `trim()` gives the free blocks back.
   */
  memory(): MemoryInfo & { liveBuffers: number; pooledBuffers: number } {
    return {
      buffers: this.liveBlocks + this.pooledBlocks, bytes: this.totalBytes, peakBytes: this.peakBytes,
      liveBuffers: this.liveBlocks, pooledBuffers: this.pooledBlocks,
    };
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
    let key = src.key + '#';
    for (const p of phys) key += `${p.dtype}:${p.access === 'read' ? 'r' : 'w'}${p.mode === 'atomic' ? 'a' : ''}${p.native ? 'n' : ''}${p.vec4 ? '4' : ''},`;
    key += '#' + map.join(',');
    let pipe = this.pipelines.get(key);
    if (!pipe) {
      pipe = this.build(src, args, phys, map);
      this.pipelines.set(key, pipe);
    }

    // Parameters into the uniform arena.
    const slot = Math.ceil(Math.max(16, params.length * 4) / this.arenaAlign) * this.arenaAlign;
    if (params.length * 4 > UNIFORM_BINDING_BYTES) throw new BackendError(`webgpu: kernel ${src.key} has too many parameters`);
    if (this.arenaUsed + slot > ARENA_BYTES) this.flush();
    const offset = this.arenaUsed;
    const base = offset / 4;
    src.params.forEach(([, ty], i) => {
      const v = params[i]!;
      if (ty === 'f32') this.arenaF32[base + i] = v;
      else if (ty === 'i32') this.arenaI32[base + i] = v;
      else this.arenaU32[base + i] = v;
    });
    this.arenaUsed += slot;

    // The parameters' slot is part of the bind group (a static offset): on lavapipe a dynamic
    // offset costs about as much again as the rest of a small dispatch. A training step repeats
    // its sequence of dispatches, so its bind groups come from the cache from the second step on.
    let bgKey = pipe.layoutKey + ':' + offset + ':';
    for (const p of phys) bgKey += p.block.id + (p.window ? `@${p.window.offset}+${p.window.size}` : '') + ',';
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE_LIMIT) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = phys.map((p, i) => ({ binding: i, resource: { buffer: p.block.gpu, ...p.window } }));
      entries.push({ binding: phys.length, resource: { buffer: this.uniform, offset, size: UNIFORM_BINDING_BYTES } });
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
    this.finishDispatch(phys.map((p) => p.block));
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

  private build(src: KernelSource, args: readonly Arg[], phys: Physical[], map: number[]): Pipeline {
    const t0 = performance.now();
    // Each binding is declared once as b<i>; each argument's helpers forward to its binding's.
    const kinds: BindingKind[] = phys.map((p) => ({
      dtype: p.dtype, access: p.access, atomic: p.access === 'read_write' && p.mode === 'atomic' && !p.vec4, vec4: p.vec4, native: p.native,
    }));
    const helpers = new Map<string, string>();
    kinds.forEach((k, i) => bindingHelpers(`b${i}`, k).forEach((v, n) => helpers.set(n, v)));
    args.forEach((a, i) => argumentHelpers(a.name, `b${map[i]}`, kinds[map[i]!]!, a.access).forEach((v, n) => helpers.set(n, v)));
    const fields = src.params.length ? src.params.map(([n, t]) => `${n}: ${t},`).join(' ') : 'unused: u32,';
    const own = [
      src.random ? WGSL_RANDOM : '',
      `struct Params { ${fields} }\n@group(0) @binding(${phys.length}) var<uniform> P: Params;`,
      typeof src.body === 'function' ? src.body() : src.body,
    ].filter(Boolean).join('\n');
    const code = [
      ...(phys.some((p) => p.native) ? ['enable f16;'] : []),
      ...(src.subgroups ? ['enable subgroups;'] : []),
      ...kinds.map((k, i) => declareStorage(i, k)),
      ...linkHelpers(own, helpers),
      own,
    ].join('\n');

    const layoutKey = phys.map((p) => (p.access === 'read' ? 'r' : 'w')).join('');
    let layout = this.layouts.get(layoutKey);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = phys.map((p, i) => ({
        binding: i, visibility: STAGE_COMPUTE,
        buffer: { type: p.access === 'read' ? 'read-only-storage' : 'storage' },
      }));
      entries.push({ binding: phys.length, visibility: STAGE_COMPUTE, buffer: { type: 'uniform', minBindingSize: 0 } });
      layout = this.device.createBindGroupLayout({ entries });
      this.layouts.set(layoutKey, layout);
    }
    const module = this.device.createShaderModule({ code });
    if (this.opts.checkShaders) {
      module.getCompilationInfo().then((info) => {
        for (const m of info.messages) if (m.type === 'error') console.error(`${src.key}: ${m.lineNum}:${m.linePos} ${m.message}\n${code.split('\n')[m.lineNum - 1]}`);
      });
    }
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    this.stats.pipelines++;
    this.stats.compileMs += performance.now() - t0;
    return { pipeline, layoutKey, layout };
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
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.uniform, 0, this.arena, 0, this.arenaUsed);
    this.device.queue.submit([enc.finish()]);
    afterSubmit?.();
    this.encoder = null;
    this.arenaUsed = 0;
    this.pending = 0;
    this.serial++;
    this.stats.submits++;
  }

  /** Makes a host write into `block` safe: if the pending group uses the block, submit it first. */
  beforeHostWrite(block: Block): void {
    if (block.lastUse === this.serial) this.flush();
  }

  writeBytes(block: Block, byteOffset: number, data: ArrayBufferView): void {
    this.check();
    this.beforeHostWrite(block);
    this.device.queue.writeBuffer(block.gpu, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copies bytes [byteOffset, byteOffset + byteLength) of `block` to the host (both multiples of 4). */
  async readBytes(block: Block, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    const list = this.readPool.get(size);
    const staging = list?.pop() ?? this.device.createBuffer({ size, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
    const enc = this.endPass();
    enc.copyBufferToBuffer(block.gpu, byteOffset, staging, 0, byteLength);
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
    this.free.clear();
    this.readPool.clear();
    this.device.destroy();
  }
}
