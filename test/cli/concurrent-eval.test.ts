// `mixprec eval` on a run that is still training: the reader must never disturb
// the writer. A real training process saves a checkpoint at every step while
// eval runs against its run directory again and again.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { isCheckpointDir, loadCheckpointModel, readCheckpoint } from '../../src/io/checkpoint.js';
import { tempRunRoot, tinyArgs } from '../train/tiny-run.js';

const TSX = import.meta.resolve('tsx');
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const STEPS = 30;

let root: string;
let dataFile: string;
before(async () => {
  ({ root, dataFile } = await tempRunRoot('mixprec-concurrent-eval-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

test('eval run again and again against a run that saves every step: the training ends normally, every eval and checkpoint is intact', async () => {
  const run = path.join(root, 'run');
  const args = tinyArgs(dataFile, { maxSteps: STEPS, saveInterval: 1, evalInterval: 1, evalSteps: 1, logInterval: 1 });
  const child = spawn(process.execPath, ['--import', TSX, MAIN, 'train', ...args, '--out', run], { cwd: root });
  let trainErr = '';
  child.stderr.on('data', (d) => (trainErr += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.on('exit', (code) => { exitCode = code; resolve(); }));

  const checkpoint = path.join(run, 'checkpoint');
  while (exitCode === undefined && !(await isCheckpointDir(checkpoint))) await new Promise((r) => setTimeout(r, 20));

  const steps: number[] = [];
  while (exitCode === undefined) {
    let stdout = '', stderr = '';
    const status = await main(['eval', '--checkpoint', run, '--data', dataFile, '--backend', 'cpu', '--eval-steps', '1', '--batch-size', '2', '--json'],
      { write: (s: string) => (stdout += s) }, { write: (s: string) => (stderr += s) });
    assert.equal(status, 0, `eval #${steps.length + 1} failed: ${stderr}`);
    const result = JSON.parse(stdout) as { step: number; valLoss: number };
    assert.ok(Number.isFinite(result.valLoss));
    steps.push(result.step);
  }
  await exited;

  assert.equal(exitCode, 0, `training failed:\n${trainErr}`);
  assert.ok(steps.length >= 3, `only ${steps.length} evals overlapped the training`);
  assert.ok(steps.every((s, i) => s >= 1 && s <= STEPS && (i === 0 || s >= steps[i - 1]!)), `steps read: ${steps.join(', ')}`);
  const final = await readCheckpoint(checkpoint);
  assert.equal(final.state.step, STEPS);
  (await loadCheckpointModel(final)).dispose();
  assert.deepEqual((await fs.readdir(run)).filter((n) => n.startsWith('checkpoint')), ['checkpoint'], 'no staged save left behind');
});
