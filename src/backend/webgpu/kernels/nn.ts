// Row kernels of the transformer: softmax and log-softmax, layer norm,
// cross-entropy (each forward and backward).
// Short rows get one invocation each (vectorised when aligned), long rows a
// workgroup with reductions in workgroup memory; the weight and bias
// gradients of layer norm are reduced over rows in a second pass, in a fixed
// order. Everything accumulates in f32.

import type { View } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, type WriteMode } from '../storage.js';
import { reduce } from './reduce.js';

/**
 * How a row kernel maps rows to invocations. Rows of up to ROW_THREAD_MAX
 * elements get one invocation each (no workgroup memory, no barriers: cheap to
 * compile and fast on CPU adapters); longer rows get a workgroup of `lanes`
 * invocations that reduce through workgroup memory (after a subgroup
 * reduction where the adapter has subgroups).
 */
interface RowPlan {
  lanes: number;
  wg: number;
  subgroups: boolean;
}

const ROW_THREAD_MAX = 1024;

function rowPlan(rt: Runtime, cols: number): RowPlan {
  if (cols <= ROW_THREAD_MAX) return { lanes: 1, wg: 64, subgroups: false };
  return { lanes: 256, wg: 256, subgroups: rt.opts.subgroups };
}

function planKey(p: RowPlan): string {
  return `${p.lanes}:${p.wg}:${p.subgroups ? 'sg' : ''}`;
}

/**
 * row_sum2, row_sum and row_max over the `lanes` invocations of a row (the
 * identity when a row has one invocation). Call from uniform control flow.
 * Max ignores NaN as the CPU's "if (x > max) max = x" does (when a subgroup
 * max meets a NaN the row's result is NaN either way).
 */
function rowReductions(p: RowPlan): string {
  if (p.lanes === 1) {
    return `fn row_sum2(v: vec2<f32>) -> vec2<f32> { return v; }
fn row_sum(v: f32) -> f32 { return v; }
fn row_max(v: f32) -> f32 { return v; }`;
  }
  const wg = p.wg;
  if (p.subgroups) {
    // Subgroup leaders leave their partial in their own slot; every slot is read in a fixed order.
    return `var<workgroup> red: array<vec2<f32>, ${wg}>;
var<private> lane_p: u32;
var<private> sg_lane_p: u32;
fn row_sum2(v: vec2<f32>) -> vec2<f32> {
  let s = subgroupAdd(v);
  red[lane_p] = select(vec2<f32>(0.0, 0.0), s, sg_lane_p == 0u);
  workgroupBarrier();
  var r = vec2<f32>(0.0, 0.0);
  for (var i = 0u; i < ${wg}u; i = i + 1u) { r = r + red[i]; }
  workgroupBarrier();
  return r;
}
fn row_sum(v: f32) -> f32 { return row_sum2(vec2<f32>(v, 0.0)).x; }
fn row_max(v: f32) -> f32 {
  let s = subgroupMax(v);
  red[lane_p].x = select(-inf_f32(), s, sg_lane_p == 0u);
  workgroupBarrier();
  var r = -inf_f32();
  for (var i = 0u; i < ${wg}u; i = i + 1u) { if (red[i].x > r) { r = red[i].x; } }
  workgroupBarrier();
  return r;
}`;
  }
  return `var<workgroup> red: array<vec2<f32>, ${wg}>;
var<private> lane_p: u32;
fn row_sum2(v: vec2<f32>) -> vec2<f32> {
  red[lane_p] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lane_p < s) { red[lane_p] = red[lane_p] + red[lane_p + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn row_sum(v: f32) -> f32 { return row_sum2(vec2<f32>(v, 0.0)).x; }
fn row_max(v: f32) -> f32 {
  red[lane_p] = vec2<f32>(v, 0.0);
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lane_p < s && red[lane_p + s].x > red[lane_p].x) { red[lane_p].x = red[lane_p + s].x; }
    workgroupBarrier();
  }
  let r = red[0].x;
  workgroupBarrier();
  return r;
}`;
}

