// Planned against measured memory: for each precision policy, with and
// without activation recomputation, `planMemory`'s predicted peak beside the
// backend's measured peak (memory(backend).peakBytes) over a few real training
// steps of the trainer's set-up (trainingStep: ampStep with clipping), plus the
// step times and losses (recomputation must not change them). Each case runs
// in its own process, so that its backend and peak are its own; recompute off
// and on alternate, side by side.
//
//   node --import tsx bench/memory-plan.ts [--models default,gpt2] [--backends cpu,webgpu] [--steps N] [--precisions fp32,...] [--recompute off,on] [--name NAME]
//   node --import tsx bench/memory-plan.ts --render NAME      (rewrites NAME.md from NAME.json)
//
// `gpt2` is the model `mixprec train --model gpt2 --tokenizer gpt2 --batch-size 1 --block-size 128` trains;
// `default` the default run's (16 x 64). Writes bench/results/NAME.json and .md (NAME: memory-plan).

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import { modelConfig } from '../src/train/run-setup.js';
import type { WebGPUBackend } from '../src/backend/webgpu/backend.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POLICIES = ['fp32', 'fp16', 'fp16-master', 'bf16', 'bf16-master'];

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const load = () => loadavg().map((x) => +x.toFixed(2));

/** The training configuration of a benchmark model, as `mixprec train` resolves it. */
function runConfig(model: string): mp.TrainConfig {
  if (model === 'default') return mp.resolveTrainConfig({});
  if (model === 'gpt2') return mp.resolveTrainConfig({ model: 'gpt2', tokenizer: 'gpt2', batchSize: 1, blockSize: 128 });
  throw new Error(`bench/memory-plan.ts: unknown model '${model}' (default or gpt2)`);
}

interface CaseResult {
  model: string; backend: string; adapter: string; precision: string; recompute: boolean;
  planned: number; plannedPhase: string; measuredAfterStep: number[]; stepSec: number[]; losses: number[];
  ratio: number; loadStart: number[]; loadEnd: number[];
  /** Decimals the losses were kept to, when fewer than all (a result recovered from a log). */
  lossDigits?: number;
}

/** One case, in this process: plan, then train `steps` steps on a fresh backend and read its peak after each. */
async function runCase(model: string, backendChoice: 'cpu' | 'webgpu', precision: string, recompute: boolean, steps: number): Promise<CaseResult> {
  const loadStart = load();
  const c = runConfig(model);
  const config = modelConfig(c, c.tokenizer === 'gpt2' ? 50257 : 256);
  const policy = mp.parsePolicy(precision);
  const { backend, description } = await mp.selectBackend(backendChoice);
  const rt = backendChoice === 'webgpu' ? (backend as WebGPUBackend).rt : null;
  const limits = rt ? { maxBufferSize: rt.device.limits.maxBufferSize, maxStorageBufferBindingSize: rt.maxBindingBytes } : {};
  const plan = mp.planMemory(config, policy, { batchSize: c.batchSize, blockSize: c.blockSize, recompute, backend: backendChoice, limits, clip: c.clip });
  const setup = mp.createTrainingSetup(backend, config, policy, { recompute, seed: c.seed });
  const B = c.batchSize, T = c.blockSize;
  let s = 12345;
  const ids = () => Int32Array.from({ length: B * (T + 1) }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % config.vocabSize);
  const measured: number[] = [], stepSec: number[] = [], losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const t0 = performance.now();
    const { loss, gradNorm } = mp.trainingStep(setup, () => {
      const row = ids();
      const x = Int32Array.from({ length: B * T }, (_, i) => row[i]!), y = Int32Array.from({ length: B * T }, (_, i) => row[i + 1]!);
      return [mp.tensor(x, { shape: [B, T], dtype: 'int32', backend }), mp.tensor(y, { shape: [B, T], dtype: 'int32', backend })];
    }, { clip: c.clip });
    losses.push(await loss.item());
    stepSec.push((performance.now() - t0) / 1000);
    loss.dispose();
    gradNorm?.dispose();
    measured.push(mp.memory(backend).peakBytes);
    console.error(`${model} ${backendChoice} ${precision} recompute ${recompute ? 'on' : 'off'}: step ${step + 1} loss ${losses[step]!.toFixed(4)}, ${stepSec[step]!.toFixed(1)} s, peak ${measured[step]}`);
  }
  mp.disposeTrainingSetup(setup);
  return {
    model, backend: backendChoice, adapter: description, precision, recompute, planned: plan.peak, plannedPhase: plan.atPeak.phase,
    measuredAfterStep: measured, stepSec, losses, ratio: plan.peak / measured[measured.length - 1]!, loadStart, loadEnd: load(),
  };
}

const mb = (n: number) => (n / 1e6).toFixed(1);
/** Mean step time after the first step (which compiles WebGPU's pipelines), or of the one step. */
const stepTime = (r: CaseResult) => {
  const t = r.stepSec.length > 1 ? r.stepSec.slice(1) : r.stepSec;
  return t.reduce((a, b) => a + b, 0) / t.length;
};

function table(results: (CaseResult & { run: number })[]): string[] {
  const lines = [
    '| run | precision | recompute | steps | planned peak (MB) | measured peak (MB) | planned / measured | step time (s, mean after the first) | losses |',
    '|---:|---|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    lines.push(`| ${r.run + 1} | ${r.precision} | ${r.recompute ? 'on' : 'off'} | ${r.stepSec.length} | ${mb(r.planned)} | ${mb(r.measuredAfterStep.at(-1)!)} | ${r.ratio.toFixed(4)} | ${stepTime(r).toFixed(2)} | ${r.losses.map((l) => l.toFixed(4)).join(', ')} |`);
  }
  return lines;
}

