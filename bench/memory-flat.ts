// Is memory flat over a long GPT-2 124M run on WebGPU? Trains GPT-2 124M
// (random init, random token batches) with the trainer's step (trainingStep:
// ampStep with AdamW, clipping and the GradScaler, as `mixprec train` builds
// them) and records after every step: the backend's memory() (bytes held,
// buffers, peak), the bytes and buffers of live tensors (held minus the pool's
// free blocks), the live tensor count, process RSS and V8 heap used. Live
// buffers are also counted by block size, so that growth can be traced to the
// buffers that make it. The results files are rewritten after every step, so
// a run cut short (by `timeout`) keeps what it reached.
//
//   node --import tsx bench/memory-flat.ts [--steps 200] [--precision bf16] [--batch 1] [--block 64] [--name memory-flat]
//   node --import tsx bench/memory-flat.ts --render NAME      (rewrites NAME.md from NAME.json)
//
// Writes bench/results/NAME.json (every step) and NAME.md (the summary).

/// <reference types="@webgpu/types" />

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import type { WebGPUBackend } from '../src/backend/webgpu/backend.js';
import type { GpuBuf } from '../src/backend/webgpu/buffer-pool.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MILESTONES = [10, 50, 100, 150, 200];
/** RSS is called flat below this growth per step (0.1 MB/step is 20 MB over 200 steps; GC and driver caches move it by more). */
const RSS_FLAT_BYTES_PER_STEP = 100_000;

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const load = () => loadavg().map((x) => +x.toFixed(2));

interface StepRecord {
  step: number; loss: number; sec: number;
  /** backend.memory(): bytes and buffers held from the device (live and pooled), and their peak. */
  heldBytes: number; heldBuffers: number; peakBytes: number;
  /** Held minus the pool's free blocks: the buffers of live tensors. */
  liveBytes: number; liveBuffers: number; liveTensors: number;
  rss: number; heapUsed: number;
}

/**
 * Counts live pool blocks by size, by wrapping the pool's alloc and release
 * (bench-only introspection: the pool keeps totals, not a list of live blocks).
 */
function trackLiveBlocks(backend: WebGPUBackend): { bySize: Map<number, number>; pooledBytes: () => number } {
  const pool = (backend.rt as unknown as { pool: { alloc: (...a: unknown[]) => GpuBuf; release: (b: GpuBuf) => void; free: Map<number, unknown[]> } }).pool;
  const bySize = new Map<number, number>();
  const alloc = pool.alloc.bind(pool), release = pool.release.bind(pool);
  pool.alloc = (...a: unknown[]) => {
    const buf = alloc(...a);
    bySize.set(buf.block.bytes, (bySize.get(buf.block.bytes) ?? 0) + 1);
    return buf;
  };
  pool.release = (buf: GpuBuf) => {
    release(buf);
    bySize.set(buf.block.bytes, bySize.get(buf.block.bytes)! - 1);
  };
  const pooledBytes = () => [...pool.free].reduce((sum, [bytes, list]) => sum + bytes * list.length, 0);
  return { bySize, pooledBytes };
}

