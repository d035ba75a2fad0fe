import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { GradScaler, GradScalerError, type ScalableOptimizer } from '../../src/amp/grad-scaler.js';
import { keep, type Tensor } from '../../src/tensor/tensor.js';

/** An optimizer stand-in whose single gradient we set to a finite value or to inf, counting real steps. */
class FakeOptimizer implements ScalableOptimizer {
  grad = keep(mp.zeros([4]));
  steps = 0;
  setGrad(v: number): void {
    this.grad.backend.fill(this.grad.storageView, v);
  }
  prepareGradients(): Tensor[] {
    return [this.grad];
  }
  step(opts: { foundInf?: Tensor } = {}): void {
    if (!opts.foundInf || opts.foundInf.toArraySync()[0] === 0) this.steps++;
  }
}

async function runFlags(scaler: GradScaler, flags: number[]): Promise<[number, number][]> {
  const opt = new FakeOptimizer();
  const seq: [number, number][] = [];
  for (const f of flags) {
    opt.setGrad(f ? Infinity : 1);
    scaler.step(opt);
    scaler.update();
    seq.push([await scaler.getScale(), await scaler.getGrowthTracker()]);
  }
  return seq;
}

test('defaults are PyTorch\'s', async () => {
  const s = new GradScaler();
  assert.equal(await s.getScale(), 65536);
  assert.deepEqual(await s.stateDict(), { scale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0 });
});

test('scale and growth tracker follow PyTorch\'s rule (growthInterval 3)', async () => {
  // Written out from torch's _amp_update_scale_: on inf, scale *= backoff and tracker = 0; otherwise
  // tracker += 1 and, when it reaches growthInterval, scale *= growth and tracker = 0.
  const flags = [0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1];
  const expected: [number, number][] = [
    [65536, 1], [65536, 2], [131072, 0], [65536, 0], [65536, 1], [65536, 2], [32768, 0],
    [32768, 1], [32768, 2], [65536, 0], [65536, 1], [65536, 2], [131072, 0], [65536, 0], [32768, 0],
  ];
  assert.deepEqual(await runFlags(new GradScaler({ growthInterval: 3 }), flags), expected);
});

test('scale and growth tracker follow PyTorch\'s rule (growthInterval 2000)', async () => {
  const seq = await runFlags(new GradScaler(), [...new Array(1999).fill(0), 0, 0, 1, ...new Array(2000).fill(0)]);
  assert.deepEqual(seq[1998], [65536, 1999]);
  assert.deepEqual(seq[1999], [131072, 0], 'doubles on the 2000th clean step');
  assert.deepEqual(seq[2000], [131072, 1]);
  assert.deepEqual(seq[2001], [65536, 0], 'halves on inf');
  assert.deepEqual(seq[4000], [65536, 1999]);
  assert.deepEqual(seq[4001], [131072, 0]);
});

test('the scale stops growing before it would overflow float32', async () => {
  const s = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
  const seq = await runFlags(s, [0, 0]);
  assert.deepEqual(seq, [[2 ** 127, 0], [2 ** 127, 0]]);
});

test('skipped steps: the optimizer does not step on inf or NaN, and only that optimizer', async () => {
  const s = new GradScaler();
  const a = new FakeOptimizer(), b = new FakeOptimizer();
  a.setGrad(1);
  b.setGrad(NaN);
  s.step(a);
  s.step(b);
  s.update();
  assert.equal(a.steps, 1);
  assert.equal(b.steps, 0);
  assert.equal(await s.getScale(), 32768, 'one backoff for the iteration');
});

test('unscale multiplies by float32(1/scale) and flags non-finite values', async () => {
  const s = new GradScaler({ initScale: 3 });
  const opt = new FakeOptimizer();
  opt.setGrad(6);
  s.unscale(opt);
  assert.deepEqual([...opt.grad.toArraySync()], new Array(4).fill(Math.fround(6 * Math.fround(1 / 3))));
  assert.equal(await s.foundInf(opt)!.item(), 0);
});

test('misuse raises PyTorch\'s errors', () => {
  const s = new GradScaler();
  const opt = new FakeOptimizer();
  s.unscale(opt);
  assert.throws(() => s.unscale(opt), (e: Error) => e instanceof GradScalerError && /unscale\(\) has already been called on this optimizer since the last update\(\)/.test(e.message));
  s.step(opt);
  assert.throws(() => s.step(opt), /step\(\) has already been called since the last update\(\)/);
  assert.throws(() => s.unscale(opt), /unscale\(\) is being called after step\(\)/);
  s.update();
  assert.throws(() => new GradScaler().update(), /No inf checks were recorded/);
  const half = { prepareGradients: () => [mp.zeros([2], { dtype: 'float16' })], step() {} };
  assert.throws(() => new GradScaler().unscale(half), /Attempting to unscale FP16 gradients/);
  assert.throws(() => new GradScaler({ backoffFactor: 2 }), /backoffFactor/);
  assert.throws(() => new GradScaler().loadStateDict({}), /empty/);
});

test('a disabled scaler is a pass-through', async () => {
  const s = new GradScaler({ enabled: false });
  const loss = mp.tensor(2);
  assert.equal(s.scale(loss), loss);
  const opt = new FakeOptimizer();
  opt.setGrad(Infinity);
  s.step(opt);
  s.update();
  assert.equal(opt.steps, 1);
  assert.equal(await s.getScale(), 1);
  assert.deepEqual(await s.stateDict(), {});
});

test('a static scale: dynamic false never changes it; growthInterval Infinity never grows it', async () => {
  const fixed = new GradScaler({ initScale: 1024, dynamic: false });
  assert.deepEqual((await runFlags(fixed, [0, 1, 0])).map((x) => x[0]), [1024, 1024, 1024]);
  const noGrowth = new GradScaler({ initScale: 1024, growthInterval: Infinity });
  assert.deepEqual((await runFlags(noGrowth, [0, 0, 1, 0])).map((x) => x[0]), [1024, 1024, 512, 512]);
});

test('update(newScale) sets the scale; state dicts round-trip', async () => {
  const s = new GradScaler({ growthInterval: 5 });
  await runFlags(s, [0, 0, 1, 0]);
  s.update(4096);
  assert.equal(await s.getScale(), 4096);
  const t = new GradScaler();
  t.loadStateDict(await s.stateDict());
  assert.deepEqual(await t.stateDict(), await s.stateDict());
  assert.deepEqual(await t.stateDict(), { scale: 4096, growthFactor: 2, backoffFactor: 0.5, growthInterval: 5, growthTracker: 1 });
});

test('scale() multiplies each loss of a list', async () => {
  const s = new GradScaler({ initScale: 8 });
  const [a, b] = s.scale([mp.tensor(1.5), mp.tensor(-2)]);
  assert.equal(await a!.item(), 12);
  assert.equal(await b!.item(), -16);
});
