// Training a GPT on WebGPU: every precision policy follows the CPU backend's
// loss curve, an overflow skips the step on the device, and memory is flat.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import type { Backend } from '../../src/backend/backend.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { skip, webgpu } from '../backend/webgpu/helpers.js';

const config = mp.gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 4, blockSize: 32 });
const B = 4, T = 32;
const stream = Int32Array.from({ length: 4096 }, (_, i) => (i * 37 + (i >> 3) * 11) % 97);

function batch(step: number, backend: Backend): [Tensor, Tensor] {
  const start = (step * 97) % (stream.length - 8 * B - T - 1);
  const rows = (shift: number) => Int32Array.from({ length: B * T }, (_, i) => stream[start + Math.floor(i / T) * 8 + (i % T) + shift]!);
  return [mp.tensor(rows(0), { shape: [B, T], backend }), mp.tensor(rows(1), { shape: [B, T], backend })];
}

function setup(backend: Backend, precision: string) {
  const policy = mp.parsePolicy(precision);
  const model = new mp.GPT(config, { backend, seed: 3 });
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  const opt = new mp.AdamW(model.parameters(), { lr: 3e-3, betas: [0.9, 0.95] });
  const scaler = new mp.GradScaler({ enabled: policy.lossScaling === 'dynamic', backend });
  const step = (k: number): Tensor => mp.tidy(() => {
    const [x, y] = batch(k, backend);
    const loss = mp.withPolicy(policy, () => model.forward(x, y).loss!);
    scaler.scale(loss).backward();
    scaler.unscale(opt);
    mp.clipGradNorm(opt, 1);
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    return loss;
  });
  const dispose = () => { opt.dispose(); scaler.dispose(); model.dispose(); };
  return { model, opt, scaler, step, dispose };
}

async function curve(backend: Backend, precision: string, steps: number): Promise<number[]> {
  const run = setup(backend, precision);
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    const loss = run.step(k);
    losses.push(await loss.item());
    loss.dispose();
  }
  run.dispose();
  return losses;
}

// Tolerances, in nats, at every step of 50: float32 differs only in summation order; 16-bit compute
// may round an intermediate the other way, and the difference is carried by later steps.
const TOLERANCE: Record<string, number> = { fp32: 1e-4, fp16: 1e-2, 'fp16-master': 1e-2, bf16: 2e-2, 'bf16-master': 2e-2 };

describe('GPT training on WebGPU', { skip }, () => {
  for (const precision of Object.keys(TOLERANCE)) {
    test(`${precision}: 50 steps follow the CPU backend's loss curve within ${TOLERANCE[precision]}`, async () => {
      const cpu = await curve(new mp.CpuBackend(), precision, 50);
      const gpu = await curve(webgpu(), precision, 50);
      assert.ok(cpu[49]! < cpu[0]! - 1, `the model learns (${cpu[0]} -> ${cpu[49]})`);
      cpu.forEach((c, k) => assert.ok(Math.abs(gpu[k]! - c) <= TOLERANCE[precision]!, `step ${k}: webgpu ${gpu[k]} vs cpu ${c}`));
    });
  }

  test('a forced overflow skips the step on the device: parameters and optimizer state unchanged, scale halved', async () => {
    const run = setup(webgpu(), 'fp16');
    for (let k = 0; k < 3; k++) run.step(k).dispose();
    const tensors = [...run.model.parameters(), ...run.opt.namedState().map(([, t]) => t)];
    const before = await Promise.all(tensors.map(async (t) => [...await t.toArray()]));
    const stepsBefore = (await run.opt.stateDict()).steps[0]!;
    run.scaler.update(2 ** 40); // the scaled loss's gradients overflow float16
    run.step(3).dispose();
    const after = await Promise.all(tensors.map(async (t) => [...await t.toArray()]));
    assert.deepEqual(after, before);
    assert.equal(await run.scaler.getScale(), 2 ** 39);
    assert.equal((await run.opt.stateDict()).steps[0], stepsBefore);
    run.dispose();
  });

  test('memory after step 10 equals memory after step 500', async () => {
    const backend = webgpu();
    const run = setup(backend, 'fp16');
    let at10: mp.MemoryReport | null = null;
    for (let k = 1; k <= 500; k++) {
      run.step(k).dispose();
      if (k === 10) { await backend.sync(); at10 = mp.memory(backend); }
    }
    await backend.sync();
    const at500 = mp.memory(backend);
    assert.deepEqual({ ...at500, peakBytes: 0 }, { ...at10!, peakBytes: 0 });
    assert.equal(at500.peakBytes, at10!.peakBytes, 'the peak did not grow after step 10');
    run.dispose();
  });
});
