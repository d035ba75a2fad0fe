// GPT-2 checkpoints in the Hugging Face layout: a directory with config.json and
// model.safetensors, as `GPT2LMHeadModel.save_pretrained` writes it and
// `from_pretrained` reads it.
//
// Loading accepts names with or without the `transformer.` prefix, ignores the
// attention mask buffers (`h.N.attn.bias`, `h.N.attn.masked_bias`) and unknown
// config keys, and accepts a tied `lm_head.weight` (equal to `wte.weight`).
// Weights use Conv1D's [in, out] layout, which is mixprec's own. Everything is
// checked against the config before any tensor is allocated, and every tensor's
// size was already checked against the file's size by the safetensors reader,
// so no allocation is driven by an untrusted number.

import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { decode16, encode16, isHalf } from '../dtype/codec.js';
import { sizeOf } from '../dtype/shape.js';
import { parseDType, type DType, type FloatDType } from '../dtype/dtype.js';
import { GPT, parameterShapes, type GPTConfig } from '../nn/gpt.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from './atomic.js';
import { emptyQuantizedGPT, groupSizeFor, isQuantized, linearLayers, setQuantizedFrom, toWeightFormat, weightFormat, type WeightFormat } from '../nn/quantize.js';
import { loadQuantizedGPT2, saveQuantizedGPT2, storedQuantFormat } from './quantized-gpt2.js';
import {
  SafetensorsError, SafetensorsReader, toMixprecDType, toSafetensorsDType, writeSafetensors,
  type RawTensor, type SafetensorsDType, type TensorData, type TensorInfo,
} from './safetensors.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** A GPT-2 directory that cannot be loaded: names the file and the key or tensor at fault. */
export class GPT2CheckpointError extends MixprecError {
  override readonly code: ErrorCode = 'GPT2_CHECKPOINT_INVALID';
  constructor(readonly file: string, fault: string, readonly subject?: string) {
    super(`${file}: ${subject === undefined ? '' : `'${subject}': `}${fault}`);
  }
}

const PREFIX = 'transformer.';
const MASK_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;
const TANH_GELU = ['gelu_new', 'gelu_pytorch_tanh'];
const MAX_CONFIG_BYTES = 1 << 24;
/**
 * Bounds on config.json's sizes. Each tensor size is then checked against the
 * weights file before anything is allocated; n_layer also sets how many
 * parameters are listed for that check (12 per layer), so its bound is lower:
 * far above any GPT-2 (48 layers), far below a list that would exhaust memory.
 */
const MAX_DIM = 2 ** 31 - 1;
const SIZE_LIMITS: Record<string, number> = { n_layer: 4096 };

// ---- config.json ---------------------------------------------------------------

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      if (size > MAX_CONFIG_BYTES) throw new GPT2CheckpointError(file, `is ${size} bytes, over the limit of ${MAX_CONFIG_BYTES} for a config file`);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof GPT2CheckpointError) throw err;
    throw new GPT2CheckpointError(file, `cannot be read (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GPT2CheckpointError(file, `is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new GPT2CheckpointError(file, 'is not a JSON object');
  return json as Record<string, unknown>;
}

/**
 * The model configuration of a Hugging Face GPT-2 config.json object. Unknown
 * keys are ignored; `file` is only used in error messages.
 */
