import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { noGrad } from '../../src/autograd/backward.js';
import { PRESETS, parsePolicy, withPolicy } from '../../src/amp/policy.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import {
  GPT, GPTConfigError, GPT_PRESETS, countParameters, gptConfig, parameterShapes, type GPTConfig,
} from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { tensor } from '../../src/tensor/creation.js';
import { memory, tidy, type Tensor } from '../../src/tensor/tensor.js';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/gpt_mini/reference.json', import.meta.url), 'utf8'));

function host(t: Tensor): Float64Array {
  return Float64Array.from(t.toArraySync());
}

function ids(data: number[], shape: [number, number]): Tensor {
  return tensor(Int32Array.from(data), { shape, dtype: 'int32' });
}

/** Deterministic pseudo-random token ids. */
function randomIds(B: number, T: number, V: number, seed = 1): Tensor {
  return ids(Array.from({ length: B * T }, (_, i) => ((i + seed) * 2654435761 >>> 7) % V), [B, T]);
}

const small: GPTConfig = { vocabSize: 32, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true };

function stats(v: Float64Array): { mean: number; std: number } {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
  return { mean, std };
}

describe('GPT configuration', () => {
  it('counts parameters of every preset without allocating (gpt2 = 124,439,808)', () => {
    assert.equal(countParameters(gptConfig('gpt2')), 124_439_808);
    assert.equal(countParameters(gptConfig('gpt2-medium')), 354_823_168);
    assert.equal(countParameters(gptConfig('mini')), 842_496);
    assert.equal(countParameters(gptConfig('small')), 23_240_704);
    assert.equal(countParameters(gptConfig('tiny')), 120_576);
    assert.equal(countParameters({ ...small, bias: false }), countParameters(small) - (2 * (1 + 3 + 1 + 1 + 4 + 1) + 1) * 16);
  });

  it('matches the count and order of the parameters actually made', () => {
    const m = new GPT(gptConfig('tiny'));
    const made = m.namedParameters();
    assert.deepEqual(made.map(([n, t]) => [n, t.shape]), parameterShapes(m.config));
    assert.equal(made.reduce((n, [, t]) => n + t.size, 0), countParameters(m.config));
  });

  it('rejects bad configurations, naming the field', () => {
    assert.throws(() => gptConfig('gpt5'), (e: Error) => e instanceof GPTConfigError && /unknown GPT preset 'gpt5'/.test(e.message));
    assert.throws(() => new GPT({ ...small, nHead: 3 }), /nEmbd 16 is not divisible by nHead 3/);
    assert.throws(() => new GPT({ ...small, nLayer: 0 }), /nLayer must be a positive integer/);
    assert.throws(() => new GPT({ ...small, dropout: 1 }), /dropout must be in \[0, 1\)/);
    assert.deepEqual(gptConfig('mini', { dropout: 0.1 }).dropout, 0.1);
    assert.equal(GPT_PRESETS.gpt2.nLayer, 12);
  });
});