/**
 * The entry point of a row kernel: defines `lane` (0 .. lanes-1) and `unit`
 * (the row, or block of rows, this invocation works on) and returns when
 * `unit >= limit` (a parameter).
 */
function rowMain(p: RowPlan, limit: string): string {
  if (p.lanes === 1) {
    return `@compute @workgroup_size(${p.wg}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lane = 0u;
  let unit = flat_id(gid, nwg, ${p.wg}u);
  if (unit >= ${limit}) { return; }`;
  }
  const sg = p.subgroups ? ', @builtin(subgroup_invocation_id) sgl: u32' : '';
  return `@compute @workgroup_size(${p.wg}) fn main(@builtin(local_invocation_id) lid3: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u${sg}) {
  let lane = lid3.x;
  lane_p = lane;${p.subgroups ? '\n  sg_lane_p = sgl;' : ''}
  let unit = wid.x + wid.y * nwg.x;
  if (unit >= ${limit}) { return; }`;
}

function rowGrid(rt: Runtime, p: RowPlan, units: number): [number, number] {
  return rt.grid(p.lanes === 1 ? Math.ceil(units / p.wg) : units);
}

/** Owned when every row of `cols` 16-bit elements starting at `offset` begins on a word. */
function rowMode(v: View, cols: number, rows: number): WriteMode {
  if (!is16Bit(v.dtype)) return 'owned';
  return v.offset % 2 === 0 && (cols % 2 === 0 || rows === 1) ? 'owned' : 'atomic';
}

/** Scalars written one per row (means, lse): 16-bit neighbours share words. */
function scalarMode(v: View): WriteMode {
  return is16Bit(v.dtype) ? 'atomic' : 'owned';
}

/** Stores f(c) and f(c + 1) for this invocation's column pairs of a row. */
function pairLoop(p: RowPlan, out: string, base: string, f: (c: string) => string): string {
  return `for (var c = 2u * lane; c < P.cols; c = c + ${2 * p.lanes}u) {
    let v0 = ${f('c')};
    var v1 = 0.0;
    var m = 1u;
    if (c + 1u < P.cols) { v1 = ${f('(c + 1u)')}; m = 3u; }
    put2_${out}(${base} + c, v0, v1, m);
  }`;
}

/** `for (var c = lane; c < P.cols; c += lanes)` */
function colLoop(p: RowPlan): string {
  return `for (var c = lane; c < P.cols; c = c + ${p.lanes}u)`;
}

// ---- softmax ----

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

// ---- layer norm ----

function layerNormSource(p: RowPlan, hasW: boolean, hasB: boolean): KernelSource {
  const w = hasW ? ' * load_w(P.o_w + c_)' : '';
  const b = hasB ? ' + load_b(P.o_b + c_)' : '';
  return {
    key: `layerNorm:${planKey(p)}:${hasW}:${hasB}`,
    subgroups: p.subgroups,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_w', 'u32'], ['o_b', 'u32'], ['o_out', 'u32'],
      ['o_mean', 'u32'], ['o_rstd', 'u32'], ['eps', 'f32']],
    body: () => `${rowReductions(p)}
fn norm(xb: u32, c_: u32, mu: f32, rs: f32) -> f32 { return (load_x(xb + c_) - mu) * rs${w}${b}; }
${rowMain(p, 'P.rows')}
  let xb = P.o_x + unit * P.cols;
  var s = 0.0;
  ${colLoop(p)} { s = s + load_x(xb + c); }
  let mu = row_sum(s) / f32(P.cols);
  var v = 0.0;
  ${colLoop(p)} { let d = load_x(xb + c) - mu; v = v + d * d; }
  let rs = 1.0 / sqrt(row_sum(v) / f32(P.cols) + P.eps);
  if (lane == 0u) { put_mean(P.o_mean + unit, mu); put_rstd(P.o_rstd + unit, rs); }
  let ob = P.o_out + unit * P.cols;
  ${pairLoop(p, 'out', 'ob', (c) => `norm(xb, ${c}, mu, rs)`)}
}`,
  };
}

