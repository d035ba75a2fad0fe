// Tensors larger than one binding. A buffer may be as large as the device's
// maxBufferSize, but a kernel binds at most maxStorageBufferBindingSize bytes
// of it (lavapipe: 128 MiB; GPT-2's token embedding is 154 MB). An op on such
// a buffer is dispatched in parts: each part binds a window of the buffer (a
// sub-range starting on the 256-byte storage offset alignment) and sees its
// views relative to that window, so the kernels themselves are unchanged.
// Elementwise ops are split into boxes of their iteration shape, gather and
// scatter by table rows, matmul along M, N and K, the update rule and the sum
// of squares by element ranges. A block larger than maxBufferSize is held in
// several buffers (buffer-pool.ts): the runtime binds each window in the one
// that holds it, or stages a window that straddles two.

import type { Strided, View } from '../backend.js';
import type { DType } from '../../dtype/dtype.js';
import { collapse } from '../cpu/strided.js';
import { OFFSET_ALIGN } from './constants.js';
import { BufferTooLargeError } from './errors.js';
import { GpuBuf, type Runtime } from './runtime.js';
import { is16Bit } from './storage.js';

/** Bytes a window may need beyond its elements: the aligned start below them and the 16-byte rounding of its end. */
const SLACK = 2 * OFFSET_ALIGN;

function elementBytes(dtype: DType): number {
  return is16Bit(dtype) ? 2 : 4;
}

/** Bytes the runtime binds for `buf`. */
export function boundBytes(buf: GpuBuf): number {
  return buf.window?.size ?? buf.block.bytes;
}

/** Whether any of `bufs` is too large to be bound whole. */
export function tooLarge(rt: Runtime, bufs: readonly unknown[]): boolean {
  return bufs.some((b) => boundBytes(b as GpuBuf) > rt.maxBindingBytes);
}

/** Elements of `dtype` that one window can hold. */
export function windowElements(rt: Runtime, dtype: DType, what: string): number {
  const n = Math.floor((rt.maxBindingBytes - SLACK) / elementBytes(dtype));
  if (n < 1) throw new BufferTooLargeError(SLACK + 4, rt.maxBindingBytes, 'maxStorageBufferBindingSize', what);
  return n;
}

/** Element index, in the whole block, of element `i` of `buf`. */
function absolute(buf: GpuBuf, i: number): number {
  return (buf.window?.offset ?? 0) / elementBytes(buf.dtype) + i;
}

/** A range of one view's buffer that a part touches: elements [lo, hi) of view.buf. */
interface Touch {
  view: View;
  lo: number;
  hi: number;
}

/**
 * The windows covering `touches`: one per block (operands on one block share
 * its binding), returned per touch with the element of `lo` within it.
 */
function windows(touches: readonly Touch[]): { buf: GpuBuf; at: number }[] {
  const byBlock = new Map<unknown, { lo: number; hi: number; dtype: DType; win?: GpuBuf }>();
  const abs = touches.map((t) => {
    const g = t.view.buf as GpuBuf;
    const lo = absolute(g, t.lo), hi = absolute(g, t.hi);
    const r = byBlock.get(g.block);
    if (r) { r.lo = Math.min(r.lo, lo); r.hi = Math.max(r.hi, hi); } else byBlock.set(g.block, { lo, hi, dtype: g.dtype });
    return lo;
  });
  return touches.map((t, k) => {
    const g = t.view.buf as GpuBuf;
    const r = byBlock.get(g.block)!;
    const w = elementBytes(r.dtype);
    const start = Math.floor((r.lo * w) / OFFSET_ALIGN) * OFFSET_ALIGN;
    const end = Math.min(g.block.bytes, Math.ceil((r.hi * w) / 16) * 16);
    r.win ??= new GpuBuf(g.dtype, (end - start) / w, g.block, { offset: start, size: end - start });
    return { buf: r.win, at: abs[k]! - start / w };
  });
}

/**
 * Bytes of the largest binding that windowViews would make for `ranges` (operands
 * on one block share a window), with the slack a window may need at its ends.
 */
export function windowBytes(ranges: readonly { view: View; lo: number; hi: number }[]): number {
  const byBlock = new Map<unknown, { lo: number; hi: number; bytes: number }>();
  for (const r of ranges) {
    const g = r.view.buf as GpuBuf;
    const lo = absolute(g, r.view.offset + r.lo), hi = absolute(g, r.view.offset + r.hi);
    const b = byBlock.get(g.block);
    if (b) { b.lo = Math.min(b.lo, lo); b.hi = Math.max(b.hi, hi); } else byBlock.set(g.block, { lo, hi, bytes: elementBytes(g.dtype) });
  }
  return Math.max(0, ...[...byBlock.values()].map((b) => (b.hi - b.lo) * b.bytes + SLACK));
}

/** Views on windows for elements [lo, hi) of each view (relative to its offset). */
export function windowViews(ranges: readonly { view: View; lo: number; hi: number }[]): View[] {
  const touches = ranges.map((r) => ({ view: r.view, lo: r.view.offset + r.lo, hi: r.view.offset + r.hi }));
  return windows(touches).map((w, k) => ({ buf: w.buf, offset: w.at, size: ranges[k]!.hi - ranges[k]!.lo, dtype: ranges[k]!.view.dtype }));
}