describe('GPT parameters and initialisation', () => {
  it('uses the Hugging Face GPT-2 names, layouts and leaf flags', () => {
    const m = new GPT(small);
    const byName = new Map(m.namedParameters());
    assert.deepEqual([...byName.keys()].slice(0, 4), ['wte.weight', 'wpe.weight', 'h.0.ln_1.weight', 'h.0.ln_1.bias']);
    assert.deepEqual(byName.get('h.1.attn.c_attn.weight')!.shape, [16, 48]);
    assert.deepEqual(byName.get('h.1.mlp.c_fc.weight')!.shape, [16, 64]);
    assert.deepEqual(byName.get('h.1.mlp.c_proj.weight')!.shape, [64, 16]);
    assert.equal([...byName.keys()].at(-1), 'ln_f.bias');
    assert.ok(!byName.has('lm_head.weight'), 'the head is tied to wte, not a parameter of its own');
    for (const [n, t] of byName) {
      assert.equal(t.name, n);
      assert.ok(t.requiresGrad && t.isLeaf && t.dtype === 'float32');
    }
    const nb = new GPT({ ...small, bias: false });
    assert.ok(nb.namedParameters().every(([n]) => !n.endsWith('.bias')));
  });

  it('initialises as GPT-2 does: normal(0.02), residual projections 0.02/sqrt(2 nLayer), biases 0, gains 1', () => {
    const m = new GPT(gptConfig('mini'), { seed: 5 });
    const p = new Map(m.namedParameters());
    for (const name of ['wte.weight', 'wpe.weight', 'h.2.attn.c_attn.weight', 'h.2.mlp.c_fc.weight']) {
      const { mean, std } = stats(host(p.get(name)!));
      assert.ok(Math.abs(std - 0.02) < 0.001 && Math.abs(mean) < 0.001, `${name}: mean ${mean}, std ${std}`);
    }
    for (const name of ['h.0.attn.c_proj.weight', 'h.3.mlp.c_proj.weight']) {
      const { std } = stats(host(p.get(name)!));
      const want = 0.02 / Math.sqrt(8);
      assert.ok(Math.abs(std - want) / want < 0.05, `${name}: std ${std}, want ${want}`);
    }
    assert.ok(host(p.get('h.1.attn.c_attn.bias')!).every((v) => v === 0));
    assert.ok(host(p.get('h.1.ln_2.weight')!).every((v) => v === 1));
    assert.ok(host(p.get('ln_f.bias')!).every((v) => v === 0));
  });

  it('is a function of the seed: same seed, same model; other seed, other model', () => {
    const a = new GPT(small, { seed: 11 }), b = new GPT(small, { seed: 11 }), c = new GPT(small, { seed: 12 });
    assert.deepEqual(host(a.wte.weight), host(b.wte.weight));
    assert.deepEqual(host(a.h[1]!.mlp.c_proj.weight), host(b.h[1]!.mlp.c_proj.weight));
    assert.notDeepEqual(host(a.wte.weight), host(c.wte.weight));
  });

  it('reproduces the gpt-mini workload counter-hash initialisation exactly', () => {
    const c = fixture.config;
    const m = new GPT({ vocabSize: c.V, blockSize: c.T, nLayer: c.L, nHead: c.H, nEmbd: c.D, dropout: 0, bias: true }, { init: 'gpt-mini' });
    const made = m.namedParameters();
    assert.equal(made.length, fixture.params.length);
    fixture.params.forEach((ref: { index: number; name: string; sum: number; first: number[] }, i: number) => {
      const [name, t] = made[i]!;
      const v = host(t);
      assert.deepEqual(Array.from(v.subarray(0, ref.first.length)), ref.first, `${name} (${ref.name}) first values`);
      const s = v.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(s - ref.sum) < 1e-9 + 1e-9 * Math.abs(ref.sum), `${name}: sum ${s} vs ${ref.sum}`);
    });
  });
});

