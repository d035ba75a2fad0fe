// How each dtype is laid out in a GPU buffer, and the WGSL that reads and
// writes it. Every kernel declares its bindings through `declare` (or
// `declareBinding` / `declareVec4`, which add element helpers on the same
// layout), so there is one definition of each layout.
//
// - float32: array<f32>; int32: array<i32>.
// - float16 and bfloat16: 16-bit halves, two per u32 word, element i in word
//   i >> 1 (low half for even i): the same bytes as a native f16 array.
//   Widening is exact. Narrowing is done with integer arithmetic, round to
//   nearest even, so results are bit-identical to the CPU backend (WGSL leaves
//   the rounding of f32 -> f16 conversions to the implementation). A kernel
//   that writes 16-bit output writes whole words: one invocation owns both
//   halves of a word; where it cannot ('atomic' mode: odd offsets, strided
//   scatters), halves are written with atomicAnd/atomicOr.
// - With the `shader-f16` feature, float16 inputs may be read as array<f16>
//   instead (`nativeF16`); outputs still go through the exact narrowing.

import type { DType } from '../../dtype/dtype.js';

export type Access = 'read' | 'read_write';

export interface StorageOptions {
  /** Read float16 inputs as array<f16> (needs the shader-f16 feature and `enable f16;`). */
  nativeF16: boolean;
}

/** WGSL functions f32 -> float16 / bfloat16 bits (the low 16 bits of a u32), round to nearest even; branch-free. */
export const WGSL_NARROW_16 = /* wgsl */ `
fn f32_to_f16_bits(v: f32) -> u32 {
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
}
fn f32_to_bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u, 0x7fc0u, (b & 0x7fffffffu) > 0x7f800000u);
}
`;

/**
 * WGSL functions for exact 16-bit conversions; include once per shader.
 * Branch-free (every case computed, then selected): on SIMD implementations
 * (lavapipe) a branch whose lanes disagree runs both sides anyway.
 */
export const WGSL_HALF = /* wgsl */ `
fn f16_bits_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  let normal = bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
  let special = bitcast<f32>(sign | 0x7f800000u | (m << 13u));
  // Subnormal (or zero): m * 2^-24 is exact in f32.
  let sub = f32(m) * 5.9604644775390625e-8;
  return select(select(normal, special, e == 31u), select(sub, -sub, sign != 0u), e == 0u);
}
fn bf16_bits_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
${WGSL_NARROW_16}`;

export function is16Bit(dtype: DType): boolean {
  return dtype === 'float16' || dtype === 'bfloat16';
}

/** The bits of a stored element that make it nonzero as a number (a float's -0 is zero; NaN is not). */
export function nonzeroMask(dtype: DType): number {
  return dtype === 'int32' ? 0xffffffff : is16Bit(dtype) ? 0x7fff : 0x7fffffff;
}

/** Bytes a buffer of `size` elements takes (16-bit types padded to whole words). */
export function bufferBytes(dtype: DType, size: number): number {
  switch (dtype) {
    case 'float16': case 'bfloat16': return Math.ceil(size / 2) * 4;
    case 'float64': throw new Error('float64 is not stored on the GPU');
    default: return size * 4;
  }
}

function elementType(dtype: DType, access: Access, opts: StorageOptions): string {
  switch (dtype) {
    case 'float32': return 'f32';
    case 'int32': return 'i32';
    case 'float16': return opts.nativeF16 && access === 'read' ? 'f16' : 'u32';
    case 'bfloat16': return 'u32';
    case 'float64': throw new Error('float64 is not stored on the GPU');
  }
}

/**
 * The declaration of buffer `name` at `binding`, plus `load_<name>(i: u32) -> f32`
 * and, for read_write bindings, `store_<name>(i: u32, v: f32)` (32-bit types) or
 * `store2_<name>(word: u32, lo: f32, hi: f32)` (16-bit types: a whole word).
 * Indices are element indices into the whole buffer.
 */
