// A reader that looks at a checkpoint while a save swaps in the next one: at
// whichever of its own file-system calls the save takes its next step, it finds
// a complete checkpoint with its step, never a run directory or a plain GPT-2
// directory instead.
//
// The save is a real saveCheckpoint, held before each rename or deletion next
// to the checkpoint directory (the steps that move the complete checkpoint);
// the reader's calls into node:fs/promises are counted, and just before call
// number `call` the save is let through exactly one of those steps. Every pair
// (step, call) is tried.

import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { promises as fs } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { GradScaler } from '../../src/amp/grad-scaler.js';
import { isCheckpointDir, saveCheckpoint, type CheckpointContents } from '../../src/io/checkpoint.js';
import { GPT, gptConfig } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import type { BaseOptions, Optimizer } from '../../src/optim/optimizer.js';
import { inspectModelDir, openModelDir } from '../../src/train/model-dir.js';

const fsPromises = createRequire(import.meta.url)('node:fs/promises') as Record<string, (...args: unknown[]) => Promise<unknown>>;
const READER_CALLS = ['readdir', 'lstat', 'stat', 'readFile', 'open'];
const SAVE_STEPS = ['rename', 'rm'];

/** Marks the calls made by the save, so that they are told from the reader's. */
const inSave = new AsyncLocalStorage<true>();

/** Holds the save before each step that changes the names next to the checkpoint; lets it through one at a time. */
class SaveSteps {
  readonly taken: string[] = [];
  private permits = 0;
  private waiting: (() => void) | null = null;
  private arrived: (() => void) | null = null;
  private finished: (() => void) | null = null;

  /** Called by the save before a step; returns once the step is allowed. */
  async enter(step: string): Promise<void> {
    if (this.permits === 0) {
      const allowed = new Promise<void>((resolve) => (this.waiting = resolve));
      this.arrived?.();
      this.arrived = null;
      await allowed;
    }
    this.permits--;
    this.taken.push(step);
  }

  /** Called by the save after a step. */
  leave(): void {
    this.finished?.();
  }

  /** Resolves once the save is held before a step (now, if it is). */
  held(): Promise<void> {
    return this.waiting ? Promise.resolve() : new Promise<void>((resolve) => (this.arrived = resolve));
  }

  /** Lets `n` steps through without waiting for them. */
  allow(n: number): void {
    this.permits += n;
    const wake = this.waiting;
    this.waiting = null;
    wake?.();
  }

  /** Lets the held step through and waits until it has been done. */
  async takeOne(): Promise<void> {
    const done = new Promise<void>((resolve) => (this.finished = resolve));
    this.allow(1);
    await done;
    this.finished = null;
  }
}

let root: string;
let template: string;
let next: CheckpointContents;
/** The save under way and the reader's hook, while a case runs. */
let heldSave: SaveSteps | null = null;
let runDir = '';
let onReaderCall: (() => Promise<void>) | null = null;
const originals = new Map<string, (...args: unknown[]) => Promise<unknown>>();

function contents(step: number): CheckpointContents {
  const model = new GPT(gptConfig('tiny', { blockSize: 8, nLayer: 1 }), { seed: step });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 }) as unknown as Optimizer<BaseOptions>;
  const state = { step, config: {}, rng: { model: model.generator.state() }, data: {}, progress: {} };
  return { model, optimizer, scaler: new GradScaler({ enabled: false }), state };
}

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-save-race-'));
  template = path.join(root, 'template');
  const first = contents(1);
  await saveCheckpoint(template, first);
  first.model.dispose();
  next = contents(2);
  for (const name of [...READER_CALLS, ...SAVE_STEPS]) {
    const original = fsPromises[name]!;
    originals.set(name, original);
    fsPromises[name] = async function (this: unknown, ...args: unknown[]) {
      const target = String(args[0]);
      if (inSave.getStore()) {
        const step = SAVE_STEPS.includes(name) && heldSave && path.dirname(target) === runDir;
        if (!step) return original.apply(this, args);
        await heldSave!.enter(`${name} ${path.basename(target)}`);
        try {
          return await original.apply(this, args);
        } finally {
          heldSave!.leave();
        }
      }
      if (READER_CALLS.includes(name) && runDir && target.startsWith(runDir)) await onReaderCall?.();
      return original.apply(this, args);
    };
  }
  syncBuiltinESMExports();
});