describe('GPT forward and backward', () => {
  it('returns logits [B, T, V] and, with targets, a float32 scalar loss near ln(V) at initialisation', async () => {
    const m = new GPT(gptConfig('tiny'), { seed: 2 });
    const x = randomIds(2, 16, 256), y = randomIds(2, 16, 256, 7);
    const out = m.forward(x);
    assert.deepEqual(out.logits.shape, [2, 16, 256]);
    assert.equal(out.loss, undefined);
    const { loss } = m.forward(x, y);
    assert.deepEqual(loss!.shape, []);
    assert.equal(loss!.dtype, 'float32');
    const l = await loss!.item();
    assert.ok(Math.abs(l - Math.log(256)) < 0.1, `loss ${l}`);
  });

  it('checks ids, targets and positions', () => {
    const m = new GPT(small);
    assert.throws(() => m.forward(tensor([[1, 2]])), /ids must be an int32 \[batch, time\] tensor/);
    assert.throws(() => m.forward(randomIds(1, 17, 32)), /do not fit the block size 16/);
    assert.throws(() => m.forward(randomIds(1, 8, 32), null, { positionOffset: 9 }), GPTConfigError);
    assert.throws(() => m.forward(randomIds(2, 8, 32), randomIds(2, 7, 32)), /targets \[2, 7\] do not match ids \[2, 8\]/);
  });

  it('positions are shifted by positionOffset: the first row of wpe is not used', () => {
    const m = new GPT(small, { seed: 3 });
    const x = randomIds(1, 4, 32);
    const a = host(m.forward(x).logits), b = host(m.forward(x, null, { positionOffset: 0 }).logits);
    assert.deepEqual(a, b);
    const c = host(m.forward(x, null, { positionOffset: 2 }).logits);
    assert.notDeepEqual(a, c);
  });

  it('sends a finite, nonzero gradient to every parameter', () => {
    const m = new GPT(small, { seed: 4 });
    m.forward(randomIds(2, 16, 32), randomIds(2, 16, 32, 3)).loss!.backward();
    for (const [name, p] of m.namedParameters()) {
      assert.ok(p.grad, `${name} has a gradient`);
      assert.deepEqual(p.grad.shape, p.shape);
      const g = host(p.grad);
      assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0), `${name}: finite and nonzero`);
    }
  });

  it('frees every intermediate: memory is flat from step to step', () => {
    const backend = new CpuBackend();
    const m = new GPT(small, { seed: 4, backend });
    const x = tensor(Int32Array.from({ length: 32 }, (_, i) => i % 32), { shape: [2, 16], dtype: 'int32', backend });
    const step = () => {
      m.zeroGrad();
      tidy(() => m.forward(x, x).loss!.backward());
      return memory(backend).bytes;
    };
    const first = step();
    assert.equal(step(), first);
    assert.equal(step(), first);
  });

  it('matches finite differences in float64, including both uses of the tied wte', () => {
    const cfg: GPTConfig = { vocabSize: 12, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true };
    const m = new GPT(cfg, { dtype: 'float64', seed: 9 });
    // Larger weights than GPT-2's 0.02 so that every path carries a visible gradient.
    for (const p of m.parameters()) {
      const v = host(p);
      p.backend.write(p.storageView, v.map((x, i) => (p.ndim === 2 ? x * 10 : x + 0.1 * Math.sin(i + p.size))));
    }
    const x = ids([1, 2, 3, 1, 4, 5, 6, 2, 2, 7, 3, 1], [2, 6]);
    const y = ids([2, 3, 1, 4, 5, 6, 2, 2, 7, 3, 1, 8], [2, 6]);
    m.forward(x, y).loss!.backward();
    const lossAt = () => noGrad(() => tidy(() => host(m.forward(x, y).loss!)[0]!));
    const p = new Map(m.namedParameters());
    // wte row 2 appears in the batch (embedding and head); rows 8 and 11 only as classes of the head.
    const probes: [string, number[]][] = [
      ['wte.weight', [2 * 8 + 1, 8 * 8 + 3, 11 * 8 + 5]], ['wpe.weight', [0, 5 * 8 + 7]],
      ['h.0.ln_1.weight', [3]], ['h.0.ln_1.bias', [6]],
      ['h.0.attn.c_attn.weight', [0, 8 * 24 - 1, 5 * 24 + 9, 3 * 24 + 20]], ['h.0.attn.c_attn.bias', [4, 20]],
      ['h.1.attn.c_proj.weight', [9, 63]], ['h.1.attn.c_proj.bias', [2]],
      ['h.1.mlp.c_fc.weight', [5, 100]], ['h.0.mlp.c_fc.bias', [17]], ['h.1.mlp.c_proj.weight', [33, 250]],
      ['h.1.ln_2.bias', [1]], ['ln_f.weight', [4]], ['ln_f.bias', [7]],
    ];
    const eps = 1e-6;
    let checked = 0;
    for (const [name, elems] of probes) {
      const t = p.get(name)!;
      const grad = host(t.grad!);
      for (const i of elems) {
        const v = host(t);
        const x0 = v[i]!;
        v[i] = x0 + eps; t.backend.write(t.storageView, v);
        const up = lossAt();
        v[i] = x0 - eps; t.backend.write(t.storageView, v);
        const down = lossAt();
        v[i] = x0; t.backend.write(t.storageView, v);
        const numeric = (up - down) / (2 * eps);
        assert.ok(Math.abs(grad[i]! - numeric) <= 1e-7 + 1e-5 * Math.abs(numeric), `${name}[${i}]: analytic ${grad[i]}, numeric ${numeric}`);
        assert.ok(Math.abs(numeric) > 1e-6, `${name}[${i}] has a gradient to check (${numeric})`);
        checked++;
      }
    }
    assert.equal(checked, 24);
    // The key bias adds the same q.b to every score of a row, which softmax ignores: its gradient is 0.
    assert.ok(host(p.get('h.0.attn.c_attn.bias')!.grad!).subarray(8, 16).every((g) => Math.abs(g) < 1e-12));
  });
});