export function declare(name: string, binding: number, dtype: DType, access: Access, opts: StorageOptions, group = 0): string {
  const ty = elementType(dtype, access, opts);
  const decl = `@group(${group}) @binding(${binding}) var<storage, ${access}> ${name}: array<${ty}>;`;
  let load: string;
  let store = '';
  if (dtype === 'float32') {
    load = `fn load_${name}(i: u32) -> f32 { return ${name}[i]; }`;
    if (access === 'read_write') store = `fn store_${name}(i: u32, v: f32) { ${name}[i] = v; }`;
  } else if (dtype === 'int32') {
    load = `fn load_${name}(i: u32) -> f32 { return f32(${name}[i]); }\nfn loadi_${name}(i: u32) -> i32 { return ${name}[i]; }`;
    if (access === 'read_write') store = `fn store_${name}(i: u32, v: f32) { ${name}[i] = i32(v); }\nfn storei_${name}(i: u32, v: i32) { ${name}[i] = v; }`;
  } else {
    const widen = dtype === 'float16' ? 'f16_bits_to_f32' : 'bf16_bits_to_f32';
    const narrow = dtype === 'float16' ? 'f32_to_f16_bits' : 'f32_to_bf16_bits';
    load = ty === 'f16'
      ? `fn load_${name}(i: u32) -> f32 { return f32(${name}[i]); }`
      : `fn load_${name}(i: u32) -> f32 { return ${widen}((${name}[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu); }`;
    if (access === 'read_write') {
      store = `fn store2_${name}(w: u32, lo: f32, hi: f32) { ${name}[w] = ${narrow}(lo) | (${narrow}(hi) << 16u); }\n`
        + `fn bits_${name}(w: u32) -> u32 { return ${name}[w]; }\n`
        + `fn setbits_${name}(w: u32, bits: u32) { ${name}[w] = bits; }\n`
        + `fn narrow_${name}(v: f32) -> u32 { return ${narrow}(v); }`;
    }
  }
  return [decl, load, store].filter(Boolean).join('\n');
}

/** `enable f16;` when a shader reads native f16. */
export function shaderPrelude(opts: StorageOptions, dtypes: readonly DType[]): string {
  const lines: string[] = [];
  if (opts.nativeF16 && dtypes.includes('float16')) lines.push('enable f16;');
  if (dtypes.some(is16Bit)) lines.push(WGSL_HALF);
  return lines.join('\n');
}

// ---- element access helpers shared by the backend's kernels ----------------

/**
 * How a kernel writes a binding. 'owned': every 32-bit word it writes belongs
 * to one invocation, so plain stores are safe (the usual case: contiguous
 * outputs written a word at a time, rows of even length at even offsets).
 * 'atomic': invocations share words (16-bit elements at odd offsets, strided
 * scatters), so halves are written with atomicAnd/atomicOr; the array is
 * declared array<atomic<u32>> and every access to it is atomic.
 */
export type WriteMode = 'owned' | 'atomic';

/**
 * `declare` plus the element helpers every kernel of the backend uses:
 * - `load_<name>(i) -> f32` (and `loadi_<name>` for int32),
 * - `loadbits_<name>(i) -> u32`: the element's raw bits (16-bit patterns in the low half),
 * and for read_write bindings:
 * - `put_<name>(e, v)` / `putbits_<name>(e, bits)`: one element,
 * - `put2_<name>(e0, v0, v1, m)` / `put2bits_<name>(e0, b0, b1, m)`: elements e0 and e0 + 1
 *   (bit 0 of m writes e0, bit 1 writes e0 + 1); a whole word in one store when e0 is even and m == 3,
 * - `raise_<name>(i)` (float32, atomic mode): sets the element to 1.0 unless it holds a larger
 *   non-negative value (a race-free "found" flag).
 * 16-bit values are rounded to nearest even by the exact narrowing of WGSL_HALF.
 * `loadbits_` of a native-f16 binding is not available: kernels that move raw
 * bits declare their bindings without `nativeF16`.
 */
