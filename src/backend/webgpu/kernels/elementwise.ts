// The one template behind the long tail of elementwise kernels: unary and
// binary ops with strided broadcasting, where, strided copy, cast, fill,
// dropout, causal fill, gather and the like. A kernel is a WGSL body that
// computes one element from its inputs (already loaded, addressed by their
// strides) and the element index `i`; the template does the addressing, the
// dtype conversions and the stores.
//
// Addressing: the iteration shape is first collapsed (size-1 dims dropped,
// dims that every operand walks contiguously merged), then each operand is
// classified as contiguous (index = offset + i), scalar (index = offset) or
// general (an odometer over up to MAX_DIMS dims with per-dim strides from the
// uniforms). So the common cases cost no index arithmetic.
//
// Walks: when every operand is contiguous (or a scalar) with its quads lined
// up with the output's, each invocation moves quads, one vector load per
// operand and one vector store per four elements (on CPU adapters each load
// costs a scalar load per invocation, so this is most of the speed). Other
// contiguous outputs are written a 32-bit word at a time (two elements per
// invocation: 16-bit outputs need one writer per word; the edge words of a
// view at an odd offset keep their other half). A strided output (copy into
// a slice or a permuted view) is written one element per invocation, with
// atomic half-word stores for 16-bit dtypes.

import type { Strided, View } from '../../backend.js';
import { BackendError } from '../../backend.js';
import { collapse, type Operand } from '../../cpu/strided.js';
import { sizeOf } from '../../../dtype/shape.js';
import type { Arg, Runtime } from '../runtime.js';
import { indexHelper } from './wgsl-helpers.js';
import { forEachPart, tooLarge } from '../split.js';
import { is16Bit, type Access, type WriteMode } from '../storage.js';

const WG = 256;
const MAX_DIMS = 8;
const QUADS_PER_INVOCATION = 4;

export interface EwInput {
  name: string;
  src: Strided;
  /** Load raw bits (u32) instead of an f32 value (default: the kernel's `bits`). */
  raw?: boolean;
}

/** A binding read (or written) directly by the body, outside the iteration: `load_<name>(P.o_<name> + k)`. */
export interface EwAux {
  name: string;
  view: View;
  access?: Access;
  mode?: WriteMode;
  /** Read raw bits (`loadbits_`). */
  bits?: boolean;
}

export interface Elementwise {
  /** Identifies body, fns, the scalar counts and the input/aux names. */
  key: string;
  out: Strided;
  shape: readonly number[];
  inputs?: readonly EwInput[];
  aux?: readonly EwAux[];
  /** WGSL statements computing element `i` (u32, index into the iteration) from the inputs; ends in `return`. */
  body: string;
  /** Values are raw bits (u32) of one dtype shared by the inputs and the output: exact moves. */
  bits?: boolean;
  /** f32 scalars P.f0, P.f1, ... and u32 scalars P.u0, P.u1, ... */
  f?: readonly number[];
  u?: readonly number[];
  /** Extra WGSL functions. */
  fns?: string;
  random?: boolean;
  /** The body's `i` of the first element (a part of a split iteration: split.ts); default 0. */
  base?: number;
}

type Kind = 'c' | 's' | 'g';
const INDEX_LAYOUT = { c: 'contiguous', s: 'scalar', g: 'strided' } as const;

function kindOf(strides: readonly number[], cs: readonly number[]): Kind {
  if (strides.every((s, d) => s === cs[d])) return 'c';
  if (strides.every((s) => s === 0)) return 's';
  return 'g';
}

/** How the output is walked: four elements per invocation with vector loads, two (a word), or one per element (strided). */
type Walk = 'quads' | 'words' | 'scatter';

