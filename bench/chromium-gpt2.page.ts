// Runs in headless Chromium (bundled by bench/chromium-gpt2.ts): GPT-2 124M,
// random init, on the page's WebGPU adapter; one forward, backward and AdamW
// step through ampStep and a GradScaler under the policy in the URL's query,
// then the loss again on the same batch. Posts what it measured to /result.
import { postResult } from '../test/browser/post-result.js';
import * as mp from '../src/core.js';

const query = new URLSearchParams(location.search);
const precision = query.get('precision') ?? 'fp32';
const blockSize = Number(query.get('block') ?? 64);
/** A binding limit below the adapter's (bytes), as many browsers and phones have; absent: the adapter's. */
const maxBindingBytes = query.has('maxBinding') ? Number(query.get('maxBinding')) : undefined;
/** Attempts at one applied step: fp16's dynamic loss scale may skip a step on overflow and halve the scale. */
const MAX_ATTEMPTS = 4;

const seconds = (start: number) => (performance.now() - start) / 1000;

async function run(): Promise<Record<string, unknown>> {
  if (!('gpu' in navigator)) return { error: 'navigator.gpu is missing' };
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return { error: 'navigator.gpu.requestAdapter() returned null' };
  const limits = { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize };
  const backend = await mp.createWebGPUBackend({ register: false, maxBindingBytes });
  const out: Record<string, unknown> = { precision, blockSize, adapter: backend.adapterInfo, limits, bindingBytes: backend.rt.maxBindingBytes };
  const policy = mp.parsePolicy(precision);
  const config = mp.gptConfig('gpt2', { blockSize });

  let t = performance.now();
  const model = new mp.GPT(config, { backend, seed: 1 });
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  await backend.sync();
  out.buildSeconds = seconds(t);
  out.parameters = model.parameters().reduce((n, p) => n + p.size, 0);

  const opt = new mp.AdamW(model.parameters(), { lr: 6e-4, betas: [0.9, 0.95], weightDecay: 0.1 });
  const scaler = new mp.GradScaler({ enabled: policy.lossScaling === 'dynamic', backend });
  // Tokens spread over the whole vocabulary (a multiplicative hash), the same in every run.
  const tokens = Int32Array.from({ length: blockSize + 1 }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 0) % config.vocabSize);
  const x = mp.tensor(tokens.subarray(0, blockSize), { shape: [1, blockSize], backend });
  const y = mp.tensor(tokens.subarray(1), { shape: [1, blockSize], backend });
  const autocast = policy.compute === 'float32' ? null : (policy.compute as 'float16' | 'bfloat16');

  const attempts: { loss: number; scale: number; applied: boolean; seconds: number }[] = [];
  for (let k = 0; k < MAX_ATTEMPTS; k++) {
    const scale = await scaler.getScale();
    t = performance.now();
    const { loss, gradNorm } = mp.ampStep(() => model.forward(x, y).loss!, { optimizer: opt, scaler, maxGradNorm: 1, autocast });
    const value = await loss.item();
    const after = await scaler.getScale();
    attempts.push({ loss: value, scale, applied: !(after < scale), seconds: seconds(t) });
    loss.dispose();
    gradNorm?.dispose();
    if (attempts.at(-1)!.applied) break;
  }
  out.attempts = attempts;
  out.firstLoss = attempts[0]!.loss;

  t = performance.now();
  const after = mp.noGrad(() => mp.tidy(() => mp.withPolicy(policy, () => model.forward(x, y).loss!)));
  out.lossAfterStep = await after.item();
  out.evalSeconds = seconds(t);
  after.dispose();
  out.memory = mp.memory(backend);
  x.dispose();
  y.dispose();
  opt.dispose();
  scaler.dispose();
  model.dispose();
  out.tensorsLeft = mp.memory(backend).tensors;
  backend.destroy();
  return out;
}

await postResult(run);
