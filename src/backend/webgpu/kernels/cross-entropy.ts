// Cross-entropy over the last dimension with ignored targets (mean over the
// counted rows): the forward loss and log-sum-exp, and the vectorised backward.

import type { View } from '../../backend.js';
import type { KernelSource, Runtime } from '../runtime.js';
import { reduce } from './reduce.js';
import {
  colLoop, hsum, planKey, QUAD_MAIN, QUAD_WG, quadRows, rowGrid, rowMain, rowPlan, rowReductions, scalarMode, type RowPlan,
} from './row-kernel.js';

/** A target kept inside its row: one out of range (reported by the index check at the next read) reads column 0. */
const IN_ROW = `fn in_row(t: i32, cols: u32) -> u32 { return select(0u, u32(t), t >= 0 && u32(t) < cols); }`;

/** Per row: lse, and (loss term, counted) pairs into `part` [rows, 2]. */
function crossEntropyRowsSource(p: RowPlan): KernelSource {
  return {
    key: `crossEntropyRows:${planKey(p)}`,
    subgroups: p.subgroups,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_t', 'u32'], ['o_lse', 'u32'], ['ignore', 'i32']],
    body: () => `${rowReductions(p)}
${IN_ROW}
${rowMain(p, 'P.rows')}
  let xb = P.o_x + unit * P.cols;
  var mx = -inf_f32();
  ${colLoop(p)} { let v = load_x(xb + c); if (v > mx) { mx = v; } }
  mx = row_max(mx);
  var s = 0.0;
  ${colLoop(p)} { s = s + exp(load_x(xb + c) - mx); }
  s = row_sum(s);
  if (lane == 0u) {
    let l = mx + log(s);
    put_lse(P.o_lse + unit, l);
    let t = loadi_t(P.o_t + unit);
    var loss = 0.0;
    var counted = 0.0;
    if (t != P.ignore) { loss = l - load_x(xb + in_row(t, P.cols)); counted = 1.0; }
    put2_part(2u * unit, loss, counted, 3u);
  }
}`,
  };
}

/** loss = total / count from the two sums. */
const crossEntropyFinalSource: KernelSource = {
  key: 'crossEntropyFinal',
  params: [['o_loss', 'u32'], ['o_count', 'u32']],
  body: () => `@compute @workgroup_size(1) fn main() {
  let total = load_sums(0u);
  let count = load_sums(1u);
  put_loss(P.o_loss, total / count);
  put_count(P.o_count, count);
}`,
};

export function crossEntropy(
  rt: Runtime, logits: View, targets: View, loss: View, lse: View, count: View,
  rows: number, cols: number, ignoreIndex: number,
): void {
  const part = rt.alloc('float32', 2 * Math.max(rows, 1));
  const sums = rt.alloc('float32', 2);
  if (rows > 0 && quadRows(cols, [logits], [], [targets, lse])) {
    rt.dispatch(crossEntropyRowsQuadSource(), [
      { name: 'x', buf: logits.buf, access: 'read', vec4: true },
      { name: 't', buf: targets.buf, access: 'read' },
      { name: 'lse', buf: lse.buf, access: 'read_write', mode: scalarMode(lse) },
      { name: 'part', buf: part, access: 'read_write' },
    ], [rows, cols, logits.offset, targets.offset, lse.offset, ignoreIndex | 0], rt.grid(Math.ceil(rows / QUAD_WG)));
  } else if (rows > 0) {
    const p = rowPlan(rt, cols);
    rt.dispatch(crossEntropyRowsSource(p), [
      { name: 'x', buf: logits.buf, access: 'read' },
      { name: 't', buf: targets.buf, access: 'read' },
      { name: 'lse', buf: lse.buf, access: 'read_write', mode: scalarMode(lse) },
      { name: 'part', buf: part, access: 'read_write' },
    ], [rows, cols, logits.offset, targets.offset, lse.offset, ignoreIndex | 0], rowGrid(rt, p, rows));
  }
  // Sum the (loss, counted) pairs over rows in a fixed order.
  reduce(rt, 'sum', { buf: part, offset: 0, size: 2 * rows, dtype: 'float32' }, { buf: sums, offset: 0, size: 2, dtype: 'float32' }, 1, rows, 2);
  rt.dispatch(crossEntropyFinalSource, [
    { name: 'sums', buf: sums, access: 'read' },
    { name: 'loss', buf: loss.buf, access: 'read_write' },
    { name: 'count', buf: count.buf, access: 'read_write' },
  ], [loss.offset, count.offset], [1]);
  rt.release(part);
  rt.release(sums);
}

