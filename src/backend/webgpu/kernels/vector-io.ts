// Operand declarations for the matrix-product kernels, which read four
// elements at a time. Their helpers are listed in OPERAND_HELPERS, in the form
// of the table in wgsl-helpers.ts (one entry per full name, with what it
// computes and its WGSL for each declaration).
//
// The formats are those of ../storage.ts (float32 as f32, float16 as f16 or as
// two halves per u32 word, bfloat16 as two halves per word, element i of a
// 16-bit buffer at bytes 2i..2i+1); this module only adds other views of the
// same bytes:
//
// - 'vec4': four elements per array entry (vec4<f32>, vec4<f16>, or vec2<u32>
//   for packed halves), so that `load4_<operand>(i)` is one memory access. On
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


/** A helper made for each operand, named `<base>_<operand>`. */
export interface OperandHelper {
  /** The full name, with `<operand>` standing for the operand's name. */
  readonly name: `${string}_<operand>`;
  /** What it computes. */
  readonly doc: string;
  /** The WGSL for the operand, or undefined where the helper does not exist for its declaration. */
  source(spec: OperandSpec): string | undefined;
}

export class OperandLayoutError extends MixprecError {
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

/** v (a vec2<f32>) narrowed to one word of two halves. */
const pack = (s: OperandSpec, v: string) => `(${narrow(s.dtype)}(${v}.x) | (${narrow(s.dtype)}(${v}.y) << 16u))`;
/** Word w of a packed operand declared as words. */
const word = (s: OperandSpec, w: string) => (s.layout === 'atomic-words' ? `atomicLoad(&${s.name}[${w}])` : `${s.name}[${w}]`);
/** A value as the f32 or native f16 stored. */
const stored = (s: OperandSpec, v: string) => (s.dtype === 'float32' ? v : `bitcast<vec2<f16>>(f32_to_f16_bits(${v})).x`);
const writable = (s: OperandSpec) => s.access === 'read_write';

/**
 * The helpers of a matrix-product operand `<operand>` (indices in elements,
 * unlike the quad indices of the backend's load4_<binding>), in the form of
 * the table in wgsl-helpers.ts. Stores of 16-bit values need WGSL_NARROW_16.
 */
export const OPERAND_HELPERS: readonly OperandHelper[] = [
  {
    name: 'load_<operand>',
    doc: 'Element i as f32.',
    source: (s) => {
      const n = s.name;
      if (packed(s)) return `fn load_${n}(i: u32) -> f32 { return load2_${n}(i & ~1u)[i & 1u]; }`;
      return s.layout === 'vec4' ? `fn load_${n}(i: u32) -> f32 { return f32(${n}[i >> 2u][i & 3u]); }` : `fn load_${n}(i: u32) -> f32 { return f32(${n}[i]); }`;
    },
  },
  {
    name: 'load2_<operand>',
    doc: 'Elements i and i + 1 as vec2<f32> (i even).',
    source: (s) => {
      const n = s.name;
      if (!packed(s)) return `fn load2_${n}(i: u32) -> vec2<f32> { return vec2<f32>(load_${n}(i), load_${n}(i + 1u)); }`;
      const w = s.layout === 'vec4' ? `${n}[i >> 2u][(i >> 1u) & 1u]` : word(s, 'i >> 1u');
      return `fn load2_${n}(i: u32) -> vec2<f32> { let w = ${w}; return ${widen(s.dtype, 'w')}; }`;
    },
  },
  {
    name: 'load4_<operand>',
    doc: 'Elements i .. i + 3 as vec4<f32> (i % 4 == 0); one memory access for the vec4 layout.',
    source: (s) => {
      const n = s.name;
      if (!packed(s)) {
        return s.layout === 'vec4'
          ? `fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(${n}[i >> 2u]); }`
          : `fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(f32(${n}[i]), f32(${n}[i + 1u]), f32(${n}[i + 2u]), f32(${n}[i + 3u])); }`;
      }
      return s.layout === 'vec4'
        ? `fn load4_${n}(i: u32) -> vec4<f32> { let w = ${n}[i >> 2u]; return vec4<f32>(${widen(s.dtype, 'w.x')}, ${widen(s.dtype, 'w.y')}); }`
        : `fn load4_${n}(i: u32) -> vec4<f32> { return vec4<f32>(load2_${n}(i), load2_${n}(i + 2u)); }`;
    },
  },
  {
    name: 'store_<operand>',
    doc: 'Stores v as element i: float32, and native float16 (rounded to nearest even).',
    source: (s) => {
      if (packed(s) || !writable(s)) return undefined;
      const at = s.layout === 'vec4' ? `${s.name}[i >> 2u][i & 3u]` : `${s.name}[i]`;
      return `fn store_${s.name}(i: u32, v: f32) { ${at} = ${stored(s, 'v')}; }`;
    },
  },
  {
    name: 'store2_<operand>',
    doc: 'Stores v as the whole word of elements i and i + 1 (i even) of a 16-bit operand.',
    source: (s) => {
      if (!packed(s) || !writable(s)) return undefined;
      const n = s.name;
      if (s.layout === 'vec4') return `fn store2_${n}(i: u32, v: vec2<f32>) { ${n}[i >> 2u][(i >> 1u) & 1u] = ${pack(s, 'v')}; }`;
      return s.layout === 'atomic-words'
        ? `fn store2_${n}(i: u32, v: vec2<f32>) { atomicStore(&${n}[i >> 1u], ${pack(s, 'v')}); }`
        : `fn store2_${n}(i: u32, v: vec2<f32>) { ${n}[i >> 1u] = ${pack(s, 'v')}; }`;
    },
  },
  {
    name: 'store1_<operand>',
    doc: "Stores v as element i of a 16-bit operand, keeping the word's other half: 'words' read-modify-write, safe only when no other invocation writes that half; 'atomic-words' a compare-exchange loop, always safe.",
    source: (s) => {
      if (!packed(s) || !writable(s) || s.layout === 'vec4') return undefined;
      const n = s.name;
      if (s.layout === 'atomic-words') {
        return `fn store1_${n}(i: u32, v: f32) {
  let h = ${narrow(s.dtype)}(v);
  let high = (i & 1u) == 1u;
  loop {
    let old = atomicLoad(&${n}[i >> 1u]);
    let word = select((old & 0xffff0000u) | h, (old & 0xffffu) | (h << 16u), high);
    if (atomicCompareExchangeWeak(&${n}[i >> 1u], old, word).exchanged) { break; }
  }
}`;
      }
      return `fn store1_${n}(i: u32, v: f32) {
  let h = ${narrow(s.dtype)}(v);
  let old = ${n}[i >> 1u];
  ${n}[i >> 1u] = select((old & 0xffff0000u) | h, (old & 0xffffu) | (h << 16u), (i & 1u) == 1u);
}`;
    },
  },
];

/** The declaration of one operand and the helpers of OPERAND_HELPERS that exist for it. */
export function declareOperand(spec: OperandSpec): string {
  const lines = [`@group(${spec.group ?? 0}) @binding(${spec.binding}) var<storage, ${spec.access}> ${spec.name}: array<${operandArrayType(spec)}>;`];
  for (const h of OPERAND_HELPERS) {
    const src = h.source(spec);
    if (src !== undefined) lines.push(src);
  }
  return lines.join('\n');
}
