// GPT-2 (nanoGPT / llm.c style): token + learned position embeddings, pre-LayerNorm
// blocks of causal self-attention and a 4x tanh-GELU MLP with residual
// connections, a final LayerNorm, and an output head tied to the token embedding.
// Parameter names are Hugging Face's (`wte.weight`, `h.0.attn.c_attn.weight`, ...).
//
// Every layer is one fused op: linear (matmul + bias [+ GELU]) for the projections,
// causalSelfAttention from the fused qkv projection (explicit while it drops
// probabilities), and the head as linear(x, wte): the tied weight is never copied.
//
// Beside it: the configurations (gpt-config.ts), the initialisations
// (gpt-init.ts), and generation and sampling (generate.ts).

import type { Backend } from '../backend/backend.js';
import { Generator } from '../backend/random.js';
import type { FloatDType } from '../dtype/dtype.js';
import { noGrad } from '../autograd/backward.js';
import { checkpoint } from '../autograd/checkpoint.js';
import { arange } from '../tensor/creation.js';
import { add, cachedSelfAttention, causalSelfAttention, crossEntropy, linear, slice } from '../tensor/ops.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { fmtShape } from '../tensor/errors.js';
import { autocastDtype } from '../amp/autocast.js';
import { KVCache } from './kv-cache.js';
import { Dropout, Embedding, LayerNorm, Linear, Module, resolveBackend, type ParameterOptions } from './module.js';
import { GPTConfigError, validateConfig, type GPTConfig } from './gpt-config.js';
import { gpt2Init, gptMiniInit, type GPTInit } from './gpt-init.js';
import { GenerationError, generate, type GenerateOptions } from './generate.js';

export { KVCache, KVCacheError, type KVCacheOptions } from './kv-cache.js';
export * from './gpt-config.js';
export * from './gpt-init.js';
export { GenerationError, type GenerateOptions } from './generate.js';

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

export interface GPTOptions {
  backend?: Backend | string;
  /** Parameter dtype (default float32). */
  dtype?: FloatDType;
  /** Seeds initialisation and dropout (default 0). */
  seed?: number;
  init?: GPTInit;
  /** Builds the Linear layers without float weights, for quantized ones set afterwards (nn/quantize.ts). */
  quantizedLinear?: boolean;
  /** Recompute each block's activations in backward instead of keeping them (see `GPT.recompute`). */
  recompute?: boolean;
}

export interface ForwardOptions {
  /** Position of ids[:, 0] in the sequence (for decoding with a key/value cache). Default 0. */
  positionOffset?: number;
  /** Targets equal to this are left out of the mean loss (padding), as PyTorch's ignore_index. Default -100. */
  ignoreIndex?: number;
}

export interface GPTOutput {
  /** [batch, time, vocab]. */
  logits: Tensor;
  /** Mean cross-entropy over the batch * time positions whose target is not ignoreIndex; only when targets were given. */
  loss?: Tensor;
}

export interface CachedForwardOptions {
  /** Compute the logits of the last new position only ([batch, 1, vocab]): all that sampling needs. */
  lastOnly?: boolean;
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
  /**
   * Activation recomputation per block (torch.utils.checkpoint): a block keeps only its input for
   * backward, which re-runs the block's forward; less memory, about one more forward pass of compute,
   * the same gradients.
   */
  recompute: boolean;

  constructor(config: GPTConfig, opts: GPTOptions = {}) {
    super();
    const c = (this.config = validateConfig(config));
    this.generator = new Generator(opts.seed ?? 0);
    this.recompute = opts.recompute ?? false;
    const p: ParameterOptions = { backend: resolveBackend(opts.backend), dtype: opts.dtype ?? 'float32', quantizedLinear: opts.quantizedLinear };
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
      for (const block of this.h) {
        x = this.recompute
          ? checkpoint((input) => block.forward(input), x, { params: block.parameters(), generator: this.generator })
          : block.forward(x);
      }
      x = this.ln_f.forward(x);
      // Tied head: x @ wte^T, reading wte [V, C] as the transposed weight.
      const logits = linear(x, this.wte.weight, null);
      return targets ? { logits, loss: crossEntropy(logits, targets, { ignoreIndex: opts.ignoreIndex }) } : { logits };
    });
  }

  /**
   * The mean cross-entropy of `forward(ids, targets)` alone. The logits are
   * released at once (backward keeps what it needs), not when the caller's
   * scope ends: a training step does not hold [batch, time, vocab] values
   * through its backward pass and optimizer step.
   */
  loss(ids: Tensor, targets: Tensor, opts: ForwardOptions = {}): Tensor {
    const { logits, loss } = this.forward(ids, targets, opts);
    logits.dispose();
    return loss!;
  }

  /**
   * The dtype attention computes in here and now: the autocast dtype for 16/32-bit float parameters inside a region, else
   * the parameter dtype of the blocks (ln_f's: a quantized model keeps its embedding in 16 bits and computes in float32).
   */
  computeDtype(region: FloatDType | null = autocastDtype()): FloatDType {
    const p = this.ln_f.weight.dtype as FloatDType;
    return region && p !== 'float64' ? region : p;
  }

  /** An empty key/value cache for `batch` sequences of up to `capacity` (at most blockSize) positions, in the compute dtype. */
  createCache(batch: number, dtype: FloatDType = this.computeDtype(), capacity = this.config.blockSize): KVCache {
    const c = this.config;
    return new KVCache({
      nLayer: c.nLayer, nHead: c.nHead, headDim: c.nEmbd / c.nHead, batch, capacity: Math.min(capacity, c.blockSize), dtype, backend: this.backend,
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
      return linear(x, this.wte.weight, null);
    }));
    cache.advance(T);
    return logits;
  }

  /** Appends maxNewTokens sampled tokens to each row of the prompt ids (see `generate` in generate.ts). */
  generate(ids: Tensor, opts: GenerateOptions): Promise<Tensor> {
    return generate(this, ids, opts);
  }
}

/** An indexed list of modules (`h.0`, `h.1`, ...). */
export class ModuleList extends Module {
  private count = 0;
  append<M extends Module>(m: M): M {
    return this.addModule(String(this.count++), m);
  }
}
