// One benchmark case, run in its own process by bench/run.ts so that every
// configuration starts from a fresh backend (its peak memory is its own) and
// a crash or hang in one cannot spoil the others. Prints one `RESULT {json}` line.
//
//   node --import tsx bench/cases.ts probe
//   node --import tsx bench/cases.ts matmul --backend=webgpu --dtype=float16 --sizes=256,512 [--target-ms=300] [--batches=5]
//   node --import tsx bench/cases.ts train --backend=cpu --model=default|gpt2 --precision=fp16 --warmup=3 --steps=10
//   node --import tsx bench/cases.ts ceiling   (the WebGPU adapter's float32 arithmetic ceiling, bench/adapter-ceiling.ts)

/// <reference types="@webgpu/types" />

import { loadavg } from 'node:os';
import type { Backend, View } from '../src/backend/backend.js';
import type { FloatDType } from '../src/dtype/dtype.js';
import { parsePolicy, withPolicy } from '../src/amp/policy.js';
import { clipGradNorm } from '../src/optim/clip.js';
import { GPT, countParameters, gptConfig, type GPTConfig } from '../src/nn/gpt.js';
import { memory, tidy } from '../src/tensor/tensor.js';
import { tensor } from '../src/tensor/creation.js';
import { DEFAULT_TRAIN_CONFIG, resolveTrainConfig, type TrainConfig } from '../src/train/config.js';
import { selectBackend } from '../src/train/select-backend.js';
import { createOptimizer, createScaler, modelConfig } from '../src/train/trainer.js';
import type { WebGPUBackend } from '../src/backend/webgpu/backend.js';
import { measureCeiling } from './adapter-ceiling.js';

type Args = Record<string, string>;

