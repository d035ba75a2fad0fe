// Every WGSL helper function the kernels share, in one table: its full name,
// what it computes and its source. A kernel asks for a helper by calling it;
// `linkHelpers` puts into the shader the helpers the kernel calls and those
// they call in turn, nothing else.
//
// Two kinds:
// - WGSL_FUNCTIONS: fixed names (`is_nan`, `f32_to_f16_bits`, ...).
// - BINDING_HELPERS: one function per storage binding, named `<helper>_<binding>`:
//   `put2bits_out` is the entry 'put2bits_<binding>' made for the binding `out`.
//   Its source depends on how the binding is declared (dtype, access, atomic
//   words, four elements per entry, native f16), so each entry's `source`
//   gives the WGSL for one declaration, or undefined where the helper does not
//   exist for it. The backend declares each GPU buffer once, as `b<i>`, and a
//   kernel's argument names forward to it (`load_x` calls `load_b0`).
// - row_<operand> and idx_<operand> (rowHelper, indexHelper): index helpers
//   made from an operand's layout parameters in the uniform P.
// The matrix-product kernels declare their operands as element-indexed views
// of their own; those helpers are the entries of OPERAND_HELPERS in
// vector-io.ts, in the same form.
//
// Storage formats are those of ../storage.ts: 16-bit elements two per u32
// word, element i in word i >> 1 (low half for even i). Widening is exact;
// narrowing is integer round-to-nearest-even, bit-identical to the CPU
// backend, and branch-free: on SIMD implementations (lavapipe) a branch whose
// lanes disagree runs both sides anyway.

import type { DType } from '../../../dtype/dtype.js';
import { is16Bit, type Access } from '../storage.js';

/** A helper with a fixed name. */
export interface WgslFunction {
  /** What it computes. */
  readonly doc: string;
  readonly wgsl: string;
}

export const WGSL_FUNCTIONS = {
  f16_bits_to_f32: {
    doc: 'float16 bits (low 16 bits of h) widened to f32, exactly (subnormals, infinities and NaN kept).',
    wgsl: /* wgsl */ `fn f16_bits_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  let normal = bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
  let special = bitcast<f32>(sign | 0x7f800000u | (m << 13u));
  // Subnormal (or zero): m * 2^-24 is exact in f32.
  let sub = f32(m) * 5.9604644775390625e-8;
  return select(select(normal, special, e == 31u), select(sub, -sub, sign != 0u), e == 0u);
}`,
  },
  bf16_bits_to_f32: {
    doc: 'bfloat16 bits (low 16 bits of h) widened to f32, exactly.',
    wgsl: /* wgsl */ `fn bf16_bits_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }`,
  },
  f32_to_f16_bits: {
    doc: 'v rounded to float16, round to nearest even, as bits in the low half: overflow gives infinity, subnormals are kept, every NaN becomes 0x7e00.',
    wgsl: /* wgsl */ `fn f32_to_f16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  let e = i32(a >> 23u) - 112;
  let mant = a & 0x7fffffu;
  // Normal result: drop 13 mantissa bits, round to nearest even (a carry may reach infinity).
  let hn = (u32(clamp(e, 0, 31)) << 10u) | (mant >> 13u);
  let rn = mant & 0x1fffu;
  let normal = hn + select(0u, 1u, rn > 0x1000u || (rn == 0x1000u && (hn & 1u) != 0u));
  // Subnormal result: the significand shifted right by 14 - e (25 and more give zero).
  let shift = u32(clamp(14 - e, 14, 25));
  let m = mant | 0x800000u;
  let hs = m >> shift;
  let rs = m & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  let sub = hs + select(0u, 1u, rs > half || (rs == half && (hs & 1u) != 0u));
  let h = select(select(sub, normal, e > 0), 0x7c00u, e >= 31);
  // Every NaN becomes the canonical quiet NaN.
  return select(sign | h, 0x7e00u, a > 0x7f800000u);
}`,
  },
  f32_to_bf16_bits: {
    doc: 'v rounded to bfloat16, round to nearest even (PyTorch\'s rule), as bits in the low half; every NaN becomes 0x7fc0.',
    wgsl: /* wgsl */ `fn f32_to_bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u, 0x7fc0u, (b & 0x7fffffffu) > 0x7f800000u);
}`,
  },
  is_nan: {
    doc: 'Whether x is a NaN, tested on its bits so that no fast-math pass can fold it away.',
    wgsl: /* wgsl */ `fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }`,
  },
  is_finite: {
    doc: 'Whether x is neither infinite nor NaN, tested on its bits.',
    wgsl: /* wgsl */ `fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`,
  },
  nan_f32: {
    doc: "The quiet NaN 0x7fc00000 (through a var: WGSL's constant evaluation rejects a constant NaN).",
    wgsl: /* wgsl */ `fn nan_f32() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }`,
  },
  inf_f32: {
    doc: "Positive infinity (through a var: WGSL's constant evaluation rejects a constant infinity).",
    wgsl: /* wgsl */ `fn inf_f32() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }`,
  },
  flat_id: {
    doc: 'The invocation index of a dispatch laid out as a 2-D grid of workgroups of wg invocations (grids wider than the 65535-workgroup limit wrap into y).',
    wgsl: /* wgsl */ `fn flat_id(gid: vec3u, nwg: vec3u, wg: u32) -> u32 { return gid.x + gid.y * nwg.x * wg; }`,
  },
  hsum: {
    doc: 'The sum of the four components of v, in the order x + y + z + w.',
    wgsl: /* wgsl */ `fn hsum(v: vec4<f32>) -> f32 { return v.x + v.y + v.z + v.w; }`,
  },
} as const satisfies Record<string, WgslFunction>;

