// A run whose loss scale collapses stops at minScale: a typed error naming the
// gradient that overflowed, with a checkpoint of the step it reached; skipped
// steps are logged with the gradient named.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LossScaleCollapsedError, readMetrics, readCheckpoint, train, type SkippedSteps } from '../../src/index.js';
import { tempRunRoot, tinyConfig } from './tiny-run.js';

describe('minScale', () => {
  it('stops the run with LossScaleCollapsedError and a checkpoint when the scale would fall below it', async () => {
    const { root, dataFile } = await tempRunRoot('mixprec-minscale-');
    const runDir = join(root, 'run');
    const skips: SkippedSteps[] = [];
    // The initial 2^16 overflows float16 within the first steps of this run (two skipped steps without a minimum).
    const config = tinyConfig(dataFile, { precision: 'fp16', dropout: 0, maxSteps: 30, minScale: 2 ** 16, evalInterval: 100 });
    const err = await train(config, { runDir, onSkip: (r) => skips.push(r) }).then(() => null, (e: Error) => e);
    assert.ok(err instanceof LossScaleCollapsedError, `expected LossScaleCollapsedError, got ${err}`);
    assert.match(err.message, /would fall below minScale 65536/);
    assert.match(err.message, /the gradients of .+ overflowed most recently/);
    const records = await readMetrics(join(runDir, 'metrics.jsonl'));
    const skip = records.find((r) => r.type === 'train' && r.overflowIn);
    assert.ok(skip?.type === 'train' && skip.overflowIn!.length > 0, 'the skipped step is logged with the gradients named');
    assert.ok(err.message.includes(skip.overflowIn!.join(', ')));
    assert.deepEqual(skips[0], { step: skip.step, skipped: skip.skipped, tensors: skip.overflowIn });
    const last = records.filter((r) => r.type === 'train').at(-1)!;
    assert.ok(last.step < 30, 'the run stopped early');
    assert.ok((await stat(join(runDir, 'checkpoint'))).isDirectory());
    assert.equal((await readCheckpoint(join(runDir, 'checkpoint'))).state.step, last.step);
  });

  it('without a minimum the same run completes, skipping those steps', async () => {
    const { root, dataFile } = await tempRunRoot('mixprec-minscale-');
    const summary = await train(tinyConfig(dataFile, { precision: 'fp16', dropout: 0, maxSteps: 30, evalInterval: 100 }), { runDir: join(root, 'run') });
    assert.equal(summary.steps, 30);
    assert.ok(summary.skippedSteps > 0, 'the set-up does overflow');
  });
});