export function elementwise(rt: Runtime, e: Elementwise): void {
  const n = sizeOf(e.shape);
  if (n === 0) return;
  const inputs = e.inputs ?? [];
  const aux = e.aux ?? [];
  if (tooLarge(rt, [e.out.view.buf, ...inputs.map((x) => x.src.view.buf)])) {
    forEachPart(rt, `kernel ${e.key}`, e.shape, [e.out, ...inputs.map((x) => x.src)], (p) => elementwise(rt, {
      ...e, base: (e.base ?? 0) + p.base, shape: p.shape, out: p.operands[0]!,
      inputs: inputs.map((x, k) => ({ ...x, src: p.operands[k + 1]! })),
    }));
    return;
  }
  const ops: Operand[] = [e.out, ...inputs.map((x) => x.src)];
  const c = collapse(e.shape, ops);
  const nd = c.shape.length;
  if (nd > MAX_DIMS) throw new BackendError(`webgpu: ${e.key}: iteration over ${nd} non-mergeable dimensions (at most ${MAX_DIMS})`);
  const cs: number[] = new Array<number>(nd);
  for (let d = nd - 1, acc = 1; d >= 0; d--) { cs[d] = acc; acc *= c.shape[d]!; }
  const kinds = c.strides.map((s) => kindOf(s, cs));
  const outView = e.out.view;
  const offsets = ops.map((o, k) => (k === 0 ? outView : inputs[k - 1]!.src.view).offset + o.offset);
  const outOff = offsets[0]!;
  const bits = !!e.bits;
  const general = kinds.some((k) => k === 'g');
  // Quads: every operand contiguous (or a scalar) with its quads lined up with the output's, and
  // no other binding on their buffers (a buffer is declared one way in a kernel).
  const bufs = [outView.buf, ...inputs.map((x) => x.src.view.buf)];
  const walk: Walk = kinds[0] !== 'c' ? 'scatter'
    : n >= 8 && kinds.every((k, i) => k === 's' || (k === 'c' && (offsets[i]! - outOff) % 4 === 0))
      && !aux.some((a) => bufs.includes(a.view.buf)) ? 'quads' : 'words';

  // Parameters, in declaration order.
  const params: [string, 'u32' | 'i32' | 'f32'][] = [];
  const values: number[] = [];
  const add = (name: string, ty: 'u32' | 'i32' | 'f32', v: number) => { params.push([name, ty]); values.push(v); };
  add('n', 'u32', n);
  add('i0', 'u32', e.base ?? 0);
  const unit = walk === 'quads' ? 4 : walk === 'words' ? 2 : 1;
  const units = walk === 'scatter' ? n : Math.floor((outOff + n - 1) / unit) - Math.floor(outOff / unit) + 1;
  const perInvocation = walk === 'quads' ? QUADS_PER_INVOCATION : 1;
  const [gx, gy] = rt.grid(Math.ceil(units / perInvocation / WG));
  if (walk !== 'scatter') {
    add('w0', 'u32', Math.floor(outOff / unit));
    add('end', 'u32', outOff + n);
  }
  if (walk === 'quads') add('span', 'u32', gx * gy * WG);
  if (general) c.shape.forEach((d, k) => add(`d${k}`, 'u32', d));
  const names = ['out', ...inputs.map((x) => x.name)];
  ops.forEach((_, k) => {
    add(`o_${names[k]}`, 'u32', offsets[k]!);
    if (kinds[k] === 'g') c.strides[k]!.forEach((s, d) => add(`s_${names[k]}_${d}`, 'i32', s));
  });
  for (const a of aux) add(`o_${a.name}`, 'u32', a.view.offset);
  (e.f ?? []).forEach((v, k) => add(`f${k}`, 'f32', v));
  (e.u ?? []).forEach((v, k) => add(`u${k}`, 'u32', v >>> 0));

  const key = `ew:${e.key}|${kinds.join('')}|${nd}|${bits ? 'b' : 'v'}|${walk}|${aux.map((a) => a.name).join(',')}|${e.f?.length ?? 0},${e.u?.length ?? 0}`;
  const src = { key, params, body: () => generate(e, kinds, nd, names, walk, bits), random: e.random };

  const quads = walk === 'quads';
  const args: Arg[] = [{
    name: 'out', buf: outView.buf, access: 'read_write',
    mode: walk === 'scatter' && is16Bit(outView.dtype) ? 'atomic' : 'owned', bits, vec4: quads,
  }];
  inputs.forEach((x, k) => args.push({ name: x.name, buf: x.src.view.buf, access: 'read', bits: x.raw ?? bits, vec4: quads && kinds[k + 1] === 'c' }));
  for (const a of aux) args.push({ name: a.name, buf: a.view.buf, access: a.access ?? 'read', mode: a.mode, bits: a.bits });
  // A scalar input on the same buffer as a quad operand is read through the quad declaration.
  if (quads) for (const a of args) if (!a.vec4 && bufs.includes(a.buf)) a.vec4 = true;
  rt.dispatch(src, args, values, [gx, gy]);
}

