import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { GradScaler } from '../../src/amp/grad-scaler.js';
import { withPolicy, parsePolicy } from '../../src/amp/policy.js';
import { GPT, gptConfig } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import type { BaseOptions, Optimizer } from '../../src/optim/optimizer.js';
import { tensor } from '../../src/tensor/creation.js';
import { tidy } from '../../src/tensor/tensor.js';
import {
  CheckpointError, loadCheckpointModel, readCheckpoint, restoreOptimizer, restoreScaler, saveCheckpoint, type TrainerState,
} from '../../src/io/checkpoint.js';
import { SafetensorsError } from '../../src/io/safetensors.js';

let root: string;
let counter = 0;
const fresh = () => path.join(root, `ckpt${counter++}`);

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-checkpoint-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

const config = gptConfig('tiny', { blockSize: 16, dropout: 0.1 });

/** A model, optimizer and scaler after `steps` fp16 training steps, so every piece of state is non-trivial. */
async function trained(steps: number, dtype: 'float32' | 'bfloat16' = 'float32') {
  const model = new GPT(config, { seed: 3, dtype });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, betas: [0.9, 0.95] });
  const scaler = new GradScaler({ initScale: 2 ** 10, growthInterval: 2 });
  const policy = parsePolicy(dtype === 'float32' ? 'fp16' : 'bf16-master');
  const ids = tensor(Int32Array.from({ length: 32 }, (_, i) => (i * 37) % 256), { shape: [2, 16], dtype: 'int32' });
  for (let s = 0; s < steps; s++) {
    tidy(() => scaler.scale(withPolicy(policy, () => model.forward(ids, ids).loss!)).backward());
    scaler.step(optimizer);
    scaler.update();
    optimizer.zeroGrad();
  }
  ids.dispose();
  const state: TrainerState = {
    step: steps, config: { precision: policy.name, note: 'anything JSON' }, rng: { model: model.generator.state() },
    data: { seed: 9, offset: 40 }, progress: { tokens: steps * 32 },
  };
  return { model, optimizer: optimizer as unknown as Optimizer<BaseOptions>, adamw: optimizer, scaler, state };
}

async function stateBits(optimizer: { namedState(): [string, { toArray(): Promise<ArrayLike<number>> }][] }): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [name, t] of optimizer.namedState()) out[name] = Array.from(await t.toArray());
  return out;
}

test('save then load restores model, optimizer (moments, steps, master weights), scaler and trainer state exactly', async () => {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const dir = fresh();
    const a = await trained(3, dtype);
    await saveCheckpoint(dir, a);

    const ckpt = await readCheckpoint(dir);
    assert.deepEqual(ckpt.state, a.state);
    const model = await loadCheckpointModel(ckpt, { dtype });
    assert.deepEqual(model.generator.state(), a.model.generator.state());
    for (const [name, p] of model.namedParameters()) {
      const q = a.model.namedParameters().find(([n]) => n === name)![1];
      assert.deepEqual(await p.backend.readRaw(p.storageView), await q.backend.readRaw(q.storageView), name);
    }
    const optimizer = new AdamW(model.parameters(), { lr: 5, betas: [0.5, 0.5] });
    await restoreOptimizer(ckpt, optimizer);
    assert.deepEqual(await stateBits(optimizer), await stateBits(a.adamw));
    assert.equal(optimizer.paramGroups[0]!.options.lr, 1e-3);
    assert.deepEqual(optimizer.paramGroups[0]!.options.betas, [0.9, 0.95]);
    if (dtype === 'bfloat16') assert.ok(optimizer.namedState().some(([n]) => n.endsWith('.master')), 'master weights saved');
    const scaler = new GradScaler();
    restoreScaler(ckpt, scaler);
    assert.deepEqual(await scaler.stateDict(), await a.scaler.stateDict());
    for (const x of [a.adamw, optimizer]) x.dispose();
    for (const x of [a.model, model]) x.dispose();
  }
});

test('the model part is a Hugging Face GPT-2 directory: config.json (model_type gpt2) and model.safetensors', async () => {
  const dir = fresh();
  const a = await trained(1);
  await saveCheckpoint(dir, a);
  const json = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(json.model_type, 'gpt2');
  assert.equal(json.n_layer, config.nLayer);
  a.model.dispose();
});

test('a save that fails part-way leaves the previous checkpoint intact and no partial directory behind', async () => {
  const dir = fresh();
  const a = await trained(1);
  await saveCheckpoint(dir, a);
  const before = await fs.readFile(path.join(dir, 'trainer_state.json'), 'utf8');
  // A state tensor that fails when its data is written, half-way through optimizer.safetensors.
  const named = a.optimizer.namedState();
  const broken = { ...a.optimizer, namedState: () => named.map(([n, t], i) => [n, i === 5 ? { ...t, shape: t.shape, dtype: t.dtype, backend: { readRaw: () => Promise.reject(new Error('disk on fire')) }, view: t.storageView } : t]) };
  await assert.rejects(saveCheckpoint(dir, { ...a, state: { ...a.state, step: 99 }, optimizer: broken as unknown as Optimizer<BaseOptions> }), /disk on fire/);
  assert.equal(await fs.readFile(path.join(dir, 'trainer_state.json'), 'utf8'), before);
  assert.deepEqual((await fs.readdir(root)).filter((n) => n.startsWith(path.basename(dir))), [path.basename(dir)]);
  assert.equal((await readCheckpoint(dir)).state.step, 1);
  a.model.dispose();
});

