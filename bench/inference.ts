// Inference in each weight format, on every backend asked for: validation loss
// and perplexity from `mixprec eval --weights F --json` (relative to float32),
// weight memory, prompt and generated tokens per second, and the backend's peak
// memory over loading and generating. Each measurement runs in its own process
// (a fresh backend, so its peak is its own); formats alternate within each
// repetition and the best speed of the repetitions is kept. Writes a markdown
// table and the raw numbers (--out FILE.md, FILE.json); never run by the tests.
//
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/inference.ts --model DIR [--backends cpu,webgpu]
//     [--formats fp32,fp16,bf16,int8,int4] [--eval-steps N] [--batch-size N] [--block-size N]
//     [--prompt 32] [--new-tokens 32] [--reps 1] [--out bench/results/inference-NAME]
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/inference.ts --save-random-gpt2 DIR
//
// DIR is a run directory (`mixprec train --out`) or a GPT-2 directory. The second
// form writes GPT-2 124M with random weights (GPT-2's initialisation, seed 0) once.

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseArgs, promisify } from 'node:util';
import { CpuBackend } from '../src/backend/cpu/backend.js';
import { createWebGPUBackend } from '../src/backend/webgpu/backend.js';
import { saveGPT2 } from '../src/io/gpt2.js';
import { GPT } from '../src/nn/gpt.js';
import { gptConfig } from '../src/nn/gpt-config.js';
import { parseWeightFormat, weightBytes, type WeightFormat } from '../src/nn/quantize.js';
import { loadTokenizer } from '../src/data/tokenizer.js';
import { tensor } from '../src/tensor/creation.js';
import { openModelDir } from '../src/train/model-dir.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    'save-random-gpt2': { type: 'string' },
    backends: { type: 'string', default: 'cpu,webgpu' },
    formats: { type: 'string', default: 'fp32,fp16,bf16,int8,int4' },
    'eval-steps': { type: 'string' },
    'batch-size': { type: 'string' },
    'block-size': { type: 'string' },
    prompt: { type: 'string', default: '32' },
    'new-tokens': { type: 'string', default: '32' },
    reps: { type: 'string', default: '1' },
    out: { type: 'string' },
    // Internal: one speed and memory measurement, printed as JSON (the child process).
    speed: { type: 'string' },
  },
});
const run = promisify(execFile);
const tsx = ['--import', 'tsx'];
const PROMPT_TEXT = 'The jury said it did find that the city had been taken by surprise, and the election was conducted in a fair manner by the people of Fulton County, who had been given every opportunity to vote.';

interface Speed { weightBytes: number; promptTokens: number; newTokens: number; promptTps: number; genTps: number; peakBytes: number }
interface Eval { valLoss: number; perplexity: number; evalTokens: number }
interface Row { backend: string; format: WeightFormat; eval?: Eval; speed?: Speed; evalSec?: number; error?: string }

/** In the child: load the model in `format` on a fresh backend, time a prompt pass and greedy generation, read the peak. */
async function measureSpeed(backendName: string, format: WeightFormat): Promise<Speed> {
  const backend = backendName === 'webgpu' ? await createWebGPUBackend({ register: false }) : new CpuBackend();
  const { model, tokenizer } = await openModelDir(a.model!, { backend, weights: format });
  const tok = await loadTokenizer(tokenizer ?? 'byte');
  const P = Number(a.prompt), N = Number(a['new-tokens']);
  const ids = tok.encode(PROMPT_TEXT.repeat(4)).slice(0, P);
  const prompt = tensor(Int32Array.from(ids), { shape: [1, P], dtype: 'int32', backend });
  const timed = async (maxNewTokens: number) => {
    const t0 = performance.now();
    (await model.generate(prompt, { maxNewTokens, temperature: 0 })).dispose();
    return (performance.now() - t0) / 1000;
  };
  await timed(2); // warm-up: pipelines compiled, pool filled
  // The prompt pass and its first token; then N more tokens after it.
  const prefill = await timed(1);
  const total = await timed(N + 1);
  return { weightBytes: weightBytes(model), promptTokens: P, newTokens: N, promptTps: P / prefill, genTps: N / (total - prefill), peakBytes: backend.memory().peakBytes };
}