export function parseGPT2Config(json: Record<string, unknown>, file = CONFIG_FILE): GPTConfig {
  const fail = (key: string, fault: string): never => { throw new GPT2CheckpointError(file, fault, key); };
  const has = (key: string) => Object.hasOwn(json, key) && json[key] !== undefined;
  const int = (key: string, fallback?: string): number => {
    const k = !has(key) && fallback !== undefined && has(fallback) ? fallback : key;
    if (!has(k)) fail(key, 'missing required key');
    const v = json[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(k, `must be a positive integer, got ${JSON.stringify(v)}`);
    const limit = SIZE_LIMITS[k] ?? MAX_DIM;
    if ((v as number) > limit) fail(k, `${v} is absurdly large (limit ${limit})`);
    return v as number;
  };
  const prob = (key: string): number => {
    const v = json[key] ?? 0;
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) fail(key, `must be a probability in [0, 1), got ${JSON.stringify(v)}`);
    return v as number;
  };
  const flag = (key: string, supported: boolean) => {
    if (!has(key)) return;
    if (typeof json[key] !== 'boolean') fail(key, `must be true or false, got ${JSON.stringify(json[key])}`);
    if (json[key] !== supported) fail(key, `${json[key]} is not supported (only ${supported})`);
  };

  if (has('model_type') && json.model_type !== 'gpt2') fail('model_type', `${JSON.stringify(json.model_type)} is not a GPT-2 model ("gpt2")`);
  const vocabSize = int('vocab_size');
  const blockSize = int('n_positions', 'n_ctx');
  const nEmbd = int('n_embd');
  const nLayer = int('n_layer');
  const nHead = int('n_head');
  if (nEmbd % nHead !== 0) fail('n_head', `n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  const nInner = json.n_inner === null || !has('n_inner') ? 4 * nEmbd : int('n_inner');
  const activation = json.activation_function ?? 'gelu_new';
  if (typeof activation !== 'string' || !TANH_GELU.includes(activation)) {
    fail('activation_function', `${JSON.stringify(activation)} is not supported (only the tanh GELU: ${TANH_GELU.join(', ')})`);
  }
  const eps = json.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) fail('layer_norm_epsilon', `must be a small positive number, got ${JSON.stringify(eps)}`);
  prob('embd_pdrop');
  const dropout = prob('resid_pdrop');
  const attnDropout = prob('attn_pdrop');
  flag('scale_attn_weights', true);
  flag('scale_attn_by_inverse_layer_idx', false);
  flag('add_cross_attention', false);
  if (has('tie_word_embeddings') && json.tie_word_embeddings !== true) {
    fail('tie_word_embeddings', 'untied output heads are not supported (the head must be tied to wte)');
  }
  return { vocabSize, blockSize, nLayer, nHead, nEmbd, nInner, dropout, attnDropout, bias: true, layerNormEps: eps as number };
}

/** A Hugging Face GPT-2 config.json object for a model configuration. */
export function gpt2ConfigJson(config: GPTConfig, torchDtype: DType = 'float32'): Record<string, unknown> {
  const c = config;
  const json: Record<string, unknown> = {
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: c.attnDropout ?? c.dropout,
    bos_token_id: c.vocabSize - 1,
    embd_pdrop: c.dropout,
    eos_token_id: c.vocabSize - 1,
    initializer_range: 0.02,
    layer_norm_epsilon: c.layerNormEps ?? 1e-5,
    model_type: 'gpt2',
    n_ctx: c.blockSize,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: c.nInner === undefined || c.nInner === 4 * c.nEmbd ? null : c.nInner,
    n_layer: c.nLayer,
    n_positions: c.blockSize,
    resid_pdrop: c.dropout,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: torchDtype,
    use_cache: true,
    vocab_size: c.vocabSize,
  };
  return json;
}

// ---- loading ---------------------------------------------------------------------

export interface LoadGPT2Options {
  backend?: Backend | string;
  /** Parameter dtype (default float32). Stored values convert exactly when widening, to nearest even when narrowing. */
  dtype?: FloatDType | string;
  /** Overrides the config's resid_pdrop and attn_pdrop (one dropout, as nanoGPT's override). */
  dropout?: number;
  /** Seeds the model's generator (dropout). */
  seed?: number;
  /**
   * Weight format for inference (nn/quantize.ts), applied once after loading a
   * float file. A quantized file loads in its own format (naming another is an error).
   */
  weights?: WeightFormat;
  /** Inputs per scale when quantizing (int4: 32 or 64). */
  groupSize?: number;
  /**
   * Elements of a tensor read, converted and written to the backend at a time (default 2^22:
   * 16 MiB of float32), so that loading holds one piece of a tensor on the host, not all of it.
   */
  pieceElements?: number;
}

const PIECE_ELEMENTS = 1 << 22;

const FLOAT_STORED: SafetensorsDType[] = ['F32', 'F16', 'BF16', 'F64'];

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Matches the file's tensors to the model's names; throws listing every missing and unexpected one, or a bad shape or dtype. */
function planLoad(reader: SafetensorsReader, config: GPTConfig): { sources: Map<string, TensorInfo>; lmHead?: TensorInfo } {
  const file = reader.file;
  const expected = new Map(parameterShapes(config));
  const sources = new Map<string, TensorInfo>();
  const unexpected: string[] = [];
  let lmHead: TensorInfo | undefined;
  for (const info of reader.tensors()) {
    const name = info.name.startsWith(PREFIX) ? info.name.slice(PREFIX.length) : info.name;
    if (MASK_BUFFER.test(name)) continue;
    if (name === 'lm_head.weight') {
      if (lmHead) throw new GPT2CheckpointError(file, 'appears twice (with and without the transformer. prefix)', info.name);
      lmHead = info;
      continue;
    }
    if (!expected.has(name)) { unexpected.push(info.name); continue; }
    if (sources.has(name)) throw new GPT2CheckpointError(file, `appears twice (as '${sources.get(name)!.name}' and '${info.name}')`, name);
    sources.set(name, info);
  }
  const missing = [...expected.keys()].filter((n) => !sources.has(n));
  if (missing.length || unexpected.length) {
    const list = (ns: string[]) => ns.slice(0, 12).map((n) => `'${n}'`).join(', ') + (ns.length > 12 ? `, ... (${ns.length} in all)` : '');
    const faults = [];
    if (missing.length) faults.push(`missing tensors ${list(missing)}`);
    if (unexpected.length) faults.push(`unexpected tensors ${list(unexpected)}`);
    throw new GPT2CheckpointError(file, `does not match the config (${config.nLayer} layers): ${faults.join('; ')}`);
  }
  const check = (info: TensorInfo, shape: readonly number[]) => {
    if (!FLOAT_STORED.includes(info.dtype)) throw new GPT2CheckpointError(file, `dtype ${info.dtype} is not a floating-point type (expected ${FLOAT_STORED.join(', ')})`, info.name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new GPT2CheckpointError(file, `shape ${fmt(info.shape)} does not match the config: expected ${fmt(shape)}`, info.name);
    }
  };
  for (const [name, info] of sources) check(info, expected.get(name)!);
  if (lmHead) check(lmHead, expected.get('wte.weight')!);
  return { sources, lmHead };
}

/** Stored data: a tensor or a piece of one. */
type Stored = Pick<RawTensor, 'dtype' | 'data'>;

/** Values of stored data as float32 (float64 for F64); exact for every float type. */
function widen(t: Stored): Float32Array | Float64Array {
  const dtype = toMixprecDType(t.dtype);
  return dtype !== undefined && isHalf(dtype) ? decode16(dtype, t.data as Uint16Array) : t.data as Float32Array | Float64Array;
}

function sameValues(a: Stored, b: Stored): boolean {
  if (a.dtype === b.dtype) {
    const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  const x = widen(a), y = widen(b);
  return x.every((v, i) => v === y[i] || (Number.isNaN(v) && Number.isNaN(y[i]!)));
}

/**
 * Writes stored data into elements [first, first + its length) of a parameter: the bits themselves
 * when the dtypes agree, else the values rounded to the parameter's dtype (through float32 first
 * with `throughFloat32`, so the bits are those of converting a float32 model).
 */
function assign(param: Tensor, first: number, t: Stored, throughFloat32: boolean): void {
  const view = { ...param.storageView, offset: param.storageView.offset + first, size: t.data.length };
  if (toMixprecDType(t.dtype) === param.dtype) param.backend.writeRaw(view, t.data as Float32Array | Float64Array | Uint16Array);
  else param.backend.write(view, throughFloat32 ? Float32Array.from(widen(t)) : widen(t));
}

/**
 * Reads a tensor into a parameter piece by piece (an even number of elements
 * each, so 16-bit pieces start on whole words); with `tied`, checks that the
 * tied tensor holds the same values, piece by piece too. Waits for the backend
 * after each piece, so that a device's staging copy of the data (WebGPU's
 * writeBuffer) is released piece by piece too, not held until the end.
 */
async function loadPieces(
  reader: SafetensorsReader, param: Tensor, source: TensorInfo, tied: TensorInfo | undefined,
  { pieceElements, throughFloat32 }: { pieceElements: number; throughFloat32: boolean },
): Promise<void> {
  const piece = Math.max(2, pieceElements - (pieceElements % 2));
  for (let first = 0; first < param.size; first += piece) {
    const count = Math.min(piece, param.size - first);
    const stored = { dtype: source.dtype, data: await reader.readElements(source.name, first, count) };
    if (tied && !sameValues(stored, { dtype: tied.dtype, data: await reader.readElements(tied.name, first, count) })) {
      throw new GPT2CheckpointError(reader.file, 'differs from wte.weight: untied output heads are not supported', tied.name);
    }
    assign(param, first, stored, throughFloat32);
    await param.backend.sync();
  }
}

/** The GPT configuration of a Hugging Face GPT-2 directory (its config.json), with `dropout` (residual and attention) when given. */
export async function readGPT2Config(dir: string, opts: { dropout?: number } = {}): Promise<GPTConfig> {
  const configFile = join(dir, CONFIG_FILE);
  const config = parseGPT2Config(await readConfigFile(configFile), configFile);
  if (opts.dropout !== undefined) config.dropout = config.attnDropout = opts.dropout;
  return config;
}

/**
 * Loads a Hugging Face GPT-2 directory (config.json + model.safetensors) into a GPT.
 * Malformed input gets a GPT2CheckpointError (or a SafetensorsError for a damaged
 * file) naming the file and the fault.
 */
export async function loadGPT2(dir: string, opts: LoadGPT2Options = {}): Promise<GPT> {
  const config = await readGPT2Config(dir, opts);
  const dtype = parseDType(opts.dtype ?? 'float32');
  if (dtype === 'int32') throw new GPT2CheckpointError(dir, 'parameters must be floating point', 'dtype');
  const pieceElements = opts.pieceElements ?? PIECE_ELEMENTS;
  if (!Number.isInteger(pieceElements) || pieceElements < 1) throw new GPT2CheckpointError(dir, `must be a positive integer, got ${pieceElements}`, 'pieceElements');

  const weightsFile = join(dir, WEIGHTS_FILE);
  const reader = await SafetensorsReader.open(weightsFile).catch((err: Error) => {
    throw err instanceof SafetensorsError ? err : new GPT2CheckpointError(weightsFile, `cannot be read (${err.message})`);
  });
  let model: GPT | undefined;
  try {
    const stored = storedQuantFormat(reader);
    if (stored) {
      if (opts.weights !== undefined && opts.weights !== stored) throw new GPT2CheckpointError(weightsFile, `holds ${stored} weights, not ${opts.weights}`, 'weights');
      return await loadQuantizedGPT2(reader, stored, config, opts);
    }
    const { sources, lmHead } = planLoad(reader, config);
    // A format asked for over float32 parameters is loaded straight into: 16-bit parameters, or each
    // Linear weight quantized from the file alone, so that the float32 weights are never all held.
    // The values go through float32, so the bits are those of converting a float32 model.
    const fromFloat32 = dtype === 'float32' ? opts.weights : undefined;
    const quantizeTo = fromFloat32 === 'int8' || fromFloat32 === 'int4' ? fromFloat32 : undefined;
    const castTo = fromFloat32 === 'fp16' || fromFloat32 === 'bf16' ? parseDType(fromFloat32) as FloatDType : undefined;
    model = quantizeTo ? emptyQuantizedGPT(config, opts) : new GPT(config, { backend: opts.backend, dtype: castTo ?? dtype, seed: opts.seed, init: 'none' });
    for (const [name, param] of model.namedParameters()) {
      const tied = name === 'wte.weight' ? lmHead : undefined;
      await loadPieces(reader, param, sources.get(name)!, tied, { pieceElements, throughFloat32: Boolean(quantizeTo || castTo) });
    }
    if (quantizeTo) {
      const groupSize = groupSizeFor(model, quantizeTo, opts.groupSize);
      for (const [name, layer] of linearLayers(model)) {
        const stored = await reader.read(sources.get(`${name}.weight`)!.name);
        setQuantizedFrom(layer, Float32Array.from(widen(stored)), quantizeTo, model.backend, { groupSize, what: `${name}.weight` });
      }
      return model;
    }
    return opts.weights ? await toWeightFormat(model, opts.weights, { groupSize: opts.groupSize }) : model;
  } catch (err) {
    model?.dispose();
    throw err;
  } finally {
    await reader.close();
  }
}

// ---- saving ----------------------------------------------------------------------

export interface SaveGPT2Options {
  /** Stored dtype (default: the parameters' dtype). Narrowing rounds to nearest even. */
  dtype?: FloatDType | string;
}

async function storedData(param: Tensor | undefined, size: number, dtype: SafetensorsDType): Promise<TensorData> {
  if (!param) return dtype === 'F32' ? new Float32Array(size) : dtype === 'F64' ? new Float64Array(size) : new Uint16Array(size);
  if (toMixprecDType(dtype) === param.dtype) return (await param.backend.readRaw(param.storageView)) as TensorData;
  const v = await param.toArray();
  const target = toMixprecDType(dtype);
  if (target !== undefined && isHalf(target)) return encode16(target, v);
  return dtype === 'F64' ? Float64Array.from(v) : v instanceof Float32Array ? v : Float32Array.from(v);
}

/**
 * Writes a GPT as a Hugging Face GPT-2 directory (unprefixed names, no lm_head:
 * the head is tied), loadable by `GPT2LMHeadModel.from_pretrained` and by loadGPT2.
 * A model without biases is written with zero biases, which is the same function.
 * Each file is replaced atomically; other files in `dir` are left alone.
 */
export async function saveGPT2(model: GPT, dir: string, opts: SaveGPT2Options = {}): Promise<void> {
  if (isQuantized(model)) {
    if (opts.dtype !== undefined) throw new GPT2CheckpointError(dir, `a ${weightFormat(model)} model is stored as it is, not as ${opts.dtype}`, 'dtype');
    return saveQuantizedGPT2(model, dir, gpt2ConfigJson(model.config, 'float32'), WEIGHTS_FILE, CONFIG_FILE);
  }
  const dtype = parseDType(opts.dtype ?? model.dtype);
  if (dtype === 'int32') throw new GPT2CheckpointError(dir, 'weights must be stored as a floating-point type', 'dtype');
  const st = toSafetensorsDType(dtype);
  const params = new Map(model.namedParameters());
  const full = parameterShapes({ ...model.config, bias: true });
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, WEIGHTS_FILE), full.map(([name, shape]) => ({
    name, dtype: st, shape,
    data: () => storedData(params.get(name), sizeOf(shape), st),
  })), { format: 'pt' });
  const json = gpt2ConfigJson(model.config, dtype);
  await writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(json, null, 2)}\n`);
}
