// planMemory for the WebGPU backend: its buffer pool (size classes, reuse of
// freed blocks) counted over the trainer's step predicts the peak the pool
// measures within 10% (the kernels' own scratch buffers are not planned).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mp from '../../../src/index.js';
import { createWebGPUBackend } from '../../../src/backend/webgpu/backend.js';
import { skip } from './helpers.js';

const B = 4, T = 32;

for (const precision of ['fp32', 'fp16', 'bf16-master']) {
  test(`the planned WebGPU peak is within 10% of the measured one (${precision}, with recompute)`, { skip }, async () => {
    const backend = await createWebGPUBackend({ register: false });
    try {
      const config = mp.gptConfig('tiny', { blockSize: T, dropout: 0.1 });
      const policy = mp.parsePolicy(precision);
      const limits = { maxBufferSize: backend.rt.device.limits.maxBufferSize, maxStorageBufferBindingSize: backend.rt.maxBindingBytes };
      const plan = mp.planMemory(config, policy, { batchSize: B, recompute: true, backend: 'webgpu', limits });
      const setup = mp.createTrainingSetup(backend, config, policy, { recompute: true, seed: 1 });
      const ids = (shift: number) => mp.tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 5 + shift) % 256), { shape: [B, T], dtype: 'int32', backend });
      for (let step = 0; step < 2; step++) {
        const { loss, gradNorm } = mp.trainingStep(setup, () => [ids(step), ids(step + 1)]);
        assert.ok(Number.isFinite(await loss.item()));
        loss.dispose();
        gradNorm?.dispose();
      }
      const measured = backend.memory().peakBytes;
      mp.disposeTrainingSetup(setup);
      assert.ok(Math.abs(plan.peak - measured) <= 0.1 * measured, `planned ${plan.peak}, measured ${measured}`);
    } finally {
      await backend.sync();
      backend.destroy();
    }
  });
}
