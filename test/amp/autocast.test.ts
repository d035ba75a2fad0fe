import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { autocast, AUTOCAST_OPS, isAutocastEnabled, autocastDtype } from '../../src/amp/autocast.js';
import type { Tensor } from '../../src/tensor/tensor.js';

mp.manualSeed(3);

const f32 = () => mp.randn([2, 4, 8]);
const ids = () => mp.tensor([[1, 2, 3, 0], [0, 1, 2, 3]], { dtype: 'int32' });

/** One call per op named in AUTOCAST_OPS, from float32 inputs. */
const calls: Record<string, () => Tensor> = {
  matmul: () => mp.matmul(f32(), mp.randn([8, 3])),
  linear: () => mp.linear(f32(), mp.randn([3, 8]), mp.randn([3])),
  addmm: () => mp.addmm(mp.randn([3]), mp.randn([4, 8]), mp.randn([8, 3])),
  scaledDotProductAttention: () => mp.scaledDotProductAttention(mp.randn([1, 2, 4, 8]), mp.randn([1, 2, 4, 8]), mp.randn([1, 2, 4, 8]), { causal: true }),
  causalSelfAttention: () => mp.causalSelfAttention(mp.randn([2, 4, 12]), 2),
  cachedSelfAttention: () => mp.noGrad(() => {
    const dtype = autocastDtype()!;
    return mp.cachedSelfAttention(mp.randn([2, 4, 12]), 2, mp.zeros([2, 2, 8, 2], { dtype }), mp.zeros([2, 2, 8, 2], { dtype }), 0);
  }),
  softmax: () => mp.softmax(f32().to('float16')),
  logSoftmax: () => mp.logSoftmax(f32().to('float16')),
  layerNorm: () => mp.layerNorm(f32().to('float16'), mp.ones([8]), mp.zeros([8])),
  crossEntropy: () => mp.crossEntropy(mp.randn([2, 4, 5]).to('float16'), ids()),
  sum: () => mp.sum(f32().to('float16')),
  mean: () => mp.mean(f32().to('float16'), -1),
  exp: () => mp.exp(f32().to('float16')),
  log: () => mp.log(mp.rand([3]).to('float16')),
  pow: () => mp.pow(f32().to('float16'), 2),
  sqrt: () => mp.sqrt(mp.rand([3]).to('float16')),
  rsqrt: () => mp.rsqrt(mp.rand([3]).to('float16')),
  reciprocal: () => mp.reciprocal(mp.rand([3]).to('float16')),
  add: () => mp.add(f32().to('float16'), f32()),
  sub: () => mp.sub(f32().to('float16'), f32()),
  mul: () => mp.mul(f32().to('float16'), f32()),
  div: () => mp.div(f32().to('float16'), f32()),
  maximum: () => mp.maximum(f32().to('float16'), f32()),
  minimum: () => mp.minimum(f32().to('float16'), f32()),
  cat: () => mp.cat([f32().to('float16'), f32()], 0),
  where: () => mp.where(mp.gt(f32(), 0), f32().to('float16'), f32()),
};

test('every op of the published table gives the output dtype of its category', () => {
  for (const dtype of ['float16', 'bfloat16'] as const) {
    for (const [category, names] of Object.entries(AUTOCAST_OPS)) {
      for (const name of names) {
        const call = calls[name.split(' ')[0]!];
        if (name.startsWith('clipGradNorm')) continue; // covered in test/optim/clip.test.ts
        assert.ok(call, `no test call for ${name}`);
        const out = mp.tidy(() => autocast({ dtype }, () => call!().dtype));
        // float32-category inputs above are float16: under autocast the result is float32.
        const expected = category === 'lower' ? dtype : 'float32';
        assert.equal(out, expected, `${name} under autocast(${dtype})`);
      }
    }
  }
});

test('other ops run in their input dtype; int32 and float64 are never cast', () => {
  mp.tidy(() => autocast({ dtype: 'float16' }, () => {
    assert.equal(mp.relu(f32()).dtype, 'float32');
    assert.equal(mp.gelu(f32().to('bfloat16')).dtype, 'bfloat16');
    assert.equal(mp.embedding(ids(), mp.randn([4, 8])).dtype, 'float32');
    const a64 = mp.randn([3, 4], { dtype: 'float64' });
    assert.equal(mp.matmul(a64, mp.randn([4, 2], { dtype: 'float64' })).dtype, 'float64');
    assert.equal(mp.add(ids(), ids()).dtype, 'int32');
  }));
});

test('outside autocast, ops keep their dtypes (no float32 upgrade)', () => {
  mp.tidy(() => {
    assert.equal(mp.softmax(f32().to('float16')).dtype, 'float16');
    assert.equal(mp.matmul(f32(), mp.randn([8, 3])).dtype, 'float32');
    assert.equal(mp.sum(f32().to('bfloat16')).dtype, 'bfloat16');
  });
});

