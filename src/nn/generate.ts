// Generation from a GPT: autoregressive decoding with a key/value cache (or
// without, recomputing the context), and sampling with temperature and top-k
// from a counter-based generator, so a seed gives the same tokens anywhere.

import type { HostArray } from '../backend/backend.js';
import { Generator } from '../backend/random.js';
import { noGrad } from '../autograd/backward.js';
import { tensor } from '../tensor/creation.js';
import { slice } from '../tensor/ops.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { autocast, autocastDtype, type AutocastDType } from '../amp/autocast.js';
import type { GPT } from './gpt.js';
import { MixprecError, type ErrorCode } from '../errors.js';

/** Bad arguments to generate (or to a forward over a key/value cache), or logits that cannot be sampled. */
export class GenerationError extends MixprecError {
  override readonly code: ErrorCode = 'GENERATION_INVALID';
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

/**
 * Appends maxNewTokens sampled tokens to each row of the prompt ids (int32
 * [batch, time]) and returns the new ids. With the cache (the default), one
 * pass over the prompt fills it, then each step feeds one token. Positions are
 * learned and absolute, so cached keys cannot be shifted: once the context
 * reaches blockSize, each step recomputes the cropped window of the last
 * blockSize tokens (as the cache-less path does), which keeps the two paths
 * token for token identical. Only the last position's logits are read back.
 */
export async function generate(model: GPT, ids: Tensor, opts: GenerateOptions): Promise<Tensor> {
  const { maxNewTokens, temperature, topK, seed, useCache } = checkGenerateOptions(opts);
  if (ids.dtype !== 'int32' || ids.ndim !== 2 || ids.shape[0] === 0 || ids.shape[1] === 0) {
    throw new GenerationError(`GPT.generate: ids must be a non-empty int32 [batch, time] tensor (the prompt), got ${ids.describe()}`);
  }
  // Captured before the first await: a region active at the call has ended by the time the steps run.
  const region = opts.autocast ?? (autocastDtype() as AutocastDType | null);
  const inRegion = <T>(fn: () => T): T => (region ? autocast({ dtype: region }, fn) : fn());
  const { vocabSize: V, blockSize } = model.config;
  const [B, T0] = ids.shape as [number, number];
  const prompt = await ids.toArray();
  const rows: number[][] = [];
  for (let b = 0; b < B; b++) rows.push(Array.from(prompt.subarray(b * T0, (b + 1) * T0)));
  if (maxNewTokens === 0) return tensor(Int32Array.from(rows.flat()), { shape: [B, T0], dtype: 'int32', backend: ids.backend });

  const backend = model.backend;
  const input = (tokens: number[][]) => tensor(Int32Array.from(tokens.flat()), { shape: [B, tokens[0]!.length], dtype: 'int32', backend });
  const window = () => rows.map((r) => r.slice(-blockSize));
  const cache = useCache ? model.createCache(B, model.computeDtype(region)) : null;
  /** Logits [B, 1, V] of the next token. */
  const nextLogits = (first: boolean): Tensor => inRegion(() => tidy(() => {
    if (!cache) {
      return noGrad(() => {
        const ctx = input(window());
        return slice(model.forward(ctx).logits, 1, ctx.shape[1]! - 1);
      });
    }
    if (first || cache.length === blockSize) {
      cache.reset();
      return model.forwardWithCache(input(window()), cache, { lastOnly: true });
    }
    return model.forwardWithCache(input(rows.map((r) => [r[r.length - 1]!])), cache, { lastOnly: true });
  }));

  const rng = new Generator(seed);
  const wasTraining = model.training;
  model.eval();
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
    model.train(wasTraining);
  }
  return tensor(Int32Array.from(rows.flat()), { shape: [B, T0 + maxNewTokens], dtype: 'int32', backend: ids.backend });
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
