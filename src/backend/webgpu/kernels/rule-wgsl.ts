// Update-rule expressions (update-rule.ts) as WGSL. Parts that depend on
// hyperparameters only are folded on the host, in float64, into uniforms, so a
// new learning rate changes a number, never the shader; parts that depend on
// the call's scalars are computed once per call (by the rule's one-invocation
// kernel) and read by the element kernels from a scratch buffer.

import { BackendError } from '../../backend.js';
import { namesIn, type Expr, type UpdateRule } from '../../update-rule.js';

/** WGSL functions the rule kernels use: 1 - e^y, float32 tests as 1/0, and the correctly rounded reciprocal. */
export const WGSL_RULE_HELPERS = /* wgsl */ `
// 1 - e^y for y <= 0 without cancellation near 0 (bias corrections with beta close to 1).
fn one_minus_exp(y: f32) -> f32 {
  if (y > -0.1) { return -(y * (1.0 + y * (0.5 + y * (0.16666667 + y * (0.041666668 + y * (0.008333334 + y * 0.0013888889)))))); }
  return 1.0 - exp(y);
}
fn finite_f(x: f32) -> f32 { return select(0.0, 1.0, is_finite(x)); }
fn finite_v(x: vec4<f32>) -> vec4<f32> { return vec4<f32>(finite_f(x.x), finite_f(x.y), finite_f(x.z), finite_f(x.w)); }
// The float32 nearest to 1/x (ties to even), by integer long division: WGSL's 1.0 / x need not be correctly rounded.
fn recip_f(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  let sign = b & 0x80000000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return x; }
  if (a == 0x7f800000u) { return bitcast<f32>(sign); }
  if (a == 0u) { return bitcast<f32>(sign | 0x7f800000u); }
  // x = (m / 2^23) 2^e with m in [2^23, 2^24), subnormals normalised.
  var e = i32(a >> 23u) - 127;
  var m = (a & 0x7fffffu) | 0x800000u;
  if (e == -127) {
    let shift = countLeadingZeros(a) - 8u;
    m = a << shift;
    e = -126 - i32(shift);
  }
  // 1/x = (q / 2^24) 2^E with q in [2^24, 2^25): a power of two exactly, else 2^24 / m in (1, 2),
  // its integer bit and 24 more by long division, with E one lower.
  var q = 1u << 24u;
  var rem = 0u;
  var E = -e;
  if (m != 0x800000u) {
    E = -e - 1;
    q = 1u;
    rem = (1u << 24u) - m;
    for (var i = 0; i < 24; i++) {
      rem = rem << 1u;
      q = q << 1u;
      if (rem >= m) { rem = rem - m; q = q | 1u; }
    }
  }
  let sticky = rem != 0u;
  if (E >= -126) {
    var mant = q >> 1u;
    let r = (q & 1u) != 0u;
    if (r && (sticky || (mant & 1u) != 0u)) { mant = mant + 1u; }
    if (mant == (1u << 24u)) { mant = mant >> 1u; E = E + 1; }
    if (E > 127) { return bitcast<f32>(sign | 0x7f800000u); }
    return bitcast<f32>(sign | (u32(E + 127) << 23u) | (mant & 0x7fffffu));
  }
  // Subnormal: the field is q 2^(E + 125), rounded to nearest even.
  let s = u32(-(E + 125));
  if (s > 25u) { return bitcast<f32>(sign); }
  var keep = q >> s;
  let low = q & ((1u << s) - 1u);
  let half = 1u << (s - 1u);
  if (low > half || (low == half && (sticky || (keep & 1u) != 0u))) { keep = keep + 1u; }
  return bitcast<f32>(sign | keep);
}
fn recip_v(x: vec4<f32>) -> vec4<f32> { return vec4<f32>(recip_f(x.x), recip_f(x.y), recip_f(x.z), recip_f(x.w)); }
`;