export type WgslFunctionName = keyof typeof WGSL_FUNCTIONS;

/** The source of fixed-name helpers, in the order given. */
export function wgslFunctions(...names: readonly WgslFunctionName[]): string {
  return names.map((n) => WGSL_FUNCTIONS[n].wgsl).join('\n');
}

/** The narrowing helpers, for shaders that store 16-bit values. */
export const WGSL_NARROW_16 = wgslFunctions('f32_to_f16_bits', 'f32_to_bf16_bits');

// ---- per-binding helpers ------------------------------------------------------

/** How one storage buffer is declared in a shader. */
export interface BindingKind {
  dtype: DType;
  access: Access;
  /** array<atomic<u32>>: invocations share words (16-bit elements at odd offsets, strided scatters). read_write only. */
  atomic: boolean;
  /** Four elements per array entry: vec4<f32>, vec4<i32>, vec4<f16>, or vec2<u32> for 16-bit halves. */
  vec4: boolean;
  /** float16 read as array<f16> (needs shader-f16 and `enable f16;`); read access only. */
  native: boolean;
}

/** A helper made for each binding `b`; its WGSL name is `<base>_<b>`. */
export interface BindingHelper {
  /** The full name, with `<binding>` standing for the binding's name. */
  readonly name: `${string}_<binding>`;
  /** What it computes; indices are element indices into the whole buffer, q a quad index (element 4q). */
  readonly doc: string;
  /** Offered under a kernel argument's name (forwarding to the buffer's binding); else internal to other helpers. */
  readonly forwarded: boolean;
  /** Parameters and result, for forwarding. */
  readonly params: string;
  readonly returns?: string;
  /** The WGSL for binding `b` declared as `k`, or undefined where the helper does not exist for it. */
  source(b: string, k: BindingKind): string | undefined;
}

const widenFn = (k: BindingKind) => (k.dtype === 'float16' ? 'f16_bits_to_f32' : 'bf16_bits_to_f32');
const narrowFn = (k: BindingKind) => (k.dtype === 'float16' ? 'f32_to_f16_bits' : 'f32_to_bf16_bits');
/** Stored as 16-bit halves in u32 words (not native f16). */
const halves = (k: BindingKind) => is16Bit(k.dtype) && !k.native;
const word32 = (k: BindingKind) => k.dtype === 'float32' || k.dtype === 'int32';
const scalarType = (k: BindingKind) => (k.dtype === 'float32' ? 'f32' : k.dtype === 'int32' ? 'i32' : 'f16');
const writable = (k: BindingKind) => k.access === 'read_write';

