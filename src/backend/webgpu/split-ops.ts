// The ops that are not elementwise in their large tensor, split into parts
// that each fit one binding (see split.ts): gather by table rows, matmul along
// M, N and K, the multi-tensor update and sum of squares by element ranges,
// and reductions by outer or reduced ranges.

import type { Backend, Fusions, MatmulSpec, ReduceOp, View } from '../backend.js';
import type { UpdateCall, UpdateRule } from '../update-rule.js';
import { BufferTooLargeError } from './errors.js';
import type { GpuBuf, Runtime } from './runtime.js';
import { is16Bit } from './storage.js';
import { byRowRanges, rowRanges, tooLarge, windowElements, windowViews } from './split.js';
import { reduce } from './kernels/reduce.js';
import * as nn from './kernels/nn.js';
import * as ew from './kernels/elementwise.js';
import { resolveMatmul, type MatmulCall, type MatmulOperand } from './kernels/matmul.js';

const whole = (v: View) => ({ view: v, offset: 0, strides: [1] });

/**
 * out[i] = table[ids[i]] over a table too large for one binding: one pass per
 * range of table rows, each writing the rows whose ids fall in its range and
 * keeping the others (ids out of range give zeros, as in the unsplit gather).
 */
export function gatherRows(rt: Runtime, table: View, ids: View, out: View, n: number, dim: number): void {
  const bits = table.dtype === out.dtype;
  const rows = Math.floor(table.size / dim);
  for (const [r0, r1] of rowRanges(rt, table.dtype, rows, dim, 'the gather table')) {
    const part = windowViews([{ view: table, lo: r0 * dim, hi: r1 * dim }])[0]!;
    ew.elementwise(rt, {
      key: 'gatherRows', out: whole(out), shape: [n * dim], bits,
      inputs: [{ name: 'prev', src: whole(out) }],
      aux: [{ name: 'ids', view: ids }, { name: 'table', view: part, bits }],
      body: `let id = loadi_ids(P.o_ids + i / P.u0);
  if (id < 0 || u32(id) >= P.u3) { return ${bits ? '0u' : '0.0'}; }
  let row = u32(id);
  if (row < P.u1 || row >= P.u2) { return prev; }
  return ${bits ? 'loadbits_table' : 'load_table'}(P.o_table + (row - P.u1) * P.u0 + i % P.u0);`,
      u: [dim, r0, r1, rows],
    });
  }
}

// ---- matmul ----

type Dim = 'm' | 'n' | 'k';

/** A stored matrix of a call: its rows and columns in terms of M, N, K (rows first), and its row stride. */
interface Stored {
  name: string;
  operand: MatmulOperand;
  rows: Dim | null;
  cols: Dim;
  stride: number;
}

function storedOperands(call: MatmulCall): Stored[] {
  const { m, n, k } = call;
  const out: Stored[] = [
    call.transA ? { name: 'A', operand: call.a, rows: 'k', cols: 'm', stride: call.a.rowStride ?? m } : { name: 'A', operand: call.a, rows: 'm', cols: 'k', stride: call.a.rowStride ?? k },
    call.transB ? { name: 'B', operand: call.b, rows: 'n', cols: 'k', stride: call.b.rowStride ?? k } : { name: 'B', operand: call.b, rows: 'k', cols: 'n', stride: call.b.rowStride ?? n },
    { name: 'C', operand: call.c, rows: 'm', cols: 'n', stride: call.c.rowStride ?? n },
  ];
  if (call.preGelu) out.push({ name: 'preGelu', operand: call.preGelu, rows: 'm', cols: 'n', stride: call.preGelu.rowStride ?? n });
  if (call.bias) out.push({ name: 'bias', operand: call.bias, rows: null, cols: 'n', stride: 0 });
  return out;
}

const bytesOf = (o: MatmulOperand) => (is16Bit(o.dtype) ? 2 : 4);

/** Whether every operand of `call` fits one binding as it is. */
export function matmulFits(rt: Runtime, call: MatmulCall): boolean {
  const batch = call.batch ?? 1;
  const r = resolveMatmul(call);
  const batchStrides: Record<string, number> = { A: r.strideA, B: r.strideB, C: r.strideC, preGelu: r.strideP };
  return storedOperands(call).every((s) => {
    const tile = { m: call.m, n: call.n, k: call.k };
    const span = (s.rows ? (tile[s.rows] - 1) * s.stride : 0) + tile[s.cols] + (batch - 1) * (batchStrides[s.name] ?? 0);
    return span * bytesOf(s.operand) + 512 <= rt.maxBindingBytes;
  });
}

/**
 * The parts of a product too large for one binding, as calls on sub-blocks of
 * the same buffers (the matmul kernels bind only the range a matrix occupies).
 * Tiles are halved along the dimension that most shrinks the operand that does
 * not fit (its stored rows first). Parts along K accumulate into C, so a split
 * along K into a 16-bit C or with a GELU epilogue goes through matmulAlongK.
 */
