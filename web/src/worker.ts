// One training run off the main thread: WebGPU backend, GPT, AdamW and
// GradScaler under the chosen precision policy, stepping until stopped, and
// reporting each step, each evaluation and the gradient statistics back to
// the page. Messages are handled between steps, so stop, resume, generate and
// download all act at a step boundary.
import * as mp from '../../src/core.js';
import { resolveTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { createOptimizer, createScaler, modelConfig } from '../../src/train/run-setup.js';
import { evaluateLoss, batchTensors } from '../../src/train/evaluate.js';
import { sampleText, type SamplePrecision } from '../../src/train/sample.js';
import type { AutocastDType } from '../../src/amp/autocast.js';
import { StatsSampler } from '../../src/report/sampler.js';
import { HISTOGRAM_LOW } from '../../src/report/stats.js';
import { GPT2CheckpointError } from '../../src/io/gpt2.js';
import { loadGPT2Files, saveGPT2Files } from './hf-gpt2.js';
import { NO_WEBGPU, type FromWorker, type RunSettings, type TextData, type ToWorker, type HFModelFiles } from './protocol.js';

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

interface Run {
  backend: mp.WebGPUBackend;
  config: TrainConfig;
  trainTokens: number;
  policy: mp.Policy;
  tokenizer: mp.Tokenizer;
  model: mp.GPT;
  optimizer: mp.AdamW;
  scaler: mp.GradScaler;
  sampler: mp.BatchSampler;
  validation: ReturnType<typeof mp.evalBatches>;
  stats: StatsSampler;
  step: number;
  scale: number;
  running: boolean;
}

let run: Run | null = null;
/** Requests that must wait for a step boundary while the loop runs. */
const pending: ToWorker[] = [];

const BYTE_VOCABULARY = 256;
/** Gradient statistics every this many steps (and at step 1). */
const STATS_INTERVAL = 10;
const EVAL_BATCHES = 4;

async function backendOrExplain(): Promise<mp.WebGPUBackend | null> {
  if (!('gpu' in navigator)) {
    post({ type: 'no-webgpu', message: NO_WEBGPU });
    return null;
  }
  try {
    const backend = await mp.createWebGPUBackend({ register: false });
    const a = backend.adapterInfo;
    post({ type: 'adapter', description: a.description, hasF16: a.hasF16, isSoftware: a.isSoftware });
    return backend;
  } catch (e) {
    post({ type: 'no-webgpu', message: `WebGPU is present but gave no usable device: ${(e as Error).message}` });
    return null;
  }
}

/** The GPT of the default `mixprec train` run (byte tokens), or the given GPT-2 directory. */
function makeModel(backend: mp.Backend, config: TrainConfig, files: HFModelFiles | null): mp.GPT {
  if (files) return loadGPT2Files(files.config, files.weights, backend);
  return new mp.GPT(modelConfig(config, BYTE_VOCABULARY), { backend, seed: config.seed });
}

/** Model, tokenizer, optimizer, scaler and data of a run on `backend`. */
async function setUp(backend: mp.WebGPUBackend, config: TrainConfig, data: TextData, files: HFModelFiles | null): Promise<Run> {
  const policy = mp.parsePolicy(config.precision, config.lossScale === 'auto' ? undefined : config.lossScale);
  const tokenizer = await mp.loadTokenizer(files ? 'gpt2' : 'byte');
  const model = makeModel(backend, config, files);
  if (model.config.vocabSize < tokenizer.vocabSize) {
    model.dispose();
    throw new GPT2CheckpointError('config.json', `vocab_size ${model.config.vocabSize} is smaller than the GPT-2 tokenizer's ${tokenizer.vocabSize}`, 'vocab_size');
  }
  config.blockSize = Math.min(config.blockSize, model.config.blockSize);
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  const trainTokens = tokenizer.encode(data.train);
  const shape = { batchSize: config.batchSize, blockSize: config.blockSize };
  return {
    backend, config, policy, tokenizer, model, trainTokens: trainTokens.length,
    optimizer: createOptimizer(model, config),
    scaler: createScaler(config, backend),
    sampler: new mp.BatchSampler(trainTokens, { ...shape, seed: config.seed, split: 'train' }),
    validation: mp.evalBatches(tokenizer.encode(data.validation), { ...shape, steps: EVAL_BATCHES, split: 'validation' }),
    stats: new StatsSampler(model),
    step: 0, scale: 1, running: false,
  };
}

async function start(settings: RunSettings, data: TextData, files: HFModelFiles | null): Promise<void> {
  dispose();
  // The default run's configuration with the page's settings; a bad value is a TrainConfigError naming it.
  const config = resolveTrainConfig({
    precision: settings.precision, lossScale: settings.lossScale, batchSize: settings.batchSize, blockSize: settings.blockSize,
    lr: settings.lr, minLr: settings.lr / 10, maxSteps: settings.maxSteps, evalInterval: settings.evalInterval,
  });
  const backend = await backendOrExplain();
  if (!backend) return;
  try {
    run = await setUp(backend, config, data, files);
  } catch (err) {
    backend.destroy(); // nothing else was kept: the model and optimizer hold memory on this device only
    throw err;
  }
  run.scale = run.scaler.enabled ? await run.scaler.getScale() : 1;
  const { model, tokenizer } = run;
  post({
    type: 'ready', parameters: mp.countParameters(model.config), tokenizer: tokenizer.name, dataTokens: run.trainTokens,
    modelSource: files ? 'GPT-2 directory from disk' : `default mixprec train GPT (${model.config.nLayer} layers, width ${model.config.nEmbd})`,
  });
  await loop(run);
}

/** One ampStep; on statistics steps the gradients entering each block and the weight gradients are measured on the device, still scaled. */
async function trainStep(r: Run): Promise<void> {
  const { config: c, model, optimizer, scaler, policy } = r;
  const began = performance.now();
  r.step += 1;
  optimizer.setLr(mp.warmupCosine(r.step - 1, { lr: c.lr, minLr: c.minLr, warmup: c.warmup, decaySteps: c.maxSteps }));
  const sampling = r.step % STATS_INTERVAL === 0 || r.step === 1;
  if (sampling) r.stats.arm();
  const { loss, gradNorm } = mp.ampStep(() => {
    const { x, y } = batchTensors(model, r.sampler.next(), c.batchSize, c.blockSize);
    return model.forward(x, y).loss!;
  }, {
    optimizer, scaler, maxGradNorm: c.clip, autocast: policy.compute === 'float32' ? null : (policy.compute as AutocastDType),
    afterBackward: sampling ? () => r.stats.collectWeightGradients() : undefined,
  });
  gradNorm?.dispose();
  const value = await loss.item();
  loss.dispose();
  const scaleBefore = r.scale;
  r.scale = scaler.enabled ? await scaler.getScale() : 1;
  const seconds = (performance.now() - began) / 1000;
  post({
    type: 'step',
    report: {
      step: r.step, loss: value, scale: r.scale, skipped: r.scale < scaleBefore,
      tokensPerSec: (c.batchSize * c.blockSize) / seconds, memoryBytes: mp.memory(r.backend).bytes,
    },
  });
  if (sampling) await postStats(r, scaleBefore);
}

/** The log2-magnitude histogram of the sampled gradients (entering each block, and of the weights; scaled, as backward held them), summed. */
async function postStats(r: Run, scale: number): Promise<void> {
  const sample = await r.stats.read(r.step, scale);
  const counts: number[] = [];
  let total = 0, float16Underflow = 0, bfloat16Underflow = 0;
  for (const t of sample.tensors) {
    t.histogram.bins.forEach((c, i) => (counts[i] = (counts[i] ?? 0) + c));
    total += t.size;
    float16Underflow += t.float16.underflow * t.size;
    bfloat16Underflow += t.bfloat16.underflow * t.size;
  }
  post({ type: 'stats', step: r.step, scale, low: HISTOGRAM_LOW, counts, float16Underflow: float16Underflow / total, bfloat16Underflow: bfloat16Underflow / total });
}

function samplePrecision(policy: mp.Policy): SamplePrecision {
  return policy.compute === 'float16' ? 'fp16' : policy.compute === 'bfloat16' ? 'bf16' : 'fp32';
}

async function generate(r: Run, prompt: string, maxNewTokens: number): Promise<void> {
  const text = await sampleText(r.model, r.tokenizer, prompt, {
    maxNewTokens, temperature: 0.8, topK: 40, seed: r.step, precision: samplePrecision(r.policy),
  });
  post({ type: 'sample', prompt, text });
}

async function handleAtBoundary(r: Run, m: ToWorker): Promise<void> {
  if (m.type === 'generate') await generate(r, m.prompt, m.maxNewTokens);
  else if (m.type === 'download') {
    const files = await saveGPT2Files(r.model);
    post({ type: 'model', files }, files.map((f) => f.bytes));
  }
}

async function loop(r: Run): Promise<void> {
  r.running = true;
  post({ type: 'running', running: true, finished: false });
  while (r.running && r.step < r.config.maxSteps && run === r) {
    await trainStep(r);
    if (r.step % r.config.evalInterval === 0 || r.step === r.config.maxSteps) {
      const e = await evaluateLoss(r.model, r.validation, { policy: r.policy, batchSize: r.config.batchSize, blockSize: r.config.blockSize, tokenizer: r.tokenizer.name });
      post({ type: 'eval', step: r.step, loss: e.valLoss });
    }
    while (pending.length > 0) await handleAtBoundary(r, pending.shift()!);
    // Lets the page's messages (stop, generate) arrive between steps.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  r.running = false;
  post({ type: 'running', running: false, finished: r.step >= r.config.maxSteps });
}

function dispose(): void {
  if (!run) return;
  run.running = false;
  run.stats.dispose();
  run.optimizer.dispose();
  run.scaler.dispose();
  run.model.dispose();
  run.backend.destroy();
  run = null;
}

async function handle(m: ToWorker): Promise<void> {
  if (m.type === 'start') return start(m.settings, m.data, m.model);
  if (!run) return;
  if (m.type === 'stop') run.running = false;
  else if (m.type === 'resume') {
    if (!run.running && run.step < run.config.maxSteps) await loop(run);
  } else if (run.running) pending.push(m);
  else await handleAtBoundary(run, m);
}

scope.onmessage = (e) => {
  handle(e.data).catch((err: unknown) => {
    if (run) run.running = false;
    post({ type: 'error', message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    post({ type: 'running', running: false, finished: false });
  });
};