export function layerNorm(
  rt: Runtime, x: View, weight: View | null, bias: View | null, out: View, mean: View, rstd: View,
  rows: number, cols: number, eps: number,
): void {
  if (rows === 0) return;
  if (quadRows(cols, [x, out], [weight, bias], [mean, rstd])) {
    const args: Arg[] = [
      { name: 'x', buf: x.buf, access: 'read', vec4: true },
      { name: 'out', buf: out.buf, access: 'read_write', vec4: true },
      { name: 'mean', buf: mean.buf, access: 'read_write', mode: scalarMode(mean) },
      { name: 'rstd', buf: rstd.buf, access: 'read_write', mode: scalarMode(rstd) },
    ];
    if (weight) args.push({ name: 'w', buf: weight.buf, access: 'read', vec4: true });
    if (bias) args.push({ name: 'b', buf: bias.buf, access: 'read', vec4: true });
    rt.dispatch(layerNormQuadSource(!!weight, !!bias), args,
      [rows, cols, x.offset, weight?.offset ?? 0, bias?.offset ?? 0, out.offset, mean.offset, rstd.offset, eps], rt.grid(Math.ceil(rows / QUAD_WG)));
    return;
  }
  const p = rowPlan(rt, cols);
  const args: Arg[] = [
    { name: 'x', buf: x.buf, access: 'read' },
    { name: 'out', buf: out.buf, access: 'read_write', mode: rowMode(out, cols, rows) },
    { name: 'mean', buf: mean.buf, access: 'read_write', mode: scalarMode(mean) },
    { name: 'rstd', buf: rstd.buf, access: 'read_write', mode: scalarMode(rstd) },
  ];
  if (weight) args.push({ name: 'w', buf: weight.buf, access: 'read' });
  if (bias) args.push({ name: 'b', buf: bias.buf, access: 'read' });
  rt.dispatch(layerNormSource(p, !!weight, !!bias), args,
    [rows, cols, x.offset, weight?.offset ?? 0, bias?.offset ?? 0, out.offset, mean.offset, rstd.offset, eps], rowGrid(rt, p, rows));
}

/**
 * Pass 1 of layer norm backward: each unit (an invocation, or a workgroup for
 * long rows) takes a block of rows, writes their gx and the block's partial
 * sums of gy * xhat and gy per column (each invocation owns its columns, so no
 * races). Pass 2 sums the blocks in order, with the reduction kernel.
 */
