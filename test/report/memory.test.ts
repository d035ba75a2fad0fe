// The memory breakdown adds up: computed from the tensors = measured by the backend, byte for byte.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CpuBackend, GPT, gptConfig, tensor, tidy, autocast, AdamW, SGD } from '../../src/index.js';
import { computeMemory, measureMemory } from '../../src/report/memory.js';

const config = gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 2, blockSize: 16, dropout: 0 });

for (const [label, dtype, optimizer] of [
  ['float32 parameters, AdamW', 'float32', 'adamw'],
  ['float16 parameters with float32 master weights, AdamW', 'float16', 'adamw'],
  ['bfloat16 parameters with float32 master weights, SGD with momentum', 'bfloat16', 'sgd'],
] as const) {
  describe(`memory breakdown: ${label}`, () => {
    it('computes parameters, gradients and optimizer states equal to the bytes the backend measured', () => {
      const backend = new CpuBackend();
      const ids = tensor(Array.from({ length: 32 }, (_, i) => i % 256), { shape: [2, 16], dtype: 'int32', backend });
      const { measured, model, optimizer: opt } = measureMemory(backend, {
        createModel: () => new GPT(config, { backend, dtype, seed: 1 }),
        createOptimizer: (m) => (optimizer === 'adamw' ? new AdamW(m.parameters(), { lr: 1e-3 }) : new SGD(m.parameters(), { lr: 1e-3, momentum: 0.9 })),
        forwardBackward: (m) => tidy(() => {
          const loss = dtype === 'float32' ? m.forward(ids, ids).loss! : autocast({ dtype }, () => m.forward(ids, ids).loss!);
          loss.backward();
        }),
      });
      const computed = computeMemory(model, opt);
      const n = model.parameters().reduce((a, p) => a + p.size, 0);
      const width = dtype === 'float32' ? 4 : 2;
      assert.equal(computed.parameters, n * width);
      assert.equal(measured.parameters, computed.parameters);
      assert.equal(measured.gradients, computed.gradients);
      assert.equal(measured.optimizerStates, computed.optimizerStates);
      assert.equal(computed.masterWeights, dtype === 'float32' ? 0 : n * 4);
      assert.equal(computed.gradients, n * width + (dtype === 'float32' ? 0 : n * 4));
      const moments = optimizer === 'adamw' ? 2 : 1;
      // Moments in float32, one step counter per parameter group, and SGD's per-parameter momentum-started flag.
      const flags = optimizer === 'sgd' ? 4 * model.parameters().length : 0;
      assert.equal(computed.optimizerStates, n * 4 * moments + 4 * opt.paramGroups.length + flags);
      assert.ok(measured.activations !== null && measured.activations > 0);
      opt.dispose();
      model.dispose();
    });
  });
}