test('lower-precision ops compute from inputs rounded to the autocast dtype', () => {
  mp.tidy(() => {
    const a = mp.randn([5, 7]), b = mp.randn([7, 3]);
    const got = autocast({ dtype: 'bfloat16' }, () => mp.matmul(a, b)).toArraySync();
    const want = mp.matmul(a.to('bfloat16'), b.to('bfloat16')).toArraySync();
    assert.deepEqual(got, want);
  });
});

test('regions nest, enabled:false turns casting off, and state is restored, also on throw', () => {
  assert.equal(isAutocastEnabled(), false);
  autocast({ dtype: 'float16' }, () => {
    assert.equal(autocastDtype(), 'float16');
    autocast({ dtype: 'bfloat16' }, () => assert.equal(autocastDtype(), 'bfloat16'));
    assert.equal(autocastDtype(), 'float16');
    autocast({ enabled: false }, () => {
      assert.equal(isAutocastEnabled(), false);
      mp.tidy(() => assert.equal(mp.matmul(f32(), mp.randn([8, 3])).dtype, 'float32'));
    });
    assert.throws(() => autocast({ dtype: 'bfloat16' }, () => { throw new Error('boom'); }), /boom/);
    assert.equal(autocastDtype(), 'float16');
  });
  assert.equal(isAutocastEnabled(), false);
  assert.throws(() => autocast({ dtype: 'float32' as never }, () => 0), /float16 or bfloat16/);
  assert.throws(() => autocast({}, (async () => 0) as never), /synchronous/);
});

test('the cast of a float32 leaf that requires grad is cached for the outermost region and dropped at exit', () => {
  const w = mp.randn([8, 3], { requiresGrad: true });
  const x = mp.randn([4, 8]);
  let castNodes: unknown[] = [];
  const before = mp.memory().tensors;
  const loss = mp.tidy(() => autocast({ dtype: 'float16' }, () => {
    const y1 = mp.matmul(x, w);
    const y2 = autocast({ dtype: 'float16' }, () => mp.matmul(x, w));
    // Both products read the same cached float16 copy of w: the graph has one cast node for it.
    castNodes = [y1.node!.edges[1]!.node, y2.node!.edges[1]!.node];
    return mp.sum(mp.add(y1, y2));
  }));
  assert.ok(castNodes[0]);
  assert.equal(castNodes[0], castNodes[1]);
  loss.backward();
  assert.ok(w.grad);
  assert.equal(w.grad!.dtype, 'float32');
  loss.dispose();
  assert.equal(mp.memory().tensors, before + 1, 'only w.grad remains');
  w.grad!.dispose();
  w.dispose();
  x.dispose();
});

test('with cacheEnabled:false every use casts again', () => {
  const w = mp.randn([8, 3], { requiresGrad: true });
  mp.tidy(() => autocast({ dtype: 'float16', cacheEnabled: false }, () => {
    const y1 = mp.matmul(mp.randn([4, 8]), w), y2 = mp.matmul(mp.randn([4, 8]), w);
    assert.notEqual(y1.node!.edges[1]!.node, y2.node!.edges[1]!.node);
  }));
  w.dispose();
});

test('gradients flow through casts back to float32 leaves, computed in the forward dtypes', () => {
  const w = mp.randn([8, 3], { requiresGrad: true });
  const x = f32();
  const loss = mp.tidy(() => autocast({ dtype: 'float16' }, () => mp.sum(mp.matmul(x, w))));
  loss.backward();
  // d sum(x @ w) / dw = x^T @ ones, one float16 product from float16 x (the batch folds into rows).
  const want = mp.tidy(() => mp.matmul(mp.transpose(mp.reshape(x, [8, 8]).to('float16'), 0, 1), mp.ones([8, 3], { dtype: 'float16' })).to('float32').toArraySync());
  assert.deepEqual(w.grad!.toArraySync(), want);
  loss.dispose();
});

test('the published table in docs/amp.md lists exactly AUTOCAST_OPS', async () => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../../docs/amp.md', import.meta.url), 'utf8');
  const rows: Record<string, string> = { lower: 'lower precision', float32: 'float32', promote: 'promote' };
  for (const [category, label] of Object.entries(rows)) {
    const line = doc.split('\n').find((l) => l.startsWith(`| ${label} |`));
    assert.ok(line, `docs/amp.md has a row for ${label}`);
    const listed = [...line!.split('|')[3]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    assert.deepEqual(listed, AUTOCAST_OPS[category as keyof typeof AUTOCAST_OPS]);
  }
});
