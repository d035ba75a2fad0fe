// Layer norm over the last dimension, forward and backward. The weight and
// bias gradients are reduced over rows in a second pass, in a fixed order.

import type { View } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { reduce } from './reduce.js';
import {
  colLoop, hsum, pairLoop, planKey, QUAD_MAIN, QUAD_WG, quadRows, rowGrid, rowMain, rowMode, rowPlan, rowReductions,
  scalarMode, type RowPlan,
} from './row-kernel.js';

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