export const BINDING_HELPERS: readonly BindingHelper[] = [
  {
    name: 'load_<binding>',
    doc: 'Element i as f32 (16-bit floats widened exactly, int32 converted).',
    forwarded: true, params: 'i: u32', returns: 'f32',
    source: (b, k) => {
      if (k.vec4) return `fn load_${b}(i: u32) -> f32 { ${halves(k) ? `return ${widenFn(k)}(loadbits_${b}(i));` : `return f32(${b}[i >> 2u][i & 3u]);`} }`;
      if (k.atomic) {
        if (k.dtype === 'float32') return `fn load_${b}(i: u32) -> f32 { return bitcast<f32>(atomicLoad(&${b}[i])); }`;
        if (k.dtype === 'int32') return `fn load_${b}(i: u32) -> f32 { return f32(loadi_${b}(i)); }`;
        return `fn load_${b}(i: u32) -> f32 { return ${widenFn(k)}((atomicLoad(&${b}[i >> 1u]) >> ((i & 1u) * 16u)) & 0xffffu); }`;
      }
      if (k.dtype === 'float32') return `fn load_${b}(i: u32) -> f32 { return ${b}[i]; }`;
      if (!halves(k)) return `fn load_${b}(i: u32) -> f32 { return f32(${b}[i]); }`;
      return `fn load_${b}(i: u32) -> f32 { return ${widenFn(k)}((${b}[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu); }`;
    },
  },
  {
    name: 'loadi_<binding>',
    doc: 'Element i of an int32 binding as i32.',
    forwarded: true, params: 'i: u32', returns: 'i32',
    source: (b, k) => {
      if (k.dtype !== 'int32') return undefined;
      if (k.vec4) return `fn loadi_${b}(i: u32) -> i32 { return ${b}[i >> 2u][i & 3u]; }`;
      if (k.atomic) return `fn loadi_${b}(i: u32) -> i32 { return bitcast<i32>(atomicLoad(&${b}[i])); }`;
      return `fn loadi_${b}(i: u32) -> i32 { return ${b}[i]; }`;
    },
  },
  {
    name: 'loadbits_<binding>',
    doc: 'The raw bits of element i (16-bit patterns in the low half). Not for native-f16 bindings.',
    forwarded: true, params: 'i: u32', returns: 'u32',
    source: (b, k) => {
      if (k.native) return undefined;
      if (k.vec4) {
        return halves(k)
          ? `fn loadbits_${b}(i: u32) -> u32 { return (${b}[i >> 2u][(i >> 1u) & 1u] >> ((i & 1u) * 16u)) & 0xffffu; }`
          : `fn loadbits_${b}(i: u32) -> u32 { return bitcast<u32>(${b}[i >> 2u][i & 3u]); }`;
      }
      if (halves(k)) return `fn loadbits_${b}(i: u32) -> u32 { return (word_${b}(i >> 1u) >> ((i & 1u) * 16u)) & 0xffffu; }`;
      return k.atomic
        ? `fn loadbits_${b}(i: u32) -> u32 { return atomicLoad(&${b}[i]); }`
        : `fn loadbits_${b}(i: u32) -> u32 { return bitcast<u32>(${b}[i]); }`;
    },
  },
  {
    name: 'load4_<binding>',
    doc: 'Elements 4q .. 4q + 3 as vec4<f32>, in one memory access. vec4 bindings only.',
    forwarded: true, params: 'q: u32', returns: 'vec4<f32>',
    source: (b, k) => {
      if (!k.vec4) return undefined;
      if (!halves(k)) return `fn load4_${b}(q: u32) -> vec4<f32> { return vec4<f32>(${b}[q]); }`;
      const w = widenFn(k);
      return `fn load4_${b}(q: u32) -> vec4<f32> { let h = loadbits4_${b}(q); return vec4<f32>(${w}(h.x), ${w}(h.y), ${w}(h.z), ${w}(h.w)); }`;
    },
  },
  {
    name: 'loadbits4_<binding>',
    doc: 'The raw bits of elements 4q .. 4q + 3. vec4 bindings only, not native f16.',
    forwarded: true, params: 'q: u32', returns: 'vec4<u32>',
    source: (b, k) => {
      if (!k.vec4 || k.native) return undefined;
      return halves(k)
        ? `fn loadbits4_${b}(q: u32) -> vec4<u32> { let w = ${b}[q]; return vec4<u32>(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u); }`
        : `fn loadbits4_${b}(q: u32) -> vec4<u32> { return bitcast<vec4<u32>>(${b}[q]); }`;
    },
  },
  {
    name: 'word_<binding>',
    doc: 'The u32 word w of a 16-bit binding (elements 2w and 2w + 1).',
    forwarded: false, params: 'w: u32', returns: 'u32',
    source: (b, k) => {
      if (k.vec4 || !halves(k)) return undefined;
      return `fn word_${b}(w: u32) -> u32 { return ${k.atomic ? `atomicLoad(&${b}[w])` : `${b}[w]`}; }`;
    },
  },
  {
    name: 'setword_<binding>',
    doc: 'Stores the whole word w of a 16-bit binding.',
    forwarded: false, params: 'w: u32, b: u32',
    source: (b, k) => {
      if (k.vec4 || !halves(k) || !writable(k)) return undefined;
      const store = k.atomic ? `atomicStore(&${b}[w], b)` : `${b}[w] = b`;
      return `fn setword_${b}(w: u32, b: u32) { ${store}; }`;
    },
  },
  {
    name: 'sethalf_<binding>',
    doc: 'Stores the 16 bits h as element e, keeping the other half of its word (atomicAnd/atomicOr on atomic bindings).',
    forwarded: false, params: 'e: u32, h: u32',
    source: (b, k) => {
      if (k.vec4 || !halves(k) || !writable(k)) return undefined;
      return k.atomic
        ? `fn sethalf_${b}(e: u32, h: u32) { let s = (e & 1u) * 16u; atomicAnd(&${b}[e >> 1u], ~(0xffffu << s)); atomicOr(&${b}[e >> 1u], h << s); }`
        : `fn sethalf_${b}(e: u32, h: u32) { let s = (e & 1u) * 16u; let w = e >> 1u; ${b}[w] = (${b}[w] & ~(0xffffu << s)) | (h << s); }`;
    },
  },
  {
    name: 'putbits_<binding>',
    doc: 'Stores the raw bits b as element e.',
    forwarded: true, params: 'e: u32, b: u32',
    source: (b, k) => {
      if (!writable(k)) return undefined;
      if (k.vec4) {
        return halves(k)
          ? `fn putbits_${b}(e: u32, h: u32) { let s = (e & 1u) * 16u; let q = e >> 2u; let k = (e >> 1u) & 1u; ${b}[q][k] = (${b}[q][k] & ~(0xffffu << s)) | (h << s); }`
          : `fn putbits_${b}(e: u32, b: u32) { ${b}[e >> 2u][e & 3u] = bitcast<${scalarType(k)}>(b); }`;
      }
      if (halves(k)) return `fn putbits_${b}(e: u32, b: u32) { sethalf_${b}(e, b); }`;
      return k.atomic
        ? `fn putbits_${b}(e: u32, b: u32) { atomicStore(&${b}[e], b); }`
        : `fn putbits_${b}(e: u32, b: u32) { ${b}[e] = bitcast<${scalarType(k)}>(b); }`;
    },
  },
  {
    name: 'put_<binding>',
    doc: 'Stores v as element e: rounded to nearest even for 16-bit floats, truncated toward zero for int32.',
    forwarded: true, params: 'e: u32, v: f32',
    source: (b, k) => {
      if (!writable(k)) return undefined;
      if (halves(k)) {
        return k.vec4
          ? `fn put_${b}(e: u32, v: f32) { putbits_${b}(e, ${narrowFn(k)}(v)); }`
          : `fn put_${b}(e: u32, v: f32) { sethalf_${b}(e, ${narrowFn(k)}(v)); }`;
      }
      if (k.vec4) return `fn put_${b}(e: u32, v: f32) { ${b}[e >> 2u][e & 3u] = ${k.dtype === 'float32' ? 'v' : 'i32(v)'}; }`;
      return `fn put_${b}(e: u32, v: f32) { putbits_${b}(e, ${k.dtype === 'float32' ? 'bitcast<u32>(v)' : 'bitcast<u32>(i32(v))'}); }`;
    },
  },
  {
    name: 'put2bits_<binding>',
    doc: 'Stores the bits b0 as element e0 and b1 as e0 + 1 (bit 0 of m writes e0, bit 1 writes e0 + 1); for scalar 16-bit bindings one whole-word store when e0 is even and m == 3.',
    forwarded: true, params: 'e0: u32, b0: u32, b1: u32, m: u32',
    source: (b, k) => {
      if (!writable(k)) return undefined;
      if (halves(k) && !k.vec4) {
        return `fn put2bits_${b}(e0: u32, b0: u32, b1: u32, m: u32) {
  if (m == 3u && (e0 & 1u) == 0u) { setword_${b}(e0 >> 1u, b0 | (b1 << 16u)); return; }
  if ((m & 1u) != 0u) { sethalf_${b}(e0, b0); }
  if ((m & 2u) != 0u) { sethalf_${b}(e0 + 1u, b1); }
}`;
      }
      return `fn put2bits_${b}(e0: u32, b0: u32, b1: u32, m: u32) { if ((m & 1u) != 0u) { putbits_${b}(e0, b0); } if ((m & 2u) != 0u) { putbits_${b}(e0 + 1u, b1); } }`;
    },
  },
  {
    name: 'put2_<binding>',
    doc: 'Stores v0 as element e0 and v1 as e0 + 1 under the mask m of put2bits_<binding>.',
    forwarded: true, params: 'e0: u32, v0: f32, v1: f32, m: u32',
    source: (b, k) => {
      if (!writable(k)) return undefined;
      if (halves(k) && !k.vec4) return `fn put2_${b}(e0: u32, v0: f32, v1: f32, m: u32) { put2bits_${b}(e0, ${narrowFn(k)}(v0), ${narrowFn(k)}(v1), m); }`;
      return `fn put2_${b}(e0: u32, v0: f32, v1: f32, m: u32) { if ((m & 1u) != 0u) { put_${b}(e0, v0); } if ((m & 2u) != 0u) { put_${b}(e0 + 1u, v1); } }`;
    },
  },
  {
    name: 'put4_<binding>',
    doc: 'Stores v as elements 4q .. 4q + 3 (16-bit floats rounded to nearest even). vec4 bindings only; the invocation must own the quad.',
    forwarded: true, params: 'q: u32, v: vec4<f32>',
    source: (b, k) => {
      if (!k.vec4 || !writable(k)) return undefined;
      if (!halves(k)) return `fn put4_${b}(q: u32, v: vec4<f32>) { ${b}[q] = ${k.dtype === 'float32' ? 'v' : 'vec4<i32>(v)'}; }`;
      const n = narrowFn(k);
      return `fn put4_${b}(q: u32, v: vec4<f32>) { put4bits_${b}(q, vec4<u32>(${n}(v.x), ${n}(v.y), ${n}(v.z), ${n}(v.w))); }`;
    },
  },
  {
    name: 'put4bits_<binding>',
    doc: 'Stores the raw bits b as elements 4q .. 4q + 3. vec4 bindings only; the invocation must own the quad.',
    forwarded: true, params: 'q: u32, b: vec4<u32>',
    source: (b, k) => {
      if (!k.vec4 || !writable(k)) return undefined;
      return halves(k)
        ? `fn put4bits_${b}(q: u32, b: vec4<u32>) { ${b}[q] = vec2<u32>(b.x | (b.y << 16u), b.z | (b.w << 16u)); }`
        : `fn put4bits_${b}(q: u32, b: vec4<u32>) { ${b}[q] = bitcast<vec4<${scalarType(k)}>>(b); }`;
    },
  },
  {
    name: 'raise_<binding>',
    doc: 'Sets element i to 1.0 unless it holds a larger non-negative value: a race-free "found" flag. Atomic float32 bindings only.',
    forwarded: true, params: 'i: u32',
    source: (b, k) => (k.atomic && k.dtype === 'float32' && !k.vec4 ? `fn raise_${b}(i: u32) { atomicMax(&${b}[i], 0x3f800000u); }` : undefined),
  },
];

