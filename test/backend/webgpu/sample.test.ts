// Sampling on the device against the CPU reference: the same token ids for the
// same logits and uniforms, with temperature, top-k (ties included), top-p,
// argmax at temperature 0, and -1 for a row with a non-finite logit.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SampleSpec } from '../../../src/backend/backend.js';
import { both, bothEmpty, collect, cpu, normal, skip, uniform, webgpu } from './helpers.js';

describe('webgpu sample', { skip }, () => {
  test('picks the tokens the CPU reference picks', async () => {
    await collect(async (check) => {
      const rows = 16;
      for (const cols of [50, 1000]) {
        // Logits with ties (rounded to steps of 0.25) and a wide spread.
        const logits = normal(rows * cols, cols).map((x, i) => (i % 3 === 0 ? Math.round(x * 4) / 4 : 3 * x));
        const [gl, cl] = both('float32', logits);
        const [gu, cu] = both('float32', uniform(rows, cols + 1, 0, 1));
        const specs: Omit<SampleSpec, 'rows' | 'cols'>[] = [
          { temperature: 0, topK: 0, topP: 1 }, { temperature: 1, topK: 0, topP: 1 }, { temperature: 0.7, topK: 5, topP: 1 },
          { temperature: 1, topK: 1, topP: 1 }, { temperature: 1.3, topK: 0, topP: 0.9 }, { temperature: 0.8, topK: 40, topP: 0.5 },
        ];
        for (const s of specs) {
          await check(async () => {
            const spec = { ...s, rows, cols };
            const [go, co] = bothEmpty('int32', rows);
            webgpu().sample(gl, gu, go, spec);
            cpu.sample(cl, cu, co, spec);
            assert.deepEqual([...await webgpu().read(go)], [...await cpu.read(co)], JSON.stringify(spec));
          });
        }
      }
      await check(async () => {
        const [gl] = both('float32', [0, 1, NaN, 2, 5, 1, 0, -Infinity]);
        const [gu] = both('float32', [0.5, 0.5]);
        const [go] = bothEmpty('int32', 2);
        webgpu().sample(gl, gu, go, { rows: 2, cols: 4, temperature: 1, topK: 0, topP: 1 });
        assert.deepEqual([...await webgpu().read(go)], [-1, -1]);
      });
    });
  });
});
