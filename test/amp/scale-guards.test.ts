// GradScaler's step status (which gradient overflowed, read on demand), minScale and hysteresis.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GradScaler, GradScalerError, LossScaleCollapsedError, SGD, tensor, zeros, memory, CpuBackend } from '../../src/index.js';

function setup(opts: ConstructorParameters<typeof GradScaler>[0] = {}) {
  const backend = new CpuBackend();
  const a = zeros([3], { backend, requiresGrad: true }), b = zeros([2, 2], { backend, requiresGrad: true });
  a.name = 'h.0.mlp.c_fc.weight';
  b.name = 'h.1.attn.c_proj.bias';
  const opt = new SGD([a, b], { lr: 0.1 });
  const scaler = new GradScaler({ backend, ...opts });
  /** One step with these gradients (before unscaling); returns the status. */
  const step = (ga: number[], gb: number[]) => {
    a.grad = tensor(ga, { shape: [3], backend });
    b.grad = tensor(gb, { shape: [2, 2], backend });
    const status = scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    return status;
  };
  return { backend, a, b, opt, scaler, step };
}

const fine = [1, 2, 3], fine4 = [1, 2, 3, 4];
const saved8 = () => ({ scale: 8, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0 });

describe('GradScaler step status', () => {
  it('says whether the step was applied and, if not, which gradient was inf or NaN first, by name', async () => {
    const { scaler, step, a } = setup();
    const ok = step(fine, fine4);
    assert.deepEqual(await ok.read(), { applied: true, nonFinite: [], firstNonFinite: null });
    const before = [...a.toArraySync()];
    const bad = step(fine, [1, Infinity, NaN, 4]);
    assert.deepEqual(await bad.read(), { applied: false, nonFinite: ['h.1.attn.c_proj.bias'], firstNonFinite: 'h.1.attn.c_proj.bias' });
    assert.deepEqual([...a.toArraySync()], before, 'the skipped step left the parameters alone');
    const both = step([NaN, 0, 0], [Infinity, 0, 0, 0]);
    assert.equal((await both.read()).firstNonFinite, 'h.0.mlp.c_fc.weight');
    step(fine, fine4);
    await assert.rejects(both.read(), (e: Error) => e instanceof GradScalerError && /read after unscale 4/.test(e.message));
    assert.deepEqual(await scaler.lastOverflow(), { unscale: 3, tensors: ['h.0.mlp.c_fc.weight', 'h.1.attn.c_proj.bias'] });
  });

  it('keeps the record on the device: memory stays flat from step to step', () => {
    const { backend, step } = setup();
    step(fine, fine4);
    const live = memory(backend).tensors;
    for (let i = 0; i < 5; i++) step(fine, i % 2 ? fine4 : [Infinity, 0, 0, 0]);
    assert.equal(memory(backend).tensors, live);
  });
});

describe('GradScaler guards', () => {
  it('defaults to PyTorch: back off at the first overflow, no minimum', async () => {
    const { scaler, step } = setup({ initScale: 8 });
    assert.equal(scaler.minScale, 0);
    assert.equal(scaler.hysteresis, 1);
    step([Infinity, 0, 0], fine4);
    assert.equal(await scaler.getScale(), 4);
  });

  it('with hysteresis N backs off only at the Nth consecutive overflow; a finite step restores the count', async () => {
    const { scaler, step } = setup({ initScale: 8, hysteresis: 2 });
    const overflow = () => step([Infinity, 0, 0], fine4);
    const scales: number[] = [];
    for (const s of [overflow, overflow, overflow, () => step(fine, fine4), overflow, overflow]) {
      s();
      scales.push(await scaler.getScale());
    }
    assert.deepEqual(scales, [8, 4, 4, 4, 4, 2]);
  });

  it('stops a collapsing scale at minScale with a typed error naming the tensor that overflowed', async () => {
    const { scaler, step } = setup({ initScale: 4, minScale: 2 });
    step(fine, [0, 0, Infinity, 0]);
    assert.equal(await scaler.getScale(), 2);
    await scaler.checkScale(); // 2 is allowed
    step(fine, [0, 0, Infinity, 0]);
    assert.equal(await scaler.getScale(), 2, 'the scale stays at the minimum');
    await assert.rejects(scaler.checkScale(), (e: Error) => e instanceof LossScaleCollapsedError
      && e.message.includes('minScale 2') && e.message.includes('h.1.attn.c_proj.bias'));
  });

  it('keeps the hysteresis count and the collapse in its state dict: a scaler resumed mid-hysteresis continues as the uninterrupted one', async () => {
    const straight = setup({ initScale: 8, hysteresis: 3 }), resumed = setup({ initScale: 8, hysteresis: 3 });
    const overflow = (s: typeof straight) => s.step([Infinity, 0, 0], fine4);
    overflow(straight);
    overflow(straight);
    const saved = JSON.parse(JSON.stringify(await straight.scaler.stateDict()));
    assert.deepEqual(saved, { scale: 8, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, growthTracker: 0, minScale: 0, hysteresis: 3, hysteresisLeft: 1, collapsed: false });
    resumed.scaler.loadStateDict(saved);
    const scales = async (s: typeof straight) => {
      const out: number[] = [];
      for (const finite of [false, true, false, false, false]) {
        if (finite) s.step(fine, fine4);
        else overflow(s);
        out.push(await s.scaler.getScale());
      }
      return out;
    };
    const expected = await scales(straight);
    assert.deepEqual(expected, [4, 4, 4, 4, 2], 'the third consecutive overflow backs off at once');
    assert.deepEqual(await scales(resumed), expected);
    assert.deepEqual(await resumed.scaler.stateDict(), await straight.scaler.stateDict());
  });

  it('a collapsed scale stays collapsed through its state dict, also into a scaler made without guards', async () => {
    const collapsed = setup({ initScale: 4, minScale: 4 });
    collapsed.step(fine, [0, 0, Infinity, 0]);
    const plain = setup();
    plain.scaler.loadStateDict(await collapsed.scaler.stateDict());
    assert.deepEqual([plain.scaler.minScale, plain.scaler.hysteresis], [4, 1]);
    await assert.rejects(plain.scaler.checkScale(), LossScaleCollapsedError);
    assert.throws(() => plain.scaler.loadStateDict({ ...(saved8()), hysteresis: 2, hysteresisLeft: 3, minScale: 0, collapsed: false }), /'hysteresisLeft' must be an integer from 1 to hysteresis 2, got 3/);
    assert.throws(() => plain.scaler.loadStateDict({ ...(saved8()), hysteresis: 2 }), /the guard state needs minScale, hysteresis, hysteresisLeft, collapsed; only hysteresis given/);
  });

  it('refuses bad guard options by name', () => {
    assert.throws(() => new GradScaler({ hysteresis: 0 }), /hysteresis must be an integer >= 1, got 0/);
    assert.throws(() => new GradScaler({ minScale: -1 }), /minScale must be a finite number >= 0, got -1/);
    assert.throws(() => new GradScaler({ minScale: 2 ** 20 }), /minScale 1048576 is above initScale 65536/);
  });
});

