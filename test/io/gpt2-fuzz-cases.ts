// The cases of the loadGPT2 fuzz test (gpt2-fuzz.test.ts), run in a worker
// thread with a capped heap: mutated config.json and model.safetensors pairs
// made from the fixtures by a seeded generator. For each case the worker posts
// `start` (so a hang or a crash can be traced to it) and then `end` with what
// loadGPT2 did: loaded a model that matches its config, or threw (by name).

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { Generator } from '../../src/backend/random.js';
import { CONFIG_FILE, GPT2CheckpointError, WEIGHTS_FILE, loadGPT2, parseGPT2Config } from '../../src/io/gpt2.js';
import { SafetensorsError } from '../../src/io/safetensors.js';
import { parameterShapes } from '../../src/nn/gpt.js';
import { memory } from '../../src/tensor/tensor.js';

export interface FuzzJob { seed: number; cases: number; fixtures: string; dir: string }
export type FuzzMessage =
  | { type: 'start'; index: number; kind: string; detail: string }
  | { type: 'end'; index: number; kind: string; detail: string; outcome: string; ms: number }
  | { type: 'heap'; before: number; after: number };

/** The error classes a bad file may end in: each names the file and what is wrong. */
const TYPED_ERRORS = [GPT2CheckpointError, SafetensorsError];
const FIXTURES = ['tiny', 'tiny-fp16', 'tiny-bf16', 'tiny-hf-prefixed'];
const CONFIG_FIELDS = [
  'vocab_size', 'n_positions', 'n_ctx', 'n_embd', 'n_layer', 'n_head', 'n_inner', 'layer_norm_epsilon',
  'resid_pdrop', 'embd_pdrop', 'attn_pdrop', 'activation_function', 'model_type', 'tie_word_embeddings', 'scale_attn_weights',
];
/** Values a hostile or careless file might hold where a size, a dtype or an offset belongs. */
const ODD_VALUES: unknown[] = [
  2 ** 31 - 1, 2 ** 31, 2 ** 32 + 48, 2 ** 53, 2 ** 64, 1e308, -1, -(2 ** 31), 0, 1, 3, 47, 49, 96, 4096, 4097, 1.5, 1e-300,
  '48', '', null, true, false, [], [48], {}, { n: 1 },
];
const ODD_DTYPES: unknown[] = ['I64', 'U8', 'BOOL', 'I32', 'F8_E4M3', 'f32', 'F32 ', 7, null, ['F32'], 'F64', 'F16', 'BF16'];

interface Fixture { config: string; weights: Uint8Array }
interface Case { kind: string; detail: string; config: string | Uint8Array; weights: Uint8Array }

const g = new Generator(0);
const int = (n: number) => g.int(n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

function splitSafetensors(bytes: Uint8Array): { header: Record<string, any>; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.subarray(8 + n) };
}

function joinSafetensors(headerText: string, data: Uint8Array, declared?: bigint): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const tensorNames = (header: Record<string, unknown>) => Object.keys(header).filter((k) => k !== '__metadata__');

/** A mutation of config.json: a field set to an odd value or removed, a duplicate key, broken or non-object JSON. */
function mutateConfig(text: string): { detail: string; config: string | Uint8Array } {
  const json = JSON.parse(text) as Record<string, unknown>;
  const field = pick(CONFIG_FIELDS);
  switch (int(6)) {
    case 0: case 1: {
      const value = pick(ODD_VALUES);
      json[field] = value;
      return { detail: `config ${field} = ${JSON.stringify(value)}`, config: JSON.stringify(json) };
    }
    case 2:
      delete json[field];
      return { detail: `config without ${field}`, config: JSON.stringify(json) };
    case 3: {
      // A duplicate key: JSON.parse keeps the last one, which is the odd one here.
      const value = pick(ODD_VALUES);
      return { detail: `config with a second ${field}: ${JSON.stringify(value)}`, config: `${text.trimEnd().slice(0, -1)}, ${JSON.stringify(field)}: ${JSON.stringify(value)}}` };
    }
    case 4: {
      const at = int(text.length);
      return { detail: `config truncated at ${at}`, config: text.slice(0, at) };
    }
    default: {
      const bytes = new TextEncoder().encode(text);
      const at = int(bytes.length);
      bytes[at]! ^= 1 << int(8);
      return { detail: `config bit flip at ${at}`, config: bytes };
    }
  }
}