after(async () => {
  for (const [name, original] of originals) fsPromises[name] = original;
  syncBuiltinESMExports();
  next.model.dispose();
  await fs.rm(root, { recursive: true, force: true });
});

/**
 * Runs `read` on a run directory holding the checkpoint of step 1 while a save of
 * step 2 is held before its step number `step`, which is let through just before
 * the reader's file-system call number `call`. Returns what `read` returned and
 * whether the reader made that many calls.
 */
async function readDuringSave<T>(step: number, call: number, read: (run: string, dir: string) => Promise<T>): Promise<{ value: T; reached: boolean }> {
  const run = await fs.mkdtemp(path.join(root, 'run-'));
  const dir = path.join(run, 'checkpoint');
  await fs.cp(template, dir, { recursive: true });
  const save = new SaveSteps();
  heldSave = save;
  runDir = run;
  const saving = inSave.run(true, () => saveCheckpoint(dir, next));
  try {
    save.allow(step);
    await save.held();
    let calls = 0;
    let reached = false;
    onReaderCall = async () => {
      if (calls++ !== call) return;
      reached = true;
      await save.takeOne();
    };
    return { value: await read(run, dir), reached };
  } finally {
    onReaderCall = null;
    save.allow(Infinity);
    await saving;
    heldSave = null;
    runDir = '';
  }
}

/** The steps a save takes next to the checkpoint, in order. */
async function saveSteps(): Promise<string[]> {
  const run = await fs.mkdtemp(path.join(root, 'run-'));
  await fs.cp(template, path.join(run, 'checkpoint'), { recursive: true });
  const save = new SaveSteps();
  [heldSave, runDir] = [save, run];
  save.allow(Infinity);
  await inSave.run(true, () => saveCheckpoint(path.join(run, 'checkpoint'), next));
  [heldSave, runDir] = [null, ''];
  return save.taken.map((s) => s.replace(/-\d{13}-\d+-[0-9a-f]{8}$/, ''));
}

const READERS: [string, (run: string, dir: string) => Promise<unknown>, (value: unknown) => void][] = [
  ['isCheckpointDir of the checkpoint directory', (_run, dir) => isCheckpointDir(dir), (v) => assert.equal(v, true, 'not taken for a checkpoint')],
  ['inspectModelDir of the run directory', (run) => inspectModelDir(run), (v) => assertCheckpointInfo(v)],
  ['inspectModelDir of the checkpoint directory', (_run, dir) => inspectModelDir(dir), (v) => assertCheckpointInfo(v)],
  ["openModelDir of the run directory (what 'mixprec eval' does)", openedStep, (v) => assert.ok(v === 1 || v === 2, `step ${v}`)],
];

/** The step of the model openModelDir loads from `run`. */
async function openedStep(run: string): Promise<number | null> {
  const opened = await openModelDir(run);
  opened.model.dispose();
  return opened.step;
}

function assertCheckpointInfo(v: unknown): void {
  const info = v as Awaited<ReturnType<typeof inspectModelDir>>;
  assert.ok(info.checkpoint, `read as a plain GPT-2 directory: ${info.dir}`);
  assert.ok(info.step === 1 || info.step === 2, `step ${info.step}`);
  assert.equal(info.step, info.checkpoint.state.step);
}

for (const [name, read, check] of READERS) {
  test(`${name} finds a complete checkpoint at every instant of a save`, async () => {
    const taken = await saveSteps();
    assert.deepEqual(taken, ['rename checkpoint.~partial', 'rename checkpoint', 'rename checkpoint.~ready', 'rm checkpoint.~old']);
    const failures: string[] = [];
    for (let step = 0; step < taken.length; step++) {
      for (let call = 0, reached = true; reached; call++) {
        try {
          const result = await readDuringSave(step, call, read);
          reached = result.reached;
          check(result.value);
        } catch (err) {
          failures.push(`${taken[step]} before reader call ${call}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });
}
