// A Hugging Face GPT-2 directory (config.json + model.safetensors) read from
// and written to memory, for files picked from disk and downloads in a page.
// The config is checked by the library's own parser; the safetensors file is
// read here from bytes (the library's reader works on Node file handles).
import * as mp from '../../src/core.js';
import { GPT2CheckpointError, gpt2ConfigJson, parseGPT2Config } from '../../src/io/gpt2.js';

const CONFIG = 'config.json';
const WEIGHTS = 'model.safetensors';
const PREFIX = 'transformer.';
const MASK_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;

interface Entry { dtype: string; shape: number[]; data_offsets: [number, number] }

function entries(weights: ArrayBuffer): { entries: Map<string, Entry>; data: number } {
  const fail = (fault: string): never => { throw new GPT2CheckpointError(WEIGHTS, fault); };
  if (weights.byteLength < 8) fail(`is ${weights.byteLength} bytes long, too short for a safetensors header`);
  const headerLength = Number(new DataView(weights).getBigUint64(0, true));
  if (8 + headerLength > weights.byteLength) fail(`header length ${headerLength} runs past the end of the file (${weights.byteLength} bytes)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(weights, 8, headerLength))) as Record<string, unknown>;
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  const out = new Map<string, Entry>();
  const dataLength = weights.byteLength - 8 - headerLength;
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = value as Entry;
    const [begin, end] = Array.isArray(e?.data_offsets) ? e.data_offsets : [NaN, NaN];
    if (!(Number.isInteger(begin) && Number.isInteger(end) && 0 <= begin && begin <= end && end <= dataLength)) {
      throw new GPT2CheckpointError(WEIGHTS, `data_offsets ${JSON.stringify(e?.data_offsets)} lie outside the data (${dataLength} bytes)`, name);
    }
    out.set(name, e);
  }
  return { entries: out, data: 8 + headerLength };
}

/** A stored tensor's values as float32 (F32, F16 or BF16). */
function values(weights: ArrayBuffer, dataStart: number, name: string, e: Entry, size: number): Float32Array {
  const [begin, end] = e.data_offsets;
  const bytes = weights.slice(dataStart + begin, dataStart + end);
  const itemSize = e.dtype === 'F32' ? 4 : e.dtype === 'F16' || e.dtype === 'BF16' ? 2 : 0;
  if (itemSize === 0) throw new GPT2CheckpointError(WEIGHTS, `dtype ${e.dtype} is not supported here (F32, F16 or BF16)`, name);
  if (bytes.byteLength !== size * itemSize) throw new GPT2CheckpointError(WEIGHTS, `holds ${bytes.byteLength} bytes, expected ${size * itemSize}`, name);
  if (itemSize === 4) return new Float32Array(bytes);
  const decode = e.dtype === 'F16' ? mp.dtypes.fromFloat16Bits : mp.dtypes.fromBFloat16Bits;
  return Float32Array.from(new Uint16Array(bytes), (b) => decode(b));
}

/** A GPT (float32 parameters) from a GPT-2 directory's two files; a GPT2CheckpointError names the file and the key or tensor at fault. */
export function loadGPT2Files(configText: string, weights: ArrayBuffer, backend: mp.Backend): mp.GPT {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(configText) as Record<string, unknown>;
  } catch (e) {
    throw new GPT2CheckpointError(CONFIG, `is not valid JSON (${(e as Error).message})`);
  }
  const config = parseGPT2Config(json, CONFIG);
  const { entries: stored, data } = entries(weights);
  const byName = new Map<string, [string, Entry]>();
  for (const [name, e] of stored) {
    const short = name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name;
    if (!MASK_BUFFER.test(short) && short !== 'lm_head.weight') byName.set(short, [name, e]);
  }
  const model = new mp.GPT(config, { backend, init: 'none' });
  try {
    for (const [name, param] of model.namedParameters()) {
      const found = byName.get(name);
      if (!found) throw new GPT2CheckpointError(WEIGHTS, `missing tensor (the config has ${config.nLayer} layers)`, name);
      const [storedName, e] = found;
      if (e.shape.length !== param.shape.length || e.shape.some((d, i) => d !== param.shape[i])) {
        throw new GPT2CheckpointError(WEIGHTS, `shape [${e.shape.join(', ')}] does not match the config: expected [${param.shape.join(', ')}]`, storedName);
      }
      param.backend.write(param.storageView, values(weights, data, storedName, e, param.size));
      byName.delete(name);
    }
    if (byName.size > 0) throw new GPT2CheckpointError(WEIGHTS, `unexpected tensors ${[...byName.values()].slice(0, 5).map(([n]) => `'${n}'`).join(', ')}`);
    return model;
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/** A GPT as a GPT-2 directory's two files (float32, unprefixed names, tied head), loadable by transformers and by loadGPT2. */
export async function saveGPT2Files(model: mp.GPT): Promise<{ name: string; bytes: ArrayBuffer }[]> {
  // A model without biases is written with zero biases, which is the same function.
  const shapes = mp.parameterShapes({ ...model.config, bias: true }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const params = new Map(model.namedParameters());
  const header: Record<string, Entry> = {};
  let offset = 0;
  for (const [name, shape] of shapes) {
    const size = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + 4 * size] };
    offset += 4 * size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  out.fill(0x20, 8, 8 + headerLength); // padding is spaces, as Hugging Face writes it
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  for (const [name, p] of params) {
    const v = await p.toArray();
    out.set(new Uint8Array(Float32Array.from(v).buffer), 8 + headerLength + header[name]!.data_offsets[0]);
  }
  const config = new TextEncoder().encode(`${JSON.stringify(gpt2ConfigJson(model.config, 'float32'), null, 2)}\n`);
  return [{ name: CONFIG, bytes: config.buffer }, { name: WEIGHTS, bytes: out.buffer }];
}