/** Least-squares slope of y against x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return num / den;
}

const mb = (n: number) => (n / 1e6).toFixed(2);

function summarise(records: StepRecord[], firstStep: number) {
  const range = records.filter((r) => r.step >= firstStep);
  const spread = (key: keyof StepRecord) => range.length ? Math.max(...range.map((r) => r[key])) - Math.min(...range.map((r) => r[key])) : NaN;
  const slopeOf = (rs: StepRecord[], key: 'rss' | 'heapUsed') => slope(rs.map((r) => r.step), rs.map((r) => r[key]));
  // RSS settles over the first tens of steps (allocator and driver caches): the later half says whether it keeps rising.
  const laterHalf = range.slice(Math.floor(range.length / 2));
  const rssSlope = slopeOf(range, 'rss'), rssSlopeLaterHalf = slopeOf(laterHalf, 'rss');
  const liveBytesSpread = spread('liveBytes'), liveBuffersSpread = spread('liveBuffers'), heldBytesSpread = spread('heldBytes');
  const lastStep = records.at(-1)?.step ?? 0;
  return {
    firstStep, lastStep, stepsInRange: range.length,
    liveBytesSpread, liveBuffersSpread, liveTensorsSpread: spread('liveTensors'), heldBytesSpread,
    rssFirst: range[0]?.rss ?? NaN, rssLast: range.at(-1)?.rss ?? NaN,
    rssSlopeBytesPerStep: rssSlope, laterHalfFirstStep: laterHalf[0]?.step ?? NaN, rssSlopeLaterHalfBytesPerStep: rssSlopeLaterHalf,
    heapSlopeBytesPerStep: slopeOf(range, 'heapUsed'),
    backendFlat: range.length >= 2 && liveBytesSpread === 0 && liveBuffersSpread === 0 && heldBytesSpread === 0,
    rssFlat: laterHalf.length >= 2 && Math.abs(rssSlopeLaterHalf) < RSS_FLAT_BYTES_PER_STEP,
  };
}

function render(meta: Meta, records: StepRecord[], s: ReturnType<typeof summarise>, growth: [number, number][], target: number): string {
  const lines = [
    '# Memory over a long GPT-2 124M run on WebGPU',
    '',
    `Adapter: ${meta.adapter}. Machine: 2 CPU cores, lavapipe. Model: GPT-2 124M (\`gpt2\`, ${meta.parameters} parameters with a ${meta.block}-position table, random init), `
      + `batch ${meta.batch} x block ${meta.block}, policy ${meta.precision} (autocast, float32 master weights), random tokens; `
      + 'the trainer\'s step (trainingStep: ampStep with AdamW, gradient clipping and the GradScaler). '
      + `Command: \`${meta.command}\`. Load average at start ${JSON.stringify(meta.loadStart)}, at the last step ${JSON.stringify(meta.loadNow)}.`,
    '',
    `Steps reached: ${s.lastStep} of ${target}${s.lastStep < target ? ' (the run was cut short: the figures cover the steps it reached)' : ''}. `
      + `Mean step time after the first: ${meta.meanStepSec} s; first step (pipeline compilation) ${meta.firstStepSec} s.`,
    '',
    `Losses: random tokens (nothing to learn) at the learning rate \`createTrainingSetup\` gives every model (the default run's, high for GPT-2 124M), `
      + `so they do not fall: between ${Math.min(...records.map((r) => r.loss)).toFixed(2)} and ${Math.max(...records.map((r) => r.loss)).toFixed(2)}. Memory does not depend on them.`,
    '',
    '| step | loss | held (MB) | held buffers | peak (MB) | live (MB) | live buffers | live tensors | RSS (MB) | heap used (MB) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const shown = new Set([1, ...MILESTONES, s.lastStep]);
  for (const r of records) {
    if (!shown.has(r.step)) continue;
    lines.push(`| ${r.step} | ${r.loss.toFixed(4)} | ${mb(r.heldBytes)} | ${r.heldBuffers} | ${mb(r.peakBytes)} | ${mb(r.liveBytes)} | ${r.liveBuffers} | ${r.liveTensors} | ${mb(r.rss)} | ${mb(r.heapUsed)} |`);
  }
  lines.push('', `From step ${s.firstStep} to step ${s.lastStep} (${s.stepsInRange} steps):`, '',
    `- live bytes, max - min: ${s.liveBytesSpread} bytes; live buffers, max - min: ${s.liveBuffersSpread}; live tensors, max - min: ${s.liveTensorsSpread}`,
    `- bytes held from the device (live and pooled), max - min: ${s.heldBytesSpread} bytes`,
    `- RSS: ${mb(s.rssFirst)} MB at step ${s.firstStep}, ${mb(s.rssLast)} MB at step ${s.lastStep}; slope (least squares) ${(s.rssSlopeBytesPerStep / 1e6).toFixed(3)} MB per step, `
      + `${(s.rssSlopeLaterHalfBytesPerStep / 1e6).toFixed(3)} MB per step over the later half (steps ${s.laterHalfFirstStep} to ${s.lastStep})`,
    `- V8 heap used slope: ${(s.heapSlopeBytesPerStep / 1e6).toFixed(3)} MB per step`,
    '');
  if (s.stepsInRange < 2) {
    lines.push(`Not enough steps past step ${s.firstStep} yet to say whether memory is flat.`);
  } else {
    lines.push(s.backendFlat
      ? `**Backend memory is flat**: from step ${s.firstStep} to step ${s.lastStep} the live bytes, live buffers and bytes held did not change at all.`
      : `**Backend memory is not flat** from step ${s.firstStep} to step ${s.lastStep}.`);
    const later = `${(s.rssSlopeLaterHalfBytesPerStep / 1e6).toFixed(3)} MB per step over steps ${s.laterHalfFirstStep} to ${s.lastStep}`;
    lines.push(s.rssFlat
      ? `**Process RSS is flat** once settled: ${later}, under the ${RSS_FLAT_BYTES_PER_STEP / 1e6} MB per step threshold.`
      : `**Process RSS is not flat**: it rises ${later} (threshold ${RSS_FLAT_BYTES_PER_STEP / 1e6} MB per step).`);
  }
  if (growth.length) {
    lines.push('', `Live buffers by block size that changed between step ${s.firstStep} and step ${s.lastStep}:`, '', '| block bytes | change in count |', '|---:|---:|');
    for (const [bytes, d] of growth) lines.push(`| ${bytes} | ${d > 0 ? '+' : ''}${d} |`);
  }
  return lines.join('\n') + '\n';
}

interface Meta {
  adapter: string; model: string; parameters: number; precision: string; batch: number; block: number; targetSteps: number;
  command: string; loadStart: number[]; loadNow: number[]; firstStepSec: number; meanStepSec: number;
}

const OUT_DIR = join(ROOT, 'bench', 'results');

function writeResults(name: string, meta: Meta, records: StepRecord[], growth: [number, number][]): void {
  const summary = summarise(records, MILESTONES[0]!);
  const milestones = Object.fromEntries(MILESTONES.map((k) => [k, records.find((r) => r.step === k) ?? null]));
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, `${name}.json`), JSON.stringify({ ...meta, summary, milestones, liveBlockChanges: growth, steps: records }, null, 1) + '\n');
  writeFileSync(join(OUT_DIR, `${name}.md`), render(meta, records, summary, growth, meta.targetSteps));
}

/** Rewrites NAME.md (and the summary in NAME.json) from the steps recorded in NAME.json. */
function rerender(name: string): void {
  const saved = JSON.parse(readFileSync(join(OUT_DIR, `${name}.json`), 'utf8')) as Meta & { steps: StepRecord[]; liveBlockChanges: [number, number][] };
  const { steps, liveBlockChanges, ...rest } = saved;
  const meta = Object.fromEntries(Object.entries(rest).filter(([k]) => k !== 'summary' && k !== 'milestones')) as unknown as Meta;
  writeResults(name, meta, steps, liveBlockChanges);
}

