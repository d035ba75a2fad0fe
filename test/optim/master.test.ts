// 16-bit parameters with float32 master weights (Apex O2 style).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { roundTo } from '../../src/dtype/codec.js';

test('the optimizer updates a float32 master copy and writes the rounded value back', async () => {
  const p = mp.tensor([1, 2, 3, 4], { dtype: 'float16', requiresGrad: true });
  const opt = new mp.SGD([p], { lr: 1e-4 });
  p.grad = mp.keep(mp.tensor([1, 1, 1, 1], { dtype: 'float16' }));
  for (let i = 0; i < 3; i++) opt.step();
  const sd = await opt.stateDict();
  // Each step moves the master by 1e-4: below float16's resolution at 1..4, so only the master remembers it.
  const master = [...sd.state[0]!.master!];
  assert.deepEqual(master, [1, 2, 3, 4].map((x) => Math.fround(Math.fround(Math.fround(x - 1e-4) - 1e-4) - 1e-4)));
  assert.deepEqual([...p.toArraySync()], master.map((m) => roundTo(m, 'float16')));
  assert.deepEqual([...p.toArraySync()].slice(1), [2, 3, 4], 'at 2..4 the float16 copy cannot show 3e-4 yet');
  opt.dispose();
});

test('without master weights, 16-bit parameters update in their own dtype (and lose small steps)', () => {
  const p = mp.tensor([1, 2], { dtype: 'float16', requiresGrad: true });
  const opt = new mp.SGD([p], { lr: 1e-4 });
  const plain = new mp.SGD([mp.tensor([1, 2], { dtype: 'float16', requiresGrad: true })], { lr: 1e-4, masterWeights: false });
  const q = plain.params[0]!;
  p.grad = mp.keep(mp.tensor([1, 1], { dtype: 'float16' }));
  q.grad = mp.keep(mp.tensor([1, 1], { dtype: 'float16' }));
  for (let i = 0; i < 10; i++) { opt.step(); plain.step(); }
  assert.deepEqual([...q.toArraySync()], [1, 2], 'each 1e-4 step rounds away');
  assert.notDeepEqual([...p.toArraySync()], [1, 2], 'the master accumulates ten steps (1e-3), enough to move float16 at 1');
  opt.dispose();
  plain.dispose();
});

test('GradScaler unscales the float32 master gradients of 16-bit parameters', async () => {
  const p = mp.tensor([0.5, -0.5], { dtype: 'float16', requiresGrad: true });
  const opt = new mp.AdamW([p]);
  const scaler = new mp.GradScaler({ initScale: 1024 });
  mp.tidy(() => scaler.scale(mp.sum(mp.mul(p, p))).backward());
  assert.equal(p.grad!.dtype, 'float16');
  scaler.unscale(opt);
  const [masterGrad] = opt.prepareGradients();
  assert.equal(masterGrad!.dtype, 'float32');
  assert.deepEqual([...masterGrad!.toArraySync()], [1, -1]);
  scaler.step(opt);
  scaler.update();
  opt.dispose();
  scaler.dispose();
});

test('bfloat16 stochastic rounding is seeded, reproducible, and unbiased on average', async () => {
  const run = (seed: number) => {
    const p = mp.full([4096], 1, { dtype: 'bfloat16', requiresGrad: true });
    const opt = new mp.SGD([p], { lr: 1 / 1024, stochasticRounding: { seed } });
    p.grad = mp.keep(mp.full([4096], -1, { dtype: 'bfloat16' }));
    opt.step(); // master 1 + 2^-10: between bf16 neighbours 1 and 1 + 2^-7
    const v = [...p.toArraySync()];
    opt.dispose();
    return v;
  };
  const a = run(7), b = run(7), c = run(8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.every((x) => x === 1 || x === 1 + 2 ** -7));
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  // Round up with probability 2^-10 / 2^-7 = 1/8: the mean stays near 1 + 2^-10 (a plain rounding gives exactly 1).
  assert.ok(Math.abs(mean - (1 + 2 ** -10)) < 2e-4, `mean ${mean}`);
});

test('stochastic rounding resumes from a state dict: a restored optimizer draws the same random numbers', async () => {
  const make = () => {
    const p = mp.full([256], 1, { dtype: 'bfloat16', requiresGrad: true });
    p.grad = mp.keep(mp.full([256], -1, { dtype: 'bfloat16' }));
    return { p, opt: new mp.SGD([p], { lr: 1 / 1024, stochasticRounding: { seed: 5 } }) };
  };
  const whole = make();
  for (let i = 0; i < 4; i++) whole.opt.step();
  const first = make();
  for (let i = 0; i < 2; i++) first.opt.step();
  const sd = await first.opt.stateDict();
  assert.equal(sd.stochasticRoundingCounter, 2 * 256);
  const resumed = make();
  resumed.opt.loadStateDict(sd);
  for (let i = 0; i < 2; i++) resumed.opt.step();
  assert.deepEqual([...resumed.p.toArraySync()], [...whole.p.toArraySync()]);
  for (const r of [whole, first, resumed]) { r.opt.dispose(); r.p.grad!.dispose(); r.p.dispose(); }
});

test('an optimizer with master weights releases every tensor it made when disposed', () => {
  const backend = new mp.CpuBackend();
  const params = [mp.tensor([1, 2, 3], { dtype: 'float16', requiresGrad: true, backend }), mp.tensor([4], { dtype: 'bfloat16', requiresGrad: true, backend })];
  const before = mp.memory(backend);
  const opt = new mp.AdamW(params);
  assert.ok(mp.memory(backend).tensors > before.tensors);
  opt.dispose();
  assert.deepEqual({ ...mp.memory(backend), peakBytes: 0 }, { ...before, peakBytes: 0 });
});

test('an allocation error for a master copy names the parameter it was for', () => {
  // A backend that refuses float32 buffers of more than 4 elements, as a GPU refuses one beyond its binding limit.
  class SmallBackend extends mp.CpuBackend {
    override alloc(dtype: mp.DType, size: number) {
      if (dtype === 'float32' && size > 4) throw new Error(`${size} elements are too many`);
      return super.alloc(dtype, size);
    }
  }
  const backend = new SmallBackend();
  const p = mp.tensor([1, 2, 3, 4, 5, 6], { dtype: 'bfloat16', requiresGrad: true, backend });
  p.name = 'wte.weight';
  assert.throws(() => new mp.AdamW([p]), /the float32 master copy of 'wte.weight' \[6\] bfloat16: a \[6\] float32 tensor: 6 elements are too many/);
});
