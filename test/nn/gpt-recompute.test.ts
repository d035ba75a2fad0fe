// Activation recomputation per block (GPT.recompute, torch.utils.checkpoint):
// the same losses and weights as the plain run, bit for bit, under every
// precision policy and with dropout (whose masks the re-run must replay), in
// less memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mp from '../../src/index.js';
import { rm } from 'node:fs/promises';
import { checkpoint } from '../../src/autograd/checkpoint.js';
import { tempRunRoot, tinyConfig } from '../train/tiny-run.js';

const B = 8, T = 32, V = 50;

function batch(backend: mp.Backend, k: number): [mp.Tensor, mp.Tensor] {
  const ids = (shift: number) => Int32Array.from({ length: B * T }, (_, i) => (i * 7 + k * 13 + shift) % V);
  return [mp.tensor(ids(0), { shape: [B, T], backend }), mp.tensor(ids(1), { shape: [B, T], backend })];
}

/** Losses and final weights of `steps` AdamW steps under a policy, on a fresh CPU backend, and its peak bytes. */
async function run(precision: string, recompute: boolean, dropout: number, steps = 3) {
  const backend = new mp.CpuBackend();
  const policy = mp.parsePolicy(precision);
  const config = mp.gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 4, blockSize: T, vocabSize: V, dropout });
  const model = new mp.GPT(config, { backend, seed: 3, dtype: policy.params as mp.FloatDType, recompute });
  const optimizer = new mp.AdamW(model.parameters(), { lr: 1e-2 });
  const scaler = new mp.GradScaler({ backend, enabled: policy.lossScaling === 'dynamic', initScale: 2 ** 10 });
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    const { loss, gradNorm } = mp.ampStep(() => {
      const [x, y] = batch(backend, k);
      return model.forward(x, y).loss!;
    }, { optimizer, scaler, autocast: policy.compute === 'float32' ? null : (policy.compute as 'float16' | 'bfloat16'), maxGradNorm: 1 });
    losses.push(await loss.item());
    loss.dispose();
    gradNorm?.dispose();
  }
  const weights = await Promise.all(model.parameters().map(async (p) => Array.from(await p.toArray())));
  const peak = backend.memory().peakBytes;
  optimizer.dispose();
  scaler.dispose();
  model.dispose();
  return { losses, weights, peak, left: backend.memory().bytes };
}

for (const precision of ['fp32', 'fp16', 'fp16-master', 'bf16', 'bf16-master']) {
  test(`recompute gives the plain run's losses and weights bit for bit, with dropout, in less memory (${precision})`, async () => {
    const plain = await run(precision, false, 0.1);
    const again = await run(precision, true, 0.1);
    assert.deepEqual(again.losses, plain.losses);
    assert.ok(plain.losses[2]! < plain.losses[0]!, `the loss falls: ${plain.losses}`);
    again.weights.forEach((w, i) => assert.deepEqual(w, plain.weights[i], `parameter ${i}`));
    assert.ok(again.peak < plain.peak, `peak with recompute ${again.peak} < without ${plain.peak}`);
    assert.equal(again.left, 0, 'nothing is left behind');
  });
}

test('checkpoint records one node that saves only its input, and gives gradients to the parameters it reads when the input needs none', () => {
  const backend = new mp.CpuBackend();
  const w = mp.tensor([0.5, -2, 3], { shape: [3], backend }).requiresGrad_();
  const x = mp.tensor([1, 2, 3], { shape: [3], backend });
  let runs = 0;
  const f = (t: mp.Tensor) => { runs++; return mp.mul(mp.mul(t, w), w); };
  const y = checkpoint(f, x, { params: [w] });
  assert.equal(y.node?.op, 'checkpoint');
  assert.equal(runs, 1);
  mp.sum(y).backward();
  assert.equal(runs, 2, 'backward re-ran the function');
  assert.deepEqual(Array.from(w.grad!.toArraySync()), [1, -8, 18]); // d(x w^2)/dw = 2 x w
  const z = mp.noGrad(() => checkpoint(f, x, { params: [w] }));
  assert.equal(z.node, null, 'nothing is recorded without grad');
});

test('the trainer recomputes with --recompute (config recompute): the same losses as without it, and the option is checked', async () => {
  const { root, dataFile } = await tempRunRoot('mixprec-recompute-');
  try {
    const losses = async (recompute: boolean) => {
      const seen: number[] = [];
      const trainer = await mp.Trainer.create(tinyConfig(dataFile, { maxSteps: 3, evalInterval: 3, recompute }), { runDir: null });
      try {
        assert.equal(trainer.model.recompute, recompute);
        await trainer.run({ onLog: (r) => seen.push(r.loss) });
      } finally {
        trainer.dispose();
      }
      return seen;
    };
    assert.deepEqual(await losses(true), await losses(false));
    assert.throws(() => mp.resolveTrainConfig({ recompute: 'yes' as unknown as boolean }), /--recompute: must be true or false, got "yes"/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('recompute under autocast with backward inside the region gives the plain gradients (no cast without a graph is reused)', () => {
  const grads = (recompute: boolean) => {
    const backend = new mp.CpuBackend();
    const model = new mp.GPT(mp.gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 4, blockSize: T, vocabSize: V }), { backend, seed: 5, recompute });
    const [x, y] = batch(backend, 0);
    mp.autocast({ dtype: 'float16' }, () => model.forward(x, y).loss!.backward());
    return model.parameters().map((p) => Array.from(p.grad!.toArraySync()));
  };
  const plain = grads(false), again = grads(true);
  again.forEach((g, i) => assert.deepEqual(g, plain[i], `gradient ${i}`));
});
