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

test('clipGradNorm(parameters) after GradScaler.unscale with master weights clips the master gradients, as clipGradNorm(optimizer) does', async () => {
  const run = async (clip: 'params' | 'optimizer' | 'none') => {
    const p = mp.tensor([0.5, -2, 3, 1.25], { dtype: 'float16', requiresGrad: true });
    const opt = new mp.SGD([p], { lr: 0.1 });
    const scaler = new mp.GradScaler({ initScale: 1024 });
    mp.tidy(() => scaler.scale(mp.sum(mp.mul(p, p))).backward());
    scaler.unscale(opt);
    const norm = clip === 'params' ? mp.clipGradNorm([p], 0.5) : clip === 'optimizer' ? mp.clipGradNorm(opt, 0.5) : null;
    const normValue = norm ? await norm.item() : null;
    scaler.step(opt);
    scaler.update();
    const sd = await opt.stateDict();
    const out = { norm: normValue, param: [...p.toArraySync()], master: [...sd.state[0]!.master!] };
    opt.dispose();
    scaler.dispose();
    return out;
  };
  const viaParams = await run('params'), viaOptimizer = await run('optimizer'), unclipped = await run('none');
  // The norm of the unscaled gradient 2p, not of the 16-bit gradient still scaled by 1024.
  assert.ok(Math.abs(viaParams.norm! - 2 * Math.hypot(0.5, -2, 3, 1.25)) < 1e-5, `norm ${viaParams.norm}`);
  assert.deepEqual(viaParams, viaOptimizer);
  assert.notDeepEqual(viaParams.master, unclipped.master, 'clipping changed the update');
});
