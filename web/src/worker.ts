// One training run off the main thread: WebGPU backend, GPT, AdamW and
// GradScaler under the chosen precision policy, stepping until stopped, and
// reporting each step, each evaluation and the gradient statistics back to
// the page. Messages are handled between steps, so stop, resume, generate and
// download all act at a step boundary.
import * as mp from '../../src/core.js';
import { DEFAULT_MODEL_SIZES, DEFAULT_TRAIN_CONFIG } from '../../src/train/config.js';
import { evaluateLoss, batchTensors } from '../../src/train/evaluate.js';
import { sampleText, type SamplePrecision } from '../../src/train/sample.js';
import { StatsSampler } from '../../src/report/sampler.js';
import { HISTOGRAM_LOW } from '../../src/report/stats.js';
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
  settings: RunSettings;
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

const DEFAULT_SEED = DEFAULT_TRAIN_CONFIG.seed;
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
function makeModel(backend: mp.Backend, settings: RunSettings, files: HFModelFiles | null): mp.GPT {
  if (files) return loadGPT2Files(files.config, files.weights, backend);
  const config = mp.gptConfig(DEFAULT_TRAIN_CONFIG.model, {
    ...DEFAULT_MODEL_SIZES, vocabSize: 256, blockSize: settings.blockSize, dropout: DEFAULT_TRAIN_CONFIG.dropout,
  });
  return new mp.GPT(config, { backend, seed: DEFAULT_SEED });
}

/** The GradScaler of a policy's loss scaling: dynamic, a fixed scale, or none. */
function makeScaler(scaling: mp.LossScaling, backend: mp.Backend): mp.GradScaler {
  if (scaling === 'none') return new mp.GradScaler({ enabled: false, backend });
  if (scaling === 'dynamic') return new mp.GradScaler({ backend });
  return new mp.GradScaler({ initScale: scaling, dynamic: false, backend });
}

async function start(settings: RunSettings, data: TextData, files: HFModelFiles | null): Promise<void> {
  dispose();
  const backend = await backendOrExplain();
  if (!backend) return;
  const policy = mp.parsePolicy(settings.precision, settings.lossScale === 'auto' ? undefined : settings.lossScale);
  const tokenizer = await mp.loadTokenizer(files ? 'gpt2' : 'byte');
  const model = makeModel(backend, settings, files);
  const blockSize = Math.min(settings.blockSize, model.config.blockSize);
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  const trainTokens = tokenizer.encode(data.train);
  const shape = { batchSize: settings.batchSize, blockSize };
  const decay = model.parameters().filter((p) => p.ndim >= 2), noDecay = model.parameters().filter((p) => p.ndim < 2);
  const optimizer = new mp.AdamW([{ params: decay, weightDecay: DEFAULT_TRAIN_CONFIG.weightDecay }, { params: noDecay, weightDecay: 0 }], {
    lr: settings.lr, betas: [DEFAULT_TRAIN_CONFIG.beta1, DEFAULT_TRAIN_CONFIG.beta2],
  });
  run = {
    backend, settings: { ...settings, blockSize }, policy, tokenizer, model, optimizer,
    scaler: makeScaler(policy.lossScaling, backend),
    sampler: new mp.BatchSampler(trainTokens, { ...shape, seed: DEFAULT_SEED, split: 'train' }),
    validation: mp.evalBatches(tokenizer.encode(data.validation), { ...shape, steps: EVAL_BATCHES, split: 'validation' }),
    stats: new StatsSampler(model),
    step: 0, scale: 0, running: false,
  };
  post({
    type: 'ready', parameters: mp.countParameters(model.config), tokenizer: tokenizer.name, dataTokens: trainTokens.length,
    modelSource: files ? 'GPT-2 directory from disk' : `default mixprec train GPT (${model.config.nLayer} layers, width ${model.config.nEmbd})`,
  });
  await loop(run);
}

/** One optimizer step (PyTorch's AMP recipe); on statistics steps the gradients entering each block are measured on the device. */
async function trainStep(r: Run): Promise<void> {
  const { settings, model, optimizer, scaler, policy } = r;
  const began = performance.now();
  r.step += 1;
  optimizer.setLr(mp.warmupCosine(r.step - 1, { lr: settings.lr, minLr: settings.lr / 10, warmup: DEFAULT_TRAIN_CONFIG.warmup, decaySteps: settings.maxSteps }));
  const sampling = r.step % settings.statsInterval === 0 || r.step === 1;
  if (sampling) r.stats.arm();
  const batch = r.sampler.next();
  const loss = mp.tidy(() => {
    const { x, y } = batchTensors(model, batch, settings.batchSize, settings.blockSize);
    const l = mp.withPolicy(policy, () => model.forward(x, y).loss!);
    scaler.scale(l).backward();
    if (sampling) r.stats.collectWeightGradients();
    scaler.unscale(optimizer);
    mp.clipGradNorm(optimizer, DEFAULT_TRAIN_CONFIG.clip);
    scaler.step(optimizer);
    scaler.update();
    optimizer.zeroGrad();
    return l;
  });
  const value = await loss.item();
  loss.dispose();
  const scaleBefore = r.scale;
  r.scale = scaler.enabled ? await scaler.getScale() : 1;
  const seconds = (performance.now() - began) / 1000;
  post({
    type: 'step',
    report: {
      step: r.step, loss: value, scale: r.scale, skipped: r.scale < scaleBefore,
      tokensPerSec: (settings.batchSize * settings.blockSize) / seconds, memoryBytes: mp.memory(r.backend).bytes,
    },
  });
  if (sampling) await postStats(r, scaleBefore);
}

/** The log2-magnitude histogram of the sampled gradients, summed over the blocks' activation gradients and the weight gradients. */
async function postStats(r: Run, scale: number): Promise<void> {
  const sample = await r.stats.read(r.step, scale);
  const counts: number[] = [];
  let below = 0, above = 0, zeros = 0, total = 0;
  for (const t of sample.tensors) {
    t.histogram.bins.forEach((c, i) => (counts[i] = (counts[i] ?? 0) + c));
    below += t.histogram.below;
    above += t.histogram.above;
    zeros += Math.round(t.zeros * t.size);
    total += t.size;
  }
  post({ type: 'stats', step: r.step, scale, low: HISTOGRAM_LOW, counts, below, above, zeros, total });
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
  while (r.running && r.step < r.settings.maxSteps && run === r) {
    await trainStep(r);
    if (r.step % r.settings.evalInterval === 0 || r.step === r.settings.maxSteps) {
      const e = await evaluateLoss(r.model, r.validation, { policy: r.policy, batchSize: r.settings.batchSize, blockSize: r.settings.blockSize, tokenizer: r.tokenizer.name });
      post({ type: 'eval', step: r.step, loss: e.valLoss });
    }
    while (pending.length > 0) await handleAtBoundary(r, pending.shift()!);
    // Lets the page's messages (stop, generate) arrive between steps.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  r.running = false;
  post({ type: 'running', running: false, finished: r.step >= r.settings.maxSteps });
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
    if (!run.running && run.step < run.settings.maxSteps) await loop(run);
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
