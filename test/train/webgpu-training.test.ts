// Training a GPT on WebGPU: every precision policy follows the CPU backend's
// loss curve, an overflow skips the step on the device, and memory is flat.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as mp from '../../src/index.js';
import { tempRunRoot, tinyConfig } from './tiny-run.js';
import { skip, webgpu } from '../backend/webgpu/helpers.js';
import { CURVE_TOLERANCE, lossCurve, setupTraining } from '../helpers/training-curve.js';

describe('GPT training on WebGPU', { skip }, () => {
  for (const precision of Object.keys(CURVE_TOLERANCE)) {
    test(`${precision}: 50 steps follow the CPU backend's loss curve within ${CURVE_TOLERANCE[precision]}`, async () => {
      const cpu = await lossCurve(new mp.CpuBackend(), precision, 50);
      const gpu = await lossCurve(webgpu(), precision, 50);
      assert.ok(cpu[49]! < cpu[0]! - 1, `the model learns (${cpu[0]} -> ${cpu[49]})`);
      cpu.forEach((c, k) => assert.ok(Math.abs(gpu[k]! - c) <= CURVE_TOLERANCE[precision]!, `step ${k}: webgpu ${gpu[k]} vs cpu ${c}`));
    });
  }

  test('a forced overflow skips the step on the device: parameters and optimizer state unchanged, scale halved', async () => {
    const run = setupTraining(webgpu(), 'fp16');
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
    const run = setupTraining(backend, 'fp16');
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

  test('twenty train() calls in one process destroy each device they made; memory of the CPU default stays flat', async () => {
    const { root, dataFile } = await tempRunRoot('mixprec-webgpu-train-');
    try {
      const config = tinyConfig(dataFile, { backend: 'webgpu', maxSteps: 1, evalInterval: 1, evalSteps: 1, logInterval: 1 });
      const made = new Set<mp.WebGPUBackend>();
      let first: mp.MemoryReport | null = null;
      for (let i = 0; i < 20; i++) {
        const summary = await mp.train(config, { runDir: null, cacheDir: path.join(root, 'cache') });
        assert.ok(summary.backend.startsWith('webgpu'), summary.backend);
        made.add(mp.getBackend('webgpu') as mp.WebGPUBackend);
        // The default is the CPU backend again, not the destroyed device.
        assert.equal(mp.getBackend().name, 'cpu');
        const m = mp.memory();
        first ??= m;
        assert.deepEqual({ ...m, peakBytes: 0 }, { ...first, peakBytes: 0 }, `after call ${i + 1}`);
      }
      assert.equal(made.size, 20);
      for (const b of made) assert.throws(() => b.rt.check(), /the backend was destroyed/);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
