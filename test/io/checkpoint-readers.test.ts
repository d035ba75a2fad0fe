// Reading a checkpoint never changes the disk: a training run may be saving into
// the same directory (`mixprec eval` on a live run), and only the writer may
// finish or undo an interrupted save.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { GradScaler } from '../../src/amp/grad-scaler.js';
import { GPT, gptConfig } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import type { BaseOptions, Optimizer } from '../../src/optim/optimizer.js';
import { CheckpointReplacedError, loadCheckpointModel, readCheckpoint, saveCheckpoint } from '../../src/io/checkpoint.js';
import { inspectModelDir, openModelDir } from '../../src/train/model-dir.js';

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-ckpt-readers-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** Saves a tiny model's checkpoint at `step` into `dir`. */
async function save(dir: string, step: number): Promise<void> {
  const model = new GPT(gptConfig('tiny', { blockSize: 8, nLayer: 1 }), { seed: step });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 }) as unknown as Optimizer<BaseOptions>;
  const state = { step, config: {}, rng: { model: model.generator.state() }, data: {}, progress: {} };
  await saveCheckpoint(dir, { model, optimizer, scaler: new GradScaler({ enabled: false }), state });
  model.dispose();
}

/** Names, kinds, sizes and modification times of everything under `dir`, recursively. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of (await fs.readdir(d)).sort()) {
      const p = path.join(d, name);
      const s = await fs.stat(p);
      out.push(`${path.relative(dir, p)} ${s.isDirectory() ? 'dir' : s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

// Leftovers of an interrupted save: which staged siblings exist, whether the
// checkpoint itself does, and the step recovery would pick.
const STATES: { name: string; dir: boolean; ready?: number; old?: number; partial?: boolean; expected: number }[] = [
  { name: 'a complete checkpoint with a partial save beside it', dir: true, partial: true, expected: 1 },
  { name: 'a complete checkpoint with ready and old siblings', dir: true, ready: 2, old: 3, partial: true, expected: 1 },
  { name: 'only a ready sibling (crash after setting the old one aside, which was deleted)', dir: false, ready: 2, partial: true, expected: 2 },
  { name: 'only an old sibling (crash before the new one was ready)', dir: false, old: 1, partial: true, expected: 1 },
  { name: 'ready and old siblings, no checkpoint (crash between the two renames)', dir: false, ready: 2, old: 1, expected: 2 },
];

for (const s of STATES) {
  test(`reading leaves the run directory exactly as it was: ${s.name}`, async () => {
    const run = await fs.mkdtemp(path.join(root, 'run-'));
    const dir = path.join(run, 'checkpoint');
    if (s.dir) await save(dir, 1);
    if (s.ready !== undefined) await save(`${dir}.~ready-0000000000005-1-aaaa`, s.ready);
    if (s.old !== undefined) await save(`${dir}.~old-0000000000005-1-aaaa`, s.old);
    if (s.partial) await fs.mkdir(`${dir}.~partial-0000000000009-1-aaaa`);
    const before = await listing(run);

    const ckpt = await readCheckpoint(dir);
    assert.equal(ckpt.state.step, s.expected);
    (await loadCheckpointModel(ckpt)).dispose();
    const opened = await openModelDir(run);
    assert.equal(opened.step, s.expected);
    opened.model.dispose();

    assert.deepEqual(await listing(run), before);
  });
}

test('a checkpoint replaced by a save after it was read is not loaded as if it were the one read: openModelDir reads the new one', async () => {
  const run = await fs.mkdtemp(path.join(root, 'run-'));
  const dir = path.join(run, 'checkpoint');
  await save(dir, 1);
  const info = await inspectModelDir(run);
  assert.equal(info.step, 1);
  await save(dir, 2);
  await assert.rejects(loadCheckpointModel(info.checkpoint!), CheckpointReplacedError);
  const opened = await openModelDir(info);
  assert.equal(opened.step, 2);
  opened.model.dispose();
});