export function declareBinding(
  name: string, binding: number, dtype: DType, access: Access, opts: StorageOptions, mode: WriteMode = 'owned',
): string {
  const atomic = access === 'read_write' && mode === 'atomic';
  const lines: string[] = [];
  if (!atomic) {
    lines.push(declare(name, binding, dtype, access, opts));
  } else {
    lines.push(`@group(0) @binding(${binding}) var<storage, read_write> ${name}: array<atomic<u32>>;`);
    if (dtype === 'float32') lines.push(`fn load_${name}(i: u32) -> f32 { return bitcast<f32>(atomicLoad(&${name}[i])); }`);
    else if (dtype === 'int32') {
      lines.push(`fn loadi_${name}(i: u32) -> i32 { return bitcast<i32>(atomicLoad(&${name}[i])); }`);
      lines.push(`fn load_${name}(i: u32) -> f32 { return f32(loadi_${name}(i)); }`);
    } else {
      const widen = dtype === 'float16' ? 'f16_bits_to_f32' : 'bf16_bits_to_f32';
      lines.push(`fn load_${name}(i: u32) -> f32 { return ${widen}((atomicLoad(&${name}[i >> 1u]) >> ((i & 1u) * 16u)) & 0xffffu); }`);
    }
  }
  const native = access === 'read' && dtype === 'float16' && opts.nativeF16;
  if (dtype === 'float32' || dtype === 'int32') {
    const ty = dtype === 'float32' ? 'f32' : 'i32';
    if (atomic) {
      lines.push(`fn loadbits_${name}(i: u32) -> u32 { return atomicLoad(&${name}[i]); }`);
      lines.push(`fn putbits_${name}(e: u32, b: u32) { atomicStore(&${name}[e], b); }`);
      if (dtype === 'float32') lines.push(`fn raise_${name}(i: u32) { atomicMax(&${name}[i], 0x3f800000u); }`);
    } else {
      lines.push(`fn loadbits_${name}(i: u32) -> u32 { return bitcast<u32>(${name}[i]); }`);
      if (access === 'read_write') lines.push(`fn putbits_${name}(e: u32, b: u32) { ${name}[e] = bitcast<${ty}>(b); }`);
    }
    if (access === 'read_write') {
      const conv = dtype === 'float32' ? 'bitcast<u32>(v)' : 'bitcast<u32>(i32(v))';
      lines.push(`fn put_${name}(e: u32, v: f32) { putbits_${name}(e, ${conv}); }`);
      lines.push(`fn put2_${name}(e0: u32, v0: f32, v1: f32, m: u32) { if ((m & 1u) != 0u) { put_${name}(e0, v0); } if ((m & 2u) != 0u) { put_${name}(e0 + 1u, v1); } }`);
      lines.push(`fn put2bits_${name}(e0: u32, b0: u32, b1: u32, m: u32) { if ((m & 1u) != 0u) { putbits_${name}(e0, b0); } if ((m & 2u) != 0u) { putbits_${name}(e0 + 1u, b1); } }`);
    }
  } else {
    const narrow = dtype === 'float16' ? 'f32_to_f16_bits' : 'f32_to_bf16_bits';
    if (!native) {
      const word = atomic ? `atomicLoad(&${name}[w])` : `${name}[w]`;
      lines.push(`fn word_${name}(w: u32) -> u32 { return ${word}; }`);
      lines.push(`fn loadbits_${name}(i: u32) -> u32 { return (word_${name}(i >> 1u) >> ((i & 1u) * 16u)) & 0xffffu; }`);
    }
    if (access === 'read_write') {
      if (atomic) {
        lines.push(`fn setword_${name}(w: u32, b: u32) { atomicStore(&${name}[w], b); }`);
        lines.push(`fn sethalf_${name}(e: u32, h: u32) { let s = (e & 1u) * 16u; atomicAnd(&${name}[e >> 1u], ~(0xffffu << s)); atomicOr(&${name}[e >> 1u], h << s); }`);
      } else {
        lines.push(`fn setword_${name}(w: u32, b: u32) { ${name}[w] = b; }`);
        lines.push(`fn sethalf_${name}(e: u32, h: u32) { let s = (e & 1u) * 16u; let w = e >> 1u; ${name}[w] = (${name}[w] & ~(0xffffu << s)) | (h << s); }`);
      }
      lines.push(`fn putbits_${name}(e: u32, b: u32) { sethalf_${name}(e, b); }`);
      lines.push(`fn put_${name}(e: u32, v: f32) { sethalf_${name}(e, ${narrow}(v)); }`);
      lines.push(`fn put2bits_${name}(e0: u32, b0: u32, b1: u32, m: u32) {
  if (m == 3u && (e0 & 1u) == 0u) { setword_${name}(e0 >> 1u, b0 | (b1 << 16u)); return; }
  if ((m & 1u) != 0u) { sethalf_${name}(e0, b0); }
  if ((m & 2u) != 0u) { sethalf_${name}(e0 + 1u, b1); }
}`);
      lines.push(`fn put2_${name}(e0: u32, v0: f32, v1: f32, m: u32) { put2bits_${name}(e0, ${narrow}(v0), ${narrow}(v1), m); }`);
    }
  }
  return lines.join('\n');
}

/**
 * A binding read and written four elements at a time: array<vec4<f32>> (or
 * vec4<i32>, or vec4<f16> for native float16 reads), 16-bit dtypes as
 * array<vec2<u32>> (two words, four halves): the same bytes as `declare`.
 * On CPU adapters a load whose address differs between invocations costs one
 * scalar load per invocation, so moving four elements per load is most of the
 * speed of a memory-bound kernel. Helpers, with q a quad index (element 4q):
 * `load4_<name>(q) -> vec4<f32>`, `loadbits4_<name>(q) -> vec4<u32>` and, for
 * read_write bindings, `put4_<name>(q, v)` and `put4bits_<name>(q, b)`; and
 * the scalar helpers of `declareBinding` (load_, loadi_, loadbits_, put_,
 * putbits_, put2_, put2bits_) for the ragged ends. Writes must be 'owned' by
 * the invocation of their quad.
 */
