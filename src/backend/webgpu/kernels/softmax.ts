// Softmax and log-softmax over the last dimension, forward and backward.

import type { View } from '../../backend.js';
import type { KernelSource, Runtime } from '../runtime.js';
import { colLoop, pairLoop, planKey, rowGrid, rowMain, rowMode, rowPlan, rowReductions, type RowPlan } from './row-kernel.js';

function softmaxSource(p: RowPlan, log: boolean): KernelSource {
  const value = log
    ? (c: string) => `load_x(xb + ${c}) - lse`
    : (c: string) => `exp(load_x(xb + ${c}) - mx) / s`;
  return {
    key: `softmax:${planKey(p)}:${log}`,
    subgroups: p.subgroups,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_out', 'u32']],
    body: () => `${rowReductions(p)}
${rowMain(p, 'P.rows')}
  let xb = P.o_x + unit * P.cols;
  var mx = -inf_f32();
  ${colLoop(p)} { let v = load_x(xb + c); if (v > mx) { mx = v; } }
  mx = row_max(mx);
  // A fully masked row: exp gives 0s, the sum 0 and the result NaN (as PyTorch).
  if (mx == -inf_f32()) { mx = 0.0; }
  var s = 0.0;
  ${colLoop(p)} { s = s + exp(load_x(xb + c) - mx); }
  s = row_sum(s);
  let lse = mx + log(s);
  let ob = P.o_out + unit * P.cols;
  ${pairLoop(p, 'out', 'ob', value)}
}`,
  };
}

export function softmax(rt: Runtime, x: View, out: View, rows: number, cols: number, log: boolean): void {
  if (rows === 0 || cols === 0) return;
  const p = rowPlan(rt, cols);
  rt.dispatch(softmaxSource(p, log), [
    { name: 'x', buf: x.buf, access: 'read' },
    { name: 'out', buf: out.buf, access: 'read_write', mode: rowMode(out, cols, rows) },
  ], [rows, cols, x.offset, out.offset], rowGrid(rt, p, rows));
}

function softmaxBackwardSource(p: RowPlan, log: boolean): KernelSource {
  const term = log ? 'load_gy(gb + c)' : 'load_gy(gb + c) * load_y(yb + c)';
  const value = log
    ? (c: string) => `load_gy(gb + ${c}) - exp(load_y(yb + ${c})) * dot`
    : (c: string) => `load_y(yb + ${c}) * (load_gy(gb + ${c}) - dot)`;
  return {
    key: `softmaxBackward:${planKey(p)}:${log}`,
    subgroups: p.subgroups,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_y', 'u32'], ['o_gy', 'u32'], ['o_out', 'u32']],
    body: () => `${rowReductions(p)}
${rowMain(p, 'P.rows')}
  let yb = P.o_y + unit * P.cols;
  let gb = P.o_gy + unit * P.cols;
  var dot = 0.0;
  ${colLoop(p)} { dot = dot + ${term}; }
  dot = row_sum(dot);
  let ob = P.o_out + unit * P.cols;
  ${pairLoop(p, 'out', 'ob', value)}
}`,
  };
}

export function softmaxBackward(rt: Runtime, y: View, gy: View, out: View, rows: number, cols: number, log: boolean): void {
  if (rows === 0 || cols === 0) return;
  const p = rowPlan(rt, cols);
  rt.dispatch(softmaxBackwardSource(p, log), [
    { name: 'y', buf: y.buf, access: 'read' },
    { name: 'gy', buf: gy.buf, access: 'read' },
    { name: 'out', buf: out.buf, access: 'read_write', mode: rowMode(out, cols, rows) },
  ], [rows, cols, y.offset, gy.offset, out.offset], rowGrid(rt, p, rows));
}
