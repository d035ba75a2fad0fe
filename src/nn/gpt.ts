// GPT-2 (nanoGPT / llm.c style): token + learned position embeddings, pre-LayerNorm
// blocks of causal self-attention and a 4x tanh-GELU MLP with residual
// connections, a final LayerNorm, and an output head tied to the token embedding.
// Parameter names are Hugging Face's (`wte.weight`, `h.0.attn.c_attn.weight`, ...).
//
// Every layer is one fused op: dense (matmul + bias [+ GELU]) for the projections,
// causalSelfAttention from the fused qkv projection (explicit while it drops
// probabilities), and the head as dense(x, wte, transposed): the tied weight is never copied.

import type { Backend, HostArray } from '../backend/backend.js';
import { Generator, mix32 } from '../backend/random.js';
import type { FloatDType } from '../dtype/dtype.js';
import { sizeOf } from '../dtype/shape.js';
import { noGrad } from '../autograd/backward.js';
import { arange, tensor } from '../tensor/creation.js';
import { add, cachedSelfAttention, causalSelfAttention, crossEntropy, dense, slice } from '../tensor/ops.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { fmtShape } from '../tensor/errors.js';
import { autocast, autocastDtype, type AutocastDType } from '../amp/autocast.js';
import { KVCache } from './kv-cache.js';
import { Dropout, Embedding, LayerNorm, Linear, Module, resolveBackend, type ParameterOptions } from './module.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export { KVCache, KVCacheError, type KVCacheOptions } from './kv-cache.js';

export interface GPTConfig {
  vocabSize: number;
  /** Context length: the number of learned positions. */
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** Dropout on the embeddings, the attention output and the MLP output (0 disables it). */
  dropout: number;
  /** Dropout on the attention probabilities (Hugging Face's attn_pdrop; default `dropout`, as nanoGPT). */
  attnDropout?: number;
  /** Biases in the linear layers and LayerNorms (GPT-2 has them). */
  bias: boolean;
  /** Width of the MLP's hidden layer (default 4 * nEmbd). */
  nInner?: number;
  /** LayerNorm epsilon (default 1e-5). */
  layerNormEps?: number;
}

export class GPTConfigError extends MixprecError {
  override readonly code: ErrorCode = 'GPT_CONFIG_INVALID';
}

/** Bad arguments to generate (or to a forward over a key/value cache), or logits that cannot be sampled. */
export class GenerationError extends MixprecError {
  override readonly code: ErrorCode = 'GENERATION_INVALID';
}

const base = { dropout: 0, bias: true };