export function matmulParts(rt: Runtime, call: MatmulCall): MatmulCall[] {
  const batch = call.batch ?? 1;
  if (batch > 1) {
    const r = resolveMatmul(call);
    const at = (o: MatmulOperand, stride: number, b: number) => ({ ...o, offset: (o.offset ?? 0) + b * stride, batchStride: 0 });
    const parts: MatmulCall[] = [];
    for (let b = 0; b < batch; b++) {
      parts.push(...matmulParts(rt, {
        ...call, batch: 1, a: at(call.a, r.strideA, b), b: at(call.b, r.strideB, b), c: at(call.c, r.strideC, b),
        preGelu: call.preGelu && at(call.preGelu, r.strideP, b),
      }));
    }
    return parts;
  }
  const stored = storedOperands(call);
  const size = { m: call.m, n: call.n, k: call.k };
  const tile = { ...size };
  const room = stored.map((s) => windowElements(rt, s.operand.dtype, `matmul operand ${s.name}`));
  const span = (s: Stored) => (s.rows ? (tile[s.rows] - 1) * s.stride : 0) + tile[s.cols];
  for (;;) {
    const i = stored.findIndex((s, j) => span(s) > room[j]!);
    if (i < 0) break;
    const s = stored[i]!;
    const dim = s.rows && tile[s.rows] > 1 ? s.rows : s.cols;
    if (tile[dim] === 1) throw new BufferTooLargeError(span(s) * bytesOf(s.operand), rt.maxBindingBytes, 'maxStorageBufferBindingSize', `one element row of matmul operand ${s.name}`);
    tile[dim] = Math.ceil(tile[dim] / 2);
  }
  const parts: MatmulCall[] = [];
  for (let m0 = 0; m0 < size.m; m0 += tile.m) {
    for (let n0 = 0; n0 < size.n; n0 += tile.n) {
      for (let k0 = 0; k0 < size.k; k0 += tile.k) {
        const first = { m: m0, n: n0, k: k0 };
        const at = (s: Stored): MatmulOperand => ({
          ...s.operand, offset: (s.operand.offset ?? 0) + (s.rows ? first[s.rows] * s.stride : 0) + first[s.cols], rowStride: s.stride, batchStride: 0,
        });
        const [a, b, c, ...rest] = stored.map(at);
        parts.push({
          ...call, batch: 1, m: Math.min(tile.m, size.m - m0), n: Math.min(tile.n, size.n - n0), k: Math.min(tile.k, size.k - k0),
          a: a!, b: b!, c: c!,
          preGelu: call.preGelu && rest[0],
          bias: k0 === 0 ? call.bias && rest[rest.length - 1] : undefined,
          accumulate: call.accumulate || k0 > 0,
        });
      }
    }
  }
  return parts;
}

/**
 * A product split along K whose parts cannot add up in C itself: they add up
 * in a float32 product (with the bias), which is then stored as the unsplit
 * kernel stores its accumulator: the pre-activation, GELU, accumulation into
 * C, each rounded once to its output's dtype. `matmul` runs the float32 product.
 */
export function matmulAlongK(
  backend: Pick<Backend, 'alloc' | 'free' | 'unary' | 'binary'> & Pick<Fusions, 'cast'>, matmul: (out: View, spec: MatmulSpec) => void,
  out: View, spec: MatmulSpec,
): void {
  const acc: View = { buf: backend.alloc('float32', out.size), offset: 0, size: out.size, dtype: 'float32' };
  const flat = (v: View) => ({ view: v, offset: 0, strides: [1] });
  const addInto = spec.accumulate && !spec.gelu;
  if (addInto) backend.cast(out, acc);
  matmul(acc, { ...spec, gelu: false, preGelu: undefined, accumulate: addInto });
  if (spec.preGelu) backend.cast(acc, spec.preGelu);
  if (spec.gelu) backend.unary('gelu', acc, acc);
  if (spec.gelu && spec.accumulate) backend.binary('add', flat(out), flat(acc), out, [out.size]);
  else backend.cast(acc, out);
  backend.free(acc.buf);
}

// ---- multi-tensor kernels by element ranges ----

/** `views` with every view too large for one binding replaced by windowed ranges of it. */
export function viewRanges(rt: Runtime, views: readonly View[]): View[] {
  return views.flatMap((v) => {
    if (!tooLarge(rt, [v.buf])) return [v];
    const step = Math.floor(windowElements(rt, v.dtype, 'a tensor of sumOfSquares') / 4) * 4;
    const out: View[] = [];
    for (let lo = 0; lo < v.size; lo += step) out.push(windowViews([{ view: v, lo, hi: Math.min(v.size, lo + step) }])[0]!);
    return out;
  });
}

/**
 * An update call whose tensors too large for one binding are replaced by
 * element ranges, each with its slots (and master copy) in windows. Ranges
 * follow each other, so the stochastic-rounding counter is unchanged.
 */
