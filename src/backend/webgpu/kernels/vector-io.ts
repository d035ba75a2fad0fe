// Operand declarations for kernels that read four elements at a time.
//
// The formats are those of ../storage.ts (float32 as f32, float16 as f16 or as
// two halves per u32 word, bfloat16 as two halves per word, element i of a
// 16-bit buffer at bytes 2i..2i+1); this module only adds other views of the
// same bytes:
//
// - 'vec4': four elements per array entry (vec4<f32>, vec4<f16>, or vec2<u32>
//   for packed halves), so that `load4_<n>(i)` is one memory access. On
//   lavapipe a load inside a loop becomes a scalar loop over the SIMD lanes
//   with a bounds check per component, so one vec4 load instead of four scalar
//   loads (and packed halves: two words for four values) saves most of it.
// - 'words': 16-bit dtypes as array<u32> for whole-word (pair) stores.
// - 'atomic-words': 16-bit dtypes as array<atomic<u32>>, for outputs whose
//   element pairs do not line up with words (odd row strides or offsets).
//
// Widening float16 uses unpack2x16float (exact). Narrowing uses WGSL_NARROW_16:
// integer round-to-nearest-even, bit-identical to codec.ts (overflow gives
// infinity, subnormals are kept, every NaN becomes the canonical quiet NaN),
// written with select() rather than branches because on a SIMD CPU adapter
// every branch of every store would run under a mask.

import type { FloatDType } from '../../../dtype/dtype.js';
import { MixprecError, type ErrorCode } from '../../../errors.js';

export type OperandDType = Exclude<FloatDType, 'float64'>;
export type OperandLayout = 'scalar' | 'vec4' | 'words' | 'atomic-words';

export interface OperandSpec {
  /** WGSL identifier; helpers are load_<name>, load4_<name>, store_<name>, ... */
  name: string;
  dtype: OperandDType;
  binding: number;
  group?: number;
  access: 'read' | 'read_write';
  layout: OperandLayout;
  /** Declare float16 as f16 (needs shader-f16 and `enable f16;`); otherwise as packed u32 words. */
  nativeF16?: boolean;
}


export class OperandLayoutError extends MixprecError {
  override name = 'OperandLayoutError';
  override readonly code: ErrorCode = 'OPERAND_LAYOUT_INVALID';
}

function packed(spec: OperandSpec): boolean {
  if (spec.dtype === 'bfloat16') return true;
  if (spec.dtype !== 'float16') return false;
  return spec.layout === 'words' || spec.layout === 'atomic-words' || !spec.nativeF16;
}

/** Whether the declaration uses the f16 type (the shader then needs `enable f16;`). */
export function operandUsesF16(spec: OperandSpec): boolean {
  return spec.dtype === 'float16' && !packed(spec);
}

/** WGSL element type of the declared array. */
export function operandArrayType(spec: OperandSpec): string {
  const { layout, dtype } = spec;
  if (layout === 'words' || layout === 'atomic-words') {
    if (dtype === 'float32') throw new OperandLayoutError(`layout '${layout}' is for 16-bit dtypes, not float32 (operand ${spec.name})`);
    if (layout === 'atomic-words' && spec.access !== 'read_write') throw new OperandLayoutError(`layout 'atomic-words' needs read_write access (operand ${spec.name})`);
    return layout === 'words' ? 'u32' : 'atomic<u32>';
  }
  const vec = layout === 'vec4';
  if (dtype === 'float32') return vec ? 'vec4<f32>' : 'f32';
  if (!packed(spec)) return vec ? 'vec4<f16>' : 'f16';
  return vec ? 'vec2<u32>' : 'u32';
}

/** The word w (u32) widened to its two elements. */
function widen(dtype: OperandDType, w: string): string {
  return dtype === 'float16' ? `unpack2x16float(${w})` : `vec2<f32>(bitcast<f32>(${w} << 16u), bitcast<f32>(${w} & 0xffff0000u))`;
}

function narrow(dtype: OperandDType): string {
  return dtype === 'float16' ? 'f32_to_f16_bits' : 'f32_to_bf16_bits';
}

/**
 * The declaration of one operand and its helpers (indices in elements):
 *   load_<n>(i) -> f32, load2_<n>(i) -> vec2<f32> (i even), load4_<n>(i) -> vec4<f32> (i % 4 == 0);
 * with read_write access:
 *   store_<n>(i, v)   float32 and native float16,
 *   store2_<n>(i, v)  16-bit 'words' / 'atomic-words': the whole word of elements i, i + 1 (i even),
 *   store1_<n>(i, v)  16-bit 'words': read-modify-write of one half, safe only when no other
 *                     invocation of the dispatch writes the other half; 'atomic-words': a
 *                     compare-exchange loop, always safe.
 * Stores of 16-bit values need WGSL_NARROW_16 in the shader.
 */