async function main(): Promise<void> {
  const steps = +option('steps', '200'), precision = option('precision', 'bf16');
  const batch = +option('batch', '1'), block = +option('block', '64'), name = option('name', 'memory-flat');
  const loadStart = load();
  const c = mp.resolveTrainConfig({ model: 'gpt2', tokenizer: 'gpt2', batchSize: batch, blockSize: block, precision });
  const config = mp.modelConfig(c, 50257);
  const policy = mp.parsePolicy(precision);
  const { backend, description } = await mp.selectBackend('webgpu');
  const tracker = trackLiveBlocks(backend as WebGPUBackend);
  const setup = mp.createTrainingSetup(backend, config, policy, { seed: c.seed });
  const B = c.batchSize, T = c.blockSize;
  let s = 12345;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % config.vocabSize;
  const batchTensors = (): [mp.Tensor, mp.Tensor] => {
    const row = Int32Array.from({ length: B * (T + 1) }, next);
    const x = row.slice(0, B * T), y = row.slice(1, B * T + 1);
    return [mp.tensor(x, { shape: [B, T], dtype: 'int32', backend }), mp.tensor(y, { shape: [B, T], dtype: 'int32', backend })];
  };
  const parameters = setup.model.parameters().reduce((n, p) => n + p.size, 0);
  const firstStep = MILESTONES[0]!;
  let atFirst: Map<number, number> | null = null;
  const records: StepRecord[] = [];
  for (let step = 1; step <= steps; step++) {
    const t0 = performance.now();
    const { loss, gradNorm } = mp.trainingStep(setup, batchTensors, { clip: c.clip });
    const lossValue = await loss.item();
    loss.dispose();
    gradNorm?.dispose();
    const sec = (performance.now() - t0) / 1000;
    const m = mp.memory(backend) as mp.MemoryReport & { liveBuffers: number };
    const { rss, heapUsed } = process.memoryUsage();
    records.push({
      step, loss: lossValue, sec, heldBytes: m.bytes, heldBuffers: m.buffers, peakBytes: m.peakBytes,
      liveBytes: m.bytes - tracker.pooledBytes(), liveBuffers: m.liveBuffers, liveTensors: m.tensors, rss, heapUsed,
    });
    if (step === firstStep) atFirst = new Map(tracker.bySize);
    const growth: [number, number][] = atFirst
      ? [...new Set([...atFirst.keys(), ...tracker.bySize.keys()])].map((k) => [k, (tracker.bySize.get(k) ?? 0) - (atFirst!.get(k) ?? 0)] as [number, number]).filter(([, d]) => d !== 0).sort((a, b) => a[0] - b[0])
      : [];
    const later = records.slice(1).map((r) => r.sec);
    const meta: Meta = {
      adapter: description, model: 'gpt2', parameters, precision, batch: B, block: T, targetSteps: steps,
      command: `node --import tsx bench/memory-flat.ts --steps ${steps} --precision ${precision} --batch ${B} --block ${T}`,
      loadStart, loadNow: load(), firstStepSec: +records[0]!.sec.toFixed(1),
      meanStepSec: later.length ? +(later.reduce((a, b) => a + b, 0) / later.length).toFixed(1) : NaN,
    };
    writeResults(name, meta, records, growth);
    console.error(`step ${step} loss ${lossValue.toFixed(4)} ${sec.toFixed(1)} s held ${m.bytes} live ${records.at(-1)!.liveBytes} buffers ${m.liveBuffers} tensors ${m.tensors} rss ${mb(rss)} MB heap ${mb(heapUsed)} MB`);
  }
  mp.disposeTrainingSetup(setup);
}

if (process.argv.includes('--render')) rerender(option('render', 'memory-flat'));
else await main();
// Dawn keeps the process alive while a device exists.
process.exit(0);
