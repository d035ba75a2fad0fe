// Multi-tensor kernels for mixed-precision training: the sum of squares for
// gradient clipping, the loss scale update, and AdamW and SGD over every
// tensor of a group. Everything stays on the device: a one-invocation kernel
// reads the GradScaler's found-inf flag, advances the step counter (only when
// the step is not skipped) and leaves the skip flag and the bias corrections
// in a small scratch buffer that the per-tensor kernels read. One dispatch per
// tensor, all recorded without a host round trip.

import type { AdamWHyper, OptimizerGroup, SGDHyper, View } from '../../backend.js';
import { BackendError } from '../../backend.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, nonzeroMask, type WriteMode } from '../storage.js';
import { chunksFor, reduce, reducePass } from './reduce.js';

/** Views of one buffer that follow each other are merged into one (fewer dispatches). */
export function mergeAdjacent(views: readonly View[]): View[] {
  const out: View[] = [];
  for (const v of views) {
    if (v.size === 0) continue;
    const last = out[out.length - 1];
    if (last && last.buf === v.buf && last.offset + last.size === v.offset) out[out.length - 1] = { ...last, size: last.size + v.size };
    else out.push(v);
  }
  return out;
}


// ---- sum of squares ----

export function sumOfSquares(rt: Runtime, views: readonly View[], out: View): void {
  const merged = mergeAdjacent(views);
  // Each tensor's squares are summed in chunks into a slice of one partial buffer, which is then summed in a fixed order.
  const plan = merged.map((v) => {
    const chunks = chunksFor(v.size, 1);
    return { v, chunks, len: Math.ceil(v.size / chunks) };
  });
  const total = plan.reduce((a, p) => a + p.chunks, 0);
  const part = rt.alloc('float32', Math.max(total, 1));
  let slot = 0;
  for (const { v, chunks, len } of plan) {
    reducePass(rt, 'sumsq', v, { buf: part, offset: slot, size: chunks, dtype: 'float32' }, 1, v.size, 1, chunks, len);
    slot += chunks;
  }
  // Zero when there is nothing to sum.
  reduce(rt, 'sum', { buf: part, offset: 0, size: total, dtype: 'float32' }, out, 1, total, 1);
  rt.release(part);
}

// ---- loss scale ----

const updateScaleSource: KernelSource = {
  key: 'updateScale',
  params: [['o_s', 'u32'], ['o_t', 'u32'], ['o_f', 'u32'], ['fmask', 'u32'], ['growth', 'f32'], ['backoff', 'f32'], ['interval', 'f32']],
  body: () => `@compute @workgroup_size(1) fn main() {
  let s = load_scale(P.o_s);
  if ((loadbits_found(P.o_f) & P.fmask) != 0u) {
    put_scale(P.o_s, s * P.backoff);
    put_tracker(P.o_t, 0.0);
    return;
  }
  let successful = load_tracker(P.o_t) + 1.0;
  if (successful >= P.interval) {
    let grown = s * P.growth;
    if (is_finite(grown)) { put_scale(P.o_s, grown); }
    put_tracker(P.o_t, 0.0);
  } else {
    put_tracker(P.o_t, successful);
  }
}`,
};

export function updateScale(
  rt: Runtime, scale: View, tracker: View, found: View, growthFactor: number, backoffFactor: number, growthInterval: number,
): void {
  rt.dispatch(updateScaleSource, [
    { name: 'scale', buf: scale.buf, access: 'read_write' },
    { name: 'tracker', buf: tracker.buf, access: 'read_write' },
    { name: 'found', buf: found.buf, access: 'read', bits: true },
  ], [scale.offset, tracker.offset, found.offset, nonzeroMask(found.dtype), growthFactor, backoffFactor, growthInterval], [1]);
}

// ---- optimizer steps ----

/**
 * One invocation: skip flag into scratch[0]; otherwise step += 1 and, for
 * AdamW, lr / (1 - beta1^t) and sqrt(1 - beta2^t) into scratch[1..2]; for SGD,
 * whether this is the first step into scratch[1].
 */
function stepSource(adam: boolean, hasFound: boolean): KernelSource {
  return {
    key: `optimStep:${adam}:${hasFound}`,
    params: [['o_step', 'u32'], ['o_f', 'u32'], ['fmask', 'u32'], ['lr', 'f32'], ['lnb1', 'f32'], ['lnb2', 'f32']],
    body: () => `
// 1 - e^y for y <= 0 without cancellation near 0 (bias corrections with beta close to 1).
fn one_minus_exp(y: f32) -> f32 {
  if (y > -0.1) { return -(y * (1.0 + y * (0.5 + y * (0.16666667 + y * (0.041666668 + y * (0.008333334 + y * 0.0013888889)))))); }
  return 1.0 - exp(y);
}
@compute @workgroup_size(1) fn main() {
  ${hasFound ? 'if ((loadbits_found(P.o_f) & P.fmask) != 0u) { put_scr(0u, 1.0); return; }' : ''}
  put_scr(0u, 0.0);
  let t = load_step(P.o_step) + 1.0;
  put_step(P.o_step, t);
  ${adam
    ? 'put_scr(1u, P.lr / one_minus_exp(t * P.lnb1));\n  put_scr(2u, sqrt(one_minus_exp(t * P.lnb2)));'
    : 'put_scr(1u, select(0.0, 1.0, t == 1.0));'}
}`,
  };
}

