import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';

test('clipGradNorm returns the total norm and scales gradients to maxNorm (torch.nn.utils.clip_grad_norm_)', async () => {
  const a = mp.zeros([2], { requiresGrad: true }), b = mp.zeros([1], { requiresGrad: true });
  a.grad = mp.keep(mp.tensor([3, 0]));
  b.grad = mp.keep(mp.tensor([4]));
  const norm = mp.clipGradNorm([a, b], 1);
  assert.equal(await norm.item(), 5);
  assert.equal(norm.dtype, 'float32');
  const coef = Math.fround(1 / Math.fround(5 + 1e-6));
  assert.deepEqual([...a.grad.toArraySync(), ...b.grad.toArraySync()], [Math.fround(3 * coef), 0, Math.fround(4 * coef)]);
  // Below the threshold nothing changes (the coefficient is clamped to 1).
  const small = mp.clipGradNorm([a, b], 10);
  assert.ok(Math.abs((await small.item()) - 1) < 1e-6);
  assert.deepEqual([...a.grad.toArraySync()], [Math.fround(3 * coef), 0]);
});

test('a non-finite gradient gives a non-finite norm', async () => {
  const a = mp.zeros([2], { requiresGrad: true });
  a.grad = mp.keep(mp.tensor([Infinity, 1]));
  assert.equal(await mp.clipGradNorm([a], 1).item(), Infinity);
  a.grad = mp.keep(mp.tensor([NaN, 1]));
  assert.ok(Number.isNaN(await mp.clipGradNorm([a], 1).item()));
});

test('clipGradNorm checks its arguments', () => {
  const a = mp.zeros([2], { requiresGrad: true });
  assert.throws(() => mp.clipGradNorm([a], 1), /no gradients/);
  assert.throws(() => mp.clipGradNorm([a], 0), /maxNorm must be positive/);
});
