// Range checks of token ids and class targets on the device, without a host sync.
//
// The ids of a training step live on the device, and reading them back to check
// them would stall every step. Instead each check runs two small kernels after
// the op's own: the first finds the lowest bad position (atomicMin into a
// scratch word), the second copies that position, its value and the check's
// limits into a record. The record is read only when the host reads anyway
// (`read`, `readRaw`, `sync`): a bad entry then becomes an IndexOutOfRangeError
// there, not at the op that used it. Once the record holds an error, later
// checks leave it alone, so the error names the first op that failed.

import { IndexOutOfRangeError, type View } from '../../backend.js';
import type { GpuBuf, KernelSource, Runtime } from '../runtime.js';

const WG = 64;
const NONE = 0xffffffff;
/** Words of the record: what (0 none, 1 token id, 2 target), position, value, limit, ignore index, scratch (lowest bad position). */
const CLEAR = new Uint32Array([0, 0, 0, 0, 0, NONE]);
const WHAT = ['token id', 'target'] as const;

const findSource: KernelSource = {
  key: 'indexCheckFind',
  params: [['n', 'u32'], ['o_ids', 'u32'], ['limit', 'i32'], ['ignore', 'i32'], ['allowIgnore', 'u32']],
  body: () => `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat_id(gid, nwg, ${WG}u);
  if (i >= P.n || atomicLoad(&b0[0]) != 0u) { return; }
  let v = loadi_ids(P.o_ids + i);
  let ignored = P.allowIgnore != 0u && v == P.ignore;
  if ((v < 0 || v >= P.limit) && !ignored) { atomicMin(&b0[5], i); }
}`,
};

const recordSource: KernelSource = {
  key: 'indexCheckRecord',
  params: [['what', 'u32'], ['o_ids', 'u32'], ['limit', 'i32'], ['ignore', 'i32']],
  body: () => `@compute @workgroup_size(1) fn main() {
  let p = atomicLoad(&b0[5]);
  if (atomicLoad(&b0[0]) != 0u || p == ${NONE}u) { return; }
  atomicStore(&b0[0], P.what);
  atomicStore(&b0[1], p);
  atomicStore(&b0[2], bitcast<u32>(loadi_ids(P.o_ids + p)));
  atomicStore(&b0[3], bitcast<u32>(P.limit));
  atomicStore(&b0[4], bitcast<u32>(P.ignore));
}`,
};

export class IndexChecks {
  private readonly record: GpuBuf;
  /** Checks were queued since the record was last read. */
  private unread = false;

  constructor(private readonly rt: Runtime) {
    this.record = rt.alloc('int32', CLEAR.length);
    rt.writeBytes(this.record.block, 0, CLEAR);
  }

  /** Queues the check of int32 ids[0, n) against [0, limit), allowing `ignoreIndex` for targets. */
  check(ids: View, n: number, limit: number, what: IndexOutOfRangeError['what'], ignoreIndex?: number): void {
    if (n === 0) return;
    const allow = ignoreIndex !== undefined;
    // The record is the first argument, so its atomic array is the binding the runtime names b0.
    const args = [
      { name: 'rec', buf: this.record, access: 'read_write' as const, mode: 'atomic' as const },
      { name: 'ids', buf: ids.buf, access: 'read' as const },
    ];
    const ignore = allow ? ignoreIndex | 0 : 0;
    this.rt.dispatch(findSource, args, [n, ids.offset, limit, ignore, allow ? 1 : 0], this.rt.grid(Math.ceil(n / WG)));
    this.rt.dispatch(recordSource, args, [WHAT.indexOf(what) + 1, ids.offset, limit, ignore], [1]);
    this.unread = true;
  }

  /** Call after the host has read or synchronised: throws the recorded error, if any, and clears it. */
  async raise(): Promise<void> {
    if (!this.unread) return;
    this.unread = false;
    const [what, position, value, limit, ignore] = new Int32Array(await this.rt.readBytes(this.record.block, 0, CLEAR.byteLength));
    if (!what) return;
    this.rt.writeBytes(this.record.block, 0, CLEAR);
    const kind = WHAT[what - 1]!;
    throw new IndexOutOfRangeError(kind, position!, value!, limit!, kind === 'target' ? ignore : undefined);
  }
}
