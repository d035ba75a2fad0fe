// What the row kernels (softmax, layer norm, cross-entropy) share: how rows
// map to invocations, the per-row reductions, and the loops and write modes
// over a row's columns. Everything accumulates in f32.

import type { View } from '../../backend.js';
import type { Runtime } from '../runtime.js';
import { is16Bit, type WriteMode } from '../storage.js';

/**
 * How a row kernel maps rows to invocations. Rows of up to ROW_THREAD_MAX
 * elements get one invocation each (no workgroup memory, no barriers: cheap to
 * compile and fast on CPU adapters); longer rows get a workgroup of `lanes`
 * invocations that reduce through workgroup memory (after a subgroup
 * reduction where the adapter has subgroups).
 */
export interface RowPlan {
  lanes: number;
  wg: number;
  subgroups: boolean;
}

const ROW_THREAD_MAX = 1024;

export function rowPlan(rt: Runtime, cols: number): RowPlan {
  if (cols <= ROW_THREAD_MAX) return { lanes: 1, wg: 64, subgroups: false };
  return { lanes: 256, wg: 256, subgroups: rt.opts.subgroups };
}

export function planKey(p: RowPlan): string {
  return `${p.lanes}:${p.wg}:${p.subgroups ? 'sg' : ''}`;
}

/**
 * row_sum2, row_sum and row_max over the `lanes` invocations of a row (the
 * identity when a row has one invocation). Call from uniform control flow.
 * Max ignores NaN as the CPU's "if (x > max) max = x" does (when a subgroup
 * max meets a NaN the row's result is NaN either way).
 */
export function rowReductions(p: RowPlan): string {
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
export function rowMain(p: RowPlan, limit: string): string {
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

export function rowGrid(rt: Runtime, p: RowPlan, units: number): [number, number] {
  return rt.grid(p.lanes === 1 ? Math.ceil(units / p.wg) : units);
}

/** Owned when every row of `cols` 16-bit elements starting at `offset` begins on a word. */
export function rowMode(v: View, cols: number, rows: number): WriteMode {
  if (!is16Bit(v.dtype)) return 'owned';
  return v.offset % 2 === 0 && (cols % 2 === 0 || rows === 1) ? 'owned' : 'atomic';
}

/** Scalars written one per row (means, lse): 16-bit neighbours share words. */
export function scalarMode(v: View): WriteMode {
  return is16Bit(v.dtype) ? 'atomic' : 'owned';
}

/** Stores f(c) and f(c + 1) for this invocation's column pairs of a row. */
export function pairLoop(p: RowPlan, out: string, base: string, f: (c: string) => string): string {
  return `for (var c = 2u * lane; c < P.cols; c = c + ${2 * p.lanes}u) {
    let v0 = ${f('c')};
    var v1 = 0.0;
    var m = 1u;
    if (c + 1u < P.cols) { v1 = ${f('(c + 1u)')}; m = 3u; }
    put2_${out}(${base} + c, v0, v1, m);
  }`;
}

/** `for (var c = lane; c < P.cols; c += lanes)` */
export function colLoop(p: RowPlan): string {
  return `for (var c = lane; c < P.cols; c = c + ${p.lanes}u)`;
}

// ---- vectorised row kernels --------------------------------------------------
//
// Rows whose length and offsets are multiples of 4, one invocation per row,
// read and written a quad (vec4) at a time: on CPU adapters every load costs
// a scalar load per invocation, so a quad per load is most of the speed.

export const QUAD_WG = 64;

/** One invocation per row with quad loads: short rows, every row view and per-column vector on a multiple of 4, no buffer both ways. */
export function quadRows(cols: number, rowViews: readonly View[], colViews: readonly (View | null)[], scalarViews: readonly View[]): boolean {
  if (cols % 4 !== 0 || cols > ROW_THREAD_MAX) return false;
  const vec = [...rowViews, ...colViews.filter((v): v is View => !!v)];
  if (!vec.every((v) => v.offset % 4 === 0)) return false;
  const vecBufs = new Set(vec.map((v) => v.buf));
  return !scalarViews.some((v) => vecBufs.has(v.buf));
}

export const QUAD_MAIN = `@compute @workgroup_size(${QUAD_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = flat_id(gid, nwg, ${QUAD_WG}u);
  if (row >= P.rows) { return; }
  let nq = P.cols >> 2u;`;

export function hsum(v: string): string {
  return `dot(${v}, vec4<f32>(1.0))`;
}
