/// <reference types="@webgpu/types" />
// Device time per kernel: timestamps around every dispatch of a group (each
// dispatch in its own pass), resolved and read back after the group is submitted.

import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_QUERY_RESOLVE, MAP_READ } from './constants.js';
import { deviceWait } from './device-wait.js';

/** Device time per kernel, from timestamp queries. */
export interface KernelProfile {
  count: number;
  ms: number;
}

const PROFILE_SLOTS = 2048;

export class Profiler {
  readonly querySet: GPUQuerySet;
  readonly resolve: GPUBuffer;
  labels: string[] = [];
  readonly totals = new Map<string, KernelProfile>();
  private pending: Promise<void>[] = [];
  constructor(private device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * PROFILE_SLOTS });
    this.resolve = device.createBuffer({ size: 16 * PROFILE_SLOTS, usage: BUFFER_QUERY_RESOLVE | BUFFER_COPY_SRC });
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
