// Weight formats for inference. float16 and bfloat16 convert every parameter
// once; int8 and int4 quantize the weights of every Linear layer (the attention
// and MLP projections: 85M of GPT-2's 124M parameters) to packed integers with
// float32 scales (dtype/quant.ts), and hold the token embedding, which is also
// the tied output head, in float16: quantizing it per row would need a
// quantized lookup kernel as well, and in float16 GPT-2's 38.6M-entry table
// fits WebGPU's 128 MiB binding limit. Position embeddings, LayerNorms and biases
// stay float32 (they are small). The model is then for inference: no parameter
// requires a gradient.

import { parseDType, itemSize } from '../dtype/dtype.js';
import { QuantizeError, type QuantFormat } from '../dtype/quant.js';
import type { Backend } from '../backend/backend.js';
import { QuantizedWeight } from '../tensor/quantized.js';
import { GPT } from './gpt.js';
import type { GPTConfig } from './gpt-config.js';
import { Linear } from './module.js';

export type WeightFormat = 'fp32' | 'fp16' | 'bf16' | QuantFormat;
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['fp32', 'fp16', 'bf16', 'int8', 'int4'];

export interface QuantizeOptions {
  /**
   * Inputs per scale: int4 takes 32 or 64 (default 64, or 32 where a layer's
   * inputs are not a multiple of 64, as the default model's 96); int8 defaults
   * to a whole row (one scale per output channel).
   */
  groupSize?: number;
}

/** The group size a format quantizes the model's Linear layers with: the one asked for, or the default (QuantizeOptions). */
export function groupSizeFor(model: GPT, format: QuantFormat, asked?: number): number | undefined {
  if (asked !== undefined || format !== 'int4') return asked;
  return linearLayers(model).every(([, l]) => l.inFeatures % 64 === 0) ? 64 : 32;
}

export function parseWeightFormat(s: string, what = 'weights'): WeightFormat {
  if (!(WEIGHT_FORMATS as readonly string[]).includes(s)) throw new QuantizeError(`${what}: unknown weight format '${s}' (expected ${WEIGHT_FORMATS.join(', ')})`);
  return s as WeightFormat;
}

/** The Linear layers of a model with their dotted names. */
export function linearLayers(model: GPT): [string, Linear][] {
  return model.namedModules().filter((e): e is [string, Linear] => e[1] instanceof Linear);
}

/** The weight format a model is in now. */
export function weightFormat(model: GPT): WeightFormat {
  const q = linearLayers(model).find(([, l]) => l.quantized)?.[1].quantized;
  if (q) return q.format;
  const d = model.ln_f.weight.dtype;
  return d === 'float16' ? 'fp16' : d === 'bfloat16' ? 'bf16' : 'fp32';
}

export function isQuantized(model: GPT): boolean {
  const f = weightFormat(model);
  return f === 'int8' || f === 'int4';
}

/** Bytes the model's weights take on the device (parameters, packed weights and scales). */
export function weightBytes(model: GPT): number {
  let bytes = 0;
  for (const p of model.parameters()) bytes += p.size * itemSize(p.dtype);
  for (const [, l] of linearLayers(model)) bytes += l.quantized?.bytes ?? 0;
  return bytes;
}

/** Fixes the model for inference: no parameter takes a gradient. */
export function freezeForInference(model: GPT): void {
  for (const p of model.parameters()) p.requiresGrad_(false);
}

/**
 * A GPT laid out as a quantized one, every value still to be written: Linear
 * layers without float weights (each gets its quantized one with setQuantized
 * or setQuantizedFrom), the token embedding float16, the rest float32. Loading
 * into it never holds the float matrices on the device.
 */
export function emptyQuantizedGPT(config: GPTConfig, opts: { backend?: Backend | string; seed?: number } = {}): GPT {
  const model = new GPT(config, { backend: opts.backend, seed: opts.seed, dtype: 'float16', init: 'none', quantizedLinear: true });
  for (const m of [model.wpe, ...model.h, model.ln_f]) m.to('float32');
  freezeForInference(model);
  return model;
}

/** Quantizes a float weight given as GPT-2 stores it ([in, out], row-major, rounded to float32) into `layer`, on `backend`. */
export function setQuantizedFrom(layer: Linear, w: ArrayLike<number>, format: QuantFormat, backend: Backend, opts: QuantizeOptions & { what: string }): void {
  const { inFeatures: k, outFeatures: n } = layer;
  const rows = new Float32Array(n * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) rows[j * k + i] = w[i * n + j]!;
  layer.setQuantized(QuantizedWeight.fromRows(rows, format, n, k, backend, { groupSize: opts.groupSize, what: opts.what }));
}

/** Quantizes every Linear weight of a float model in place (see the top of this file) and returns it. */
export async function quantize(model: GPT, format: QuantFormat, opts: QuantizeOptions = {}): Promise<GPT> {
  if (format !== 'int8' && format !== 'int4') throw new QuantizeError(`quantize: unknown format '${String(format)}' (expected int8 or int4)`);
  if (isQuantized(model)) throw new QuantizeError(`quantize: the model is already ${weightFormat(model)}`);
  const groupSize = groupSizeFor(model, format, opts.groupSize);
  for (const [name, layer] of linearLayers(model)) {
    const w = await layer.weight.toArray(); // [in, out]
    setQuantizedFrom(layer, w, format, model.backend, { groupSize, what: `${name}.weight` });
  }
  model.wte.to('float16');
  freezeForInference(model);
  return model;
}

/** Puts a float model into a weight format: converts (fp32, fp16, bf16) or quantizes (int8, int4) it once. */
export async function toWeightFormat(model: GPT, format: WeightFormat, opts: QuantizeOptions = {}): Promise<GPT> {
  const f = parseWeightFormat(format);
  if (f === weightFormat(model)) return model;
  if (isQuantized(model)) throw new QuantizeError(`toWeightFormat: a ${weightFormat(model)} model cannot be converted to ${f} (load its float weights instead)`);
  if (f === 'int8' || f === 'int4') return quantize(model, f, opts);
  return model.to(f === 'fp32' ? 'float32' : parseDType(f));
}