export function updateRanges(rt: Runtime, rule: UpdateRule, call: UpdateCall): UpdateCall {
  const tensors: Record<string, View>[] = [];
  const master: (View | null)[] = [];
  const tensorHypers: Readonly<Record<string, number>>[] = [];
  call.tensors.forEach((t, i) => {
    const m = call.master?.[i] ?? null;
    const views = [...rule.slots.map((s) => t[s]!), ...(m ? [m] : [])];
    const size = views[0]!.size;
    const big = tooLarge(rt, views.map((v) => v.buf as GpuBuf));
    if (big && rule.tensorScalarUpdates?.length) {
      throw new BufferTooLargeError(size * 4, rt.maxBindingBytes, 'maxStorageBufferBindingSize', `update rule '${rule.name}' with per-tensor scalars on tensor ${i}`);
    }
    const step = big ? Math.floor(Math.min(...views.map((v) => windowElements(rt, v.dtype, `tensor ${i} of update rule '${rule.name}'`))) / 4) * 4 : size;
    for (let lo = 0; lo < size || lo === 0; lo += step) {
      const hi = Math.min(size, lo + step);
      const parts = big ? windowViews(views.map((view) => ({ view, lo, hi }))) : views;
      const part: Record<string, View> = { ...t };
      rule.slots.forEach((s, k) => { part[s] = parts[k]!; });
      tensors.push(part);
      master.push(m ? parts[rule.slots.length]! : null);
      if (call.tensorHypers) tensorHypers.push(call.tensorHypers[i]!);
      if (!big) break;
    }
  });
  return { ...call, tensors, master: call.master ? master : undefined, tensorHypers: call.tensorHypers ? tensorHypers : undefined };
}

// ---- reductions ----

/**
 * A reduction of x [outer, r, inner] over r, split where a binding would be
 * too large: by ranges of `outer`, or, where one outer slice does not fit, by
 * ranges of r whose partial results are then reduced again.
 */
export function reduceInParts(rt: Runtime, op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number): void {
  if (!tooLarge(rt, [x.buf, out.buf])) {
    reduce(rt, op, x, out, outer, r, inner);
    return;
  }
  const room = windowElements(rt, x.dtype, `the input of reduce ${op}`);
  const slice = r * inner;
  if (slice <= room) {
    byRowRanges(rt, `reduce ${op}`, outer, [{ view: x, perRow: slice }, { view: out, perRow: inner }],
      ([xp, op2], n) => reduce(rt, op, xp!, op2!, n, r, inner));
    return;
  }
  const per = Math.floor(room / inner);
  if (per < 1) throw new BufferTooLargeError(inner * (is16Bit(x.dtype) ? 2 : 4), rt.maxBindingBytes, 'maxStorageBufferBindingSize', `one row of reduce ${op}`);
  const parts = Math.ceil(r / per);
  const partial: View = { buf: rt.alloc('float32', outer * parts * inner), offset: 0, size: outer * parts * inner, dtype: 'float32' };
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < parts; j++) {
      const len = Math.min(per, r - j * per), lo = o * slice + j * per * inner, at = (o * parts + j) * inner;
      const [xp, pp] = windowViews([{ view: x, lo, hi: lo + len * inner }, { view: partial, lo: at, hi: at + inner }]);
      reduce(rt, op, xp!, pp!, 1, len, inner);
    }
  }
  reduceInParts(rt, op, partial, out, outer, parts, inner);
  rt.release(partial.buf as GpuBuf);
}

/**
 * The layer-norm backward by row ranges: gx per range, and the weight and bias
 * gradients (sums over all rows) from per-range partial sums, added at the end.
 */
export function layerNormBackwardInParts(
  rt: Runtime, x: View, weight: View | null, mean: View, rstd: View, gy: View,
  gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
): void {
  if (!tooLarge(rt, [x, mean, rstd, gy, gx].map((v) => v.buf))) {
    nn.layerNormBackward(rt, x, weight, mean, rstd, gy, gx, gw, gb, rows, cols);
    return;
  }
  // Rows per part such that the kernel's own partial sums (2 x cols floats a row at most) fit one binding too.
  const ranges = rowRanges(rt, 'float32', rows, 2 * cols, 'layerNormBackward');
  const count = ranges.length;
  const scratch = rt.alloc('float32', 2 * count * cols);
  const row = (j: number): View => ({ buf: scratch, offset: j * cols, size: cols, dtype: 'float32' });
  ranges.forEach(([r0, r1], j) => {
    const [xp, mp, rp, gyp, gxp] = windowViews([x, mean, rstd, gy, gx].map((view, k) => {
      const per = k === 1 || k === 2 ? 1 : cols;
      return { view, lo: r0 * per, hi: r1 * per };
    }));
    nn.layerNormBackward(rt, xp!, weight, mp!, rp!, gyp!, gxp!, gw && row(j), gb && row(count + j), r1 - r0, cols);
  });
  if (gw) reduceInParts(rt, 'sum', { buf: scratch, offset: 0, size: count * cols, dtype: 'float32' }, gw, 1, count, cols);
  if (gb) reduceInParts(rt, 'sum', { buf: scratch, offset: count * cols, size: count * cols, dtype: 'float32' }, gb, 1, count, cols);
  rt.release(scratch);
}
