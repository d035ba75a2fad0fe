// A quantized GPT (nn/quantize.ts) as a GPT-2 directory: config.json as for a
// float model, and model.safetensors with, for every Linear layer, its packed
// weight as U8 bytes [out, in * bits / 8] (rows are output channels; int8 is
// two's complement, int4 two per byte, low nibble first) under the weight's own
// name and its float32 scales [out, in / groupSize] beside it as `<name>_scale`.
// The metadata records the format and group size. Every other parameter is
// stored in its dtype (the embedding in F16), so loading gives back the same
// bits. Hugging Face's libraries do not read this layout; mixprec does.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { Backend } from '../backend/backend.js';
import { sizeOf } from '../dtype/shape.js';
import { BITS, groupsPerRow, QuantizeError, quantLayout, type QuantFormat } from '../dtype/quant.js';
import { parameterShapes, type GPT, type GPTConfig } from '../nn/gpt.js';
import { emptyQuantizedGPT, freezeForInference, linearLayers, weightFormat } from '../nn/quantize.js';
import { QuantizedWeight } from '../tensor/quantized.js';
import { writeFileAtomic } from './atomic.js';
import { SafetensorsReader, toSafetensorsDType, writeSafetensors, type TensorData, type WritableTensor } from './safetensors.js';

/** Metadata keys of a quantized weights file. */
export const WEIGHTS_KEY = 'mixprec.weights';
export const GROUP_SIZE_KEY = 'mixprec.group_size';
export const SCALE_SUFFIX = '_scale';

/** The quantized format a weights file declares, or undefined for a float file. */
export function storedQuantFormat(reader: SafetensorsReader): QuantFormat | undefined {
  const f = reader.metadata[WEIGHTS_KEY];
  if (f === undefined) return undefined;
  if (f !== 'int8' && f !== 'int4') throw new QuantizeError(`${reader.file}: metadata ${WEIGHTS_KEY} is '${f}' (expected int8 or int4)`);
  return f;
}

const bytesOf = (d: TensorData) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/** Writes model.safetensors and config.json of a quantized model into dir. */
export async function saveQuantizedGPT2(model: GPT, dir: string, configJson: Record<string, unknown>, weightsFile: string, configFile: string): Promise<void> {
  const format = weightFormat(model);
  const params = new Map(model.namedParameters());
  const layers = new Map(linearLayers(model).map(([name, l]) => [`${name}.weight`, l.quantized!]));
  const groupSizes = new Set([...layers.values()].map((q) => q.layout.groupSize));
  if (format !== 'int8' && format !== 'int4') throw new QuantizeError(`saveQuantizedGPT2: the model is ${format}, not quantized`);
  const tensors: WritableTensor[] = [];
  for (const [name, shape] of parameterShapes({ ...model.config, bias: true })) {
    const q = layers.get(name);
    if (q) {
      const { n, k } = q.layout;
      tensors.push({ name, dtype: 'U8', shape: [n, (k * BITS[q.format]) / 8], data: async () => bytesOf(await q.words.backend.readRaw(q.words.storageView)) });
      tensors.push({ name: name + SCALE_SUFFIX, dtype: 'F32', shape: [n, groupsPerRow(q.layout)], data: async () => await q.scales.backend.readRaw(q.scales.storageView) as Float32Array });
      continue;
    }
    const p = params.get(name);
    // A model without biases is written with zero biases, the same function.
    tensors.push(p
      ? { name, dtype: toSafetensorsDType(p.dtype), shape, data: async () => await p.backend.readRaw(p.storageView) as TensorData }
      : { name, dtype: 'F32', shape, data: new Float32Array(sizeOf(shape)) });
  }
  // Per-row int8 has one group per row, whose size differs between layers: recorded as 0.
  const groupSize = format === 'int8' && [...layers.values()].every((q) => q.layout.groupSize === q.layout.k) ? 0 : [...groupSizes][0]!;
  if (groupSize !== 0 && groupSizes.size !== 1) throw new QuantizeError('saveQuantizedGPT2: layers with different group sizes cannot be stored in one file');
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, weightsFile), tensors, { format: 'pt', [WEIGHTS_KEY]: format, [GROUP_SIZE_KEY]: String(groupSize) });
  await writeFileAtomic(join(dir, configFile), `${JSON.stringify(configJson, null, 2)}\n`);
}

/** Loads a quantized weights file into a new model, bit for bit; every tensor's name, dtype and shape is checked first. */
export async function loadQuantizedGPT2(reader: SafetensorsReader, format: QuantFormat, config: GPTConfig, opts: { backend?: Backend | string; seed?: number }): Promise<GPT> {
  const file = reader.file;
  const g = Number(reader.metadata[GROUP_SIZE_KEY] ?? 'NaN');
  if (!Number.isSafeInteger(g) || g < 0) throw new QuantizeError(`${file}: metadata ${GROUP_SIZE_KEY} is '${reader.metadata[GROUP_SIZE_KEY]}' (expected a non-negative integer)`);
  const model = emptyQuantizedGPT(config, opts);
  try {
    const layers = linearLayers(model);
    const quantNames = new Set(layers.map(([name]) => `${name}.weight`));
    const expected = parameterShapes({ ...config, bias: true }).map(([n]) => n);
    reader.checkNames([...expected, ...[...quantNames].map((n) => n + SCALE_SUFFIX)]);
    const checked = async (name: string, dtype: string, shape: number[]) => {
      const t = await reader.read(name);
      if (t.dtype !== dtype || t.shape.join() !== shape.join()) {
        throw new QuantizeError(`${file}: tensor '${name}' is ${t.dtype} [${t.shape.join(', ')}], expected ${dtype} [${shape.join(', ')}] for ${format}`);
      }
      return t.data;
    };
    for (const [name, layer] of layers) {
      const layout = quantLayout(format, layer.outFeatures, layer.inFeatures, g === 0 ? undefined : g, `${file}: '${name}.weight'`);
      const bytes = await checked(`${name}.weight`, 'U8', [layout.n, (layout.k * BITS[format]) / 8]);
      const scales = await checked(`${name}.weight${SCALE_SUFFIX}`, 'F32', [layout.n, groupsPerRow(layout)]);
      const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      layer.setQuantized(QuantizedWeight.fromBits(layout, words, scales as Float32Array, model.backend));
    }
    for (const [name, p] of model.namedParameters()) {
      const data = await checked(name, toSafetensorsDType(p.dtype), [...p.shape]);
      p.backend.writeRaw(p.storageView, data as Float32Array);
    }
    freezeForInference(model);
    return model;
  } catch (err) {
    model.dispose();
    throw err;
  }
}