describe('GPT dropout', () => {
  const cfg = { ...small, dropout: 0.2 };
  const x = randomIds(2, 16, 32), y = randomIds(2, 16, 32, 5);

  it('is the identity in eval mode: the same logits as a model without dropout', () => {
    const a = new GPT(cfg, { seed: 1 }).eval(), b = new GPT(small, { seed: 1 });
    assert.deepEqual(host(a.forward(x).logits), host(b.forward(x).logits));
  });

  it('changes the output in training mode, draws fresh masks per step, and is reproducible from the seed', () => {
    const a = new GPT(cfg, { seed: 1 }), b = new GPT(cfg, { seed: 1 });
    const evalLoss = host(a.eval().forward(x, y).loss!)[0];
    a.train();
    const l1 = host(a.forward(x, y).loss!)[0], l2 = host(a.forward(x, y).loss!)[0];
    assert.notEqual(l1, evalLoss);
    assert.notEqual(l1, l2);
    assert.equal(host(b.forward(x, y).loss!)[0], l1);
    assert.ok(a.generator.offset > b.generator.offset, 'each training forward draws new masks');
    const { loss } = a.forward(x, y);
    loss!.backward();
    assert.ok(a.parameters().every((p) => p.grad && host(p.grad).every(Number.isFinite)));
  });

  it('drops attention probabilities too (nanoGPT attn_dropout): a training forward draws one number per element of each dropout', () => {
    const [B, T] = x.shape as [number, number];
    const { nEmbd: C, nHead: H, nLayer: L } = cfg;
    const drawn = (config: GPTConfig) => {
      const m = new GPT(config, { seed: 1 });
      const before = m.generator.offset;
      m.forward(x, y);
      return m.generator.offset - before;
    };
    // Embeddings, then per layer: the attention probabilities (B x H x T x T), the attention output, the MLP output.
    assert.equal(drawn(cfg), B * T * C + L * (B * H * T * T + 2 * B * T * C));
    assert.equal(drawn({ ...cfg, attnDropout: 0 }), B * T * C + L * 2 * B * T * C, 'attnDropout 0: the fused kernel, nothing drawn for it');
    assert.equal(drawn({ ...cfg, dropout: 0, attnDropout: 0.1 }), L * B * H * T * T, 'attention dropout alone');
  });

  it('attnDropout defaults to dropout and is validated', () => {
    assert.equal(new GPT(cfg).config.attnDropout, 0.2);
    assert.throws(() => new GPT({ ...cfg, attnDropout: 1 }), (e: Error) => e instanceof GPTConfigError && /attnDropout must be in \[0, 1\), got 1/.test(e.message));
  });
});