async function child(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [...tsx, ...args], { maxBuffer: 1 << 24, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return stdout.trim().split('\n').at(-1)!;
}

async function measure(row: Row): Promise<void> {
  const pass = (k: 'eval-steps' | 'batch-size' | 'block-size') => (a[k] ? [`--${k}`, a[k]!] : []);
  try {
    if (!row.eval) {
      const t0 = performance.now();
      row.eval = JSON.parse(await child(['src/cli/main.ts', 'eval', '--checkpoint', a.model!, '--weights', row.format, '--precision', 'fp32',
        '--backend', row.backend, '--json', ...pass('eval-steps'), ...pass('batch-size'), ...pass('block-size')])) as Eval;
      row.evalSec = (performance.now() - t0) / 1000;
    }
    const s = JSON.parse(await child(['bench/inference.ts', '--speed', `${row.backend}:${row.format}`, '--model', a.model!, '--prompt', a.prompt!, '--new-tokens', a['new-tokens']!])) as Speed;
    // The best of the repetitions: the machine is shared, and slower runs are other work's.
    row.error = undefined;
    if (!row.speed) row.speed = s;
    else row.speed = { ...s, promptTps: Math.max(s.promptTps, row.speed.promptTps), genTps: Math.max(s.genTps, row.speed.genTps) };
  } catch (e) {
    row.error = `${(e as Error).message.split('\n').filter(Boolean).slice(-2).join(' ').slice(0, 300)}`;
  }
  console.error(JSON.stringify(row));
}

const pct = (v: number, base: number | undefined) => (base === undefined ? '-' : `${v >= base ? '+' : ''}${(((v - base) / base) * 100).toFixed(2)}%`);
const int = (v: number) => Math.round(v).toLocaleString('en-US');

function table(rows: Row[]): string {
  const lines = [
    '| backend | weights | val loss | vs fp32 | perplexity | weight bytes | vs fp32 | prompt tok/s | generated tok/s | peak bytes (load + generate) | vs fp32 |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const base = rows.find((x) => x.backend === r.backend && x.format === 'fp32');
    if (r.error || !r.eval || !r.speed) { lines.push(`| ${r.backend} | ${r.format} | ${r.error ?? 'not measured'} | | | | | | | | |`); continue; }
    const { eval: e, speed: s } = r;
    lines.push(`| ${r.backend} | ${r.format} | ${e.valLoss.toFixed(4)} | ${pct(e.valLoss, base?.eval?.valLoss)} | ${e.perplexity.toFixed(2)} | ${int(s.weightBytes)} | ${pct(s.weightBytes, base?.speed?.weightBytes)} `
      + `| ${s.promptTps.toFixed(1)} | ${s.genTps.toFixed(2)} | ${int(s.peakBytes)} | ${pct(s.peakBytes, base?.speed?.peakBytes)} |`);
  }
  return lines.join('\n');
}

if (a['save-random-gpt2']) {
  const model = new GPT(gptConfig('gpt2'), { backend: new CpuBackend(), seed: 0 });
  await saveGPT2(model, a['save-random-gpt2']);
  console.log(`GPT-2 124M, random weights (seed 0) -> ${a['save-random-gpt2']}`);
} else if (a.speed) {
  const [backend, format] = a.speed.split(':') as [string, string];
  console.log(JSON.stringify(await measureSpeed(backend, parseWeightFormat(format))));
  process.exit(0); // the WebGPU device would otherwise keep the process alive
} else {
  if (!a.model) throw new Error('--model DIR is required (a run directory or a GPT-2 directory)');
  const load = [loadavg()[0]!];
  const started = new Date().toISOString();
  const rows: Row[] = a.backends!.split(',').flatMap((backend) => a.formats!.split(',').map((f) => ({ backend, format: parseWeightFormat(f) })));
  for (let rep = 0; rep < Number(a.reps); rep++) for (const r of rows) await measure(r);
  load.push(loadavg()[0]!);
  const settings = { model: a.model, evalSteps: a['eval-steps'] ?? "the run's", batchSize: a['batch-size'] ?? "the run's", blockSize: a['block-size'] ?? "the run's", promptTokens: Number(a.prompt), newTokens: Number(a['new-tokens']), reps: Number(a.reps) };
  const md = [`# ${a.model}, ${started}`, '', `load average ${load[0]!.toFixed(2)} at start, ${load[1]!.toFixed(2)} at the end; settings ${JSON.stringify(settings)}`, '', table(rows), ''].join('\n');
  console.log(md);
  if (a.out) {
    await writeFile(`${a.out}.md`, md);
    await writeFile(`${a.out}.json`, `${JSON.stringify({ started, loadAverage: load, settings, rows }, null, 2)}\n`);
  }
}
