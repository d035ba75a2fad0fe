import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autocast, type AutocastDType } from '../../src/amp/autocast.js';
import { noGrad } from '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { GPT, GenerationError, KVCache, KVCacheError, type GPTConfig } from '../../src/nn/gpt.js';
import { tensor } from '../../src/tensor/creation.js';
import { TensorError } from '../../src/tensor/errors.js';
import { cachedSelfAttention } from '../../src/tensor/ops.js';
import { memory, tidy, type Tensor } from '../../src/tensor/tensor.js';

// Four heads and a batch of two, so that every stride of the cache layout matters.
const cfg: GPTConfig = { vocabSize: 32, blockSize: 16, nLayer: 2, nHead: 4, nEmbd: 32, dropout: 0, bias: true };
const V = cfg.vocabSize;

function host(t: Tensor): Float64Array {
  return Float64Array.from(t.toArraySync());
}

/** Deterministic pseudo-random token ids, row-major [B, T]. */
function tokens(B: number, T: number, seed = 1): number[] {
  return Array.from({ length: B * T }, (_, i) => ((i + seed) * 2654435761 >>> 7) % V);
}

function ids(data: number[], shape: [number, number], backend?: CpuBackend): Tensor {
  return tensor(Int32Array.from(data), { shape, dtype: 'int32', backend });
}

/** Columns t0..t1-1 of a row-major [B, T] token list, as an int32 tensor. */
function columns(seq: number[], B: number, T: number, t0: number, t1: number): Tensor {
  const out: number[] = [];
  for (let b = 0; b < B; b++) out.push(...seq.slice(b * T + t0, b * T + t1));
  return ids(out, [B, t1 - t0]);
}

const within = (dtype: AutocastDType | null) => <X>(fn: () => X): X => (dtype ? autocast({ dtype }, fn) : fn());

/**
 * Cached logits against the full forward over the same sequence: fp32 within
 * 1e-5; under autocast within about two units in the last place of the compute
 * dtype at the logits' scale (|logit| < 1 here). The CPU backend is in fact
 * bit-identical in all three, since every row is computed the same way either path.
 */
const TOLERANCE = { float32: 1e-5, float16: 1e-3, bfloat16: 8e-3 } as const;

describe('GPT.forwardWithCache', () => {
  for (const dtype of [null, 'float16', 'bfloat16'] as const) {
    const name = dtype ?? 'float32';
    it(`gives the logits of the full forward at every step (${name}${dtype ? ' autocast' : ''}, within ${TOLERANCE[name]})`, () => {
      const m = new GPT(cfg, { seed: 3 }).eval();
      const B = 2, T = cfg.blockSize;
      const seq = tokens(B, T);
      const run = within(dtype);
      const cache = run(() => m.createCache(B));
      assert.equal(cache.dtype, name, 'the cache holds the compute dtype');
      assert.deepEqual(cache.keys[0]!.shape, [B, cfg.nHead, cfg.blockSize, cfg.nEmbd / cfg.nHead]);
      // A prefill of 5, single tokens, a chunk of 3 (several queries over a longer key range), then singles to the block size.
      const chunks = [5, 1, 1, 3, 1, 1, 1, 1, 1, 1];
      let t = 0;
      for (const n of chunks) {
        const cached = run(() => m.forwardWithCache(columns(seq, B, T, t, t + n), cache));
        t += n;
        assert.equal(cache.length, t);
        assert.deepEqual(cached.shape, [B, n, V]);
        assert.equal(cached.dtype, name);
        assert.equal(cached.requiresGrad, false);
        const full = run(() => noGrad(() => m.forward(columns(seq, B, T, 0, t)).logits));
        const a = host(cached), f = host(full);
        for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let v = 0; v < V; v++) {
          const x = a[(b * n + i) * V + v]!, y = f[(b * t + t - n + i) * V + v]!;
          assert.ok(Math.abs(x - y) <= TOLERANCE[name], `position ${t - n + i}, row ${b}, token ${v}: cached ${x} vs full ${y}`);
        }
        cached.dispose();
        full.dispose();
      }
      assert.equal(t, cfg.blockSize);
      assert.throws(() => m.forwardWithCache(columns(seq, B, T, 0, 1), cache), (e: Error) => e instanceof GenerationError && /positions 16\.\.16 do not fit the block size 16/.test(e.message));
      cache.dispose();
    });
  }

  it('returns only the last position with lastOnly', () => {
    const m = new GPT(cfg, { seed: 3 });
    const seq = tokens(2, 6);
    const cache = m.createCache(2);
    const last = host(m.forwardWithCache(columns(seq, 2, 6, 0, 6), cache, { lastOnly: true }));
    cache.reset();
    const all = host(m.forwardWithCache(columns(seq, 2, 6, 0, 6), cache));
    assert.equal(last.length, 2 * V);
    for (let b = 0; b < 2; b++) assert.deepEqual(last.subarray(b * V, (b + 1) * V), all.subarray((b * 6 + 5) * V, (b * 6 + 6) * V));
    cache.dispose();
  });

  it('uses a 16-bit cache for 16-bit parameters without autocast', () => {
    const m = new GPT(cfg, { seed: 3 }).to('bfloat16');
    const cache = m.createCache(1);
    assert.equal(cache.dtype, 'bfloat16');
    assert.equal(m.forwardWithCache(ids([1, 2, 3], [1, 3]), cache).dtype, 'bfloat16');
    cache.dispose();
  });

  it('rejects a cache that does not fit, and a cache in the wrong dtype', () => {
    const m = new GPT(cfg, { seed: 3 });
    const cache = m.createCache(2);
    assert.throws(() => m.forwardWithCache(ids([1, 2], [1, 2]), cache), /does not fit the model .* and ids \[1, 2\]/);
    assert.throws(() => m.forwardWithCache(ids([], [2, 0]), cache), GenerationError);
    cache.dispose();
    assert.throws(() => m.forwardWithCache(ids([1, 2], [2, 1]), cache), /the cache was disposed/);
    const fp32 = m.createCache(1, 'float32');
    assert.throws(() => autocast({ dtype: 'float16' }, () => m.forwardWithCache(ids([1], [1, 1]), fp32)),
      (e: Error) => e instanceof TensorError && /keys cache is float32 but the attention computes in float16/.test(e.message));
    fp32.dispose();
  });
});