describe('GPT under autocast', () => {
  for (const name of Object.keys(PRESETS)) {
    it(`trains a step under the '${name}' precision policy`, () => {
      const policy = parsePolicy(name);
      const ref = new GPT(small, { seed: 6 });
      const refLoss = host(ref.forward(randomIds(2, 16, 32), randomIds(2, 16, 32, 2)).loss!)[0]!;
      const m = new GPT(small, { seed: 6 });
      if (policy.params !== 'float32') m.to(policy.params);
      const { logits, loss } = withPolicy(policy, () => m.forward(randomIds(2, 16, 32), randomIds(2, 16, 32, 2)));
      assert.equal(logits.dtype, policy.compute);
      const l = host(loss!)[0]!;
      assert.ok(Math.abs(l - refLoss) < 0.02, `${name}: loss ${l} vs float32 ${refLoss}`);
      loss!.backward();
      for (const [n, p] of m.namedParameters()) {
        assert.equal(p.grad?.dtype, policy.params, `${n} gradient dtype`);
        assert.ok(host(p.grad!).every(Number.isFinite), `${n} gradient finite`);
      }
    });
  }
});

describe('gpt-mini workload parity (PyTorch fp32 reference)', () => {
  const c = fixture.config;
  const cfg: GPTConfig = { vocabSize: c.V, blockSize: c.T, nLayer: c.L, nHead: c.H, nEmbd: c.D, dropout: 0, bias: true };
  const batch = (k: number) => {
    const b = fixture.batches[k];
    return [ids(b.x.data, b.x.shape), ids(b.y.data, b.y.shape)] as const;
  };

  it('step-0 loss agrees to 1e-4 relative', () => {
    const m = new GPT(cfg, { init: 'gpt-mini' });
    const [x, y] = batch(0);
    const l = host(m.forward(x, y).loss!)[0]!;
    assert.ok(Math.abs(l - fixture.losses[0]) / fixture.losses[0] < 1e-4, `loss ${l} vs ${fixture.losses[0]}`);
  });

  it('five AdamW steps (weight decay on ndim >= 2) agree to 1e-4 relative', () => {
    const m = new GPT(cfg, { init: 'gpt-mini' });
    const params = m.parameters();
    const o = fixture.optimizer;
    const opt = new AdamW([
      { params: params.filter((p) => p.ndim >= 2), weightDecay: o.weight_decay },
      { params: params.filter((p) => p.ndim < 2), weightDecay: 0 },
    ], { lr: o.lr, betas: o.betas, eps: o.eps });
    fixture.losses.forEach((want: number, k: number) => {
      const [x, y] = batch(k);
      opt.zeroGrad();
      const l = tidy(() => {
        const { loss } = m.forward(x, y);
        loss!.backward();
        return host(loss!)[0]!;
      });
      opt.step();
      assert.ok(Math.abs(l - want) / want < 1e-4, `step ${k}: loss ${l} vs ${want}`);
    });
  });
});

describe('GPT.generate', () => {
  it('appends tokens deterministically; temperature 0 is greedy', async () => {
    const m = new GPT(small, { seed: 8 });
    const start = ids([1, 2, 3, 4, 5, 6], [2, 3]);
    const a = await m.generate(start, { maxNewTokens: 5, seed: 1, topK: 5 });
    const b = await m.generate(start, { maxNewTokens: 5, seed: 1, topK: 5 });
    assert.deepEqual(a.shape, [2, 8]);
    assert.deepEqual(host(a), host(b));
    assert.deepEqual(Array.from(host(a).subarray(0, 3)), [1, 2, 3]);
    const g = await m.generate(start, { maxNewTokens: 1, temperature: 0 });
    const logits = host(m.forward(start).logits);
    for (let r = 0; r < 2; r++) {
      const last = Array.from(logits.subarray((r * 3 + 2) * 32, (r * 3 + 3) * 32));
      assert.equal(host(g)[r * 4 + 3], last.indexOf(Math.max(...last)));
    }
    // The context is cropped to the block size, so generation can run past it.
    const long = await m.generate(start, { maxNewTokens: 16, seed: 2 });
    assert.deepEqual(long.shape, [2, 19]);
    assert.ok(m.training, 'generate restores the training flag');
  });
});