function parseArgs(argv: string[]): { command: string; args: Args } {
  const [command = '', ...rest] = argv;
  const args: Args = {};
  for (const a of rest) {
    const m = /^--([^=]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bench/cases.ts: cannot parse argument '${a}' (expected --key=value)`);
    args[m[1]!] = m[2]!;
  }
  return { command, args };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

const load = () => loadavg().map((x) => +x.toFixed(2));
const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

function print(result: object): void {
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** A Dawn object's fields, which are getters on its prototype (JSON.stringify sees none of them). */
function ownAndInherited(o: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in o) out[k] = (o as Record<string, unknown>)[k];
  return out;
}

/**
 * What the adapter offers beyond what the backend uses: every feature, the subgroup sizes,
 * the subgroup-matrix configurations (Dawn's chromium-experimental-subgroup-matrix) and the
 * buffer limits. Asked of a second adapter with the unsafe features allowed, so that
 * experimental features are listed.
 */
async function adapterDetails(): Promise<object> {
  try {
    const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU };
    const gpu = create(['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { detailsError: 'no adapter on the second request' };
    const info = adapter.info as GPUAdapterInfo & { subgroupMatrixConfigs?: object[]; subgroupMinSize?: number; subgroupMaxSize?: number };
    return {
      vendor: info.vendor, architecture: info.architecture, device: info.device,
      features: [...adapter.features].sort(),
      subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize,
      subgroupMatrixConfigs: (info.subgroupMatrixConfigs ?? []).map(ownAndInherited),
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize,
    };
  } catch (err) {
    return { detailsError: (err as Error).message };
  }
}

/** The adapter this process gets, or why there is none. */
async function probe(): Promise<void> {
  try {
    const { backend, description } = await selectBackend('webgpu');
    const info = (backend as Backend & { adapterInfo?: { description: string; hasF16: boolean; isSoftware: boolean; hasSubgroups: boolean } }).adapterInfo;
    print({
      kind: 'probe', available: true, description, adapter: info?.description ?? '', shaderF16: info?.hasF16 ?? false,
      subgroups: info?.hasSubgroups ?? false, isSoftware: info?.isSoftware ?? false, ...(await adapterDetails()),
    });
    (backend as Backend & { destroy?: () => void }).destroy?.();
  } catch (err) {
    print({ kind: 'probe', available: false, reason: (err as Error).message });
  }
}

/** Deterministic values in [-0.5, 0.5): a matmul's speed does not depend on them, only finiteness matters. */
function randomValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/**
 * C = A B through backend.matmul (what training uses): A, B and C stored in `dtype`,
 * accumulated in float32. Each timed batch is `reps` products followed by a sync;
 * the result is the median over batches of the time per product.
 */
async function matmulCase(args: Args): Promise<void> {
  const { backend, description } = await selectBackend(args.backend as 'cpu' | 'webgpu');
  const dtype = args.dtype as FloatDType;
  const sizes = (args.sizes ?? '256,512,1024').split(',').map(Number);
  const targetMs = +(args['target-ms'] ?? 300);
  const batches = +(args.batches ?? 5);
  for (const n of sizes) {
    const loadStart = load();
    const alloc = (seed: number | null): View => {
      const buf = backend.alloc(dtype, n * n);
      const v: View = { buf, offset: 0, size: n * n, dtype };
      if (seed !== null) backend.write(v, randomValues(n * n, seed));
      return v;
    };
    const a = alloc(1), b = alloc(2), c = alloc(null);
    const spec = { batch: 1, m: n, n, k: n, transA: false, transB: false, strideA: 0, strideB: 0 };
    const timeBatch = async (reps: number): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) backend.matmul(a, b, c, spec);
      await backend.sync();
      return (performance.now() - t0) / reps;
    };
    await timeBatch(1); // warm-up: compiles the kernel, first touch of the buffers
    const estimate = await timeBatch(1);
    const reps = Math.max(1, Math.min(50, Math.round(targetMs / estimate)));
    // A single product of several seconds (the CPU backend at n >= 2048) needs fewer batches.
    const nBatches = estimate > 2000 ? Math.min(batches, 3) : batches;
    const times: number[] = [];
    for (let i = 0; i < nBatches; i++) times.push(await timeBatch(reps));
    // One element read back: the product really ran and is finite.
    const first = (await backend.read({ ...c, size: 1 }))[0]!;
    for (const v of [a, b, c]) backend.free(v.buf);
    const ms = median(times);
    print({
      kind: 'matmul', backend: backend.name, backendDescription: description, dtype, n,
      ms, msMin: Math.min(...times), gflops: (2 * n ** 3) / (ms * 1e6), repsPerBatch: reps, batches: nBatches,
      finite: Number.isFinite(first), loadStart, loadEnd: load(),
    });
  }
}

/** The WebGPU adapter's float32 ceiling: multiply-adds on registers only, which no matmul can exceed there. */
async function ceilingCase(): Promise<void> {
  const { backend, description } = await selectBackend('webgpu');
  const gpu = backend as WebGPUBackend;
  const c = await measureCeiling(gpu.rt.device, { groups: gpu.adapterInfo.isSoftware ? 1024 : 16384 });
  print({ kind: 'ceiling', backend: backend.name, backendDescription: description, gflops: c.gflops, shapes: c.shapes, loadEnd: load() });
}

/** The two benchmark models: the default run's (with its batch and block) and GPT-2 124M. */
function trainSetup(model: string, precision: string, batch?: number, block?: number): { config: TrainConfig; gpt: GPTConfig; label: string } {
  if (model === 'default') {
    const config = resolveTrainConfig({ precision, batchSize: batch ?? DEFAULT_TRAIN_CONFIG.batchSize, blockSize: block ?? DEFAULT_TRAIN_CONFIG.blockSize });
    return { config, gpt: modelConfig(config, 256), label: 'default GPT' };
  }
  if (model === 'gpt2') {
    // GPT-2 124M as published (1024 positions), trained on short windows so that a step fits here.
    // nanoGPT's learning rate for GPT-2 124M; the default run's 5e-3 is for its small model.
    const config = resolveTrainConfig({ precision, model: 'gpt2', tokenizer: 'gpt2', batchSize: batch ?? 1, blockSize: block ?? 128, lr: 6e-4, minLr: 6e-5 });
    return { config, gpt: gptConfig('gpt2'), label: 'GPT-2 124M' };
  }
  throw new Error(`bench/cases.ts: unknown model '${model}' (default or gpt2)`);
}

/**
 * The real AMP training step, as the trainer runs it: forward under the policy's
 * autocast, scaled backward, unscale, clip, AdamW step through the scaler, scale
 * update, zero grad, all inside tidy; then the loss is read back (a device sync)
 * as the peer harness's protocol does.
 */
async function trainCase(args: Args): Promise<void> {
  const loadStart = load();
  const precision = args.precision ?? 'fp32';
  const policy = parsePolicy(precision);
  const { config, gpt, label } = trainSetup(args.model ?? 'default', precision, args.batch ? +args.batch : undefined, args.block ? +args.block : undefined);
  const warmup = +(args.warmup ?? 3), steps = +(args.steps ?? 10);
  const { backend, description } = await selectBackend(args.backend as 'cpu' | 'webgpu');
  const bytesAtStart = memory(backend).bytes;

  const model = new GPT(gpt, { backend, dtype: policy.params as FloatDType, seed: config.seed });
  const optimizer = createOptimizer(model, config);
  const scaler = createScaler(config, backend);
  const B = config.batchSize, T = config.blockSize, V = gpt.vocabSize;

  // Synthetic tokens (throughput does not depend on them): a fixed LCG stream, a new window each step.
  let s = 1234;
  const nextBatch = () => {
    const x = new Int32Array(B * T), y = new Int32Array(B * T);
    let prev = (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V;
    for (let i = 0; i < B * T; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const next = (s >>> 30) === 0 ? (s >>> 8) % V : (prev * 37 + 11 + ((s >>> 20) & 3)) % V;
      x[i] = prev; y[i] = next; prev = next;
    }
    return { x, y };
  };

  const step = async (): Promise<number> => {
    const { x, y } = nextBatch();
    const loss = tidy(() => {
      const ids = tensor(x, { shape: [B, T], dtype: 'int32' });
      const targets = tensor(y, { shape: [B, T], dtype: 'int32' });
      const l = withPolicy(policy, () => model.forward(ids, targets).loss!);
      scaler.scale(l).backward();
      scaler.unscale(optimizer);
      if (config.clip > 0) clipGradNorm(optimizer, config.clip);
      scaler.step(optimizer);
      scaler.update();
      optimizer.zeroGrad();
      return l;
    });
    const v = await loss.item();
    loss.dispose();
    return v;
  };

  const losses: number[] = [], times: number[] = [];
  for (let k = 0; k < warmup + steps; k++) {
    const t0 = performance.now();
    const loss = await step();
    const dt = performance.now() - t0;
    losses.push(loss);
    if (k >= warmup) times.push(dt);
    if (process.env.BENCH_VERBOSE) console.error(`step ${k} loss ${loss.toFixed(4)} ${dt.toFixed(0)} ms`);
  }
  const mem = memory(backend);
  const ms = median(times);
  print({
    kind: 'train', backend: backend.name, backendDescription: description, model: args.model ?? 'default', modelLabel: label,
    precision, policy: policy.name, lossScaling: policy.lossScaling, parameters: countParameters(gpt),
    nLayer: gpt.nLayer, nHead: gpt.nHead, nEmbd: gpt.nEmbd, vocabSize: V, batch: B, block: T, warmup, steps,
    msPerStep: ms, msMin: Math.min(...times), msMean: times.reduce((a, b) => a + b, 0) / times.length,
    tokensPerSec: (B * T * 1000) / ms,
    // Bytes live on the backend before the model was made (normally 0): peak is counted from there.
    bytesAtStart, peakBytes: mem.peakBytes - bytesAtStart, bytesAfter: mem.bytes - bytesAtStart, peakRssMB: peakRssMB(),
    lossFirst: losses[0], lossFinal: losses[losses.length - 1], finalScale: await scaler.getScale(),
    losses: losses.map((l) => +l.toFixed(4)), loadStart, loadEnd: load(),
  });
}

const { command, args } = parseArgs(process.argv.slice(2));
if (command === 'probe') await probe();
else if (command === 'matmul') await matmulCase(args);
else if (command === 'train') await trainCase(args);
else if (command === 'ceiling') await ceilingCase();
else throw new Error(`bench/cases.ts: unknown command '${command}' (probe, matmul, train or ceiling)`);
// Dawn keeps the process alive while a device exists; every case runs in its own process.
process.exit(0);
