import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_TRAIN_CONFIG, TrainConfigError, formatDuration, optionName, parseDuration, resolveLossScale, resolveTrainConfig,
} from '../../src/train/config.js';

test('the default run: fp16 policy (dynamic loss scaling), byte tokens, the Brown corpus, the best backend', () => {
  const c = resolveTrainConfig();
  assert.deepEqual(c, DEFAULT_TRAIN_CONFIG);
  assert.equal(c.precision, 'fp16');
  assert.equal(resolveLossScale(c), 'dynamic');
  assert.equal(c.tokenizer, 'byte');
  assert.equal(c.data, null);
  assert.equal(c.backend, 'auto');
});

test('the default sizes belong to the default model: with --model given, the preset decides', () => {
  assert.deepEqual([DEFAULT_TRAIN_CONFIG.nLayer, DEFAULT_TRAIN_CONFIG.nHead, DEFAULT_TRAIN_CONFIG.nEmbd], [2, 4, 96]);
  const mini = resolveTrainConfig({ model: 'mini' });
  assert.deepEqual([mini.nLayer, mini.nHead, mini.nEmbd], [null, null, null]);
  const deeper = resolveTrainConfig({ model: 'mini', nLayer: 3 });
  assert.deepEqual([deeper.nLayer, deeper.nHead, deeper.nEmbd], [3, null, null]);
  const wider = resolveTrainConfig({ nEmbd: 128 });
  assert.deepEqual([wider.model, wider.nLayer, wider.nEmbd], ['mini', 2, 128]);
});

test("GPT-2's sizes and fine-tuning take nanoGPT's learning rates unless given", () => {
  const rates = (partial: Parameters<typeof resolveTrainConfig>[0]) => { const c = resolveTrainConfig(partial); return [c.lr, c.minLr]; };
  assert.deepEqual(rates({}), [5e-3, 5e-4]);
  assert.deepEqual(rates({ model: 'mini' }), [5e-3, 5e-4]);
  assert.deepEqual(rates({ model: 'gpt2' }), [6e-4, 6e-5]);
  assert.deepEqual(rates({ model: 'gpt2-medium' }), [6e-4, 6e-5]);
  assert.deepEqual(rates({ initFrom: 'checkpoints/gpt2' }), [3e-5, 3e-5]);
  assert.deepEqual(rates({ model: 'gpt2', lr: 1e-3 }), [1e-3, 6e-5]);
  assert.deepEqual(rates({ model: 'gpt2', lr: 1e-5 }), [1e-5, 1e-5]); // the floor never exceeds the rate
  assert.deepEqual(rates({ model: 'gpt2', minLr: 0 }), [6e-4, 0]);
  assert.deepEqual(rates({ initFrom: 'checkpoints/gpt2', lr: 1e-4, minLr: 1e-6 }), [1e-4, 1e-6]);
});

test('loss scaling follows the policy unless set', () => {
  assert.equal(resolveLossScale({ precision: 'bf16', lossScale: 'auto' }), 'none');
  assert.equal(resolveLossScale({ precision: 'fp16-master', lossScale: 'auto' }), 'dynamic');
  assert.equal(resolveLossScale({ precision: 'fp16', lossScale: 1024 }), 1024);
  assert.equal(resolveLossScale({ precision: 'p=f32,c=f16', lossScale: 'none' }), 'none');
});

test('every bad value is a TrainConfigError naming the option as the command line spells it', () => {
  const bad: [Partial<typeof DEFAULT_TRAIN_CONFIG>, RegExp][] = [
    [{ batchSize: 0 }, /^--batch-size: must be an integer >= 1, got 0$/],
    [{ warmup: 1.5 }, /^--warmup: must be an integer >= 0, got 1\.5$/],
    [{ nLayer: -1 }, /^--n-layer: must be an integer >= 1, got -1$/],
    [{ lr: 0 }, /^--lr: must be a positive number, got 0$/],
    [{ beta2: 1 }, /^--beta2: must be in \[0, 1\), got 1$/],
    [{ dropout: Number.NaN }, /^--dropout: must be in \[0, 1\), got null$/],
    [{ timeBudget: -5 }, /^--time-budget: must be a positive number of seconds, got -5$/],
    [{ backend: 'tpu' as 'cpu' }, /^--backend: must be one of auto, cpu, webgpu, got "tpu"$/],
    [{ model: 'huge' }, /^--model: must be one of tiny, mini, small, gpt2, gpt2-medium, got "huge"$/],
    [{ lossScale: 0 }, /^--loss-scale: must be 'dynamic', 'none' or a positive number, got 0$/],
    [{ precision: 'fp8' }, /^--precision: policy: unknown preset 'fp8'/],
  ];
  for (const [partial, message] of bad) {
    assert.throws(() => resolveTrainConfig(partial), (e: Error) => e instanceof TrainConfigError && message.test(e.message), JSON.stringify(partial));
  }
  assert.equal(optionName('gradAccum'), 'grad-accum');
});

test('durations: seconds, or h/m/s units', () => {
  assert.equal(parseDuration('540'), 540);
  assert.equal(parseDuration('9m'), 540);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('1.5h'), 5400);
  assert.equal(parseDuration('2m30s'), 150);
  for (const bad of ['', 'soon', '9 m', '5x', 'm5', '1h-2m']) assert.throws(() => parseDuration(bad), /is not a duration/, bad);
  assert.equal(formatDuration(5), '5s');
  assert.equal(formatDuration(125), '2m05s');
  assert.equal(formatDuration(3723), '1h02m03s');
});