export function declareOperand(spec: OperandSpec): string {
  const { name: n, dtype, layout } = spec;
  const ty = operandArrayType(spec);
  const lines = [`@group(${spec.group ?? 0}) @binding(${spec.binding}) var<storage, ${spec.access}> ${n}: array<${ty}>;`];
  const add = (s: string) => lines.push(s);
  const writable = spec.access === 'read_write';

  if (dtype === 'float32' || !packed(spec)) {
    const t = dtype === 'float32' ? 'f32' : 'f16';
    const toStored = dtype === 'float32' ? (v: string) => v : (v: string) => `bitcast<vec2<f16>>(f32_to_f16_bits(${v})).x`;
    if (layout === 'vec4') {
      add(`fn load_${n}(i: u32) -> f32 { return f32(${n}[i >> 2u][i & 3u]); }`);
      add(`fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(${n}[i >> 2u]); }`);
      if (writable) add(`fn store_${n}(i: u32, v: f32) { ${n}[i >> 2u][i & 3u] = ${toStored('v')}; }`);
    } else if (layout === 'scalar') {
      add(`fn load_${n}(i: u32) -> f32 { return f32(${n}[i]); }`);
      add(`fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(f32(${n}[i]), f32(${n}[i + 1u]), f32(${n}[i + 2u]), f32(${n}[i + 3u])); }`);
      if (writable) add(`fn store_${n}(i: u32, v: f32) { ${n}[i] = ${toStored('v')}; }`);
    } else {
      throw new OperandLayoutError(`layout '${layout}' is for packed 16-bit words, not ${t} (operand ${n})`);
    }
    add(`fn load2_${n}(i: u32) -> vec2<f32> { return vec2<f32>(load_${n}(i), load_${n}(i + 1u)); }`);
    return lines.join('\n');
  }

  const pack = (v: string) => `(${narrow(dtype)}(${v}.x) | (${narrow(dtype)}(${v}.y) << 16u))`;
  if (layout === 'vec4') {
    add(`fn load2_${n}(i: u32) -> vec2<f32> { let w = ${n}[i >> 2u][(i >> 1u) & 1u]; return ${widen(dtype, 'w')}; }`);
    add(`fn load_${n}(i: u32) -> f32 { return load2_${n}(i & ~1u)[i & 1u]; }`);
    add(`fn load4_${n}(i: u32) -> vec4<f32> { let w = ${n}[i >> 2u]; return vec4<f32>(${widen(dtype, 'w.x')}, ${widen(dtype, 'w.y')}); }`);
    if (writable) add(`fn store2_${n}(i: u32, v: vec2<f32>) { ${n}[i >> 2u][(i >> 1u) & 1u] = ${pack('v')}; }`);
    return lines.join('\n');
  }
  const word = (w: string) => (layout === 'atomic-words' ? `atomicLoad(&${n}[${w}])` : `${n}[${w}]`);
  add(`fn load2_${n}(i: u32) -> vec2<f32> { let w = ${word('i >> 1u')}; return ${widen(dtype, 'w')}; }`);
  add(`fn load_${n}(i: u32) -> f32 { return load2_${n}(i & ~1u)[i & 1u]; }`);
  add(`fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(load2_${n}(i), load2_${n}(i + 2u)); }`);
  if (!writable) return lines.join('\n');
  if (layout === 'atomic-words') {
    add(`fn store2_${n}(i: u32, v: vec2<f32>) { atomicStore(&${n}[i >> 1u], ${pack('v')}); }`);
    add(`fn store1_${n}(i: u32, v: f32) {
  let h = ${narrow(dtype)}(v);
  let high = (i & 1u) == 1u;
  loop {
    let old = atomicLoad(&${n}[i >> 1u]);
    let word = select((old & 0xffff0000u) | h, (old & 0xffffu) | (h << 16u), high);
    if (atomicCompareExchangeWeak(&${n}[i >> 1u], old, word).exchanged) { break; }
  }
}`);
  } else {
    add(`fn store2_${n}(i: u32, v: vec2<f32>) { ${n}[i >> 1u] = ${pack('v')}; }`);
    add(`fn store1_${n}(i: u32, v: f32) {
  let h = ${narrow(dtype)}(v);
  let old = ${n}[i >> 1u];
  ${n}[i >> 1u] = select((old & 0xffff0000u) | h, (old & 0xffffu) | (h << 16u), (i & 1u) == 1u);
}`);
  }
  return lines.join('\n');
}
