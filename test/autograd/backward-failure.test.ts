// A backward pass that throws part-way releases everything it made: no tensor
// is left behind, and once the graph is dropped memory() is exactly where it
// was before the forward pass; leaves that had no gradient get none.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { record, type Tensor } from '../../src/tensor/tensor.js';

/** x passed through, with a backward formula that fails in the given way. */
function failingIdentity(x: Tensor, how: 'throws' | 'returns a wrong shape'): Tensor {
  const y = x.clone().detach();
  return record(y, 'failing', [x], [x], (gy) => {
    if (how === 'throws') throw new Error('injected failure');
    return [mp.sum(gy)]; // a scalar where the input had many elements: the engine's shape check fails
  });
}

function snapshot(): { tensors: number; buffers: number; bytes: number } {
  const { tensors, buffers, bytes } = mp.memory();
  return { tensors, buffers, bytes };
}

describe('backward that throws part-way', () => {
  for (const how of ['throws', 'returns a wrong shape'] as const) {
    for (const hadGrad of [false, true]) {
      test(`a formula that ${how} mid-graph, leaves ${hadGrad ? 'with' : 'without'} gradients: memory() is where it was`, () => {
        mp.manualSeed(1);
        const x = mp.randn([3, 4], { requiresGrad: true });
        const w = mp.randn([4, 5], { requiresGrad: true });
        const u = mp.randn([3, 5], { requiresGrad: true });
        if (hadGrad) for (const p of [x, w, u]) p.grad = mp.zerosLike(p);
        const start = snapshot();
        // loss = sum(failing(tanh(x)) @ w * u): mul's backward gives u its gradient and matmul's gives w
        // theirs before the failing node runs; x's gradient is never reached.
        const loss = mp.tidy(() => mp.sum(mp.mul(mp.matmul(failingIdentity(mp.tanh(x), how), w), u)));
        const before = snapshot();
        assert.throws(() => mp.tidy(() => loss.backward()), how === 'throws' ? /injected failure/ : mp.ShapeError);
        const after = snapshot();
        assert.equal(after.tensors, before.tensors, 'no tensor is left behind');
        // The nodes that ran released what they had saved, so buffers can only have gone down.
        assert.ok(after.bytes <= before.bytes && after.buffers <= before.buffers, `bytes ${before.bytes} -> ${after.bytes}`);
        if (!hadGrad) for (const p of [x, w, u]) assert.equal(p.grad, null, 'no gradient is left on a leaf that had none');
        loss.dispose();
        assert.deepEqual(snapshot(), start, 'with the graph dropped, memory is where it was before the forward pass');
        for (const p of [x, w, u]) { p.grad?.dispose(); p.dispose(); }
      });
    }
  }
});
