// Fused neural-network ops: softmax, layer norm, embedding, cross-entropy,
// causal masking, dropout and attention, each one kernel forward and one backward.

import type { HeadLayout, AttentionSpec } from '../../backend/backend.js';
import { Generator } from '../../backend/random.js';
import { float32Output, lowerPrecision } from '../dispatch.js';
import { fusions } from '../fusions.js';
import { ShapeError, TensorError, fmtShape } from '../errors.js';
import { normDim, requireFloat, requireInt, sameBackend } from '../helpers.js';
import { Tensor, needsGrad, op, record } from '../tensor.js';
import { mul } from './elementwise.js';
import { matmul } from './linalg.js';
import { permute, reshape, slice, transpose } from './shape.js';

/** Dtype of saved statistics (mean, rstd, log-sum-exp): float32, or float64 for float64 inputs, as PyTorch's accumulate type. */
function statDtype(x: Tensor): 'float32' | 'float64' {
  return x.dtype === 'float64' ? 'float64' : 'float32';
}

// ---- softmax ----

function softmaxLast(name: string, x: Tensor, log: boolean): Tensor {
  requireFloat(name, x);
  const cols = x.shape[x.ndim - 1] ?? 1;
  const rows = x.size / Math.max(cols, 1);
  const y = Tensor.empty(x.shape, float32Output(x.dtype), x.backend);
  fusions(x.backend).softmax(x.storageView, y.storageView, rows, cols, log);
  return record(y, name, [x], [y], (gy, [sy]) => {
    const g = Tensor.empty(x.shape, gy.dtype, gy.backend);
    fusions(gy.backend).softmaxBackward(sy!.storageView, gy.storageView, g.storageView, rows, cols, log);
    return [g];
  });
}

function alongDim(x: Tensor, dim: number, name: string, f: (t: Tensor) => Tensor): Tensor {
  const d = normDim(name, dim, Math.max(x.ndim, 1));
  if (x.ndim === 0 || d === x.ndim - 1) return f(x);
  return transpose(f(transpose(x, d, -1)), d, -1);
}

export const softmax = op((x: Tensor, dim: number = -1): Tensor => {
  return alongDim(x, dim, 'softmax', (t) => softmaxLast('softmax', t, false));
});

export const logSoftmax = op((x: Tensor, dim: number = -1): Tensor => {
  return alongDim(x, dim, 'logSoftmax', (t) => softmaxLast('logSoftmax', t, true));
});

// ---- layer norm ----

/** Layer norm over the last dimension, with optional gain and bias (fused forward and backward). */
export const layerNorm = op((x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps: number = 1e-5): Tensor => {
  requireFloat('layerNorm', x);
  const cols = x.shape[x.ndim - 1]!;
  for (const [p, what] of [[weight, 'weight'], [bias, 'bias']] as const) {
    if (p && (p.ndim !== 1 || p.shape[0] !== cols)) {
      throw new ShapeError(`layerNorm: ${what} ${fmtShape(p.shape)} does not match the normalised dimension ${cols} of ${fmtShape(x.shape)}`);
    }
  }
  const rows = x.size / cols;
  const b = x.backend;
  const y = Tensor.empty(x.shape, float32Output(x.dtype), b);
  const mean = Tensor.empty([rows], statDtype(x), b), rstd = Tensor.empty([rows], statDtype(x), b);
  fusions(b).layerNorm(x.storageView, weight?.storageView ?? null, bias?.storageView ?? null, y.storageView, mean.storageView, rstd.storageView, rows, cols, eps);
  const saved = weight ? [x, mean, rstd, weight] : [x, mean, rstd];
  return record(y, 'layerNorm', [x, weight, bias], saved, (gy, [sx, sm, sr, sw]) => {
    const gx = Tensor.empty(x.shape, x.dtype, b);
    const gw = weight?.requiresGrad ? Tensor.empty(weight.shape, weight.dtype, b) : null;
    const gb = bias?.requiresGrad ? Tensor.empty(bias.shape, bias.dtype, b) : null;
    fusions(b).layerNormBackward(sx!.storageView, sw?.storageView ?? null, sm!.storageView, sr!.storageView, gy.storageView, gx.storageView, gw?.storageView ?? null, gb?.storageView ?? null, rows, cols);
    return [gx, gw, gb];
  });
});