/** One box of an elementwise iteration: its first flat index in the whole iteration, its shape and its operands. */
export interface Part {
  base: number;
  shape: number[];
  operands: Strided[];
}

/**
 * Splits an elementwise iteration over strided operands into boxes whose
 * every operand fits one window: runs of the outermost dimension that allows
 * it, with the dimensions outside it fixed. Each box is a contiguous range of
 * flat indices of the iteration, starting at `base`.
 */
export function forEachPart(rt: Runtime, what: string, shape: readonly number[], ops: readonly Strided[], visit: (p: Part) => void): void {
  const c = collapse(shape, ops.map((o) => ({ offset: o.view.offset + o.offset, strides: o.strides })));
  if (c.shape.length === 0) { c.shape.push(1); c.strides.forEach((s) => s.push(0)); }
  const nd = c.shape.length;
  const room = ops.map((o) => windowElements(rt, o.view.dtype, what));
  const extent = (k: number, from: number) => {
    let lo = 0, hi = 0;
    for (let d = from; d < nd; d++) {
      const s = c.strides[k]![d]! * (c.shape[d]! - 1);
      if (s < 0) lo += s; else hi += s;
    }
    return [lo, hi] as const;
  };
  const emit = (d: number, starts: readonly number[], base: number, count: number) => {
    const sub = [count, ...c.shape.slice(d + 1)];
    const strides = c.strides.map((s) => s.slice(d));
    const touches = ops.map((o, k) => {
      let lo = starts[k]!, hi = starts[k]! + 1;
      sub.forEach((n, e) => { const s = strides[k]![e]! * (n - 1); if (s < 0) lo += s; else hi += s; });
      return { view: o.view, lo, hi };
    });
    const wins = windows(touches);
    visit({
      base, shape: sub,
      operands: ops.map((o, k) => ({
        view: { buf: wins[k]!.buf, offset: 0, size: wins[k]!.buf.size, dtype: o.view.dtype },
        offset: wins[k]!.at + (starts[k]! - touches[k]!.lo), strides: strides[k]!,
      })),
    });
  };
  const split = (d: number, starts: readonly number[], base: number): void => {
    const inner = c.shape.slice(d + 1).reduce((a, b) => a * b, 1);
    let run = c.shape[d]!;
    ops.forEach((_, k) => {
      const [lo, hi] = extent(k, d + 1);
      const s = Math.abs(c.strides[k]![d]!);
      if (s > 0) run = Math.min(run, Math.floor((room[k]! - 1 - (hi - lo)) / s) + 1);
    });
    if (run < 1) {
      if (d === nd - 1) throw new BufferTooLargeError(rt.maxBindingBytes + 1, rt.maxBindingBytes, 'maxStorageBufferBindingSize', what);
      for (let i = 0; i < c.shape[d]!; i++) split(d + 1, starts.map((o, k) => o + i * c.strides[k]![d]!), base + i * inner);
      return;
    }
    for (let a = 0; a < c.shape[d]!; a += run) {
      emit(d, starts.map((o, k) => o + a * c.strides[k]![d]!), base + a * inner, Math.min(run, c.shape[d]! - a));
    }
  };
  split(0, ops.map((o) => o.view.offset + o.offset), 0);
}

/** Row ranges [r0, r1) of a table of `rows` rows of `cols` elements, each fitting one window. */
export function rowRanges(rt: Runtime, dtype: DType, rows: number, cols: number, what: string): [number, number][] {
  const per = Math.floor(windowElements(rt, dtype, what) / Math.max(cols, 1));
  if (per < 1) throw new BufferTooLargeError(cols * elementBytes(dtype), rt.maxBindingBytes - SLACK, 'maxStorageBufferBindingSize', `one row of ${what}`);
  const out: [number, number][] = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(rows, r + per)]);
  return out;
}

/**
 * Runs a row kernel over ranges of its rows such that every per-row view
 * fits one window; a view with `perRow` 0 (a weight shared by all rows) is
 * passed whole. Runs once, on the views themselves, when everything fits.
 */
export function byRowRanges(
  rt: Runtime, what: string, rows: number, views: readonly { view: View | null; perRow: number }[],
  run: (views: (View | null)[], rows: number) => void,
): void {
  const split = views.filter((v) => v.view && v.perRow > 0);
  if (!tooLarge(rt, split.map((v) => v.view!.buf))) {
    run(views.map((v) => v.view), rows);
    return;
  }
  const per = Math.min(...split.map((v) => Math.floor(windowElements(rt, v.view!.dtype, what) / v.perRow)));
  if (per < 1) throw new BufferTooLargeError(rt.maxBindingBytes + 1, rt.maxBindingBytes, 'maxStorageBufferBindingSize', `one row of ${what}`);
  for (let r0 = 0; r0 < rows; r0 += per) {
    const n = Math.min(per, rows - r0);
    const parts = windowViews(split.map((v) => ({ view: v.view!, lo: r0 * v.perRow, hi: (r0 + n) * v.perRow })));
    let k = 0;
    run(views.map((v) => (v.view && v.perRow > 0 ? parts[k++]! : v.view)), n);
  }
}
