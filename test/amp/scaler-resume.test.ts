// A training run stopped while its GradScaler is part-way through a hysteresis
// count resumes from the checkpoint as if it had never stopped.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { readMetrics, train, type TrainRecord } from '../../src/index.js';
import { tempRunRoot, tinyConfig } from '../train/tiny-run.js';

it('a run resumed mid-hysteresis logs the same scales and losses as the uninterrupted run', async () => {
  const { root, dataFile } = await tempRunRoot('mixprec-hysteresis-');
  // The scale 2^16 overflows float16 from step 9 of this run on; with hysteresis 2 it holds at step 9 and backs off at step 10.
  const config = tinyConfig(dataFile, { precision: 'fp16', dropout: 0, maxSteps: 30, hysteresis: 2, evalInterval: 100 });
  const straight = join(root, 'straight'), stopped = join(root, 'stopped');
  await train(config, { runDir: straight });
  const controller = new AbortController();
  await train(config, { runDir: stopped, signal: controller.signal, onStep: (p) => { if (p.step === 9) controller.abort(); } });
  const saved = JSON.parse(await readFile(join(stopped, 'checkpoint', 'scaler.json'), 'utf8'));
  assert.ok(saved.hysteresisLeft < 2, `the run stopped mid-hysteresis (${saved.hysteresisLeft} of 2 left)`);
  await train({}, { resume: stopped });
  const trainRecords = async (dir: string) => (await readMetrics(join(dir, 'metrics.jsonl')))
    .filter((r): r is TrainRecord => r.type === 'train').map((r) => [r.step, r.scale, r.skipped, r.loss]);
  const expected = await trainRecords(straight);
  assert.ok(expected.some(([, scale]) => scale! < 2 ** 16), 'the uninterrupted run backs off after the stop');
  assert.deepEqual(await trainRecords(stopped), expected);
});