function layerNormBackwardSource(p: RowPlan, hasW: boolean, partials: boolean): KernelSource {
  const d = (c: string) => `load_gy(gb + ${c})${hasW ? ` * load_w(P.o_w + ${c})` : ''}`;
  const part = partials ? `
        let j = unit * P.cols + cc;
        let k = j + P.blocks * P.cols;
        if (r == r0) { put_part(j, g * xh); put_part(k, g); }
        else { put_part(j, load_part(j) + g * xh); put_part(k, load_part(k) + g); }` : '';
  return {
    key: `layerNormBackward:${planKey(p)}:${hasW}:${partials}`,
    subgroups: p.subgroups,
    params: [['rows', 'u32'], ['cols', 'u32'], ['per', 'u32'], ['blocks', 'u32'], ['o_x', 'u32'], ['o_w', 'u32'],
      ['o_mean', 'u32'], ['o_rstd', 'u32'], ['o_gy', 'u32'], ['o_gx', 'u32']],
    body: () => `${rowReductions(p)}
${rowMain(p, 'P.blocks')}
  let r0 = unit * P.per;
  let r1 = min(P.rows, r0 + P.per);
  for (var r = r0; r < r1; r = r + 1u) {
    let mu = load_mean(P.o_mean + r);
    let rs = load_rstd(P.o_rstd + r);
    let xb = P.o_x + r * P.cols;
    let gb = P.o_gy + r * P.cols;
    var acc = vec2<f32>(0.0, 0.0);
    ${colLoop(p)} {
      let xh = (load_x(xb + c) - mu) * rs;
      let dd = ${d('c')};
      acc = acc + vec2<f32>(dd, dd * xh);
    }
    let sums = row_sum2(acc) / f32(P.cols);
    let ob = P.o_gx + r * P.cols;
    for (var c = 2u * lane; c < P.cols; c = c + ${2 * p.lanes}u) {
      var v = array<f32, 2>(0.0, 0.0);
      var m = 0u;
      for (var h = 0u; h < 2u; h = h + 1u) {
        let cc = c + h;
        if (cc >= P.cols) { break; }
        m = m | (1u << h);
        let xh = (load_x(xb + cc) - mu) * rs;
        let g = load_gy(gb + cc);
        let dd = ${d('cc')};
        v[h] = rs * (dd - sums.x - xh * sums.y);${part}
      }
      put2_gx(ob + c, v[0], v[1], m);
    }
  }
}`,
  };
}

export function layerNormBackward(
  rt: Runtime, x: View, weight: View | null, mean: View, rstd: View, gy: View,
  gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
): void {
  if (rows === 0) {
    // Sums over no rows: zeros.
    if (gw) reduce(rt, 'sum', x, gw, 1, 0, cols);
    if (gb) reduce(rt, 'sum', x, gb, 1, 0, cols);
    return;
  }
  if (quadRows(cols, [x, gy, gx], [weight], [mean, rstd, ...(gw ? [gw] : []), ...(gb ? [gb] : [])])) {
    layerNormBackwardQuad(rt, x, weight, mean, rstd, gy, gx, gw, gb, rows, cols);
    return;
  }
  const p = rowPlan(rt, cols);
  // Enough blocks to keep every core (or SM) busy, few enough that the partials stay small.
  const per = Math.max(1, Math.ceil(rows / (p.lanes === 1 ? 512 : 256)));
  const blocks = Math.ceil(rows / per);
  const partials = !!(gw || gb);
  const part = partials ? rt.alloc('float32', 2 * blocks * cols) : null;
  const args: Arg[] = [
    { name: 'x', buf: x.buf, access: 'read' },
    { name: 'mean', buf: mean.buf, access: 'read' },
    { name: 'rstd', buf: rstd.buf, access: 'read' },
    { name: 'gy', buf: gy.buf, access: 'read' },
    { name: 'gx', buf: gx.buf, access: 'read_write', mode: rowMode(gx, cols, rows) },
  ];
  if (weight) args.push({ name: 'w', buf: weight.buf, access: 'read' });
  if (part) args.push({ name: 'part', buf: part, access: 'read_write' });
  rt.dispatch(layerNormBackwardSource(p, !!weight, partials), args,
    [rows, cols, per, blocks, x.offset, weight?.offset ?? 0, mean.offset, rstd.offset, gy.offset, gx.offset], rowGrid(rt, p, blocks));
  if (part) {
    if (gw) reduce(rt, 'sum', { buf: part, offset: 0, size: blocks * cols, dtype: 'float32' }, gw, 1, blocks, cols);
    if (gb) reduce(rt, 'sum', { buf: part, offset: blocks * cols, size: blocks * cols, dtype: 'float32' }, gb, 1, blocks, cols);
    rt.release(part);
  }
}

