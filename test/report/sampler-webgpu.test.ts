// What sampling statistics costs the WebGPU runtime from step to step: the
// statistics kernels are compiled once, their bind groups come from the cache
// once the sampled step has repeated, and unsampled steps dispatch exactly
// what a step without statistics does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GPT, gptConfig, autocast, tensor, tidy } from '../../src/index.js';
import { NumericsObserver } from '../../src/report/observer.js';
import { skip, webgpu } from '../backend/webgpu/helpers.js';

describe('statistics sampling on WebGPU', () => {
  it('compiles once, reuses its bind groups, and leaves unsampled steps as they are', { skip }, async () => {
    const backend = webgpu();
    const rt = backend.rt;
    const model = new GPT(gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 2, blockSize: 16, dropout: 0 }), { backend, seed: 3 });
    const ids = tensor(Array.from({ length: 32 }, (_, i) => (i * 37) % 256), { shape: [2, 16], dtype: 'int32', backend });
    const targets = tensor(Array.from({ length: 32 }, (_, i) => (i * 11) % 256), { shape: [2, 16], dtype: 'int32', backend });
    const observer = new NumericsObserver(model, { statsInterval: 2 });
    /** One step's new pipelines, new bind groups and dispatches (with the observer, or without any). */
    const step = async (n: number, observed: boolean) => {
      const before = { ...rt.stats };
      if (observed) observer.beforeStep(n);
      tidy(() => {
        model.zeroGrad();
        autocast({ dtype: 'float16' }, () => model.forward(ids, targets).loss!).backward();
      });
      if (observed) observer.afterBackward(n, 1);
      const records = observed ? await observer.afterStep(n) : [];
      await backend.sync();
      return { sampled: records.length > 0, pipelines: rt.stats.pipelines - before.pipelines, bindGroups: rt.stats.bindGroups - before.bindGroups, dispatches: rt.stats.dispatches - before.dispatches };
    };
    try {
      await step(0, false);
      const plain = await step(0, false);
      const steps = [];
      for (let n = 1; n <= 9; n++) steps.push(await step(n, true));
      assert.deepEqual(steps.map((s) => s.sampled), [true, true, false, true, false, true, false, true, false], 'step 1 and every 2nd step are sampled');
      assert.ok(steps[0]!.pipelines > 0, 'the first sample compiles the statistics kernels');
      assert.deepEqual(steps.slice(1).map((s) => s.pipelines), Array(8).fill(0), 'and no step after it compiles anything');
      assert.deepEqual(steps.slice(4).map((s) => s.bindGroups), Array(5).fill(0), 'from the third sampled step on, every bind group comes from the cache');
      for (const s of steps.filter((x) => !x.sampled)) assert.equal(s.dispatches, plain.dispatches, 'an unsampled step dispatches what a step without statistics does');
      assert.ok(steps[1]!.dispatches > plain.dispatches, 'a sampled step dispatches the statistics kernels');
    } finally {
      observer.dispose();
    }
  });
});
