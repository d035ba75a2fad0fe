// A training run with bfloat16 stochastic rounding resumes from a checkpoint bit
// for bit: the checkpoint keeps how many random numbers the rounding has drawn.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { parsePolicy, withPolicy } from '../../src/amp/policy.js';
import { loadCheckpointModel, readCheckpoint, restoreOptimizer, saveCheckpoint } from '../../src/io/checkpoint.js';
import { GPT, gptConfig } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import type { BaseOptions, Optimizer } from '../../src/optim/optimizer.js';
import { GradScaler } from '../../src/amp/grad-scaler.js';
import { tensor } from '../../src/tensor/creation.js';
import { tidy } from '../../src/tensor/tensor.js';

const config = gptConfig('tiny', { blockSize: 16, dropout: 0 });
const policy = parsePolicy('bf16-master');

function optimizerFor(model: GPT): AdamW {
  return new AdamW(model.parameters(), { lr: 1e-2, betas: [0.9, 0.95], stochasticRounding: { seed: 11 } });
}

function train(model: GPT, optimizer: AdamW, from: number, to: number): void {
  for (let s = from; s < to; s++) {
    tidy(() => {
      const ids = tensor(Int32Array.from({ length: 32 }, (_, i) => (i * 37 + s * 11) % 256), { shape: [2, 16], dtype: 'int32' });
      withPolicy(policy, () => model.forward(ids, ids).loss!).backward();
      optimizer.step();
      optimizer.zeroGrad();
    });
  }
}

async function bits(model: GPT): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [name, p] of model.namedParameters()) out[name] = Array.from(await p.backend.readRaw(p.storageView));
  return out;
}

test('a run with stochastic rounding resumed from a checkpoint matches the uninterrupted run bit for bit', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-sr-resume-'));
  try {
    const whole = new GPT(config, { seed: 3, dtype: 'bfloat16' });
    const wholeOpt = optimizerFor(whole);
    train(whole, wholeOpt, 0, 4);

    const first = new GPT(config, { seed: 3, dtype: 'bfloat16' });
    const firstOpt = optimizerFor(first);
    train(first, firstOpt, 0, 2);
    const scaler = new GradScaler({ enabled: false });
    await saveCheckpoint(root, {
      model: first, optimizer: firstOpt as unknown as Optimizer<BaseOptions>, scaler,
      state: { step: 2, config: {}, rng: { model: first.generator.state() }, data: {}, progress: {} },
    });

    const ckpt = await readCheckpoint(root);
    const resumed = await loadCheckpointModel(ckpt, { dtype: 'bfloat16' });
    const resumedOpt = optimizerFor(resumed);
    await restoreOptimizer(ckpt, resumedOpt);
    assert.equal(resumedOpt.stochasticRoundingCounter, firstOpt.stochasticRoundingCounter);
    train(resumed, resumedOpt, 2, 4);
    assert.deepEqual(await bits(resumed), await bits(whole));
    for (const m of [whole, first, resumed]) m.dispose();
    for (const o of [wholeOpt, firstOpt, resumedOpt]) o.dispose();
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
