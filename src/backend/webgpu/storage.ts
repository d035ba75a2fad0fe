// How each dtype is laid out in a GPU buffer, and the WGSL that reads and
// writes it. Every kernel declares its bindings through `declare`, so there is
// one definition of each layout.
//
// - float32: array<f32>; int32: array<i32>.
// - float16 and bfloat16: 16-bit halves, two per u32 word, element i in word
//   i >> 1 (low half for even i): the same bytes as a native f16 array.
//   Widening is exact. Narrowing is done with integer arithmetic, round to
//   nearest even, so results are bit-identical to the CPU backend (WGSL leaves
//   the rounding of f32 -> f16 conversions to the implementation). A kernel
//   that writes 16-bit output writes whole words: one invocation owns both
//   halves of a word.
// - With the `shader-f16` feature, float16 inputs may be read as array<f16>
//   instead (`nativeF16`); outputs still go through the exact narrowing.

import type { DType } from '../../dtype/dtype.js';

export type Access = 'read' | 'read_write';

export interface StorageOptions {
  /** Read float16 inputs as array<f16> (needs the shader-f16 feature and `enable f16;`). */
  nativeF16: boolean;
}

/** WGSL functions for exact 16-bit conversions; include once per shader. */
export const WGSL_HALF = /* wgsl */ `
fn f16_bits_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    // Subnormal (or zero): m * 2^-24 is exact in f32.
    let v = f32(m) * 5.9604644775390625e-8;
    return select(v, -v, sign != 0u);
  }
  if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
fn f32_to_f16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> 16u) & 0x8000u;
  let exp = (b >> 23u) & 0xffu;
  let mant = b & 0x7fffffu;
  if (exp == 0xffu) { return select(sign | 0x7c00u, 0x7e00u, mant != 0u); }
  let e = i32(exp) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e > 0) {
    var h = sign | (u32(e) << 10u) | (mant >> 13u);
    let rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0u)) { h = h + 1u; }
    return h;
  }
  let shift = u32(14 - e);
  if (shift > 24u) { return sign; }
  let m = mant | 0x800000u;
  var h = m >> shift;
  let rest = m & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (h & 1u) != 0u)) { h = h + 1u; }
  return sign | h;
}
fn bf16_bits_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn f32_to_bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) { return 0x7fc0u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
`;

export function is16Bit(dtype: DType): boolean {
  return dtype === 'float16' || dtype === 'bfloat16';
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