function generate(e: Elementwise, kinds: readonly Kind[], nd: number, names: readonly string[], walk: Walk, bits: boolean): string {
  const inputs = e.inputs ?? [];
  const lines: string[] = [];
  // Index functions.
  names.forEach((name, k) => lines.push(indexHelper(name, INDEX_LAYOUT[kinds[k]!], nd)));
  const ty = bits ? 'u32' : 'f32';
  const raw = inputs.map((x) => x.raw ?? bits);
  lines.push(WGSL_MATH);
  if (e.fns) lines.push(e.fns);
  // The op: element i of the iteration from its inputs' values.
  const formals = inputs.map((x, k) => `, ${x.name}: ${raw[k] ? 'u32' : 'f32'}`).join('');
  lines.push(`fn op(i: u32${formals}) -> ${ty} {\n  ${e.body}\n}`);
  const loads = inputs.map((x, k) => `, ${raw[k] ? 'loadbits' : 'load'}_${x.name}(idx_${x.name}(i))`).join('');
  lines.push(`fn value(i: u32) -> ${ty} { return op(P.i0 + i${loads}); }`);
  const put = bits ? 'putbits_out' : 'put_out';
  const put2 = bits ? 'put2bits_out' : 'put2_out';
  const head = `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat_id(gid, nwg, ${WG}u);`;
  if (walk === 'quads') {
    // Whole quads in one vector load per operand and one vector store; the ragged ends element by element.
    const vecLoads = inputs.map((x, k) => kinds[k + 1] === 'c'
      ? `  let ${x.name}4 = ${raw[k] ? 'loadbits4' : 'load4'}_${x.name}((P.o_${x.name} + r) >> 2u);`
      : `  let ${x.name}4 = vec4<${raw[k] ? 'u32' : 'f32'}>(${raw[k] ? 'loadbits' : 'load'}_${x.name}(P.o_${x.name}));`).join('\n');
    const lane = (j: number, comp: string) => `op(P.i0 + r + ${j}u${inputs.map((x) => `, ${x.name}4.${comp}`).join('')})`;
    // Several quads per invocation, a grid-stride apart: fewer, longer invocations run faster on CPU adapters.
    lines.push(`${head}
  for (var k = 0u; k < ${QUADS_PER_INVOCATION}u; k = k + 1u) {
    let q = P.w0 + t + k * P.span;
    let e0 = q * 4u;
    if (e0 >= P.end) { return; }
    if (e0 >= P.o_out && e0 + 4u <= P.end) {
      let r = e0 - P.o_out;
  ${vecLoads}
      ${bits ? 'put4bits_out' : 'put4_out'}(q, vec4<${ty}>(${lane(0, 'x')}, ${lane(1, 'y')}, ${lane(2, 'z')}, ${lane(3, 'w')}));
    } else {
      for (var e = max(e0, P.o_out); e < min(e0 + 4u, P.end); e = e + 1u) { ${put}(e, value(e - P.o_out)); }
    }
  }
}`);
  } else if (walk === 'words') {
    lines.push(`${head}
  let e0 = (P.w0 + t) * 2u;
  if (e0 >= P.end) { return; }
  var m = 0u;
  var v0: ${ty}; var v1: ${ty};
  if (e0 >= P.o_out) { m = 1u; v0 = value(e0 - P.o_out); }
  if (e0 + 1u < P.end) { m = m | 2u; v1 = value(e0 + 1u - P.o_out); }
  ${put2}(e0, v0, v1, m);
}`);
  } else {
    lines.push(`${head}
  if (t >= P.n) { return; }
  ${put}(idx_out(t), value(t));
}`);
  }
  return lines.join('\n');
}