test('a crash between setting the old checkpoint aside and moving the new one in is read as is, and recovered by the next save', async () => {
  const dir = fresh();
  const a = await trained(1);
  await saveCheckpoint(dir, a);
  // The state replaceDirectoryAtomic leaves if the process dies right after renaming dir to its .~old sibling.
  await fs.rename(dir, `${dir}.~old-0000000000001-1-abcd`);
  await fs.mkdir(`${dir}.~partial-0000000000002-1-abcd`);
  const ckpt = await readCheckpoint(dir);
  assert.equal(ckpt.state.step, 1);
  await saveCheckpoint(dir, { ...a, state: { ...a.state, step: 2 } });
  assert.deepEqual((await fs.readdir(root)).filter((n) => n.startsWith(path.basename(dir))), [path.basename(dir)]);
  assert.equal((await readCheckpoint(dir)).state.step, 2);
  a.model.dispose();
});

test('damaged or missing files give a CheckpointError naming the file and the fault', async () => {
  const a = await trained(1);
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['missing directory', (d) => fs.rm(d, { recursive: true }), /does not exist/],
    ['not a training checkpoint', (d) => fs.rm(path.join(d, 'trainer_state.json')), /has no trainer_state\.json: not a training checkpoint/],
    ['trainer_state.json not JSON', (d) => fs.writeFile(path.join(d, 'trainer_state.json'), '{"step": 3,'), /trainer_state\.json: is not valid JSON/],
    ['bad step', async (d) => {
      const f = path.join(d, 'trainer_state.json');
      await fs.writeFile(f, JSON.stringify({ ...JSON.parse(await fs.readFile(f, 'utf8')), step: -2 }));
    }, /trainer_state\.json: 'step' must be a non-negative integer, got -2/],
    ['wrong format', async (d) => {
      const f = path.join(d, 'trainer_state.json');
      await fs.writeFile(f, JSON.stringify({ ...JSON.parse(await fs.readFile(f, 'utf8')), format: 'other' }));
    }, /'format' is "other", expected "mixprec-training-checkpoint"/],
    ['truncated weights', async (d) => {
      const f = path.join(d, 'model.safetensors');
      await fs.truncate(f, (await fs.stat(f)).size - 10);
    }, /model\.safetensors: is \d+ bytes, trainer_state\.json recorded \d+ \(truncated or altered\)/],
    ['flipped bit in the optimizer state', async (d) => {
      const f = path.join(d, 'optimizer.safetensors');
      const bytes = await fs.readFile(f);
      bytes[bytes.length - 3]! ^= 1;
      await fs.writeFile(f, bytes);
    }, /optimizer\.safetensors: content does not match the SHA-256/],
    ['missing scaler state', (d) => fs.rm(path.join(d, 'scaler.json')), /scaler\.json: is missing/],
  ];
  for (const [what, damage, message] of cases) {
    const dir = fresh();
    await saveCheckpoint(dir, a);
    await damage(dir);
    await assert.rejects(readCheckpoint(dir), (e: Error) => e instanceof CheckpointError && message.test(e.message), what);
  }
  a.model.dispose();
});

test('restoring into an optimizer or scaler built differently is refused before anything is written', async () => {
  const dir = fresh();
  const a = await trained(1);
  await saveCheckpoint(dir, a);
  const ckpt = await readCheckpoint(dir);
  const model = await loadCheckpointModel(ckpt);
  const params = model.parameters();
  const twoGroups = new AdamW([{ params: params.slice(0, 3) }, { params: params.slice(3) }]);
  await assert.rejects(restoreOptimizer(ckpt, twoGroups), /optimizer\.json: has 1 parameter groups, the run's optimizer has 2/);
  const fewer = new AdamW(params.slice(1));
  await assert.rejects(restoreOptimizer(ckpt, fewer), /optimizer\.json: group 0 holds parameters \[wte\.weight/);
  assert.throws(() => restoreScaler(ckpt, new GradScaler({ enabled: false })), /scaler\.json: loss scaling was enabled when saved, the run has it disabled/);
  // An optimizer.safetensors whose header promises more than the file holds.
  const f = path.join(dir, 'optimizer.safetensors');
  await fs.truncate(f, 100);
  const damaged = { ...ckpt };
  await assert.rejects(restoreOptimizer(damaged, new AdamW(params)), (e: Error) => e instanceof SafetensorsError);
  for (const o of [twoGroups, fewer]) o.dispose();
  model.dispose();
  a.model.dispose();
});
