// The phenomena loss scaling exists for, measured on the bit-exact CPU backend:
// float16 gradients underflow to zero when they are small, and a scaled loss
// brings them back; too large a scale overflows, and the step is skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { Generator } from '../../src/backend/random.js';
import type { Tensor } from '../../src/tensor/tensor.js';

/** Linear regression whose loss is weighted by 1e-9, so every true gradient lies below float16's smallest subnormal (2^-24). */
const LOSS_WEIGHT = 1e-9;
const gen = new Generator(11);
const X = mp.randn([64, 16], { generator: gen });
const trueW = mp.randn([16, 4], { generator: gen });
const Y = mp.noGrad(() => mp.matmul(X, trueW));

type Mode = 'fp32' | 'fp16-unscaled' | 'fp16-scaled';

async function train(mode: Mode, steps: number): Promise<{ losses: number[]; zeroFraction: number; maxAbsGrad32: number }> {
  const w = mp.zeros([16, 4], { requiresGrad: true });
  const opt = new mp.SGD([w], { lr: 0.2 / LOSS_WEIGHT });
  const scaler = new mp.GradScaler({ enabled: mode === 'fp16-scaled' });
  const losses: number[] = [];
  let zeroFraction = 0, maxAbsGrad32 = 0;
  for (let s = 0; s < steps; s++) {
    const loss = mp.tidy(() => {
      const l = mp.autocast({ dtype: 'float16', enabled: mode !== 'fp32' }, () =>
        mp.mul(mp.mean(mp.square(mp.sub(mp.matmul(X, w), Y))), LOSS_WEIGHT));
      scaler.scale(l).backward();
      return l;
    });
    if (s === 0) {
      const g = w.grad!.toArraySync();
      zeroFraction = g.filter((v) => v === 0).length / g.length;
      maxAbsGrad32 = Math.max(...g.map(Math.abs));
    }
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    losses.push(await loss.item());
    loss.dispose();
  }
  w.dispose();
  opt.dispose();
  scaler.dispose();
  return { losses, zeroFraction, maxAbsGrad32 };
}

test('float16 gradients below 2^-24 underflow to zero and training stalls; dynamic loss scaling follows the float32 run', async (t) => {
  const steps = 25;
  const fp32 = await train('fp32', steps);
  const unscaled = await train('fp16-unscaled', steps);
  const scaled = await train('fp16-scaled', steps);
  t.diagnostic(`float32 gradients at step 0: max |g| = ${fp32.maxAbsGrad32.toExponential(2)} (float16's smallest subnormal is ${mp.finfo('float16').smallestSubnormal.toExponential(2)})`);
  t.diagnostic(`fraction of weight-gradient values exactly zero at step 0: float32 ${fp32.zeroFraction}, float16 unscaled ${unscaled.zeroFraction}, float16 scaled ${scaled.zeroFraction}`);
  t.diagnostic(`loss after ${steps} steps (start ${fp32.losses[0]!.toExponential(3)}): float32 ${fp32.losses.at(-1)!.toExponential(3)}, float16 unscaled ${unscaled.losses.at(-1)!.toExponential(3)}, float16 scaled ${scaled.losses.at(-1)!.toExponential(3)}`);

  assert.ok(fp32.maxAbsGrad32 < mp.finfo('float16').smallestSubnormal, 'the set-up puts every gradient below 2^-24');
  assert.equal(fp32.zeroFraction, 0);
  assert.equal(unscaled.zeroFraction, 1, 'every float16 gradient underflowed');
  assert.equal(scaled.zeroFraction, 0);
  // Unscaled float16 never moves; float32 and scaled float16 learn.
  assert.ok(unscaled.losses.every((l) => l === unscaled.losses[0]), 'unscaled float16 training stalls');
  assert.ok(fp32.losses.at(-1)! < fp32.losses[0]! * 0.05);
  // Tolerance: float16 compute rounds activations and gradients to 11 bits; 2% of the loss at each step.
  for (let i = 0; i < steps; i++) {
    const rel = Math.abs(scaled.losses[i]! - fp32.losses[i]!) / fp32.losses[i]!;
    assert.ok(rel < 0.02, `step ${i}: scaled float16 loss ${scaled.losses[i]} vs float32 ${fp32.losses[i]} (relative ${rel.toFixed(4)})`);
  }
});

async function snapshot(ts: Tensor[]): Promise<number[][]> {
  return Promise.all(ts.map(async (t) => [...(await t.toArray())]));
}

test('too large a scale overflows: the step is skipped, parameters and optimizer state are bit-for-bit unchanged, the scale halves', async () => {
  const w1 = mp.randn([16, 32], { generator: gen, requiresGrad: true });
  const w2 = mp.randn([32, 4], { generator: gen, requiresGrad: true });
  const opt = new mp.AdamW([w1, w2], { lr: 1e-2 });
  const scaler = new mp.GradScaler({ initScale: 1 });
  const step = () => mp.tidy(() => {
    const l = mp.autocast({ dtype: 'float16' }, () => mp.mean(mp.square(mp.sub(mp.matmul(mp.relu(mp.matmul(X, w1)), w2), Y))));
    scaler.scale(l).backward();
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
  });
  step(); // a normal step first, so the optimizer state is not all zeros
  const stateTensors = opt.namedState().map(([, t]) => t);
  const before = await snapshot([w1, w2, ...stateTensors]);
  assert.equal(await scaler.getScale(), 1, 'the first step was not skipped');
  scaler.update(2 ** 40); // 2^40 times a loss of order 10 overflows float16 (max 65504) in backward
  step();
  const after = await snapshot([w1, w2, ...stateTensors]);
  assert.deepEqual(after, before);
  assert.equal(await scaler.getScale(), 2 ** 39);
  assert.equal((await opt.stateDict()).steps[0], 1, 'the skipped step did not advance the step counter');
  opt.dispose();
  scaler.dispose();
});

test('gradient accumulation: the scale is constant across micro-steps and the sum equals the full batch', async () => {
  const w = mp.randn([16, 4], { generator: gen, requiresGrad: true });
  const scaler = new mp.GradScaler({ initScale: 1024 });
  const opt = new mp.SGD([w], { lr: 0.1 });
  const lossOf = (x: Tensor, y: Tensor) => mp.mul(mp.sum(mp.square(mp.sub(mp.matmul(x, w), y))), 1 / 64);
  for (const [a, b] of [[0, 32], [32, 64]]) {
    mp.tidy(() => scaler.scale(lossOf(mp.slice(X, 0, a!, b), mp.slice(Y, 0, a!, b))).backward());
  }
  scaler.unscale(opt);
  const accumulated = w.grad!.toArraySync();
  w.grad!.dispose();
  w.grad = null;
  mp.tidy(() => lossOf(X, Y).backward());
  const full = w.grad!.toArraySync();
  for (let i = 0; i < full.length; i++) assert.ok(Math.abs(accumulated[i]! - full[i]!) <= 1e-5 * Math.abs(full[i]!) + 1e-7);
  opt.dispose();
  scaler.dispose();
});