export function declareVec4(name: string, binding: number, dtype: DType, access: Access, opts: StorageOptions): string {
  const native = access === 'read' && dtype === 'float16' && opts.nativeF16;
  const rw = access === 'read_write';
  const lines: string[] = [];
  const decl = (ty: string) => lines.push(`@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${ty}>;`);
  if (dtype === 'float32' || dtype === 'int32' || native) {
    const ty = dtype === 'float32' ? 'f32' : dtype === 'int32' ? 'i32' : 'f16';
    decl(`vec4<${ty}>`);
    lines.push(`fn load4_${name}(q: u32) -> vec4<f32> { return vec4<f32>(${name}[q]); }`);
    lines.push(`fn load_${name}(i: u32) -> f32 { return f32(${name}[i >> 2u][i & 3u]); }`);
    if (dtype === 'int32') lines.push(`fn loadi_${name}(i: u32) -> i32 { return ${name}[i >> 2u][i & 3u]; }`);
    if (!native) {
      lines.push(`fn loadbits4_${name}(q: u32) -> vec4<u32> { return bitcast<vec4<u32>>(${name}[q]); }`);
      lines.push(`fn loadbits_${name}(i: u32) -> u32 { return bitcast<u32>(${name}[i >> 2u][i & 3u]); }`);
    }
    if (rw) {
      const conv = dtype === 'float32' ? 'v' : 'vec4<i32>(v)';
      lines.push(`fn put4_${name}(q: u32, v: vec4<f32>) { ${name}[q] = ${conv}; }`);
      lines.push(`fn put4bits_${name}(q: u32, b: vec4<u32>) { ${name}[q] = bitcast<vec4<${ty}>>(b); }`);
      lines.push(`fn putbits_${name}(e: u32, b: u32) { ${name}[e >> 2u][e & 3u] = bitcast<${ty}>(b); }`);
      lines.push(`fn put_${name}(e: u32, v: f32) { ${name}[e >> 2u][e & 3u] = ${dtype === 'float32' ? 'v' : 'i32(v)'}; }`);
    }
  } else {
    const widen = dtype === 'float16' ? 'f16_bits_to_f32' : 'bf16_bits_to_f32';
    const narrow = dtype === 'float16' ? 'f32_to_f16_bits' : 'f32_to_bf16_bits';
    decl('vec2<u32>');
    lines.push(`fn loadbits4_${name}(q: u32) -> vec4<u32> { let w = ${name}[q]; return vec4<u32>(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u); }`);
    lines.push(`fn load4_${name}(q: u32) -> vec4<f32> { let h = loadbits4_${name}(q); return vec4<f32>(${widen}(h.x), ${widen}(h.y), ${widen}(h.z), ${widen}(h.w)); }`);
    lines.push(`fn loadbits_${name}(i: u32) -> u32 { return (${name}[i >> 2u][(i >> 1u) & 1u] >> ((i & 1u) * 16u)) & 0xffffu; }`);
    lines.push(`fn load_${name}(i: u32) -> f32 { return ${widen}(loadbits_${name}(i)); }`);
    if (rw) {
      lines.push(`fn put4bits_${name}(q: u32, b: vec4<u32>) { ${name}[q] = vec2<u32>(b.x | (b.y << 16u), b.z | (b.w << 16u)); }`);
      lines.push(`fn put4_${name}(q: u32, v: vec4<f32>) { put4bits_${name}(q, vec4<u32>(${narrow}(v.x), ${narrow}(v.y), ${narrow}(v.z), ${narrow}(v.w))); }`);
      lines.push(`fn putbits_${name}(e: u32, h: u32) { let s = (e & 1u) * 16u; let q = e >> 2u; let k = (e >> 1u) & 1u; ${name}[q][k] = (${name}[q][k] & ~(0xffffu << s)) | (h << s); }`);
      lines.push(`fn put_${name}(e: u32, v: f32) { putbits_${name}(e, ${narrow}(v)); }`);
    }
  }
  if (rw) {
    lines.push(`fn put2_${name}(e0: u32, v0: f32, v1: f32, m: u32) { if ((m & 1u) != 0u) { put_${name}(e0, v0); } if ((m & 2u) != 0u) { put_${name}(e0 + 1u, v1); } }`);
    lines.push(`fn put2bits_${name}(e0: u32, b0: u32, b1: u32, m: u32) { if ((m & 1u) != 0u) { putbits_${name}(e0, b0); } if ((m & 2u) != 0u) { putbits_${name}(e0 + 1u, b1); } }`);
  }
  return lines.join('\n');
}
