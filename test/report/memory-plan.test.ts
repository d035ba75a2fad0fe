// planMemory against the backend: the predicted peak of a training step is the
// peak the CPU backend measures over real steps (to the byte, so well within
// 10%), under every precision policy, with and without recomputation; the
// activations per block are what the ops save; limits are checked; bad input
// is refused by name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mp from '../../src/index.js';
import { main } from '../../src/cli/main.js';

const B = 4, T = 32;
const tiny = (overrides: Partial<mp.GPTConfig> = {}) => mp.gptConfig('tiny', { blockSize: T, dropout: 0.1, ...overrides });

/** The CPU backend's peak over three real training steps of the trainer's set-up. */
function measuredPeak(config: mp.GPTConfig, precision: string, recompute: boolean): number {
  const backend = new mp.CpuBackend();
  const setup = mp.createTrainingSetup(backend, config, mp.parsePolicy(precision), { recompute, seed: 1 });
  const ids = (shift: number) => mp.tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7 + shift) % config.vocabSize), { shape: [B, T], dtype: 'int32', backend });
  for (let step = 0; step < 3; step++) {
    const { loss, gradNorm } = mp.trainingStep(setup, () => [ids(step), ids(step + 1)]);
    loss.dispose();
    gradNorm?.dispose();
  }
  const peak = backend.memory().peakBytes;
  mp.disposeTrainingSetup(setup);
  return peak;
}

for (const precision of ['fp32', 'fp16', 'fp16-master', 'bf16', 'bf16-master']) {
  test(`the planned peak is the CPU backend's measured peak, with and without recompute (${precision})`, () => {
    for (const recompute of [false, true]) {
      const plan = mp.planMemory(tiny(), precision, { batchSize: B, recompute });
      const measured = measuredPeak(tiny(), precision, recompute);
      assert.equal(plan.peak, measured, `recompute ${recompute}: planned ${plan.peak}, measured ${measured}`);
      const parts = plan.parameters + plan.masterWeights + plan.optimizerStates + (plan.gradients - plan.parameters);
      assert.equal(parts + plan.atPeak.gradients + plan.atPeak.activations + plan.atPeak.workspace, plan.peak, 'the parts held at the peak add up to it');
    }
  });
}

test('the activations per block are what the ops save for backward (float32, and float16 autocast with its weight casts)', () => {
  const N = B * T, C = 64, H = 2;
  // Per block: the two layer norms' inputs (float32) and statistics (mean and rstd per row), the
  // inputs of the four linear layers (the first and third as the layer norms' outputs, cast to
  // float16 under autocast), the qkv projection, the attention output and log-sum-exp, GELU's
  // input (pre) and output, and under autocast the float16 copies of the four weight matrices.
  const fp32 = 4 * (N * C * (1 + 3 + 1 + 1 + 1 + 4 + 4 + 1)) + 4 * 4 * N + 4 * B * H * T;
  const fp16 = 2 * (N * C * (1 + 3 + 1 + 1 + 4 + 4)) + 4 * (2 * N * C) + 4 * 4 * N + 4 * B * H * T + 2 * (12 * C * C);
  for (const [precision, perBlock] of [['fp32', fp32], ['fp16', fp16]] as const) {
    const at = (nLayer: number) => mp.planMemory(tiny({ nLayer, dropout: 0 }), precision, { batchSize: B }).activations;
    assert.equal(at(3) - at(2), perBlock, `${precision}: one more block saves ${perBlock} bytes`);
  }
  // With recomputation a block keeps only its float32 input.
  const kept = (nLayer: number) => mp.planMemory(tiny({ nLayer, dropout: 0 }), 'fp16', { batchSize: B, recompute: true }).activations;
  assert.equal(kept(3) - kept(2), 4 * N * C);
});

test("the planned WebGPU peak counts the buffer pool's blocks, and limits are checked", () => {
  const cpu = mp.planMemory(tiny(), 'fp16', { batchSize: B });
  const gpu = mp.planMemory(tiny(), 'fp16', { batchSize: B, backend: 'webgpu', limits: { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 27 } });
  assert.ok(gpu.peak > cpu.peak, `the pool rounds blocks up and keeps freed ones: ${gpu.peak} > ${cpu.peak}`);
  assert.equal(gpu.fit.fits, null, 'the buffer limits are met whatever the tensors; only a memory size decides');
  assert.match(mp.formatPlan(gpu), /memory size unknown/);
  const small = mp.planMemory(tiny(), 'fp16', {
    batchSize: B, backend: 'webgpu', limits: { maxBufferSize: cpu.largestTensor.bytes - 4, maxStorageBufferBindingSize: 4096, totalMemory: 2 ** 40 },
  });
  assert.equal(small.fit.fits, true);
  assert.match(small.fit.notes.join('\n'), /exceeds maxBufferSize \(.*\): it is held in 2 buffers/);
  assert.match(small.fit.notes.join('\n'), /exceed maxStorageBufferBindingSize \(0 MiB\): they are processed in parts/);
  const tooBig = mp.planMemory(tiny(), 'fp16', { batchSize: B, limits: { totalMemory: cpu.peak - 1 } });
  assert.equal(tooBig.fit.fits, false);
  assert.match(tooBig.fit.notes[0]!, /does not fit/);
});

test('planMemory refuses bad sizes, naming the option', () => {
  assert.throws(() => mp.planMemory(tiny(), 'fp16', { batchSize: 0 }), (e: unknown) => e instanceof mp.TrainConfigError && /batchSize must be a positive integer, got 0/.test(e.message));
  assert.throws(() => mp.planMemory(tiny(), 'fp16', { batchSize: 1, blockSize: T + 1 }), /blockSize 33 is longer than the model's 32 positions/);
  assert.throws(() => mp.planMemory(tiny(), 'fp17', { batchSize: 1 }), mp.PolicyError);
});

test('mixprec memory prints the breakdown for the options of train', async () => {
  let stdout = '', stderr = '';
  const status = await main(['memory', '--backend', 'cpu', '--model', 'tiny', '--block-size', '32', '--batch-size', '4', '--precision', 'bf16', '--recompute'],
    { write: (s: string) => { stdout += s; return true; } }, { write: (s: string) => { stderr += s; return true; } });
  assert.equal(status, 0, stderr);
  const plan = mp.planMemory(mp.gptConfig('tiny', { blockSize: 32 }), 'bf16', { batchSize: 4, recompute: true, clip: 1 });
  assert.match(stdout, /precision bf16, 4 x 32 tokens, recompute on, cpu backend/);
  for (const name of ['parameters', 'master weights', 'gradients', 'optimizer moments', 'activations', 'workspace', 'predicted peak']) {
    assert.match(stdout, new RegExp(`^  ${name} `, 'm'));
  }
  assert.match(stdout, new RegExp(`predicted peak +${mp.formatPlan(plan).match(/predicted peak +(\S+ \S+)/)![1]!.replace('.', '\\.')}`));
  assert.match(stdout, /fits: the peak is \d+% of the/);
  const bad = await main(['memory', '--batch-size', '0'], { write: () => true }, { write: (s: string) => { stderr = s; return true; } });
  assert.equal(bad, 2);
  assert.match(stderr, /--batch-size: must be at least 1, got 0/);
});