/** The declaration of binding `index` as `b<index>` of kind `k`. */
export function declareStorage(index: number, k: BindingKind): string {
  let ty: string;
  if (k.atomic && !k.vec4) ty = 'atomic<u32>';
  else if (halves(k)) ty = k.vec4 ? 'vec2<u32>' : 'u32';
  else ty = k.vec4 ? `vec4<${scalarType(k)}>` : scalarType(k);
  return `@group(0) @binding(${index}) var<storage, ${k.access}> b${index}: array<${ty}>;`;
}

/** The helpers of binding `b` declared as `k`, by WGSL name. */
export function bindingHelpers(b: string, k: BindingKind): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of BINDING_HELPERS) {
    const src = h.source(b, k);
    if (src !== undefined) out.set(h.name.replace('<binding>', b), src);
  }
  return out;
}

/**
 * The helpers of a kernel argument `arg` on binding `b` (declared as `k`), each
 * forwarding to the binding's own: the forwarded helpers that exist for the
 * binding, less the writing ones when the argument is read-only.
 */
export function argumentHelpers(arg: string, b: string, k: BindingKind, access: Access): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of BINDING_HELPERS) {
    if (!h.forwarded || h.source(b, k) === undefined) continue;
    if (access === 'read' && h.returns === undefined) continue; // a store
    const name = h.name.replace('<binding>', '');
    const args = h.params.split(',').map((p) => p.split(':')[0]!.trim()).join(', ');
    out.set(name + arg, h.returns
      ? `fn ${name}${arg}(${h.params}) -> ${h.returns} { return ${name}${b}(${args}); }`
      : `fn ${name}${arg}(${h.params}) { ${name}${b}(${args}); }`);
  }
  return out;
}