/** A mutation of model.safetensors: truncation, bit flips, or a header entry with an odd shape, offsets, dtype, name or length. */
function mutateWeights(bytes: Uint8Array): { kind: string; detail: string; weights: Uint8Array } {
  const { header, data } = splitSafetensors(bytes);
  const headerEnd = bytes.length - data.length;
  const names = tensorNames(header);
  const name = pick(names);
  const entry = header[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] };
  const rebuilt = (kind: string, detail: string) => ({ kind, detail, weights: joinSafetensors(JSON.stringify(header), data) });
  switch (int(10)) {
    case 0: {
      const at = int(2) ? int(headerEnd + 1) : int(bytes.length);
      return { kind: 'truncation', detail: `weights truncated to ${at} bytes`, weights: bytes.slice(0, at) };
    }
    case 1: {
      const out = bytes.slice();
      const flips = 1 + int(8);
      const where = int(2) ? headerEnd : out.length;
      for (let k = 0; k < flips; k++) out[int(where)]! ^= 1 << int(8);
      return { kind: 'bit flips', detail: `${flips} bit flips in the first ${where} bytes`, weights: out };
    }
    case 2: {
      const value = pick(ODD_VALUES);
      const shape = entry.shape.length ? [...entry.shape] : [1];
      shape[int(shape.length)] = value;
      entry.shape = shape;
      return rebuilt('size', `${name} shape ${JSON.stringify(shape)}`);
    }
    case 3: {
      // A shape whose product equals the byte length but disagrees with the config (e.g. transposed or flattened).
      const count = entry.shape.reduce((a: number, d) => a * (d as number), 1);
      entry.shape = pick([[count], [...entry.shape].reverse(), [1, count], [count, 1, 1]]);
      return rebuilt('size', `${name} reshaped to ${JSON.stringify(entry.shape)}`);
    }
    case 4: {
      const k = int(2);
      entry.data_offsets[k] = pick([...ODD_VALUES, (entry.data_offsets[k] as number) + 2, (entry.data_offsets[k] as number) - 4]);
      return rebuilt('size', `${name} data_offsets ${JSON.stringify(entry.data_offsets)}`);
    }
    case 5:
      entry.dtype = pick(ODD_DTYPES);
      return rebuilt('dtype', `${name} dtype ${JSON.stringify(entry.dtype)}`);
    case 6:
      delete header[name];
      return rebuilt('missing tensor', `without ${name}`);
    case 7: {
      const other = pick(['h.9.ln_1.weight', 'transformer.ln_f.weight', 'lm_head.weight', `${name}.x`, 'wte.weight', '__proto__', 'constructor']);
      delete header[name];
      header[other] = entry;
      return rebuilt('missing tensor', `${name} renamed to ${other}`);
    }
    case 8: {
      // The same name twice in the header text: JSON.parse keeps the second entry.
      const copy = { ...entry, data_offsets: pick([entry.data_offsets, [0, 0], [0, 4]]) };
      const text = JSON.stringify(header);
      const twice = `{${JSON.stringify(name)}:${JSON.stringify(copy)},${text.slice(1)}`;
      return { kind: 'duplicate name', detail: `${name} twice`, weights: joinSafetensors(twice, data) };
    }
    default: {
      const declared = pick([0n, 1n, 7n, BigInt(headerEnd - 9), BigInt(headerEnd - 7), BigInt(bytes.length), 2n ** 63n, 2n ** 64n - 1n, 100_000_001n]);
      return { kind: 'size', detail: `header length field ${declared}`, weights: joinSafetensors(JSON.stringify(header), data, declared) };
    }
  }
}

function makeCase(fixtures: Map<string, Fixture>): Case {
  const name = pick(FIXTURES);
  const f = fixtures.get(name)!;
  const r = int(10);
  if (r === 0) return { kind: 'unchanged', detail: name, config: f.config, weights: f.weights };
  const c = r <= 3 ? mutateConfig(f.config) : undefined;
  const w = r >= 3 ? mutateWeights(f.weights) : undefined;
  const kind = c && w ? `config and ${w.kind}` : c ? 'config' : w!.kind;
  return { kind, detail: `${name}: ${[c?.detail, w?.detail].filter(Boolean).join('; ')}`, config: c?.config ?? f.config, weights: w?.weights ?? f.weights };
}

/** What loadGPT2 does with `dir`: `loaded` if the model matches its config, else the error's name (with its message if untyped or not naming the file). */
async function loadOutcome(dir: string, backend: CpuBackend): Promise<string> {
  try {
    const model = await loadGPT2(dir, { backend });
    const config = parseGPT2Config(JSON.parse(await readFile(join(dir, CONFIG_FILE), 'utf8')));
    const shapes = parameterShapes(config).map(([n, s]) => `${n} ${s}`);
    const loaded = model.namedParameters().map(([n, p]) => `${n} ${p.shape}`);
    model.dispose();
    return JSON.stringify(shapes) === JSON.stringify(loaded) ? 'loaded' : 'loaded a model that does not match its config';
  } catch (err) {
    const e = err as Error;
    const typed = TYPED_ERRORS.some((type) => e instanceof type);
    return typed && e.message.includes(dir) ? e.name : `${e?.name}: ${e?.message}`;
  }
}

async function run(job: FuzzJob): Promise<void> {
  const post = (m: FuzzMessage) => parentPort!.postMessage(m);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  g.setState({ seed: job.seed, offset: 0 });
  const fixtures = new Map<string, Fixture>();
  for (const name of FIXTURES) {
    const dir = join(job.fixtures, name);
    fixtures.set(name, { config: await readFile(join(dir, CONFIG_FILE), 'utf8'), weights: new Uint8Array(await readFile(join(dir, WEIGHTS_FILE))) });
  }
  const backend = new CpuBackend();
  await mkdir(job.dir, { recursive: true });
  gc();
  const before = getHeapStatistics().used_heap_size;
  for (let index = 0; index < job.cases; index++) {
    const c = makeCase(fixtures);
    await writeFile(join(job.dir, CONFIG_FILE), c.config);
    await writeFile(join(job.dir, WEIGHTS_FILE), c.weights);
    post({ type: 'start', index, kind: c.kind, detail: c.detail });
    const t0 = performance.now();
    let outcome = await loadOutcome(job.dir, backend);
    if (memory(backend).bytes !== 0) outcome = `${memory(backend).bytes} bytes left allocated after: ${outcome}`;
    post({ type: 'end', index, kind: c.kind, detail: c.detail, outcome, ms: performance.now() - t0 });
  }
  fixtures.clear();
  gc();
  post({ type: 'heap', before, after: getHeapStatistics().used_heap_size });
}

if (parentPort && workerData) await run(workerData as FuzzJob);
