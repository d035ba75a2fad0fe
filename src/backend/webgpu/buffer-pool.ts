/// <reference types="@webgpu/types" />
// GPU buffers are never left to the garbage collector: a freed buffer's block
// goes back to a free list of its size class and is handed out again.

import type { DType } from '../../dtype/dtype.js';
import type { Buf, MemoryInfo } from '../backend.js';
import { BackendError } from '../backend.js';
import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_STORAGE, OFFSET_ALIGN } from './constants.js';
import { GPUOutOfMemoryError } from './errors.js';
import { bufferBytes } from './storage.js';

/**
 * Pooled device memory. Outlives the `Buf`s that use it. A block larger than
 * maxBufferSize is held in several GPU buffers, `segments`, of `segmentBytes`
 * each (the last one shorter): it is only ever bound in windows (split.ts), and
 * the runtime binds each window in the segment that holds it.
 */
export class Block {
  /** Serial of the last command group that used it (see Runtime.serial). */
  lastUse = 0;
  constructor(readonly segments: readonly GPUBuffer[], readonly segmentBytes: number, readonly bytes: number, readonly id: number) {}

  /** The block's one GPU buffer (a block held in several has none). */
  get gpu(): GPUBuffer {
    if (this.segments.length !== 1) throw new BackendError(`webgpu: a block of ${this.bytes} bytes is held in ${this.segments.length} buffers; it is bound in windows, never whole`);
    return this.segments[0]!;
  }

  /** The pieces of bytes [offset, offset + size) of the block: which segment holds each, where in it, and where in the range. */
  pieces(offset: number, size: number): { buffer: GPUBuffer; at: number; from: number; bytes: number }[] {
    const out: { buffer: GPUBuffer; at: number; from: number; bytes: number }[] = [];
    for (let pos = offset; pos < offset + size;) {
      const s = Math.floor(pos / this.segmentBytes);
      const end = Math.min(offset + size, (s + 1) * this.segmentBytes);
      out.push({ buffer: this.segments[s]!, at: pos - s * this.segmentBytes, from: pos - offset, bytes: end - pos });
      pos = end;
    }
    return out;
  }
}

/** The bytes of each buffer of a block held in several: starting on the storage offset alignment, a window inside one binds as it is. */
export function segmentBytesFor(maxBufferBytes: number): number {
  return Math.floor(maxBufferBytes / OFFSET_ALIGN) * OFFSET_ALIGN;
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

export type PoolMemory = MemoryInfo & { liveBuffers: number; pooledBuffers: number };

/** Pool size class: exact small sizes would rarely be reused, so round up (at most 25% waste above 4 KiB). */
function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return 2 ** Math.ceil(Math.log2(b));
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 4;
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, Block[]>();
  private nextId = 1;
  private liveBlocks = 0;
  private pooledBlocks = 0;
  private totalBytes = 0;
  private peakBytes = 0;
  private readonly maxBindingBytes: number;
  private readonly maxBufferBytes: number;

  /**
   * `onError` receives out-of-memory errors, which the device reports asynchronously.
   * `maxBufferBytes` (default: the device's maxBufferSize): a larger block is held in several buffers.
   */
  constructor(private readonly device: GPUDevice, private readonly onError: (e: Error) => void, maxBindingBytes: number, maxBufferBytes?: number) {
    this.maxBindingBytes = maxBindingBytes;
    this.maxBufferBytes = maxBufferBytes ?? device.limits.maxBufferSize;
  }

  alloc(dtype: DType, size: number): GpuBuf {
    if (!Number.isInteger(size) || size < 0) throw new BackendError(`webgpu: cannot allocate ${size} elements of ${dtype}`);
    const need = bufferBytes(dtype, size);
    const what = `a ${dtype} buffer of ${size} elements`;
    // A buffer that fits one binding gets a block that does too; a larger one is bound in windows (split.ts),
    // and one larger than maxBufferSize is held in segments.
    const cap = need <= this.maxBindingBytes ? this.maxBindingBytes : Math.max(this.maxBufferBytes, need);
    const cls = Math.min(sizeClass(need), Math.floor(cap / 16) * 16) || 16;
    const bytes = Math.max(cls, Math.ceil(need / 4) * 4, 16);
    // Free lists are kept in descending id order, so this takes the free block with the smallest id.
    const list = this.free.get(bytes);
    let block = list?.pop();
    if (block) {
      this.pooledBlocks--;
    } else {
      const segmentBytes = bytes <= this.maxBufferBytes ? bytes : segmentBytesFor(this.maxBufferBytes);
      const segments: GPUBuffer[] = [];
      this.device.pushErrorScope('out-of-memory');
      for (let at = 0; at < bytes; at += segmentBytes) {
        segments.push(this.device.createBuffer({ size: Math.min(segmentBytes, bytes - at), usage: BUFFER_STORAGE | BUFFER_COPY_SRC | BUFFER_COPY_DST }));
      }
      this.device.popErrorScope().then((e) => {
        if (e) this.onError(new GPUOutOfMemoryError(`webgpu: out of device memory allocating ${bytes} bytes for ${what} (${this.totalBytes} bytes held): ${e.message}`));
      }, () => {});
      block = new Block(segments, segmentBytes, bytes, this.nextId++);
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

  /** Destroys the free blocks. Commands that use them must have been submitted. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        for (const segment of b.segments) segment.destroy();
        this.totalBytes -= b.bytes;
      }
    }
    this.pooledBlocks = 0;
    this.free.clear();
  }

  /**
   * Buffers and bytes held from the device: live buffers and the free blocks
   * both count (a freed buffer stays allocated for reuse, so this does not fall
   * when tensors are disposed, but it stops growing once a training step's
   * allocations repeat). `trim()` gives the free blocks back.
   */
  memory(): PoolMemory {
    return {
      buffers: this.liveBlocks + this.pooledBlocks, bytes: this.totalBytes, peakBytes: this.peakBytes,
      liveBuffers: this.liveBlocks, pooledBuffers: this.pooledBlocks,
    };
  }

  clear(): void {
    this.free.clear();
  }
}