describe('cachedSelfAttention', () => {
  it('refuses to run where autograd would record it', () => {
    const qkv = tensor(new Float32Array(2 * 3 * 12), { shape: [2, 3, 12], requiresGrad: true });
    const k = tensor(new Float32Array(2 * 2 * 8 * 2), { shape: [2, 2, 8, 2] }), v = k.clone();
    assert.throws(() => cachedSelfAttention(qkv, 2, k, v, 0), /records no gradients .* run it under noGrad/);
    assert.deepEqual(noGrad(() => cachedSelfAttention(qkv, 2, k, v, 0)).shape, [2, 3, 4]);
    assert.throws(() => noGrad(() => cachedSelfAttention(qkv, 2, k, v, 6)), /positions 6\.\.8 do not fit a cache of 8 positions/);
  });
});

describe('KVCache', () => {
  it('owns its buffers beyond tidy scopes and releases them on dispose', () => {
    const backend = new CpuBackend();
    const before = memory(backend);
    const cache = tidy(() => new KVCache({ nLayer: 3, nHead: 2, headDim: 4, batch: 2, capacity: 8, dtype: 'float16', backend }));
    assert.ok(!cache.isDisposed, 'a tidy scope does not dispose the cache');
    assert.equal(memory(backend).bytes - before.bytes, cache.bytes);
    assert.equal(cache.bytes, 2 * 3 * 2 * 2 * 8 * 4 * 2);
    cache.advance(8);
    assert.throws(() => cache.advance(1), (e: Error) => e instanceof KVCacheError && /cannot add 1 positions to 8 of 8/.test(e.message));
    cache.dispose();
    cache.dispose();
    assert.deepEqual({ ...memory(backend), peakBytes: 0 }, { ...before, peakBytes: 0 });
  });
});

