/// <reference types="@webgpu/types" />
// Per-dispatch parameters of one command group, packed into one uniform buffer
// at aligned offsets and written just before the group is submitted
// (`queue.writeBuffer` runs before command buffers submitted after it, so
// earlier groups, already submitted, ran with their own contents).

import { BackendError } from '../backend.js';
import { BUFFER_COPY_DST, BUFFER_UNIFORM } from './constants.js';
import type { ParamType } from './pipeline-cache.js';

/** The size of each dispatch's uniform binding. */
export const UNIFORM_BINDING_BYTES = 256;
const ARENA_BYTES = 1 << 18;

export class UniformArena {
  readonly buffer: GPUBuffer;
  private readonly host = new ArrayBuffer(ARENA_BYTES);
  private readonly u32 = new Uint32Array(this.host);
  private readonly i32 = new Int32Array(this.host);
  private readonly f32 = new Float32Array(this.host);
  private used = 0;
  private readonly align: number;

  constructor(device: GPUDevice) {
    this.align = Math.max(16, device.limits.minUniformBufferOffsetAlignment);
    this.buffer = device.createBuffer({ size: ARENA_BYTES + UNIFORM_BINDING_BYTES, usage: BUFFER_UNIFORM | BUFFER_COPY_DST });
  }

  /** Whether `count` parameters still fit in this group (else submit it first). */
  fits(count: number, kernel: string): boolean {
    if (count * 4 > UNIFORM_BINDING_BYTES) throw new BackendError(`webgpu: kernel ${kernel} has too many parameters`);
    return this.used + this.slot(count) <= ARENA_BYTES;
  }

  /** Packs `values` as `types`; returns their byte offset in the buffer. */
  push(types: readonly (readonly [string, ParamType])[], values: readonly number[]): number {
    const offset = this.used;
    const base = offset / 4;
    types.forEach(([, ty], i) => {
      const v = values[i]!;
      if (ty === 'f32') this.f32[base + i] = v;
      else if (ty === 'i32') this.i32[base + i] = v;
      else this.u32[base + i] = v;
    });
    this.used += this.slot(values.length);
    return offset;
  }

  /** Before the group is submitted: upload its parameters and start the next group at offset 0. */
  upload(queue: GPUQueue): void {
    if (this.used > 0) queue.writeBuffer(this.buffer, 0, this.host, 0, this.used);
    this.used = 0;
  }

  private slot(count: number): number {
    return Math.ceil(Math.max(16, count * 4) / this.align) * this.align;
  }
}
