// Inference in each weight format: validation loss and perplexity (relative to
// float32), weight memory, prompt and generated tokens per second, and peak
// backend memory while generating, on every backend asked for. Prints a
// markdown table; never run by the tests.
//
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/inference.ts --model RUN_DIR|gpt2-random [--backends cpu,webgpu]
//     [--formats fp32,fp16,bf16,int8,int4] [--eval-steps 4] [--batch-size 4] [--block-size 128]
//     [--prompt 64] [--new-tokens 32]
//
// gpt2-random is GPT-2 124M with the benchmarks' deterministic initialisation
// (no download), evaluated with the GPT-2 tokenizer on the Brown corpus: its loss
// is that of an untrained model, useful only relative to float32. Each format
// gets a fresh backend, so its peak memory is its own.

import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { Backend } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/backend.js';
import { createWebGPUBackend } from '../src/backend/webgpu/backend.js';
import { parsePolicy } from '../src/amp/policy.js';
import { evalBatches } from '../src/data/batches.js';
import { loadTokenizedSplits } from '../src/data/cache.js';
import { loadTokenizer, type TokenizerName } from '../src/data/tokenizer.js';
import { GPT } from '../src/nn/gpt.js';
import { gptConfig } from '../src/nn/gpt-config.js';
import { parseWeightFormat, toWeightFormat, weightBytes, type WeightFormat } from '../src/nn/quantize.js';
import { tensor } from '../src/tensor/creation.js';
import { evaluateLoss } from '../src/train/evaluate.js';
import { openModelDir } from '../src/train/model-dir.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'gpt2-random' },
    backends: { type: 'string', default: 'cpu,webgpu' },
    formats: { type: 'string', default: 'fp32,fp16,bf16,int8,int4' },
    'eval-steps': { type: 'string', default: '4' },
    'batch-size': { type: 'string', default: '4' },
    'block-size': { type: 'string', default: '128' },
    prompt: { type: 'string', default: '64' },
    'new-tokens': { type: 'string', default: '32' },
  },
});
const num = (k: keyof typeof a) => Number(a[k]);

async function makeBackend(name: string): Promise<Backend> {
  return name === 'webgpu' ? createWebGPUBackend({ register: false }) : new CpuBackend();
}

async function openModel(backend: Backend, format: WeightFormat): Promise<{ model: GPT; tokenizer: TokenizerName }> {
  if (a.model === 'gpt2-random') {
    const model = new GPT(gptConfig('gpt2'), { backend, init: 'gpt-mini' });
    return { model: await toWeightFormat(model, format), tokenizer: 'gpt2' };
  }
  const opened = await openModelDir(a.model!, { backend, weights: format });
  return { model: opened.model, tokenizer: opened.tokenizer ?? 'byte' };
}

interface Row { backend: string; format: WeightFormat; loss?: number; ppl?: number; weightMiB?: number; promptTps?: number; genTps?: number; peakMiB?: number; error?: string }

async function measure(backendName: string, format: WeightFormat): Promise<Row> {
  const backend = await makeBackend(backendName);
  const row: Row = { backend: backendName, format };
  let model: GPT | undefined;
  try {
    const opened = await openModel(backend, format);
    model = opened.model;
    row.weightMiB = weightBytes(model) / 2 ** 20;
    const tokenizer = await loadTokenizer(opened.tokenizer);
    const data = await loadTokenizedSplits({ tokenizer });
    const [batchSize, blockSize, steps] = [num('batch-size'), Math.min(num('block-size'), model.config.blockSize), num('eval-steps')];
    const r = await evaluateLoss(model, evalBatches(data.validation, { batchSize, blockSize, steps, split: 'validation' }),
      { policy: parsePolicy('fp32', 'none'), batchSize, blockSize, tokenizer: opened.tokenizer });
    row.loss = r.valLoss;
    row.ppl = r.perplexity;
    // Prompt: one cached pass over P tokens (after a warm-up); generation: N greedy steps after it.
    const P = num('prompt'), N = num('new-tokens');
    const ids = tensor(Int32Array.from(data.validation.subarray(0, P)), { shape: [1, P], dtype: 'int32', backend });
    await model.generate(ids, { maxNewTokens: 1, temperature: 0 }).then((t) => t.dispose());
    let t0 = performance.now();
    await model.generate(ids, { maxNewTokens: 1, temperature: 0 }).then((t) => t.dispose());
    const prefill = performance.now() - t0;
    row.promptTps = P / (prefill / 1000);
    t0 = performance.now();
    await model.generate(ids, { maxNewTokens: N + 1, temperature: 0 }).then((t) => t.dispose());
    row.genTps = N / ((performance.now() - t0 - prefill) / 1000);
    row.peakMiB = backend.memory().peakBytes / 2 ** 20;
    ids.dispose();
  } catch (e) {
    row.error = `${(e as Error).name}: ${(e as Error).message.split('\n')[0]!.slice(0, 160)}`;
  } finally {
    model?.dispose();
    (backend as { destroy?: () => void }).destroy?.();
  }
  return row;
}

const fmt = (v: number | undefined, d = 1) => (v === undefined ? '-' : v.toFixed(d));
const start = loadavg()[0]!;
console.log(`# ${a.model}: load average ${start.toFixed(2)} at start`);
const rows: Row[] = [];
for (const backend of a.backends!.split(',')) {
  for (const format of a.formats!.split(',').map((f) => parseWeightFormat(f))) {
    const r = await measure(backend, format);
    rows.push(r);
    console.error(JSON.stringify(r));
  }
}
console.log('| backend | weights | val loss | vs fp32 | perplexity | weight MiB | prompt tok/s | generated tok/s | peak MiB (generating) |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const base = rows.find((x) => x.backend === r.backend && x.format === 'fp32')?.loss ?? rows.find((x) => x.format === 'fp32' && x.loss !== undefined)?.loss;
  const rel = r.loss !== undefined && base !== undefined ? `${(((r.loss - base) / base) * 100).toFixed(2)}%` : '-';
  if (r.error) console.log(`| ${r.backend} | ${r.format} | ${r.error} | | | ${fmt(r.weightMiB)} | | | |`);
  else console.log(`| ${r.backend} | ${r.format} | ${fmt(r.loss, 4)} | ${rel} | ${fmt(r.ppl, 2)} | ${fmt(r.weightMiB)} | ${fmt(r.promptTps)} | ${fmt(r.genTps, 2)} | ${fmt(r.peakMiB)} |`);
}
console.log(`# load average ${loadavg()[0]!.toFixed(2)} at the end`);