/** Whether two cases' losses agree on their common steps (to the digits a result kept, when it kept fewer). */
function sameLosses(a: CaseResult, b: CaseResult): string {
  const digits = Math.min(a.lossDigits ?? Infinity, b.lossDigits ?? Infinity);
  const n = Math.min(a.losses.length, b.losses.length);
  const show = (l: number) => (digits === Infinity ? String(l) : l.toFixed(digits));
  const same = a.losses.slice(0, n).every((l, i) => show(l) === show(b.losses[i]!));
  return `${same ? 'yes' : 'no'}${digits === Infinity ? '' : ` (to ${digits} decimals)`}`;
}

/**
 * Recompute on against off per policy: the peaks, and the step times where both ran in the same
 * invocation (alternating, so under the same load; runs apart are not compared).
 */
function tradeOff(rs: (CaseResult & { run: number })[]): string[] {
  const lines = ['| precision | peak without (MB) | peak with (MB) | peak with / without | step time with / without | same losses |', '|---|---:|---:|---:|---:|---|'];
  const peak = (r: CaseResult) => r.measuredAfterStep.at(-1)!;
  for (const p of new Set(rs.map((r) => r.precision))) {
    const offs = rs.filter((r) => r.precision === p && !r.recompute), ons = rs.filter((r) => r.precision === p && r.recompute);
    if (!offs.length || !ons.length) continue;
    const pair = offs.flatMap((off) => ons.filter((on) => on.run === off.run).map((on) => [off, on] as const))[0];
    const [off, on] = pair ?? [offs[0]!, ons[0]!];
    const time = pair ? (stepTime(on) / stepTime(off)).toFixed(2) : '- (separate runs)';
    lines.push(`| ${p} | ${mb(peak(off))} | ${mb(peak(on))} | ${(peak(on) / peak(off)).toFixed(3)} | ${time} | ${sameLosses(off, on)} |`);
  }
  return lines;
}

async function main(): Promise<void> {
  if (process.argv.includes('--render')) {
    // Rewrites NAME.md from NAME.json (one run, or { runs: [...] }).
    const file = join(ROOT, 'bench', 'results', option('render', 'memory-plan'));
    const json = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as BenchRun | { runs: BenchRun[] };
    writeFileSync(`${file}.md`, render('runs' in json ? json.runs : [json]));
    return;
  }
  if (process.argv.includes('--case')) {
    const [model, backend, precision, recompute, steps] = option('case', '').split(':');
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    console.log(`RESULT ${JSON.stringify(await runCase(model!, backend as 'cpu' | 'webgpu', precision!, recompute === 'on', Number(steps)))}`);
    return;
  }
  const models = option('models', 'default,gpt2').split(',');
  const backends = option('backends', 'cpu,webgpu').split(',');
  const precisions = option('precisions', POLICIES.join(',')).split(',');
  const settings = option('recompute', 'off,on').split(',');
  const steps = option('steps', '3');
  const name = option('name', 'memory-plan');
  const loadStart = load();
  const results: CaseResult[] = [];
  const out = join(ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const save = () => {
    const run: BenchRun = { command: process.argv.slice(2).join(' '), loadStart, loadEnd: load(), steps: Number(steps), results };
    writeFileSync(join(out, `${name}.json`), `${JSON.stringify(run, null, 2)}\n`);
    writeFileSync(join(out, `${name}.md`), render([run]));
    return run;
  };
  for (const model of models) for (const backend of backends) for (const precision of precisions) for (const recompute of settings) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--case', [model, backend, precision, recompute, steps].join(':')], {
      cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    });
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) {
      console.error(`${model} ${backend} ${precision} recompute ${recompute}: no result (exit ${r.status})`);
      continue;
    }
    results.push(JSON.parse(line.slice(7)) as CaseResult);
    save(); // after every case, so that a long run that is stopped keeps what it measured
  }
  console.log(render([save()]));
}

interface BenchRun {
  command: string;
  loadStart: number[];
  loadEnd: number[];
  steps: number;
  results: CaseResult[];
}

/** The tables of one or more runs (a file may gather the runs of several models and backends), by model and backend. */
function render(runs: BenchRun[]): string {
  const md = ['# Planned against measured peak memory, and activation recomputation', '',
    'Each case runs the trainer\'s set-up for a few training steps in its own process; the planned peak is `planMemory`\'s,',
    'the measured one `memory(backend).peakBytes` after the last step. 2 CPU cores and lavapipe, shared with other work:',
    'the step times are noisy. Runs:', ''];
  for (const [i, run] of runs.entries()) {
    const loads = run.loadStart.length ? `load average at the start ${run.loadStart.join(', ')}, at the end ${run.loadEnd.join(', ')}` : 'load average not recorded';
    md.push(`${i + 1}. \`node --import tsx bench/memory-plan.ts ${run.command}\`: ${run.steps} step${run.steps === 1 ? '' : 's'} per case; ${loads}.`);
  }
  md.push('');
  const results = runs.flatMap((r, run) => r.results.map((c) => ({ ...c, run })));
  for (const key of new Set(results.map((r) => `${r.model}|${r.backend}`))) {
    const order = (r: CaseResult) => POLICIES.indexOf(r.precision) * 2 + (r.recompute ? 1 : 0);
    const rs = results.filter((r) => `${r.model}|${r.backend}` === key).sort((a, b) => order(a) - order(b));
    md.push(`## ${rs[0]!.model === 'gpt2' ? 'GPT-2 124M, batch 1 x 128' : 'the default GPT, batch 16 x 64'}, ${rs[0]!.adapter}`, '', ...table(rs), '', ...tradeOff(rs), '');
  }
  return md.join('\n');
}

await main();