describe('GPT.generate with a key/value cache', () => {
  const prompt = () => ids([1, 2, 3, 4, 5, 6], [2, 3]);

  for (const dtype of [undefined, 'float16', 'bfloat16'] as const) {
    it(`greedy decoding gives the same tokens with and without the cache, past the block size (${dtype ?? 'float32'})`, async () => {
      const m = new GPT(cfg, { seed: 8 });
      const opts = { maxNewTokens: 20, temperature: 0, autocast: dtype };
      const cached = host(await m.generate(prompt(), opts));
      const plain = host(await m.generate(prompt(), { ...opts, useCache: false }));
      assert.equal(cached.length, 2 * 23);
      assert.deepEqual(cached, plain);
      assert.deepEqual([...cached.subarray(0, 3)], [1, 2, 3]);
    });
  }

  it('samples with temperature and top-k identically with and without the cache', async () => {
    const m = new GPT(cfg, { seed: 8 });
    const opts = { maxNewTokens: 20, temperature: 0.8, topK: 5, seed: 4 };
    assert.deepEqual(host(await m.generate(prompt(), opts)), host(await m.generate(prompt(), { ...opts, useCache: false })));
  });

  it('is a function of the seed: same seed, same sample; other seed, other sample', async () => {
    const m = new GPT(cfg, { seed: 8 });
    const a = host(await m.generate(prompt(), { maxNewTokens: 20, seed: 1 }));
    const b = host(await m.generate(prompt(), { maxNewTokens: 20, seed: 1 }));
    const c = host(await m.generate(prompt(), { maxNewTokens: 20, seed: 2 }));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('top-k 1 is greedy', async () => {
    const m = new GPT(cfg, { seed: 8 });
    const greedy = host(await m.generate(prompt(), { maxNewTokens: 12, temperature: 0 }));
    assert.deepEqual(host(await m.generate(prompt(), { maxNewTokens: 12, topK: 1, seed: 5 })), greedy);
    assert.deepEqual(host(await m.generate(prompt(), { maxNewTokens: 12, topK: 1, temperature: 3, seed: 6 })), greedy);
  });

  it('computes in the autocast dtype, given as an option or by the region active at the call, with the cache in it', async () => {
    const m = new GPT(cfg, { seed: 8 });
    // Spy on the cached forward: which dtypes did the cache and the logits have?
    const seen: string[] = [];
    const forward = m.forwardWithCache.bind(m);
    m.forwardWithCache = (x, cache, opts) => {
      const logits = forward(x, cache, opts);
      seen.push(`${cache.dtype}/${logits.dtype}`);
      return logits;
    };
    const explicit = host(await m.generate(prompt(), { maxNewTokens: 6, temperature: 0, autocast: 'bfloat16' }));
    assert.deepEqual(new Set(seen), new Set(['bfloat16/bfloat16']));
    seen.length = 0;
    let pending!: Promise<Tensor>;
    autocast({ dtype: 'float16' }, () => {
      pending = m.generate(prompt(), { maxNewTokens: 6, temperature: 0 });
    });
    await pending;
    assert.deepEqual(new Set(seen), new Set(['float16/float16']));
    seen.length = 0;
    await m.generate(prompt(), { maxNewTokens: 6, temperature: 0 });
    assert.deepEqual(new Set(seen), new Set(['float32/float32']));
    assert.equal(explicit.length, 2 * 9);
  });

  it('returns memory to its starting count (float32 and autocast, with and without the cache)', async () => {
    const backend = new CpuBackend();
    const m = new GPT(cfg, { seed: 8, backend });
    const start = ids([1, 2, 3, 4, 5, 6], [2, 3], backend);
    const before = memory(backend);
    for (const opts of [{}, { autocast: 'float16' as const }, { useCache: false }]) {
      const out = await m.generate(start, { maxNewTokens: 18, seed: 3, ...opts });
      out.dispose();
      const after = memory(backend);
      assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes], JSON.stringify(opts));
    }
  });

  it('with maxNewTokens 0 returns a copy of the prompt', async () => {
    const m = new GPT(cfg, { seed: 8 });
    const p = prompt();
    const out = await m.generate(p, { maxNewTokens: 0 });
    assert.notEqual(out, p);
    assert.deepEqual(host(out), host(p));
  });

  it('rejects bad arguments with a GenerationError naming the option', async () => {
    const m = new GPT(cfg, { seed: 8 });
    const bad: [Tensor, Record<string, unknown>, RegExp][] = [
      [prompt(), { maxNewTokens: -1 }, /maxNewTokens must be a non-negative integer, got -1/],
      [prompt(), { maxNewTokens: 1.5 }, /maxNewTokens must be a non-negative integer, got 1.5/],
      [prompt(), { maxNewTokens: 1, topK: 0 }, /topK must be a positive integer, got 0/],
      [prompt(), { maxNewTokens: 1, topK: 2.5 }, /topK must be a positive integer, got 2.5/],
      [prompt(), { maxNewTokens: 1, temperature: -0.1 }, /temperature must be a finite number >= 0, got -0.1/],
      [prompt(), { maxNewTokens: 1, temperature: NaN }, /temperature must be a finite number >= 0/],
      [prompt(), { maxNewTokens: 1, seed: 0.5 }, /seed must be an integer/],
      [prompt(), { maxNewTokens: 1, autocast: 'float32' }, /autocast must be 'float16' or 'bfloat16', got "float32"/],
      [tensor([1, 2, 3], { shape: [1, 3] }), { maxNewTokens: 1 }, /ids must be a non-empty int32 \[batch, time\] tensor \(the prompt\), got \[1, 3\] float32/],
      [tensor(Int32Array.from([1, 2, 3])), { maxNewTokens: 1 }, /got \[3\] int32/],
      [ids([], [1, 0]), { maxNewTokens: 1 }, /got \[1, 0\] int32/],
    ];
    for (const [x, opts, message] of bad) {
      await assert.rejects(m.generate(x, opts as never), (e: Error) => e instanceof GenerationError && message.test(e.message), JSON.stringify(opts));
    }
  });
});
