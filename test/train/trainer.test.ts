import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { getBackend } from '../../src/backend/registry.js';
import { memory } from '../../src/tensor/tensor.js';
import { GPT } from '../../src/nn/gpt.js';
import { loadGPT2, saveGPT2 } from '../../src/io/gpt2.js';
import { TrainConfigError } from '../../src/train/config.js';
import { readMetrics, type MetricsRecord, type TrainRecord } from '../../src/train/metrics.js';
import { Trainer, createOptimizer, train } from '../../src/train/trainer.js';
import { tempRunRoot, tinyConfig } from './tiny-run.js';

let root: string;
let dataFile: string;
let cacheDir: string;
let counter = 0;
const runDir = () => path.join(root, `run${counter++}`);

before(async () => {
  ({ root, dataFile } = await tempRunRoot('mixprec-trainer-'));
  cacheDir = path.join(root, 'cache');
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** Records without the fields that depend on the clock. */
function comparable(records: MetricsRecord[]): unknown[] {
  return records.filter((r) => r.type !== 'start').map((r) => {
    const { elapsedSec: _e, tokensPerSec: _t, ...rest } = r as unknown as Record<string, unknown>;
    return rest;
  });
}

test('a run writes metrics.jsonl (start, train and eval records), summary.json and a checkpoint, and the loss falls', async () => {
  const dir = runDir();
  // lr 3e-3: at 5e-3 with attention dropout, this run's step 11 overshoots and the skipped steps that follow let the loss jump.
  const summary = await train(tinyConfig(dataFile, { maxSteps: 16, logInterval: 4, evalInterval: 8, lr: 3e-3 }), { runDir: dir, cacheDir });
  const records = await readMetrics(path.join(dir, 'metrics.jsonl'));
  assert.deepEqual(records.map((r) => `${r.type}@${r.step}`), ['start@0', 'train@4', 'train@8', 'eval@8', 'train@12', 'train@16', 'eval@16']);
  const trainLosses = records.filter((r) => r.type === 'train').map((r) => (r as { loss: number }).loss);
  assert.ok(trainLosses.at(-1)! < trainLosses[0]! - 0.5, `training loss falls: ${trainLosses.join(', ')}`);
  assert.equal(summary.status, 'max-steps');
  assert.equal(summary.steps, 16);
  assert.equal(summary.tokens, 16 * 4 * 32);
  assert.equal(summary.precision, 'fp16');
  assert.ok(summary.finalValLoss! > 0 && summary.finalValLoss! < Math.log(256), `final val loss ${summary.finalValLoss}`);
  assert.equal(summary.finalValLossPerByte, summary.finalValLoss, 'byte tokenizer: a token is a byte');
  assert.equal(summary.finalValPerplexity, Math.exp(summary.finalValLoss!));
  assert.deepEqual(JSON.parse(await fs.readFile(path.join(dir, 'summary.json'), 'utf8')), summary);
  const files = (await fs.readdir(path.join(dir, 'checkpoint'))).sort();
  assert.deepEqual(files, ['config.json', 'model.safetensors', 'optimizer.json', 'optimizer.safetensors', 'scaler.json', 'trainer_state.json']);
});

test('fp16 with dynamic loss scaling follows fp32 step by step, attention dropout on', async () => {
  const losses = async (precision: string) => {
    const dir = runDir();
    await train(tinyConfig(dataFile, { precision, maxSteps: 16, logInterval: 1, evalInterval: 16, lr: 3e-3 }), { runDir: dir, cacheDir });
    return (await readMetrics(path.join(dir, 'metrics.jsonl'))).filter((r) => r.type === 'train') as TrainRecord[];
  };
  const half = await losses('fp16'), full = await losses('fp32');
  assert.equal(half.length, 16);
  assert.ok(half.every((r) => r.skipped === 0), `no step skipped: ${half.map((r) => r.skipped).join(', ')}`);
  half.forEach((r, i) => assert.ok(Math.abs(r.loss - full[i]!.loss) < 2e-3, `step ${r.step}: fp16 ${r.loss} vs fp32 ${full[i]!.loss}`));
  assert.ok(full.at(-1)!.loss < full[0]!.loss - 1, `the loss falls: ${full.map((r) => r.loss.toFixed(3)).join(', ')}`);
});

for (const precision of ['fp16', 'bf16-master', 'fp32']) {
  test(`${precision}: a run stopped at step 5 and resumed gives the same losses, bit for bit, as an uninterrupted run (CPU backend, dropout on)`, async () => {
    const config = tinyConfig(dataFile, { precision, maxSteps: 12 });
    const straight = runDir(), stopped = runDir();
    await train(config, { runDir: straight, cacheDir });
    const controller = new AbortController();
    const first = await train(config, { runDir: stopped, cacheDir, signal: controller.signal, onStep: (p) => { if (p.step === 5) controller.abort(); } });
    assert.equal(first.status, 'interrupted');
    assert.equal(first.steps, 5);
    const second = await train({}, { resume: stopped, cacheDir });
    assert.equal(second.status, 'max-steps');
    const a = comparable(await readMetrics(path.join(straight, 'metrics.jsonl')));
    const b = comparable(await readMetrics(path.join(stopped, 'metrics.jsonl')));
    assert.equal(a.length, 12 + 3);
    assert.deepEqual(b, a);
    // The final weights are identical too.
    assert.deepEqual(await fs.readFile(path.join(stopped, 'checkpoint', 'model.safetensors')), await fs.readFile(path.join(straight, 'checkpoint', 'model.safetensors')));
    const startRecords = (await readMetrics(path.join(stopped, 'metrics.jsonl'))).filter((r) => r.type === 'start');
    assert.deepEqual(startRecords.map((r) => [r.step, (r as { resumed: boolean }).resumed]), [[0, false], [5, true]]);
  });
}

test('resuming drops metrics written after the checkpoint (a crash between a log and the next save)', async () => {
  const dir = runDir();
  const config = tinyConfig(dataFile, { maxSteps: 8, saveInterval: 4 });
  const straight = runDir();
  await train(config, { runDir: straight, cacheDir });
  const controller = new AbortController();
  await train(config, { runDir: dir, cacheDir, signal: controller.signal, onStep: (p) => { if (p.step === 6) controller.abort(); } });
  // Pretend the run crashed after step 6 was logged but before its checkpoint: put the step-4 checkpoint back.
  const trainer = await Trainer.resume(dir, {}, { cacheDir });
  assert.equal(trainer.step, 6);
  trainer.dispose();
  const metrics = path.join(dir, 'metrics.jsonl');
  const lines = (await fs.readFile(metrics, 'utf8')).trim().split('\n').filter((l) => JSON.parse(l).step <= 6);
  await fs.writeFile(metrics, `${lines.join('\n')}\n{"type":"train","step":7,"loss":123}\n{"type":"trai`);
  await train({}, { resume: dir, cacheDir });
  assert.deepEqual(comparable(await readMetrics(metrics)), comparable(await readMetrics(path.join(straight, 'metrics.jsonl'))));
});

test('memory is flat: the same tensors and bytes after step N as after step 2N (CPU backend)', async () => {
  const trainer = await Trainer.create(tinyConfig(dataFile, { maxSteps: 16, logInterval: 3, evalInterval: 5 }), { cacheDir });
  const at = new Map<number, ReturnType<typeof memory>>();
  await trainer.run({ onStep: (p) => { if (p.step === 8 || p.step === 16) at.set(p.step, memory(trainer.backend)); } });
  const n = at.get(8)!, twice = at.get(16)!;
  assert.equal(twice.tensors, n.tensors);
  assert.equal(twice.buffers, n.buffers);
  assert.equal(twice.bytes, n.bytes);
  trainer.dispose();
});

test('twenty train() calls in one process leave memory flat (CPU backend)', async () => {
  const config = tinyConfig(dataFile, { maxSteps: 2, evalInterval: 2, evalSteps: 1, logInterval: 1 });
  let first: ReturnType<typeof memory> | null = null;
  for (let i = 0; i < 20; i++) {
    await train(config, { runDir: null, cacheDir });
    const m = memory(getBackend('cpu'));
    first ??= m;
    assert.deepEqual({ ...m, peakBytes: 0 }, { ...first, peakBytes: 0 }, `after call ${i + 1}`);
  }
  assert.equal(getBackend().name, 'cpu');
});

test('gradient accumulation: each micro-batch loss is divided by their number, so the logged loss is their mean', async () => {
  const dir = runDir();
  await train(tinyConfig(dataFile, { maxSteps: 2, gradAccum: 3, batchSize: 2, warmup: 0 }), { runDir: dir, cacheDir });
  const records = await readMetrics(path.join(dir, 'metrics.jsonl'));
  const first = records.find((r) => r.type === 'train')!;
  assert.equal((first as { tokens: number }).tokens, 3 * 2 * 32);
  // At initialisation every byte is about equally likely: the mean loss is near ln 256.
  assert.ok(Math.abs((first as { loss: number }).loss - Math.log(256)) < 0.3, `first loss ${(first as { loss: number }).loss}`);
});

test('the time budget stops a run early with a final evaluation and checkpoint; the schedule still follows max-steps', async () => {
  const dir = runDir();
  const summary = await train(tinyConfig(dataFile, { maxSteps: 10_000, timeBudget: 3 }), { runDir: dir, cacheDir });
  assert.equal(summary.status, 'time-budget');
  assert.ok(summary.steps > 0 && summary.steps < 10_000);
  assert.ok(summary.timeSec < 6, `ended in ${summary.timeSec}s`);
  assert.notEqual(summary.finalValLoss, null);
  const records = await readMetrics(path.join(dir, 'metrics.jsonl'));
  assert.equal(records.at(-1)!.type, 'eval');
  assert.equal(records.at(-1)!.step, summary.steps);
});

test('fp16: the first steps overflow at the initial scale 2^16, are skipped and counted, and the scale backs off', async () => {
  const dir = runDir();
  const summary = await train(tinyConfig(dataFile, { maxSteps: 30, dropout: 0, lr: 3e-3, warmup: 10, logInterval: 30, evalInterval: 30 }), { runDir: dir, cacheDir });
  const last = (await readMetrics(path.join(dir, 'metrics.jsonl'))).find((r) => r.type === 'train') as { skipped: number; scale: number };
  assert.equal(summary.skippedSteps, last.skipped);
  // Each skipped step halves the scale, and the growth interval (2000) is not reached.
  assert.equal(last.scale, 2 ** 16 / 2 ** last.skipped);
  assert.equal(summary.lossScale, last.scale);
});

test('AdamW groups: matrices and embeddings decay, biases and LayerNorm parameters do not; betas (0.9, 0.95)', async () => {
  const trainer = await Trainer.create(tinyConfig(dataFile), { cacheDir });
  const opt = createOptimizer(trainer.model, { lr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.95 });
  const [decay, noDecay] = opt.paramGroups;
  assert.ok(decay!.params.every((p) => p.ndim === 2) && decay!.options.weightDecay === 0.1);
  assert.ok(noDecay!.params.every((p) => p.ndim === 1) && noDecay!.options.weightDecay === 0);
  assert.ok(decay!.params.some((p) => p.name === 'wte.weight') && noDecay!.params.some((p) => p.name === 'ln_f.weight'));
  assert.deepEqual(decay!.options.betas, [0.9, 0.95]);
  opt.dispose();
  trainer.dispose();
});

test('bad configurations name the option', async () => {
  await assert.rejects(Trainer.create(tinyConfig(dataFile, { nHead: 3 }), { cacheDir }), (e: Error) => e instanceof TrainConfigError && /--model: .*nEmbd 64 is not divisible by nHead 3/.test(e.message));
  await assert.rejects(Trainer.create(tinyConfig(dataFile, { batchSize: 0 }), { cacheDir }), (e: Error) => e instanceof TrainConfigError && e.option === 'batchSize' && /--batch-size: must be an integer >= 1, got 0/.test(e.message));
  await assert.rejects(Trainer.create(tinyConfig(dataFile, { blockSize: 5000 }), { cacheDir }), /validation split has \d+ tokens, too few for blockSize 5000/);
  await assert.rejects(Trainer.create(tinyConfig(dataFile, { lr: -1 }), { cacheDir }), /--lr: must be a positive number, got -1/);
  await assert.rejects(Trainer.create(tinyConfig(dataFile, { precision: 'p=f16,c=f32' }), { cacheDir }), /--precision: .*not supported/);
});

test('an existing run directory is not overwritten, and a resumed run cannot change what it trains', async () => {
  const dir = runDir();
  await train(tinyConfig(dataFile, { maxSteps: 2 }), { runDir: dir, cacheDir });
  await assert.rejects(Trainer.create(tinyConfig(dataFile), { runDir: dir, cacheDir }), /--out: .* already holds a run \(continue it with --resume/);
  await assert.rejects(Trainer.resume(dir, { batchSize: 8 }, { cacheDir }), /--batch-size: cannot change from 4 to 8 when resuming/);
  const more = await train({ maxSteps: 4 }, { resume: dir, cacheDir });
  assert.equal(more.steps, 4);
});

test('--init-from: starts from the weights of a GPT-2 directory, with the GPT-2 tokenizer', async () => {
  const source = path.join(root, 'gpt2-tiny');
  const original = new GPT({ vocabSize: 50257, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 32, dropout: 0, bias: true }, { seed: 7 });
  await saveGPT2(original, source);
  const dir = runDir();
  // A learning rate so small that one step leaves the weights as they were.
  const summary = await train(
    tinyConfig(dataFile, { initFrom: source, tokenizer: 'gpt2', maxSteps: 1, batchSize: 2, blockSize: 16, evalSteps: 1, lr: 1e-12, warmup: 0, weightDecay: 0, dropout: 0 }),
    { runDir: dir, cacheDir },
  );
  assert.equal(summary.steps, 1);
  assert.ok(summary.finalValLossPerByte === null, 'no per-byte loss for a BPE tokenizer');
  const tuned = await loadGPT2(path.join(dir, 'checkpoint'));
  assert.deepEqual(tuned.config, original.config);
  for (const [name, p] of tuned.namedParameters()) {
    const q = original.namedParameters().find(([n]) => n === name)![1];
    const a = await p.toArray(), b = await q.toArray();
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst < 1e-6, `${name} moved by ${worst}`);
  }
  tuned.dispose();
  original.dispose();
  await assert.rejects(train(tinyConfig(dataFile, { initFrom: source, maxSteps: 1 }), { cacheDir }), /--tokenizer: the byte tokenizer has 256 tokens, the model 50257/);
});