const CALL = /\b([A-Za-z_][A-Za-z0-9_]*)\s*\(/g;
const DEFINED = /\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(/g;

/**
 * The helpers that `code` calls, directly or through other helpers, from
 * `available` (WGSL name -> source) and WGSL_FUNCTIONS: the functions to put
 * into the shader beside `code`. A function that `code` defines itself is its
 * own. WGSL lets a module use a function before its declaration, so the order
 * is that of the table, then of `available`.
 */
export function linkHelpers(code: string, available: ReadonlyMap<string, string> = new Map()): string[] {
  const own = new Set([...code.matchAll(DEFINED)].map((m) => m[1]!));
  const sourceOf = (name: string): string | undefined =>
    own.has(name) ? undefined : Object.hasOwn(WGSL_FUNCTIONS, name) ? WGSL_FUNCTIONS[name as WgslFunctionName].wgsl : available.get(name);
  const used = new Set<string>();
  const visit = (text: string) => {
    for (const m of text.matchAll(CALL)) {
      const name = m[1]!;
      if (used.has(name)) continue;
      const src = sourceOf(name);
      if (src === undefined) continue;
      used.add(name);
      visit(src);
    }
  };
  visit(code);
  const fixed = Object.keys(WGSL_FUNCTIONS).filter((n) => used.has(n)).map((n) => WGSL_FUNCTIONS[n as WgslFunctionName].wgsl);
  return [...fixed, ...[...available.keys()].filter((n) => used.has(n)).map((n) => available.get(n)!)];
}

// ---- per-operand helpers, from layout parameters in the uniform P --------------

/** `row_<operand>(b, h, t)`: the element index of row t of batch b, head h, from P.<operand>_o, _b, _h and _t (attention). */
export function rowHelper(operand: string): string {
  const x = operand;
  return `fn row_${x}(b: u32, h: u32, t: u32) -> u32 { return P.${x}_o + b * P.${x}_b + h * P.${x}_h + t * P.${x}_t; }`;
}

/**
 * `idx_<operand>(i)`: the element of the operand that iteration i of an
 * elementwise kernel reads or writes: 'contiguous' from offset P.o_<operand>,
 * 'scalar' always at that offset, 'strided' over `dims` dimensions of sizes
 * P.d<k> with strides P.s_<operand>_<k> (in elements, possibly negative).
 */
export function indexHelper(operand: string, layout: 'contiguous' | 'scalar' | 'strided', dims: number): string {
  const x = operand;
  if (layout === 'contiguous') return `fn idx_${x}(i: u32) -> u32 { return P.o_${x} + i; }`;
  if (layout === 'scalar') return `fn idx_${x}(i: u32) -> u32 { return P.o_${x}; }`;
  const body: string[] = [`var r = i; var o = i32(P.o_${x});`];
  for (let d = dims - 1; d >= 0; d--) {
    body.push(d > 0 ? `o += i32(r % P.d${d}) * P.s_${x}_${d}; r = r / P.d${d};` : `o += i32(r) * P.s_${x}_0;`);
  }
  return `fn idx_${x}(i: u32) -> u32 { ${body.join(' ')} return u32(o); }`;
}