// ---- embedding ----

/** Rows of `weight` [num, dim] picked by int32 `ids`; the gradient is a scatter-add. */
export const embedding = op((ids: Tensor, weight: Tensor): Tensor => {
  requireInt('embedding', 'ids', ids);
  sameBackend('embedding', ids, weight);
  if (weight.ndim !== 2) throw new ShapeError(`embedding: weight must be 2-D, got ${weight.describe()}`);
  const [num, dim] = weight.shape as [number, number];
  const y = Tensor.empty([...ids.shape, dim], weight.dtype, weight.backend);
  weight.backend.gather(weight.storageView, ids.storageView, y.storageView, ids.size, dim);
  return record(y, 'embedding', [weight], [ids], (gy, [sids]) => {
    const g = Tensor.empty([num, dim], weight.dtype, gy.backend);
    gy.backend.fill(g.storageView, 0);
    gy.backend.scatterAdd(gy.storageView, sids!.storageView, g.storageView, sids!.size, dim);
    return [g];
  });
});

// ---- cross-entropy ----

export interface CrossEntropyOptions {
  /** Targets equal to this are left out of the mean (PyTorch's default is -100). */
  ignoreIndex?: number;
}

/** Mean cross-entropy of logits [..., classes] against int32 targets [...], fused with log-softmax. */
export const crossEntropy = op((logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor => {
  requireFloat('crossEntropy', logits);
  requireInt('crossEntropy', 'targets', targets);
  sameBackend('crossEntropy', logits, targets);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const cols = logits.shape[logits.ndim - 1]!;
  const rows = logits.size / cols;
  if (targets.size !== rows || targets.ndim !== logits.ndim - 1 || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new ShapeError(`crossEntropy: targets ${fmtShape(targets.shape)} do not match logits ${fmtShape(logits.shape)} (expected ${fmtShape(logits.shape.slice(0, -1))})`);
  }
  const b = logits.backend;
  const loss = Tensor.empty([], float32Output(logits.dtype), b);
  const lse = Tensor.empty([rows], statDtype(logits), b), count = Tensor.empty([], 'float32', b);
  fusions(b).crossEntropy(logits.storageView, targets.storageView, loss.storageView, lse.storageView, count.storageView, rows, cols, ignoreIndex);
  return record(loss, 'crossEntropy', [logits], [logits, targets, lse, count], (gy, [sl, st, slse, sc]) => {
    const g = Tensor.empty(logits.shape, logits.dtype, b);
    fusions(b).crossEntropyBackward(sl!.storageView, st!.storageView, slse!.storageView, sc!.storageView, gy.storageView, g.storageView, rows, cols, ignoreIndex);
    return [g];
  });
});

// ---- masking and dropout ----

/** Fills positions above the causal diagonal of the last two dims [.., T, S] with `value` (default -inf). */
export const causalMask = op((x: Tensor, value: number = -Infinity): Tensor => {
  requireFloat('causalMask', x);
  if (x.ndim < 2) throw new ShapeError(`causalMask: need at least 2 dimensions, got ${fmtShape(x.shape)}`);
  const [t, s] = x.shape.slice(-2) as [number, number];
  const rows = x.size / (t * s);
  const y = Tensor.empty(x.shape, x.dtype, x.backend);
  fusions(x.backend).causalFill(x.storageView, y.storageView, rows, t, s, value);
  return record(y, 'causalMask', [x], [], (gy) => {
    const g = Tensor.empty(x.shape, gy.dtype, gy.backend);
    fusions(gy.backend).causalFill(gy.storageView, g.storageView, rows, t, s, 0);
    return [g];
  });
});

let defaultGenerator = new Generator(0);

/** Seeds the generator that dropout and random initialisation use when none is given. */
export function manualSeed(seed: number): Generator {
  defaultGenerator = new Generator(seed);
  return defaultGenerator;
}

export function getDefaultGenerator(): Generator {
  return defaultGenerator;
}

export interface DropoutOptions {
  /** Dropout is the identity when not training (default true). */
  training?: boolean;
  generator?: Generator;
}

/** Zeroes each element with probability p and scales the rest by 1/(1-p); the mask is recomputed from the seed in backward. */
export const dropout = op((x: Tensor, p: number, opts: DropoutOptions = {}): Tensor => {
  requireFloat('dropout', x);
  if (!(p >= 0 && p < 1)) throw new TensorError(`dropout: probability must be in [0, 1), got ${p}`);
  if (p === 0 || opts.training === false) return x;
  const { key, start } = (opts.generator ?? defaultGenerator).reserve(x.size);
  const y = Tensor.empty(x.shape, x.dtype, x.backend);
  x.backend.dropout(x.storageView, y.storageView, p, key, start);
  return record(y, 'dropout', [x], [], (gy) => {
    const g = Tensor.empty(x.shape, gy.dtype, gy.backend);
    gy.backend.dropout(gy.storageView, g.storageView, p, key, start);
    return [g];
  });
});

// ---- attention ----

export interface AttentionOptions {
  causal?: boolean;
  /** Defaults to 1/sqrt(head dim). */
  scale?: number;
}

function attentionCore(
  name: string, inputs: Tensor[], q: Tensor, k: Tensor, v: Tensor,
  layouts: { q: HeadLayout; k: HeadLayout; v: HeadLayout; o: HeadLayout },
  spec: AttentionSpec, outShape: number[], fused: boolean,
): Tensor {
  const b = q.backend;
  const o = Tensor.empty(outShape, q.dtype, b);
  const lse = Tensor.empty([spec.batch, spec.heads, spec.tq], statDtype(q), b);
  fusions(b).attention(q.storageView, layouts.q, k.storageView, layouts.k, v.storageView, layouts.v, o.storageView, layouts.o, lse.storageView, spec);
  const saved = fused ? [q, o, lse] : [q, k, v, o, lse];
  return record(o, name, inputs, saved, (go, s) => {
    const [sq, sk, sv, so, slse] = fused ? [s[0]!, s[0]!, s[0]!, s[1]!, s[2]!] : (s as [Tensor, Tensor, Tensor, Tensor, Tensor]);
    if (fused) {
      // q, k and v live in one [B, T, 3D] tensor, and so do their gradients.
      const g = Tensor.empty(q.shape, q.dtype, b);
      fusions(b).attentionBackward(sq.storageView, layouts.q, sk.storageView, layouts.k, sv.storageView, layouts.v, so.storageView, layouts.o, slse.storageView, go.storageView, layouts.o,
        g.storageView, layouts.q, g.storageView, layouts.k, g.storageView, layouts.v, spec);
      return [g];
    }
    const gq = Tensor.empty(q.shape, q.dtype, b), gk = Tensor.empty(k.shape, k.dtype, b), gv = Tensor.empty(v.shape, v.dtype, b);
    fusions(b).attentionBackward(sq.storageView, layouts.q, sk.storageView, layouts.k, sv.storageView, layouts.v, so.storageView, layouts.o, slse.storageView, go.storageView, layouts.o,
      gq.storageView, layouts.q, gk.storageView, layouts.k, gv.storageView, layouts.v, spec);
    return [gq, gk, gv];
  });
}

/** softmax(q k^T * scale [+ causal mask]) v for q [B, H, T, d], k and v [B, H, S, d]; one fused kernel, lower precision under autocast. */
export const scaledDotProductAttention = op((q0: Tensor, k0: Tensor, v0: Tensor, opts: AttentionOptions = {}): Tensor => {
  requireFloat('scaledDotProductAttention', q0, k0, v0);
  sameBackend('scaledDotProductAttention', q0, k0, v0);
  const [q, k, v] = lowerPrecision(q0, k0, v0);
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) {
    throw new ShapeError(`scaledDotProductAttention: q, k, v must be [batch, heads, time, headDim], got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`);
  }
  const [B, H, T, d] = q.shape as [number, number, number, number];
  const S = k.shape[2]!;
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== d || v.shape.some((x, i) => x !== k.shape[i])) {
    throw new ShapeError(`scaledDotProductAttention: shapes q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)} do not fit`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) {
    throw new TensorError(`scaledDotProductAttention: q, k, v must share a dtype, got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  }
  const lay = (t: number): HeadLayout => ({ offset: 0, sB: H * t * d, sH: t * d, sT: d });
  const spec: AttentionSpec = { batch: B, heads: H, tq: T, tk: S, headDim: d, scale: opts.scale ?? 1 / Math.sqrt(d), causal: !!opts.causal };
  return attentionCore('scaledDotProductAttention', [q, k, v], q, k, v, { q: lay(T), k: lay(S), v: lay(S), o: lay(T) }, spec, [B, H, T, d], false);
});

export interface SelfAttentionOptions {
  /** Probability of zeroing each attention probability while training (nanoGPT's attn_dropout; default 0). */
  dropout?: number;
  /** Draws the dropout mask (default: the generator that manualSeed sets). */
  generator?: Generator;
}

/**
 * Causal self-attention straight from a fused projection qkv [B, T, 3C]
 * (q, k, v side by side, heads of C/nHead columns each) to y [B, T, C], with
 * heads already concatenated: no split, permute or merge copies. With
 * `dropout` > 0 the probabilities are dropped as nanoGPT does, through the
 * explicit form (the fused kernel never holds them).
 */
export const causalSelfAttention = op((qkv0: Tensor, nHead: number, opts: SelfAttentionOptions = {}): Tensor => {
  requireFloat('causalSelfAttention', qkv0);
  const p = opts.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new TensorError(`causalSelfAttention: dropout must be in [0, 1), got ${p}`);
  const [qkv] = lowerPrecision(qkv0);
  if (qkv.ndim !== 3 || qkv.shape[2]! % (3 * nHead) !== 0) {
    throw new ShapeError(`causalSelfAttention: expected [batch, time, 3 * channels] with channels divisible by ${nHead} heads, got ${fmtShape(qkv.shape)}`);
  }
  if (p > 0) return attentionWithDropout(qkv, nHead, p, opts.generator);
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, d = C / nHead;
  const inL = (part: number): HeadLayout => ({ offset: part * C, sB: T * C3, sH: d, sT: C3 });
  const spec: AttentionSpec = { batch: B, heads: nHead, tq: T, tk: T, headDim: d, scale: 1 / Math.sqrt(d), causal: true };
  return attentionCore('causalSelfAttention', [qkv], qkv, qkv, qkv,
    { q: inL(0), k: inL(1), v: inL(2), o: { offset: 0, sB: T * C, sH: d, sT: C } }, spec, [B, T, C], true);
});

/**
 * nanoGPT's attention without flash attention: the [B, H, T, T] probabilities
 * are materialised and dropped with probability p, then multiply v. Under
 * autocast the scores are 16-bit, softmax and dropout float32, as in PyTorch.
 */
function attentionWithDropout(qkv: Tensor, nHead: number, p: number, generator?: Generator): Tensor {
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, d = C / nHead;
  // Runs inside causalSelfAttention's scope, which releases every intermediate.
  const heads = (part: number) => permute(reshape(slice(qkv, 2, part * C, (part + 1) * C), [B, T, nHead, d]), [0, 2, 1, 3]);
  const scores = mul(matmul(heads(0), transpose(heads(1), -2, -1)), 1 / Math.sqrt(d));
  const probs = dropout(softmax(causalMask(scores)), p, { generator });
  return reshape(permute(matmul(probs, heads(2)), [0, 2, 1, 3]), [B, T, C]);
}

/**
 * Causal self-attention of new tokens over a key/value cache, for incremental
 * decoding. qkv [B, T, 3C] is the fused projection of the T new tokens at
 * positions offset..offset+T-1; their keys and values are written into `keys`
 * and `values` ([B, nHead, capacity, C/nHead], qkv's dtype) at those positions,
 * then the new queries attend to every cached position 0..offset+T-1 (causally).
 * Returns y [B, T, C]. The cache writes are side effects no gradient can flow
 * through, so this op is inference-only: it refuses to run where autograd would
 * record it (use noGrad).
 */
export const cachedSelfAttention = op((qkv0: Tensor, nHead: number, keys: Tensor, values: Tensor, offset: number): Tensor => {
  requireFloat('cachedSelfAttention', qkv0, keys, values);
  sameBackend('cachedSelfAttention', qkv0, keys, values);
  const [qkv] = lowerPrecision(qkv0);
  if (qkv.ndim !== 3 || qkv.shape[2]! % (3 * nHead) !== 0) {
    throw new ShapeError(`cachedSelfAttention: expected qkv [batch, time, 3 * channels] with channels divisible by ${nHead} heads, got ${fmtShape(qkv.shape)}`);
  }
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, d = C / nHead;
  for (const [what, c] of [['keys', keys], ['values', values]] as const) {
    if (c.ndim !== 4 || c.shape[0] !== B || c.shape[1] !== nHead || c.shape[3] !== d) {
      throw new ShapeError(`cachedSelfAttention: ${what} cache ${fmtShape(c.shape)} does not fit qkv ${fmtShape(qkv.shape)} (expected [${B}, ${nHead}, capacity, ${d}])`);
    }
    // The cache is written in place, so it cannot be cast on the fly: it must already hold the compute dtype.
    if (c.dtype !== qkv.dtype) {
      throw new TensorError(`cachedSelfAttention: ${what} cache is ${c.dtype} but the attention computes in ${qkv.dtype}; allocate the cache in ${qkv.dtype}`);
    }
  }
  const S = keys.shape[2]!;
  if (values.shape[2] !== S) throw new ShapeError(`cachedSelfAttention: keys ${fmtShape(keys.shape)} and values ${fmtShape(values.shape)} differ in capacity`);
  if (!Number.isInteger(offset) || offset < 0 || offset + T > S) {
    throw new ShapeError(`cachedSelfAttention: positions ${offset}..${offset + T - 1} do not fit a cache of ${S} positions`);
  }
  if (needsGrad([qkv0, keys, values])) {
    throw new TensorError('cachedSelfAttention: records no gradients (the cache is written in place); run it under noGrad');
  }
  const b = qkv.backend;
  // k and v of the new tokens, read as [B, H, T, d] out of qkv, go to cache positions offset..offset+T-1.
  const fromQkv = (part: number): HeadLayout => ({ offset: part * C, sB: T * C3, sH: d, sT: C3 });
  const cacheL: HeadLayout = { offset: 0, sB: nHead * S * d, sH: S * d, sT: d };
  for (const [part, c] of [[1, keys], [2, values]] as const) {
    const src = fromQkv(part);
    b.copy(
      { view: qkv.storageView, offset: src.offset, strides: [src.sB, src.sH, src.sT, 1] },
      { view: c.storageView, offset: offset * d, strides: [cacheL.sB, cacheL.sH, cacheL.sT, 1] },
      [B, nHead, T, d],
    );
  }
  const spec: AttentionSpec = { batch: B, heads: nHead, tq: T, tk: offset + T, headDim: d, scale: 1 / Math.sqrt(d), causal: true };
  return attentionCore('cachedSelfAttention', [qkv], qkv, keys, values,
    { q: fromQkv(0), k: cacheL, v: cacheL, o: { offset: 0, sB: T * C, sH: d, sT: C } }, spec, [B, T, C], false);
});