function crossEntropyRowsQuadSource(): KernelSource {
  return {
    key: 'crossEntropyRowsQuad',
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_t', 'u32'], ['o_lse', 'u32'], ['ignore', 'i32']],
    body: () => `${IN_ROW}
${QUAD_MAIN}
  let xb = (P.o_x + row * P.cols) >> 2u;
  var m4 = vec4<f32>(-inf_f32());
  for (var q = 0u; q < nq; q = q + 1u) { let v = load4_x(xb + q); m4 = select(m4, v, v > m4); }
  let mx = max(max(m4.x, m4.y), max(m4.z, m4.w));
  var s = vec4<f32>(0.0);
  for (var q = 0u; q < nq; q = q + 1u) { s = s + exp(load4_x(xb + q) - mx); }
  let l = mx + log(${hsum('s')});
  put_lse(P.o_lse + row, l);
  let t = loadi_t(P.o_t + row);
  var loss = 0.0;
  var counted = 0.0;
  if (t != P.ignore) { loss = l - load_x(P.o_x + row * P.cols + in_row(t, P.cols)); counted = 1.0; }
  put2_part(2u * row, loss, counted, 3u);
}`,
  };
}

/** out = (softmax(x) - onehot(t)) * gy / count per row; zero on ignored rows. */
const crossEntropyBackwardQuadSource: KernelSource = {
  key: 'crossEntropyBackwardQuad',
  params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_t', 'u32'], ['o_lse', 'u32'], ['o_count', 'u32'], ['o_gy', 'u32'], ['o_out', 'u32'], ['ignore', 'i32']],
  body: () => `${QUAD_MAIN}
  let xb = (P.o_x + row * P.cols) >> 2u;
  let ob = (P.o_out + row * P.cols) >> 2u;
  let t = loadi_t(P.o_t + row);
  if (t == P.ignore) {
    for (var q = 0u; q < nq; q = q + 1u) { put4_out(ob + q, vec4<f32>(0.0)); }
    return;
  }
  let scale = load_gy(P.o_gy) / load_count(P.o_count);
  let l = load_lse(P.o_lse + row);
  let hot = vec4<u32>(0u, 1u, 2u, 3u);
  for (var q = 0u; q < nq; q = q + 1u) {
    let g = exp(load4_x(xb + q) - l) * scale;
    put4_out(ob + q, select(g, g - scale, hot + q * 4u == vec4<u32>(u32(t))));
  }
}`,
};

/** The vectorised cross-entropy backward, or false when the layout does not allow it (the caller then uses the elementwise kernel). */
export function crossEntropyBackwardRows(
  rt: Runtime, logits: View, targets: View, lse: View, count: View, gy: View, out: View,
  rows: number, cols: number, ignoreIndex: number,
): boolean {
  if (rows === 0 || !quadRows(cols, [logits, out], [], [targets, lse, count, gy])) return false;
  rt.dispatch(crossEntropyBackwardQuadSource, [
    { name: 'x', buf: logits.buf, access: 'read', vec4: true },
    { name: 'out', buf: out.buf, access: 'read_write', vec4: true },
    { name: 't', buf: targets.buf, access: 'read' },
    { name: 'lse', buf: lse.buf, access: 'read' },
    { name: 'count', buf: count.buf, access: 'read' },
    { name: 'gy', buf: gy.buf, access: 'read' },
  ], [rows, cols, logits.offset, targets.offset, lse.offset, count.offset, gy.offset, out.offset, ignoreIndex | 0], rt.grid(Math.ceil(rows / QUAD_WG)));
  return true;
}