/** Math shared by the elementwise ops, with the CPU backend's conventions for NaN, infinities and signed zeros. */
export const WGSL_MATH = /* wgsl */ `
const GELU_K: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;
// tanh that is accurate near 0 (no exp cancellation) and saturates without inf/inf.
fn tanh_s(x: f32) -> f32 {
  if (is_nan(x)) { return x; }
  let a = abs(x);
  if (a < 0.5) {
    let z = x * x;
    return x * (1.0 + z * (-0.3333333333 + z * (0.1333333333 + z * (-0.0539682540 + z * (0.0218694885
      + z * (-0.0088632355 + z * (0.0035921280 + z * (-0.0014558344 + z * 0.0005900274))))))));
  }
  let q = exp(-2.0 * min(a, 20.0));
  let r = (1.0 - q) / (1.0 + q);
  return select(r, -r, x < 0.0);
}
// log and log2 that are exact for subnormal inputs too (some implementations read them as 2^-127 * mantissa).
fn log2_f(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if (b > 0u && b < 0x00800000u) { return log2(f32(b)) - 149.0; }
  return log2(x);
}
fn log_f(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if (b > 0u && b < 0x00800000u) { return log(f32(b)) - 103.27892990343184; }
  return log(x);
}
// tanh-GELU through 1 + tanh(u) = 2 / (1 + e^(-2u)): one exp, no branch, no cancellation.
fn gelu_f(x: f32) -> f32 { return x / (1.0 + exp(-2.0 * GELU_K * (x + GELU_C * x * x * x))); }
fn gelu_grad_f(x0: f32) -> f32 {
  // Beyond |x| = 12 the derivative is 0 or 1 to f32 precision; clamping keeps x^3 and e finite.
  let x = clamp(x0, -12.0, 12.0);
  let a = -2.0 * GELU_K * (x + GELU_C * x * x * x);
  let e = exp(min(a, 80.0));
  // Past u = -19 tanh(u) is -1 in float64 too: the derivative is exactly 0 there, as on the CPU.
  let sg = select(1.0 / (1.0 + e), 0.0, a > 38.0);
  // 0.5 (1 + t) = sg and 1 - t^2 = 4 sg (1 - sg), with 1 - sg = e sg.
  let g = sg + 2.0 * x * sg * (e * sg) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
  // Infinities and NaN give NaN, as on the CPU (inf * 0).
  return select(g, nan_f32(), !is_finite(x0));
}
fn sigmoid_f(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
// Math.pow: integer powers of negative numbers, signed zeros and infinities as in JavaScript.
fn pow_f(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  if (is_nan(x) || is_nan(y)) { return nan_f32(); }
  if (y == 1.0) { return x; }
  if (y == 2.0) { return x * x; }
  let ax = abs(x);
  if (ax == 1.0 && !is_finite(y)) { return nan_f32(); }
  var r: f32;
  if (ax == 0.0) { r = select(0.0, inf_f32(), y < 0.0); }
  else if (!is_finite(ax)) { r = select(inf_f32(), 0.0, y < 0.0); }
  else {
    // exp2 saturates instead of overflowing on some implementations.
    let e = y * log2_f(ax);
    if (e >= 128.0) { r = inf_f32(); } else if (e < -150.0) { r = 0.0; } else { r = exp2(e); }
  }
  if ((bitcast<u32>(x) & 0x80000000u) != 0u) {
    let big = !is_finite(y) || abs(y) >= 16777216.0;
    if (!big && fract(y) != 0.0) { return select(nan_f32(), r, ax == 0.0 || !is_finite(ax)); }
    if (!big && (i32(y) & 1) != 0) { return -r; }
  }
  return r;
}
fn max_f(a: f32, b: f32) -> f32 { if (is_nan(a) || is_nan(b)) { return nan_f32(); } return select(b, a, a > b || (a == b && (bitcast<u32>(a) & 0x80000000u) == 0u)); }
fn min_f(a: f32, b: f32) -> f32 { if (is_nan(a) || is_nan(b)) { return nan_f32(); } return select(b, a, a < b || (a == b && (bitcast<u32>(a) & 0x80000000u) != 0u)); }
fn b2f(c: bool) -> f32 { return select(0.0, 1.0, c); }
`;

/** Each unary op as a WGSL expression of `x` (and the scalars P.f0, P.f1). */
export const UNARY_WGSL: Record<import('../../backend.js').UnaryOp, string> = {
  neg: '-x',
  exp: 'exp(x)',
  log: 'log_f(x)',
  sqrt: 'sqrt(x)',
  rsqrt: '1.0 / sqrt(x)',
  tanh: 'tanh_s(x)',
  relu: 'select(0.0, x, x > 0.0 || is_nan(x))',
  gelu: 'gelu_f(x)',
  sigmoid: 'sigmoid_f(x)',
  abs: 'abs(x)',
  square: 'x * x',
  reciprocal: '1.0 / x',
  sign: 'select(select(x, -1.0, x < 0.0), 1.0, x > 0.0)',
  pow: 'pow_f(x, P.f0)',
  affine: 'x * P.f0 + P.f1',
};

/** Each binary op as a WGSL expression of `a` and `b`. Comparisons involving NaN are false (ne: true). */
export const BINARY_WGSL: Record<import('../../backend.js').BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  pow: 'pow_f(a, b)',
  maximum: 'max_f(a, b)',
  minimum: 'min_f(a, b)',
  eq: 'b2f(a == b && !is_nan(a))',
  ne: 'b2f(!(a == b && !is_nan(a)))',
  gt: 'b2f(a > b && !is_nan(a) && !is_nan(b))',
  ge: 'b2f(a >= b && !is_nan(a) && !is_nan(b))',
  lt: 'b2f(a < b && !is_nan(a) && !is_nan(b))',
  le: 'b2f(a <= b && !is_nan(a) && !is_nan(b))',
  relu_grad: 'select(0.0, b, a > 0.0 && !is_nan(a))',
  gelu_grad: 'b * gelu_grad_f(a)',
  tanh_grad: 'b * (1.0 - a * a)',
  sigmoid_grad: 'b * a * (1.0 - a)',
};
