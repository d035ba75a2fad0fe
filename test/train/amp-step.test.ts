// ampStep is PyTorch's AMP recipe in one call: it updates the model exactly as
// the recipe written out does (with accumulation and clipping), reads nothing
// back from the device, and releases every intermediate.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mp from '../../src/index.js';
import type { View } from '../../src/backend/backend.js';

const config = mp.gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 4, blockSize: 16, vocabSize: 50 });
const B = 2, T = 16;

function batch(backend: mp.Backend, k: number, micro: number): [mp.Tensor, mp.Tensor] {
  const ids = (shift: number) => Int32Array.from({ length: B * T }, (_, i) => (i * 7 + k * 13 + micro * 5 + shift) % 50);
  return [mp.tensor(ids(0), { shape: [B, T], backend }), mp.tensor(ids(1), { shape: [B, T], backend })];
}

function setup(backend: mp.Backend) {
  const model = new mp.GPT(config, { backend, seed: 1 });
  model.to('float16');
  const optimizer = new mp.AdamW(model.parameters(), { lr: 1e-2 });
  const scaler = new mp.GradScaler({ backend, initScale: 2 ** 12 });
  return { model, optimizer, scaler };
}

/** A CPU backend that counts host reads. */
class CountingCpu extends mp.CpuBackend {
  reads = 0;
  override read(v: View) {
    this.reads++;
    return super.read(v);
  }
  override readSync(v: View) {
    this.reads++;
    return super.readSync(v);
  }
}

test('ampStep updates the model exactly as the recipe written out (float16 parameters, master weights, accumulation 2, clipping)', async () => {
  const backend = new mp.CpuBackend();
  const a = setup(backend), b = setup(backend);
  const lossesA: number[] = [], lossesB: number[] = [], normsA: number[] = [], normsB: number[] = [];
  for (let k = 0; k < 4; k++) {
    const r = ampStep(a, backend, k);
    lossesA.push(await r.loss.item());
    normsA.push(await r.gradNorm!.item());
    r.loss.dispose();
    r.gradNorm!.dispose();

    const [loss, norm] = mp.tidy(() => {
      let total: mp.Tensor | null = null;
      for (let micro = 0; micro < 2; micro++) {
        const [x, y] = batch(backend, k, micro);
        const l = mp.div(mp.autocast({ dtype: 'bfloat16' }, () => b.model.forward(x, y).loss!), 2);
        b.scaler.scale(l).backward();
        total = mp.noGrad(() => (total ? mp.add(total, l.detach()) : l.detach()));
      }
      b.scaler.unscale(b.optimizer);
      const n = mp.clipGradNorm(b.optimizer, 0.5);
      b.scaler.step(b.optimizer);
      b.scaler.update();
      b.optimizer.zeroGrad();
      return [total!, n];
    });
    lossesB.push(await loss.item());
    normsB.push(await norm.item());
    loss.dispose();
    norm.dispose();
  }
  assert.deepEqual(lossesA, lossesB);
  assert.deepEqual(normsA, normsB);
  assert.ok(normsA.some((n) => n > 0.5), 'clipping was active');
  const pa = a.model.parameters(), pb = b.model.parameters();
  for (let i = 0; i < pa.length; i++) assert.deepEqual(await pa[i]!.toArray(), await pb[i]!.toArray());
  assert.equal(await a.scaler.getScale(), await b.scaler.getScale());
});

function ampStep(run: ReturnType<typeof setup>, backend: mp.Backend, k: number) {
  return mp.ampStep((micro) => {
    const [x, y] = batch(backend, k, micro);
    return run.model.forward(x, y).loss!;
  }, { optimizer: run.optimizer, scaler: run.scaler, autocast: 'bfloat16', maxGradNorm: 0.5, accumulationSteps: 2 });
}

test('ampStep reads nothing back and releases every intermediate: only the loss (and norm) outlive it', () => {
  const backend = new CountingCpu();
  const run = setup(backend);
  const step = (k: number) => {
    const r = mp.ampStep(() => {
      const [x, y] = batch(backend, k, 0);
      return run.model.forward(x, y).loss!;
    }, { optimizer: run.optimizer, scaler: run.scaler });
    assert.equal(r.gradNorm, null);
    assert.equal(r.loss.dtype, 'float32');
    assert.deepEqual(r.loss.shape, []);
    return r.loss;
  };
  // The first step makes the optimizer's state and the scaler's overflow flags, held from then on
  // (so through the second step's backward): from the second step on, every step is the same.
  step(0).dispose();
  step(1).dispose();
  const before = mp.memory(backend);
  const loss = step(2);
  assert.equal(mp.memory(backend).tensors, before.tensors + 1);
  loss.dispose();
  assert.deepEqual(mp.memory(backend), before);
  assert.equal(backend.reads, 0);
});

test('ampStep: bad accumulationSteps and maxGradNorm are named', () => {
  const backend = new mp.CpuBackend();
  const run = setup(backend);
  const opts = { optimizer: run.optimizer, scaler: run.scaler };
  const forward = () => { throw new Error('not reached'); };
  assert.throws(() => mp.ampStep(forward, { ...opts, accumulationSteps: 0 }), (e: Error) => e instanceof mp.OptimizerError && /accumulationSteps must be a positive integer, got 0/.test(e.message));
  assert.throws(() => mp.ampStep(forward, { ...opts, maxGradNorm: -1 }), (e: Error) => e instanceof mp.OptimizerError && /maxGradNorm must be a number >= 0, got -1/.test(e.message));
});