/** Named configurations, from a ~0.1M-parameter toy to GPT-2 medium. */
export const GPT_PRESETS = {
  /** 120,576 parameters: for tests. */
  tiny: { ...base, vocabSize: 256, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 64 },
  /** 842,496 parameters: the gpt-mini benchmark workload (byte vocabulary). */
  mini: { ...base, vocabSize: 256, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128 },
  /** 23,240,704 parameters: the gpt-small benchmark workload. */
  small: { ...base, vocabSize: 8192, blockSize: 256, nLayer: 6, nHead: 8, nEmbd: 512 },
  /** 124,439,808 parameters: GPT-2 (124M). */
  gpt2: { ...base, vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  /** 354,823,168 parameters: GPT-2 medium. */
  'gpt2-medium': { ...base, vocabSize: 50257, blockSize: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
} as const satisfies Record<string, GPTConfig>;

export type GPTPreset = keyof typeof GPT_PRESETS;

/** A preset by name, with optional overrides (e.g. `{ dropout: 0.1 }`), validated. */
export function gptConfig(preset: string, overrides: Partial<GPTConfig> = {}): GPTConfig {
  if (!Object.hasOwn(GPT_PRESETS, preset)) {
    throw new GPTConfigError(`unknown GPT preset '${preset}' (known: ${Object.keys(GPT_PRESETS).join(', ')})`);
  }
  return validateConfig({ ...GPT_PRESETS[preset as GPTPreset], ...overrides });
}

/** Checks every field, naming the first bad one; returns a complete copy. */
export function validateConfig(c: GPTConfig): GPTConfig {
  const positive = (key: keyof GPTConfig) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new GPTConfigError(`GPT config: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  };
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) positive(k);
  if (c.nInner !== undefined) positive('nInner');
  if (c.nEmbd % c.nHead !== 0) throw new GPTConfigError(`GPT config: nEmbd ${c.nEmbd} is not divisible by nHead ${c.nHead}`);
  const attnDropout = c.attnDropout ?? c.dropout;
  for (const [key, p] of [['dropout', c.dropout], ['attnDropout', attnDropout]] as const) {
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new GPTConfigError(`GPT config: ${key} must be in [0, 1), got ${JSON.stringify(p)}`);
  }
  if (typeof c.bias !== 'boolean') throw new GPTConfigError(`GPT config: bias must be true or false, got ${JSON.stringify(c.bias)}`);
  const eps = c.layerNormEps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new GPTConfigError(`GPT config: layerNormEps must be a positive number, got ${JSON.stringify(eps)}`);
  return { ...c, attnDropout, nInner: c.nInner ?? 4 * c.nEmbd, layerNormEps: eps };
}

/** Parameter names and shapes in order (Hugging Face names; the tied head is not listed). */
export function parameterShapes(config: GPTConfig): [string, number[]][] {
  const c = validateConfig(config);
  const { vocabSize: V, blockSize: P, nEmbd: C, nInner: I } = c as Required<GPTConfig>;
  const out: [string, number[]][] = [['wte.weight', [V, C]], ['wpe.weight', [P, C]]];
  const b = (name: string, shape: number[]) => (c.bias ? [[name, shape] as [string, number[]]] : []);
  for (let l = 0; l < c.nLayer; l++) {
    const h = `h.${l}.`;
    out.push(
      [`${h}ln_1.weight`, [C]], ...b(`${h}ln_1.bias`, [C]),
      [`${h}attn.c_attn.weight`, [C, 3 * C]], ...b(`${h}attn.c_attn.bias`, [3 * C]),
      [`${h}attn.c_proj.weight`, [C, C]], ...b(`${h}attn.c_proj.bias`, [C]),
      [`${h}ln_2.weight`, [C]], ...b(`${h}ln_2.bias`, [C]),
      [`${h}mlp.c_fc.weight`, [C, I]], ...b(`${h}mlp.c_fc.bias`, [I]),
      [`${h}mlp.c_proj.weight`, [I, C]], ...b(`${h}mlp.c_proj.bias`, [C]),
    );
  }
  out.push(['ln_f.weight', [C]], ...b('ln_f.bias', [C]));
  return out;
}

/** Number of parameters (the tied head counted once), without allocating the model. */
export function countParameters(config: GPTConfig): number {
  return parameterShapes(config).reduce((n, [, s]) => n + sizeOf(s), 0);
}

// ---- the model ----------------------------------------------------------------

class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  /** Dropout on the attention probabilities while training (nanoGPT's attn_dropout); the output dropout is in Block. */
  readonly attnDropout: number;
  constructor(readonly nHead: number, c: GPTConfig, p: ParameterOptions, private readonly generator: Generator) {
    super();
    this.c_attn = this.addModule('c_attn', new Linear(c.nEmbd, 3 * c.nEmbd, { ...p, bias: c.bias }));
    this.c_proj = this.addModule('c_proj', new Linear(c.nEmbd, c.nEmbd, { ...p, bias: c.bias }));
    this.attnDropout = c.attnDropout ?? c.dropout;
  }
  /** With `cache`, x holds only the new tokens, whose keys and values join that layer's cache. */
  forward(x: Tensor, cache?: LayerCache): Tensor {
    const qkv = this.c_attn.forward(x);
    const dropout = this.training ? this.attnDropout : 0;
    const y = cache
      ? cachedSelfAttention(qkv, this.nHead, cache.keys, cache.values, cache.offset)
      : causalSelfAttention(qkv, this.nHead, { dropout, generator: this.generator });
    return this.c_proj.forward(y);
  }
}

/** One layer's slice of a KVCache, and where the new tokens go in it. */
interface LayerCache {
  keys: Tensor;
  values: Tensor;
  offset: number;
}

class MLP extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  constructor(c: GPTConfig, p: ParameterOptions) {
    super();
    const inner = c.nInner ?? 4 * c.nEmbd;
    this.c_fc = this.addModule('c_fc', new Linear(c.nEmbd, inner, { ...p, bias: c.bias, gelu: true }));
    this.c_proj = this.addModule('c_proj', new Linear(inner, c.nEmbd, { ...p, bias: c.bias }));
  }
  forward(x: Tensor): Tensor {
    return this.c_proj.forward(this.c_fc.forward(x));
  }
}

class Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: MLP;
  readonly drop: Dropout;
  constructor(c: GPTConfig, p: ParameterOptions, generator: Generator) {
    super();
    const ln = { ...p, bias: c.bias, eps: c.layerNormEps };
    this.ln_1 = this.addModule('ln_1', new LayerNorm(c.nEmbd, ln));
    this.attn = this.addModule('attn', new CausalSelfAttention(c.nHead, c, p, generator));
    this.ln_2 = this.addModule('ln_2', new LayerNorm(c.nEmbd, ln));
    this.mlp = this.addModule('mlp', new MLP(c, p));
    this.drop = this.addModule('drop', new Dropout(c.dropout, generator));
  }
  forward(x0: Tensor, cache?: LayerCache): Tensor {
    return tidy(() => {
      const x = add(x0, this.drop.forward(this.attn.forward(this.ln_1.forward(x0), cache)));
      return add(x, this.drop.forward(this.mlp.forward(this.ln_2.forward(x))));
    });
  }
}

/** How parameters are initialised: GPT-2's normal(0.02), the benchmarks' counter hash, or not at all (zeros; for loading). */
export type GPTInit = 'gpt2' | 'gpt-mini' | 'none';

export interface GPTOptions {
  backend?: Backend | string;
  /** Parameter dtype (default float32). */
  dtype?: FloatDType;
  /** Seeds initialisation and dropout (default 0). */
  seed?: number;
  init?: GPTInit;
}

export interface ForwardOptions {
  /** Position of ids[:, 0] in the sequence (for decoding with a key/value cache). Default 0. */
  positionOffset?: number;
}

export interface GPTOutput {
  /** [batch, time, vocab]. */
  logits: Tensor;
  /** Mean cross-entropy over all batch * time positions; only when targets were given. */
  loss?: Tensor;
}

export interface CachedForwardOptions {
  /** Compute the logits of the last new position only ([batch, 1, vocab]): all that sampling needs. */
  lastOnly?: boolean;
}

export interface GenerateOptions {
  /** Tokens to append (a non-negative integer; 0 returns a copy of the prompt). */
  maxNewTokens: number;
  /** Divides the logits before sampling (default 1). 0 picks the most likely token. */
  temperature?: number;
  /** Samples only among the k most likely tokens (ties with the k-th kept, as nanoGPT). */
  topK?: number;
  /** Seeds the counter-based sampler (default 0): same seed and logits, same tokens, on every backend. */
  seed?: number;
  /**
   * Runs every forward step under autocast in this dtype, with the cache in it too.
   * An autocast region cannot span the awaits inside generate, so pass the dtype
   * here; without it, generate follows the region active when it is called (if any).
   */
  autocast?: AutocastDType;
  /** Decode with a key/value cache (default true); false recomputes the whole context every step. */
  useCache?: boolean;
}

export class GPT extends Module {
  readonly config: GPTConfig;
  /** Drawn from by initialisation, then by dropout; its state makes a run reproducible. */
  readonly generator: Generator;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: Block[] = [];
  readonly ln_f: LayerNorm;
  private readonly drop: Dropout;

  constructor(config: GPTConfig, opts: GPTOptions = {}) {
    super();
    const c = (this.config = validateConfig(config));
    this.generator = new Generator(opts.seed ?? 0);
    const p: ParameterOptions = { backend: resolveBackend(opts.backend), dtype: opts.dtype ?? 'float32' };
    this.wte = this.addModule('wte', new Embedding(c.vocabSize, c.nEmbd, p));
    this.wpe = this.addModule('wpe', new Embedding(c.blockSize, c.nEmbd, p));
    this.drop = this.addModule('drop', new Dropout(c.dropout, this.generator));
    const h = this.addModule('h', new ModuleList());
    for (let l = 0; l < c.nLayer; l++) this.h.push(h.append(new Block(c, p, this.generator)));
    this.ln_f = this.addModule('ln_f', new LayerNorm(c.nEmbd, { ...p, bias: c.bias, eps: c.layerNormEps }));
    this.nameParameters();
    const init = opts.init ?? 'gpt2';
    if (init === 'gpt2') gpt2Init(this);
    else if (init === 'gpt-mini') gptMiniInit(this);
    else if (init !== 'none') throw new GPTConfigError(`GPT: unknown init '${String(init)}' (expected gpt2, gpt-mini or none)`);
  }

  /**
   * Logits for int32 token ids [batch, time], and the mean cross-entropy against
   * int32 targets [batch, time] when given (positions are not shifted: targets[b, t]
   * is the token that should follow ids[b, t]).
   */
  forward(ids: Tensor, targets?: Tensor | null, opts: ForwardOptions = {}): GPTOutput {
    const c = this.config;
    if (ids.dtype !== 'int32' || ids.ndim !== 2) throw new GPTConfigError(`GPT.forward: ids must be an int32 [batch, time] tensor, got ${ids.describe()}`);
    const T = ids.shape[1]!;
    const offset = opts.positionOffset ?? 0;
    if (!Number.isInteger(offset) || offset < 0 || offset + T > c.blockSize) {
      throw new GPTConfigError(`GPT.forward: positions ${offset}..${offset + T - 1} do not fit the block size ${c.blockSize}`);
    }
    if (targets && (targets.ndim !== 2 || targets.shape[0] !== ids.shape[0] || targets.shape[1] !== T)) {
      throw new GPTConfigError(`GPT.forward: targets ${fmtShape(targets.shape)} do not match ids ${fmtShape(ids.shape)}`);
    }
    return tidy(() => {
      const pos = arange(offset, offset + T, 1, { backend: ids.backend });
      let x = this.drop.forward(add(this.wte.forward(ids), this.wpe.forward(pos)));
      for (const block of this.h) x = block.forward(x);
      x = this.ln_f.forward(x);
      // Tied head: x @ wte^T, reading wte [V, C] as the transposed weight.
      const logits = dense(x, this.wte.weight, null, { transposed: true });
      return targets ? { logits, loss: crossEntropy(logits, targets) } : { logits };
    });
  }

  /** The dtype attention computes in here and now: the autocast dtype for 16/32-bit float parameters inside a region, else the parameter dtype. */
  computeDtype(region: FloatDType | null = autocastDtype()): FloatDType {
    const p = this.dtype as FloatDType;
    return region && p !== 'float64' ? region : p;
  }

  /** An empty key/value cache for `batch` sequences of up to blockSize positions, in the compute dtype. */
  createCache(batch: number, dtype: FloatDType = this.computeDtype()): KVCache {
    const c = this.config;
    return new KVCache({
      nLayer: c.nLayer, nHead: c.nHead, headDim: c.nEmbd / c.nHead, batch, capacity: c.blockSize, dtype, backend: this.backend,
    });
  }

  /**
   * Logits [batch, time, vocab] for new int32 token ids [batch, time] that follow
   * the cache.length tokens already in `cache`: projects only the new tokens,
   * appends their keys and values to the cache, and attends over every cached
   * position. Records no gradients.
   */
  forwardWithCache(ids: Tensor, cache: KVCache, opts: CachedForwardOptions = {}): Tensor {
    const c = this.config;
    if (ids.dtype !== 'int32' || ids.ndim !== 2 || ids.shape[1] === 0) {
      throw new GenerationError(`GPT.forwardWithCache: ids must be a non-empty int32 [batch, time] tensor, got ${ids.describe()}`);
    }
    const [B, T] = ids.shape as [number, number];
    if (cache.isDisposed) throw new GenerationError('GPT.forwardWithCache: the cache was disposed');
    if (cache.nLayer !== c.nLayer || cache.nHead !== c.nHead || cache.headDim !== c.nEmbd / c.nHead || cache.batch !== B) {
      throw new GenerationError(
        `GPT.forwardWithCache: cache (${cache.nLayer} layers, ${cache.nHead} heads of ${cache.headDim}, batch ${cache.batch}) does not fit `
        + `the model (${c.nLayer} layers, ${c.nHead} heads of ${c.nEmbd / c.nHead}) and ids ${fmtShape(ids.shape)}`,
      );
    }
    const offset = cache.length;
    if (offset + T > Math.min(c.blockSize, cache.capacity)) {
      throw new GenerationError(`GPT.forwardWithCache: positions ${offset}..${offset + T - 1} do not fit the block size ${c.blockSize} (cache capacity ${cache.capacity})`);
    }
    const logits = noGrad(() => tidy(() => {
      const pos = arange(offset, offset + T, 1, { backend: ids.backend });
      let x = this.drop.forward(add(this.wte.forward(ids), this.wpe.forward(pos)));
      this.h.forEach((block, l) => {
        x = block.forward(x, { keys: cache.keys[l]!, values: cache.values[l]!, offset });
      });
      if (opts.lastOnly && T > 1) x = slice(x, 1, T - 1, T);
      x = this.ln_f.forward(x);
      return dense(x, this.wte.weight, null, { transposed: true });
    }));
    cache.advance(T);
    return logits;
  }

  /**
   * Appends maxNewTokens sampled tokens to each row of the prompt ids (int32
   * [batch, time]) and returns the new ids. With the cache (the default), one
   * pass over the prompt fills it, then each step feeds one token. Positions are
   * learned and absolute, so cached keys cannot be shifted: once the context
   * reaches blockSize, each step recomputes the cropped window of the last
   * blockSize tokens (as the cache-less path does), which keeps the two paths
   * token for token identical. Only the last position's logits are read back.
   */
  async generate(ids: Tensor, opts: GenerateOptions): Promise<Tensor> {
    const { maxNewTokens, temperature, topK, seed, useCache } = checkGenerateOptions(opts);
    if (ids.dtype !== 'int32' || ids.ndim !== 2 || ids.shape[0] === 0 || ids.shape[1] === 0) {
      throw new GenerationError(`GPT.generate: ids must be a non-empty int32 [batch, time] tensor (the prompt), got ${ids.describe()}`);
    }
    // Captured before the first await: a region active at the call has ended by the time the steps run.
    const region = opts.autocast ?? (autocastDtype() as AutocastDType | null);
    const inRegion = <T>(fn: () => T): T => (region ? autocast({ dtype: region }, fn) : fn());
    const { vocabSize: V, blockSize } = this.config;
    const [B, T0] = ids.shape as [number, number];
    const prompt = await ids.toArray();
    const rows: number[][] = [];
    for (let b = 0; b < B; b++) rows.push(Array.from(prompt.subarray(b * T0, (b + 1) * T0)));
    if (maxNewTokens === 0) return tensor(Int32Array.from(rows.flat()), { shape: [B, T0], dtype: 'int32', backend: ids.backend });

    const backend = this.backend;
    const input = (tokens: number[][]) => tensor(Int32Array.from(tokens.flat()), { shape: [B, tokens[0]!.length], dtype: 'int32', backend });
    const window = () => rows.map((r) => r.slice(-blockSize));
    const cache = useCache ? this.createCache(B, this.computeDtype(region)) : null;
    /** Logits [B, 1, V] of the next token. */
    const nextLogits = (first: boolean): Tensor => inRegion(() => tidy(() => {
      if (!cache) {
        return noGrad(() => {
          const ctx = input(window());
          return slice(this.forward(ctx).logits, 1, ctx.shape[1]! - 1);
        });
      }
      if (first || cache.length === blockSize) {
        cache.reset();
        return this.forwardWithCache(input(window()), cache, { lastOnly: true });
      }
      return this.forwardWithCache(input(rows.map((r) => [r[r.length - 1]!])), cache, { lastOnly: true });
    }));

    const rng = new Generator(seed);
    const wasTraining = this.training;
    this.eval();
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const logits = nextLogits(step === 0);
        let last: HostArray;
        try {
          last = await logits.toArray();
        } finally {
          logits.dispose();
        }
        for (let b = 0; b < B; b++) {
          rows[b]!.push(sampleToken(last.subarray(b * V, (b + 1) * V), temperature, topK, rng, () => `step ${step}, row ${b}`));
        }
      }
    } finally {
      cache?.dispose();
      this.train(wasTraining);
    }
    return tensor(Int32Array.from(rows.flat()), { shape: [B, T0 + maxNewTokens], dtype: 'int32', backend: ids.backend });
  }
}

function checkGenerateOptions(opts: GenerateOptions) {
  const { maxNewTokens, temperature = 1, topK, seed = 0, useCache = true } = opts;
  const bad = (what: string, v: unknown) => new GenerationError(`GPT.generate: ${what}, got ${JSON.stringify(v) ?? String(v)}`);
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw bad('maxNewTokens must be a non-negative integer', maxNewTokens);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) throw bad('temperature must be a finite number >= 0', temperature);
  if (topK !== undefined && (!Number.isSafeInteger(topK) || topK < 1)) throw bad('topK must be a positive integer', topK);
  if (!Number.isSafeInteger(seed)) throw bad('seed must be an integer', seed);
  if (opts.autocast !== undefined && opts.autocast !== 'float16' && opts.autocast !== 'bfloat16') throw bad("autocast must be 'float16' or 'bfloat16'", opts.autocast);
  return { maxNewTokens, temperature, topK, seed, useCache };
}

/** An indexed list of modules (`h.0`, `h.1`, ...). */
export class ModuleList extends Module {
  private count = 0;
  append<M extends Module>(m: M): M {
    return this.addModule(String(this.count++), m);
  }
}

/**
 * One token from a row of logits: argmax at temperature 0; otherwise softmax of
 * logits / temperature (restricted to the topK largest) sampled with one
 * uniform draw from rng, so equal logits and seed give equal tokens anywhere.
 */
function sampleToken(
  logits: ArrayLike<number>, temperature: number, topK: number | undefined, rng: Generator, where: () => string,
): number {
  const V = logits.length;
  let best = 0;
  for (let i = 0; i < V; i++) {
    const v = logits[i]!;
    if (!Number.isFinite(v)) throw new GenerationError(`GPT.generate: logit ${i} is ${v} at ${where()} (did the model overflow its dtype?)`);
    if (v > logits[best]!) best = i;
  }
  if (temperature === 0) return best;
  let cutoff = -Infinity;
  if (topK !== undefined && topK < V) cutoff = Float64Array.from(logits).sort()[V - topK]!;
  const max = logits[best]! / temperature;
  const p = new Float64Array(V);
  let sum = 0;
  for (let i = 0; i < V; i++) {
    if (logits[i]! < cutoff) continue;
    p[i] = Math.exp(logits[i]! / temperature - max);
    sum += p[i]!;
  }
  let u = rng.uniform(1)[0]! * sum;
  let last = best;
  for (let i = 0; i < V; i++) {
    if (p[i] === 0) continue;
    last = i;
    u -= p[i]!;
    if (u <= 0) return i;
  }
  return last;
}

// ---- initialisation -------------------------------------------------------------

/** The standard deviation GPT-2 gives a parameter; undefined for LayerNorm gains (1) and biases (0). */
function initStd(name: string, nLayer: number): number | undefined {
  if (name.endsWith('.bias') || /(^|\.)ln_(1|2|f)\.weight$/.test(name)) return undefined;
  // Residual projections are scaled so the residual stream's variance does not grow with depth.
  if (name.endsWith('.c_proj.weight')) return 0.02 / Math.sqrt(2 * nLayer);
  return 0.02;
}

function fillParameter(t: Tensor, values: ArrayLike<number>): void {
  t.backend.write(t.view, values);
}

/** GPT-2 initialisation: normal(0, 0.02), residual projections 0.02/sqrt(2 nLayer), biases 0, gains 1; drawn from model.generator in parameter order. */
export function gpt2Init(model: GPT): void {
  for (const [name, t] of model.namedParameters()) {
    const std = initStd(name, model.config.nLayer);
    if (std === undefined) {
      t.backend.fill(t.view, name.endsWith('.bias') ? 0 : 1);
      continue;
    }
    const z = model.generator.normal(t.size);
    for (let i = 0; i < z.length; i++) z[i]! *= std;
    fillParameter(t, z);
  }
}

/**
 * The benchmark workloads' deterministic initialisation (uniform with GPT-2's stds,
 * from a lowbias32 counter hash of element index and parameter index), identical to
 * the reference implementations in Python and JavaScript bit for bit.
 */
export function gptMiniInit(model: GPT): void {
  // Parameter index p counts over the canonical list, which has every bias.
  const canonical = parameterShapes({ ...model.config, bias: true }).map(([n]) => n);
  for (const [name, t] of model.namedParameters()) {
    const std = initStd(name, model.config.nLayer);
    if (std === undefined) {
      t.backend.fill(t.view, name.endsWith('.bias') ? 0 : 1);
      continue;
    }
    const p = canonical.indexOf(name);
    const key = Math.imul(0x9e3779b9, p + 1) >>> 0;
    const w = new Float64Array(t.size);
    for (let i = 0; i < t.size; i++) {
      const u = (mix32((i + key) >>> 0) >>> 8) / 16777216;
      w[i] = Math.fround((2 * u - 1) * Math.sqrt(3) * std);
    }
    fillParameter(t, w);
  }
}