function runStep(rt: Runtime, group: OptimizerGroup, adam: boolean, lr: number, beta1: number, beta2: number) {
  const scr = rt.alloc('float32', 4);
  const args: Arg[] = [
    { name: 'step', buf: group.step.buf, access: 'read_write' },
    { name: 'scr', buf: scr, access: 'read_write' },
  ];
  if (group.foundInf) args.push({ name: 'found', buf: group.foundInf.buf, access: 'read', bits: true });
  const f = group.foundInf;
  rt.dispatch(stepSource(adam, !!f), args,
    [group.step.offset, f?.offset ?? 0, f ? nonzeroMask(f.dtype) : 0, lr, Math.log(beta1), Math.log(beta2)], [1]);
  return scr;
}

const UPD_WG = 128;

interface Update {
  key: string;
  /**
   * WGSL computing `np`, the new value, from `p` (current value), `g` (gradient)
   * and the state values `s_<name>`, and each new state `n_<name>`. Written
   * once and used for one element (f32) or four (vec4<f32>): plain arithmetic only.
   */
  body: string;
  params: [string, 'u32' | 'i32' | 'f32'][];
  values: number[];
  state: { name: string; view: View }[];
}

/**
 * The per-tensor kernel: the template around an update rule, driven by the
 * parameter's quads (four elements per invocation with vector loads, when
 * every tensor lines up) or words (two).
 */
function updateSource(u: Update, master: boolean, sr: boolean, quads: boolean): KernelSource {
  const srFn = sr ? `
fn round_sr(v: f32, k: u32) -> u32 {
  let b = bitcast<u32>(v);
  let r = (b + (random_bits(P.key, P.ctr + k) & 0xffffu)) >> 16u;
  return select(r, f32_to_bf16_bits(v), (b & 0x7f800000u) == 0x7f800000u);
}` : '';
  const src = master ? 'master' : 'param';
  const srcOff = master ? 'P.o_master' : 'P.o_p';
  // Loads, the rule and the stores of one element (k) or one quad (k, a multiple of 4 past every offset).
  const step = (T: string, ld: string, st: string, at: (o: string) => string) => `
  let g = ${ld}_g(${at('P.o_g')});
  let p = ${ld}_${src}(${at(srcOff)});
  ${u.state.map((x) => `let s_${x.name} = ${ld}_${x.name}(${at(`P.o_${x.name}`)});`).join('\n  ')}
  ${u.body}
  ${u.state.map((x) => `${st}_${x.name}(${at(`P.o_${x.name}`)}, n_${x.name});`).join('\n  ')}
  ${master ? `${st}_master(${at('P.o_master')}, np);` : ''}
  let out: ${T} = np;`;
  const one = `fn update(k: u32) -> f32 {${step('f32', 'load', 'put', (o) => `${o} + k`)}
  return out;
}`;
  const four = quads ? `fn update4(k: u32) -> vec4<f32> {${step('vec4<f32>', 'load4', 'put4', (o) => `(${o} + k) >> 2u`)}
  return out;
}` : '';
  const write4 = sr
    ? 'put4bits_param(q, vec4<u32>(round_sr(v.x, k0), round_sr(v.y, k0 + 1u), round_sr(v.z, k0 + 2u), round_sr(v.w, k0 + 3u)));'
    : 'put4_param(q, v);';
  const write1 = sr ? 'putbits_param(e, round_sr(update(e - P.o_p), e - P.o_p));' : 'put_param(e, update(e - P.o_p));';
  const main = quads ? `
  let q = P.w0 + t;
  let e0 = q * 4u;
  if (e0 >= P.end) { return; }
  if (e0 >= P.o_p && e0 + 4u <= P.end) {
    let k0 = e0 - P.o_p;
    let v = update4(k0);
    ${write4}
    return;
  }
  for (var e = max(e0, P.o_p); e < min(e0 + 4u, P.end); e = e + 1u) { ${write1} }` : `
  let e0 = (P.w0 + t) * 2u;
  if (e0 >= P.end) { return; }
  let k0 = e0 - P.o_p;
  var v = array<f32, 2>(0.0, 0.0);
  var m = 0u;
  if (e0 >= P.o_p) { m = 1u; v[0] = update(k0); }
  if (e0 + 1u < P.end) { m = m | 2u; v[1] = update(k0 + 1u); }
  ${sr ? 'put2bits_param(e0, round_sr(v[0], k0), round_sr(v[1], k0 + 1u), m);' : 'put2_param(e0, v[0], v[1], m);'}`;
  return {
    key: `update:${u.key}:${master}:${sr}:${quads}`,
    random: sr,
    params: [['w0', 'u32'], ['end', 'u32'], ['o_p', 'u32'], ['o_g', 'u32'], ['o_master', 'u32'], ['key', 'u32'], ['ctr', 'u32'],
      ...u.state.map((x) => [`o_${x.name}`, 'u32'] as [string, 'u32']), ...u.params],
    body: () => `${srFn}
${one}
${four}
@compute @workgroup_size(${UPD_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (load_scr(0u) != 0.0) { return; }
  let t = flat_id(gid, nwg, ${UPD_WG}u);${main}
}`,
  };
}