function layerNormBackwardQuad(
  rt: Runtime, x: View, weight: View | null, mean: View, rstd: View, gy: View,
  gx: View, gw: View | null, gb: View | null, rows: number, cols: number,
): void {
  const args: Arg[] = [
    { name: 'x', buf: x.buf, access: 'read', vec4: true },
    { name: 'gy', buf: gy.buf, access: 'read', vec4: true },
    { name: 'gx', buf: gx.buf, access: 'read_write', vec4: true },
    { name: 'mean', buf: mean.buf, access: 'read' },
    { name: 'rstd', buf: rstd.buf, access: 'read' },
  ];
  if (weight) args.push({ name: 'w', buf: weight.buf, access: 'read', vec4: true });
  rt.dispatch(layerNormBackwardQuadSource(!!weight), args,
    [rows, cols, x.offset, weight?.offset ?? 0, mean.offset, rstd.offset, gy.offset, gx.offset], rt.grid(Math.ceil(rows / QUAD_WG)));
  if (!gw && !gb) return;
  const chunks = Math.ceil(rows / PARAM_CHUNK);
  const part = rt.alloc('float32', 2 * chunks * cols);
  rt.dispatch(layerNormParamGradsSource, [
    { name: 'x', buf: x.buf, access: 'read', vec4: true },
    { name: 'gy', buf: gy.buf, access: 'read', vec4: true },
    { name: 'mean', buf: mean.buf, access: 'read' },
    { name: 'rstd', buf: rstd.buf, access: 'read' },
    { name: 'part', buf: part, access: 'read_write', vec4: true },
  ], [rows, cols, chunks, x.offset, mean.offset, rstd.offset, gy.offset], rt.grid(Math.ceil((chunks * cols) / 4 / QUAD_WG)));
  if (gw) reduce(rt, 'sum', { buf: part, offset: 0, size: chunks * cols, dtype: 'float32' }, gw, 1, chunks, cols);
  if (gb) reduce(rt, 'sum', { buf: part, offset: chunks * cols, size: chunks * cols, dtype: 'float32' }, gb, 1, chunks, cols);
  rt.release(part);
}

// ---- cross-entropy ----

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


// ---- vectorised row kernels --------------------------------------------------
//
// Rows whose length and offsets are multiples of 4, one invocation per row,
// read and written a quad (vec4) at a time: on CPU adapters every load costs
// a scalar load per invocation, so a quad per load is most of the speed.

const QUAD_WG = 64;

/** One invocation per row with quad loads: short rows, every row view and per-column vector on a multiple of 4, no buffer both ways. */
function quadRows(cols: number, rowViews: readonly View[], colViews: readonly (View | null)[], scalarViews: readonly View[]): boolean {
  if (cols % 4 !== 0 || cols > ROW_THREAD_MAX) return false;
  const vec = [...rowViews, ...colViews.filter((v): v is View => !!v)];
  if (!vec.every((v) => v.offset % 4 === 0)) return false;
  const vecBufs = new Set(vec.map((v) => v.buf));
  return !scalarViews.some((v) => vecBufs.has(v.buf));
}

const QUAD_MAIN = `@compute @workgroup_size(${QUAD_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = flat_id(gid, nwg, ${QUAD_WG}u);
  if (row >= P.rows) { return; }
  let nq = P.cols >> 2u;`;

function hsum(v: string): string {
  return `dot(${v}, vec4<f32>(1.0))`;
}

function layerNormQuadSource(hasW: boolean, hasB: boolean): KernelSource {
  const w = hasW ? ' * load4_w((P.o_w >> 2u) + q)' : '';
  const b = hasB ? ' + load4_b((P.o_b >> 2u) + q)' : '';
  return {
    key: `layerNormQuad:${hasW}:${hasB}`,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_w', 'u32'], ['o_b', 'u32'], ['o_out', 'u32'],
      ['o_mean', 'u32'], ['o_rstd', 'u32'], ['eps', 'f32']],
    body: () => `${QUAD_MAIN}
  let xb = (P.o_x + row * P.cols) >> 2u;
  var s = vec4<f32>(0.0);
  for (var q = 0u; q < nq; q = q + 1u) { s = s + load4_x(xb + q); }
  let mu = ${hsum('s')} / f32(P.cols);
  var v = vec4<f32>(0.0);
  for (var q = 0u; q < nq; q = q + 1u) { let d = load4_x(xb + q) - mu; v = v + d * d; }
  let rs = 1.0 / sqrt(${hsum('v')} / f32(P.cols) + P.eps);
  put_mean(P.o_mean + row, mu);
  put_rstd(P.o_rstd + row, rs);
  let ob = (P.o_out + row * P.cols) >> 2u;
  for (var q = 0u; q < nq; q = q + 1u) { put4_out(ob + q, (load4_x(xb + q) - mu) * rs${w}${b}); }
}`,
  };
}

