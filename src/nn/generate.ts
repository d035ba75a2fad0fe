// Generation from a GPT: autoregressive decoding with a key/value cache in
// the compute dtype (or without, recomputing the context), the prompt in one
// pass, and sampling with temperature, top-k and top-p on the device from a
// counter-based generator's uniforms, so that a seed gives the same tokens on
// every backend and only the sampled ids come back to the host each step.

import { Generator } from '../backend/random.js';
import { noGrad } from '../autograd/backward.js';
import { tensor } from '../tensor/creation.js';
import { reshape, slice } from '../tensor/ops.js';
import { sampleTokens } from '../tensor/sample.js';
import { Tensor, keep, tidy } from '../tensor/tensor.js';
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
  /** Then only among the most likely tokens whose probabilities first reach topP of the rest (nucleus sampling; default 1, all). */
  topP?: number;
  /** A row that samples this id is finished: its later positions hold it too. Generation ends when every row is. */
  eosTokenId?: number;
  /**
   * Called with the ids just sampled ([batch]) as each step's arrive (streaming);
   * returning true ends generation after this step.
   */
  onStep?: (ids: Int32Array, step: number) => boolean | void;
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
 * [batch, time]) and returns the new ids (fewer columns when every row reached
 * eosTokenId first, or onStep ended it). With the cache (the default), one
 * pass over the prompt fills it, then each step feeds one token. Positions are
 * learned and absolute, so cached keys cannot be shifted: once the context
 * reaches blockSize, each step recomputes the cropped window of the last
 * blockSize tokens (as the cache-less path does), which keeps the two paths
 * token for token identical. Only the last position's logits are computed, and
 * sampled on the device: each step reads back the sampled ids alone.
 */
export async function generate(model: GPT, ids: Tensor, opts: GenerateOptions): Promise<Tensor> {
  const { maxNewTokens, temperature, topK, topP, seed, useCache } = checkGenerateOptions(opts);
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
  const result = () => tensor(Int32Array.from(rows.flat()), { shape: [B, rows[0]!.length], dtype: 'int32', backend: ids.backend });
  if (maxNewTokens === 0) return result();

  const backend = model.backend;
  const input = (tokens: number[][]) => tensor(Int32Array.from(tokens.flat()), { shape: [B, tokens[0]!.length], dtype: 'int32', backend });
  const window = () => rows.map((r) => r.slice(-blockSize));
  // Room for what this call generates only: a short continuation needs no cache of the whole context.
  const cache = useCache ? model.createCache(B, model.computeDtype(region), Math.min(T0, blockSize) + maxNewTokens) : null;
  /** Logits [B, 1, V] of the next token; `last` holds the ids sampled last step, still on the device. */
  const nextLogits = (first: boolean, last: Tensor | null): Tensor => inRegion(() => tidy(() => {
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
    return model.forwardWithCache(reshape(last!, [B, 1]), cache, { lastOnly: true });
  }));

  const rng = new Generator(seed);
  const finished = new Array<boolean>(B).fill(false);
  const wasTraining = model.training;
  let last: Tensor | null = null;
  model.eval();
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      const next: Tensor = keep(tidy(() => {
        const logits = nextLogits(step === 0, last);
        const uniforms = tensor(rng.uniform(B), { shape: [B], backend });
        return sampleTokens(reshape(logits, [B, V]), uniforms, { temperature, topK, topP });
      }));
      last?.dispose();
      last = next;
      const sampled = (await next.toArray()) as Int32Array;
      const bad = sampled.indexOf(-1);
      if (bad >= 0) throw new GenerationError(`GPT.generate: a logit is not finite at step ${step}, row ${bad} (did the model overflow its dtype?)`);
      for (let b = 0; b < B; b++) {
        const id = finished[b] ? opts.eosTokenId! : sampled[b]!;
        rows[b]!.push(id);
        if (id === opts.eosTokenId) finished[b] = true;
      }
      if (opts.onStep?.(sampled, step) === true || finished.every(Boolean)) break;
    }
  } finally {
    last?.dispose();
    cache?.dispose();
    model.train(wasTraining);
  }
  return result();
}

function checkGenerateOptions(opts: GenerateOptions) {
  const { maxNewTokens, temperature = 1, topK, topP = 1, seed = 0, useCache = true } = opts;
  const bad = (what: string, v: unknown) => new GenerationError(`GPT.generate: ${what}, got ${JSON.stringify(v) ?? String(v)}`);
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw bad('maxNewTokens must be a non-negative integer', maxNewTokens);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) throw bad('temperature must be a finite number >= 0', temperature);
  if (topK !== undefined && (!Number.isSafeInteger(topK) || topK < 1)) throw bad('topK must be a positive integer', topK);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw bad('topP must be in (0, 1]', topP);
  if (opts.eosTokenId !== undefined && (!Number.isSafeInteger(opts.eosTokenId) || opts.eosTokenId < 0)) throw bad('eosTokenId must be a non-negative integer', opts.eosTokenId);
  if (!Number.isSafeInteger(seed)) throw bad('seed must be an integer', seed);
  if (opts.autocast !== undefined && opts.autocast !== 'float16' && opts.autocast !== 'bfloat16') throw bad("autocast must be 'float16' or 'bfloat16'", opts.autocast);
  return { maxNewTokens, temperature, topK: topK ?? 0, topP, seed, useCache };
}