/** 'owned' if a 16-bit tensor's words line up with the parameter's (then the parameter's word owner owns them too). */
function alignedMode(v: View, param: View): WriteMode {
  return !is16Bit(v.dtype) || (v.offset - param.offset) % 2 === 0 ? 'owned' : 'atomic';
}

function runUpdates(rt: Runtime, group: OptimizerGroup, scr: Buf, rule: (i: number) => Update): void {
  const sr = group.stochasticRounding;
  let offset = 0;
  group.params.forEach((param, i) => {
    const grad = group.grads[i]!;
    const master = group.master?.[i];
    if (grad.size !== param.size || (master && master.size !== param.size)) {
      throw new BackendError(`webgpu: optimizer tensor ${i}: parameter of ${param.size} elements, gradient of ${grad.size}${master ? `, master of ${master.size}` : ''}`);
    }
    const u = rule(i);
    const useSr = !!(sr && master && param.dtype === 'bfloat16');
    // Quads when every tensor's quads line up with the parameter's and no two of them share a buffer.
    const views = [param, grad, ...(master ? [master] : []), ...u.state.map((x) => x.view)];
    const quads = param.size >= 8 && views.every((v) => (v.offset - param.offset) % 4 === 0)
      && new Set(views.map((v) => v.buf)).size === views.length;
    const args: Arg[] = [
      { name: 'param', buf: param.buf, access: 'read_write', bits: useSr, vec4: quads },
      { name: 'g', buf: grad.buf, access: 'read', vec4: quads },
      { name: 'scr', buf: scr, access: 'read' },
    ];
    if (master) args.push({ name: 'master', buf: master.buf, access: 'read_write', mode: alignedMode(master, param), vec4: quads });
    for (const x of u.state) args.push({ name: x.name, buf: x.view.buf, access: 'read_write', mode: alignedMode(x.view, param), vec4: quads });
    const unit = quads ? 4 : 2;
    const w0 = Math.floor(param.offset / unit);
    const n = param.size === 0 ? 0 : Math.floor((param.offset + param.size - 1) / unit) - w0 + 1;
    if (n > 0) {
      rt.dispatch(updateSource(u, !!master, useSr, quads), args, [
        w0, param.offset + param.size, param.offset, grad.offset, master?.offset ?? 0,
        sr?.key ?? 0, ((sr?.start ?? 0) + offset) >>> 0, ...u.state.map((x) => x.view.offset), ...u.values,
      ], rt.grid(Math.ceil(n / UPD_WG)));
    }
    offset += param.size;
  });
}

type Buf = ReturnType<Runtime['alloc']>;

export function adamw(rt: Runtime, group: OptimizerGroup, h: AdamWHyper): void {
  const scr = runStep(rt, group, true, h.lr, h.beta1, h.beta2);
  runUpdates(rt, group, scr, (i) => ({
    key: 'adamw',
    body: `let n_m = P.b1 * s_m + P.omb1 * g;
  let n_v = P.b2 * s_v + P.omb2 * g * g;
  let np = p * P.decay - load_scr(1u) * n_m / (sqrt(n_v) / load_scr(2u) + P.eps);`,
    params: [['b1', 'f32'], ['omb1', 'f32'], ['b2', 'f32'], ['omb2', 'f32'], ['eps', 'f32'], ['decay', 'f32']],
    values: [h.beta1, 1 - h.beta1, h.beta2, 1 - h.beta2, h.eps, 1 - h.lr * h.weightDecay[i]!],
    state: [{ name: 'm', view: group.state0[i]! }, { name: 'v', view: group.state1[i]! }],
  }));
  rt.release(scr);
}

export function sgd(rt: Runtime, group: OptimizerGroup, h: SGDHyper): void {
  const scr = runStep(rt, group, false, h.lr, 0.5, 0.5);
  const momentum = h.momentum !== 0;
  runUpdates(rt, group, scr, (i) => ({
    key: `sgd:${momentum}:${h.nesterov}`,
    body: `let d0 = g + P.wd * p;
  ${momentum ? `// The first step copies the gradient into the momentum buffer.
  let n_buf = select(P.mom * s_buf + P.omd * d0, d0, load_scr(1u) != 0.0);
  let d = ${h.nesterov ? 'd0 + P.mom * n_buf' : 'n_buf'};` : 'let d = d0;'}
  let np = p - P.lr * d;`,
    params: [['wd', 'f32'], ['mom', 'f32'], ['omd', 'f32'], ['lr', 'f32']],
    values: [h.weightDecay[i]!, h.momentum, 1 - h.dampening, h.lr],
    state: momentum ? [{ name: 'buf', view: group.state0[i]! }] : [],
  }));
  rt.release(scr);
}