/** gx of layer norm, one row per invocation. */
function layerNormBackwardQuadSource(hasW: boolean): KernelSource {
  const w = hasW ? ' * load4_w((P.o_w >> 2u) + q)' : '';
  return {
    key: `layerNormBackwardQuad:${hasW}`,
    params: [['rows', 'u32'], ['cols', 'u32'], ['o_x', 'u32'], ['o_w', 'u32'], ['o_mean', 'u32'], ['o_rstd', 'u32'], ['o_gy', 'u32'], ['o_gx', 'u32']],
    body: () => `${QUAD_MAIN}
  let mu = load_mean(P.o_mean + row);
  let rs = load_rstd(P.o_rstd + row);
  let xb = (P.o_x + row * P.cols) >> 2u;
  let gb = (P.o_gy + row * P.cols) >> 2u;
  var a = vec4<f32>(0.0);
  var ax = vec4<f32>(0.0);
  for (var q = 0u; q < nq; q = q + 1u) {
    let xh = (load4_x(xb + q) - mu) * rs;
    let d = load4_gy(gb + q)${w};
    a = a + d;
    ax = ax + d * xh;
  }
  let md = ${hsum('a')} / f32(P.cols);
  let mdx = ${hsum('ax')} / f32(P.cols);
  let ob = (P.o_gx + row * P.cols) >> 2u;
  for (var q = 0u; q < nq; q = q + 1u) {
    let xh = (load4_x(xb + q) - mu) * rs;
    let d = load4_gy(gb + q)${w};
    put4_gx(ob + q, rs * (d - md - xh * mdx));
  }
}`,
  };
}

const PARAM_CHUNK = 64;

/**
 * Per chunk of rows and quad of columns: the partial sums of gy * xhat (into
 * part[0, chunk]) and gy (part[1, chunk]); the reduction kernel then sums the
 * chunks in order.
 */
const layerNormParamGradsSource: KernelSource = {
  key: 'layerNormParamGrads',
  params: [['rows', 'u32'], ['cols', 'u32'], ['chunks', 'u32'], ['o_x', 'u32'], ['o_mean', 'u32'], ['o_rstd', 'u32'], ['o_gy', 'u32']],
  body: () => `@compute @workgroup_size(${QUAD_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat_id(gid, nwg, ${QUAD_WG}u);
  let nq = P.cols >> 2u;
  let ch = t / nq;
  if (ch >= P.chunks) { return; }
  let q = t % nq;
  let r0 = ch * ${PARAM_CHUNK}u;
  let r1 = min(P.rows, r0 + ${PARAM_CHUNK}u);
  var dw = vec4<f32>(0.0);
  var db = vec4<f32>(0.0);
  for (var r = r0; r < r1; r = r + 1u) {
    let g = load4_gy(((P.o_gy + r * P.cols) >> 2u) + q);
    let xh = (load4_x(((P.o_x + r * P.cols) >> 2u) + q) - load_mean(P.o_mean + r)) * load_rstd(P.o_rstd + r);
    dw = dw + g * xh;
    db = db + g;
  }
  put4_part(ch * nq + q, dw);
  put4_part((P.chunks + ch) * nq + q, db);
}`,
};

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