/** What names mean to the emitter. */
export interface Scope {
  /** WGSL for a name that is neither a hyperparameter nor folded: a slot, a tensor scalar, a scalar. */
  name(n: string): { code: string; vec: boolean };
  /** Whether a name is a hyperparameter. */
  isHyper(n: string): boolean;
  /** WGSL for a call-level part (it reads scalars, no slot or tensor scalar), or null to emit it in place. */
  callLevel?(e: Expr): string | null;
  /** Registers a hyperparameter-only part and returns its uniform's WGSL. */
  fold(e: Expr): string;
  /** Whether the names of this scope hold vec4s (the four-element variant of an element kernel). */
  vec4: boolean;
}

function literal(n: number): string {
  if (!Number.isFinite(n)) throw new BackendError(`webgpu: update rules take finite constants, got ${n}`);
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/** Whether e reads only hyperparameters and constants. */
export function hyperOnly(e: Expr, isHyper: (n: string) => boolean): boolean {
  return [...namesIn(e)].every(isHyper);
}

type Code = { code: string; vec: boolean };

/** WGSL of an expression; booleans are 1.0 and 0.0, as in the rule. */
export function emit(e: Expr, s: Scope): Code {
  if (typeof e === 'number') return { code: literal(e), vec: false };
  if (hyperOnly(e, s.isHyper)) return { code: s.fold(e), vec: false };
  const call = s.callLevel?.(e);
  if (call) return { code: call, vec: false };
  if (typeof e === 'string') return s.name(e);
  if (e.op === 'oneMinusPow' && hyperOnly(e.args[0]!, s.isHyper)) {
    // 1 - a^b = 1 - e^(b log a), with log a folded on the host.
    const b = emit(e.args[1]!, s);
    return { code: `one_minus_exp(${b.code} * ${s.fold({ op: 'log', args: [e.args[0]!] })})`, vec: b.vec };
  }
  const a = e.args.map((x) => emit(x, s));
  const vec = a.some((x) => x.vec);
  const T = vec ? 'vec4<f32>' : 'f32';
  const splat = (x: Code) => (vec && !x.vec ? `vec4<f32>(${x.code})` : x.code);
  const bool = (cond: string): Code => ({ code: `select(${T}(0.0), ${T}(1.0), ${cond})`, vec });
  const [x, y, z] = a as [Code, Code, Code];
  switch (e.op) {
    case 'add': return { code: `(${x.code} + ${y.code})`, vec };
    case 'sub': return { code: `(${x.code} - ${y.code})`, vec };
    case 'mul': return { code: `(${x.code} * ${y.code})`, vec };
    case 'div': return { code: `(${x.code} / ${y.code})`, vec };
    case 'sqrt': return { code: `sqrt(${x.code})`, vec };
    case 'log': return { code: `log(${x.code})`, vec };
    case 'oneMinusPow': return { code: `(1.0 - pow(${splat(x)}, ${splat(y)}))`, vec };
    case 'reciprocal': return { code: vec ? `recip_v(${x.code})` : `recip_f(${x.code})`, vec };
    case 'finite': return { code: vec ? `finite_v(${x.code})` : `finite_f(${x.code})`, vec };
    case 'eq': return bool(`${splat(x)} == ${splat(y)}`);
    case 'ge': return bool(`${splat(x)} >= ${splat(y)}`);
    case 'or': return bool(`(${splat(x)} != ${T}(0.0)) | (${splat(y)} != ${T}(0.0))`);
    case 'select': {
      // A scalar condition selects between vectors as a whole; a vector one element by element.
      const cond = x.vec ? `${x.code} != vec4<f32>(0.0)` : `${x.code} != 0.0`;
      return { code: `select(${splat(z)}, ${splat(y)}, ${cond})`, vec };
    }
  }
}

/** The rule's kinds of names. */
export function nameKinds(rule: UpdateRule) {
  const hypers = new Set(rule.hypers);
  const scalars = new Set(rule.scalars);
  const tensorScalars = new Set(rule.tensorScalars ?? []);
  const slots = new Set(rule.slots);
  /** Reads scalars and nothing per tensor or per element: computed once per call. */
  const isCallLevel = (e: Expr) => {
    const names = [...namesIn(e)];
    return names.some((n) => scalars.has(n)) && names.every((n) => scalars.has(n) || hypers.has(n));
  };
  return { hypers, scalars, tensorScalars, slots, isCallLevel };
}
