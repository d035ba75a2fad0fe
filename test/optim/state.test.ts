// Saving optimizer and scaler state mid-training and continuing gives the
// same results, bit for bit, as training without interruption.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { Generator } from '../../src/backend/random.js';
import type { Tensor } from '../../src/tensor/tensor.js';

const gen = new Generator(5);
const X = mp.randn([32, 8], { generator: gen });
const Y = mp.randn([32, 2], { generator: gen });

interface Run { w1: Tensor; w2: Tensor; opt: mp.AdamW; scaler: mp.GradScaler }

function fresh(params: 'float32' | 'float16'): Run {
  const g = new Generator(9);
  const w1 = mp.randn([8, 16], { generator: g }).mul(0.3).to(params).detach().requiresGrad_();
  const w2 = mp.randn([16, 2], { generator: g }).mul(0.3).to(params).detach().requiresGrad_();
  // growthInterval 2 and a large initial scale make the scale move (and steps skip) within a few steps.
  return { w1, w2, opt: new mp.AdamW([w1, w2], { lr: 1e-2 }), scaler: new mp.GradScaler({ initScale: 2 ** 24, growthInterval: 2 }) };
}

async function steps(r: Run, n: number): Promise<number[]> {
  const losses: number[] = [];
  for (let i = 0; i < n; i++) {
    const loss = mp.tidy(() => {
      const l = mp.autocast({ dtype: 'float16' }, () => mp.mean(mp.square(mp.sub(mp.matmul(mp.gelu(mp.matmul(X, r.w1)), r.w2), Y))));
      r.scaler.scale(l).backward();
      r.scaler.unscale(r.opt);
      mp.clipGradNorm(r.opt, 1.0);
      r.scaler.step(r.opt);
      r.scaler.update();
      r.opt.zeroGrad();
      return l;
    });
    losses.push(await loss.item());
    loss.dispose();
  }
  return losses;
}

for (const params of ['float32', 'float16'] as const) {
  test(`resuming from optimizer and GradScaler state is bit-exact (${params} parameters)`, async () => {
    const a = fresh(params);
    const straight = await steps(a, 8);

    const b = fresh(params);
    const first = await steps(b, 4);
    const saved = {
      opt: await b.opt.stateDict(),
      scaler: await b.scaler.stateDict(),
      w: await Promise.all([b.w1, b.w2].map((w) => w.toArray())),
    };
    const c = fresh(params);
    c.w1.backend.write(c.w1.storageView, saved.w[0]!);
    c.w2.backend.write(c.w2.storageView, saved.w[1]!);
    c.opt.loadStateDict(saved.opt);
    c.scaler.loadStateDict(saved.scaler);
    const rest = await steps(c, 4);

    assert.deepEqual([...first, ...rest], straight);
    assert.deepEqual([...c.w1.toArraySync()], [...a.w1.toArraySync()]);
    assert.deepEqual(await c.scaler.stateDict(), await a.scaler.stateDict());
    const skipped = 8 - (await a.opt.stateDict()).steps[0]!;
    assert.ok(skipped > 0, 'the run includes skipped steps');
  });
}

test('loadStateDict rejects state that does not fit, naming what is wrong', async () => {
  const r = fresh('float32');
  const sd = await r.opt.stateDict();
  const sgd = new mp.SGD([mp.zeros([1], { requiresGrad: true })]);
  assert.throws(() => sgd.loadStateDict(sd as never), /state of a AdamW optimizer given to SGD/);
  const broken = { ...sd, state: { ...sd.state, 1: { ...sd.state[1], exp_avg: new Float32Array(3) } } };
  assert.throws(() => r.opt.loadStateDict(broken), /state '1.exp_avg' has 3 values, expected 32/);
});
