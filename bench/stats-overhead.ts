// What sampling tensor statistics costs in the default run, measured two ways.
//
//   node --import tsx bench/stats-overhead.ts [--backend cpu|webgpu] [--steps N] [--rounds N] [--interval N] [--paired-steps N]
//
// Interleaved runs (--rounds, 0 to skip): training throughput with statistics
// every `interval` steps (and at step 1) against none, runs alternating so
// that a change of load touches both alike, in the order off, on, on, off, ...
// so that a drift from run to run in one process cancels out over an even
// number of rounds. Each run is
// timed from the start of its first step to the end of its last (startup and
// the final evaluation left out), by the clock and by the process's CPU time.
// On a CPU adapter (lavapipe) the device's work runs on this process's threads,
// so CPU time counts the work itself and is less disturbed than the clock by
// other processes. A cost is the mean over rounds of 1 - on/off within a round.
//
// Paired steps (--paired-steps, 0 to skip): one run that reads the loss after
// every step (so each step's device work ends inside the step) with statistics
// every 2 steps; each sampled step is compared with the unsampled step after it.
// The median extra of a sample, over `interval` steps, is the steady-state cost
// of sampling every `interval` steps. On a loaded machine it is far steadier
// than whole runs compared with each other.
//
// Writes this backend's figures into bench/results/stats-overhead.json (one entry
// per backend) and the table of every backend there into stats-overhead.md.
// The target: under 5% of throughput.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { train } from '../src/train/trainer.js';
import { NumericsObserver } from '../src/report/observer.js';
import type { BackendChoice } from '../src/train/config.js';
import type { StepObserver } from '../src/train/observer.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const backend = option('backend', 'cpu') as BackendChoice;
const steps = Number(option('steps', '300'));
const rounds = Number(option('rounds', '3'));
const interval = Number(option('interval', '10'));
const pairedSteps = Number(option('paired-steps', '41'));
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');

/** WebGPU only: the runtime's counters over a run (pipeline compilations and their time, bind groups made). */
interface Counters { pipelines: number; compileMs: number; bindGroups: number; dispatches: number }
interface Row { round: number; stats: boolean; tokensPerSec: number; tokensPerCpuSec: number; counters?: Counters }

type RuntimeView = { stats: Counters };
/** The WebGPU runtime under a model's parameters, if that is its backend. */
function runtimeOf(model: { parameters(): { backend: unknown }[] }): RuntimeView | undefined {
  return (model.parameters()[0]?.backend as { rt?: RuntimeView } | undefined)?.rt;
}

async function interleaved() {
  const loadavgStart = loadavg();
  const rows: Row[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const stats of round % 2 ? [false, true] : [true, false]) {
      let wall = 0, cpu = 0;
      let rt: RuntimeView | undefined;
      // The clocks start before any other observer sees step 1 and stop after every one has seen the last step.
      const start: StepObserver = { beforeStep: (step) => { if (step === 1) { wall = performance.now(); cpu = cpuSeconds(); } } };
      const stop: StepObserver = { afterStep: async (step) => { if (step === steps) { wall = (performance.now() - wall) / 1000; cpu = cpuSeconds() - cpu; } return []; } };
      const summary = await train({ backend, maxSteps: steps, evalInterval: steps, saveInterval: 0, logInterval: 10 }, {
        runDir: null,
        observers: (model) => (rt = runtimeOf(model), [start, ...(stats ? [new NumericsObserver(model, { statsInterval: interval })] : []), stop]),
      });
      const c = rt?.stats;
      const counters = c && { pipelines: c.pipelines, compileMs: Math.round(c.compileMs), bindGroups: c.bindGroups, dispatches: c.dispatches };
      rows.push({ round, stats, tokensPerSec: Math.round(summary.tokens / wall), tokensPerCpuSec: Math.round(summary.tokens / cpu), ...(counters ? { counters } : {}) });
      console.log(`round ${round}, statistics ${stats ? `every ${interval} steps` : 'off'}: ${rows.at(-1)!.tokensPerSec} tokens/s, ${rows.at(-1)!.tokensPerCpuSec} tokens per CPU second${counters ? `, ${JSON.stringify(counters)}` : ''}`);
    }
  }
  const costs = (key: 'tokensPerSec' | 'tokensPerCpuSec') => Array.from({ length: rounds }, (_, i) => {
    const of = (stats: boolean) => rows.find((r) => r.round === i + 1 && r.stats === stats)![key];
    return 1 - of(true) / of(false);
  });
  const roundCosts = costs('tokensPerSec'), roundCpuCosts = costs('tokensPerCpuSec');
  return {
    steps, rounds, interval, loadavgStart, loadavgEnd: loadavg(),
    offTokensPerSec: median(rows.filter((r) => !r.stats).map((r) => r.tokensPerSec)),
    onTokensPerSec: median(rows.filter((r) => r.stats).map((r) => r.tokensPerSec)),
    cost: mean(roundCosts), roundCosts, cpuCost: mean(roundCpuCosts), roundCpuCosts, rows,
  };
}

async function paired() {
  const loadavgStart = loadavg();
  const times = new Map<number, { wall: number; cpu: number }>();
  let wall = 0, cpu = 0;
  const start: StepObserver = { beforeStep: () => { wall = performance.now(); cpu = cpuSeconds(); } };
  // onStep comes after the step's loss was read (logInterval 1): its device work is done.
  await train({ backend, maxSteps: pairedSteps, evalInterval: pairedSteps, saveInterval: 0, logInterval: 1 }, {
    runDir: null,
    onStep: (p) => { times.set(p.step, { wall: performance.now() - wall, cpu: cpuSeconds() - cpu }); },
    observers: (model) => [start, new NumericsObserver(model, { statsInterval: 2 })],
  });
  // Step 2 is the first sampled step after step 1 (which compiles the kernels): pairs from step 4 on.
  const pairs = [...times.keys()].filter((s) => s >= 4 && s % 2 === 0 && times.has(s + 1));
  const extra = (key: 'wall' | 'cpu') => median(pairs.map((s) => times.get(s)![key] / times.get(s + 1)![key] - 1));
  const sampleExtra = extra('wall'), sampleCpuExtra = extra('cpu');
  const result = {
    steps: pairedSteps, pairs: pairs.length, loadavgStart, loadavgEnd: loadavg(),
    sampleExtra, sampleCpuExtra, estimatedCost: sampleExtra / interval, estimatedCpuCost: sampleCpuExtra / interval,
  };
  console.log(`a sampled step takes ${pct(sampleExtra)} longer by the clock, ${pct(sampleCpuExtra)} more CPU time, than the unsampled step after it (${pairs.length} pairs)`);
  return result;
}

type Entry = { interleaved?: Awaited<ReturnType<typeof interleaved>>; paired?: Awaited<ReturnType<typeof paired>> };
const entry: Entry = {};
if (rounds > 0) entry.interleaved = await interleaved();
if (pairedSteps > 0) entry.paired = await paired();

const out = join(ROOT, 'bench', 'results');
const jsonFile = join(out, 'stats-overhead.json');
mkdirSync(out, { recursive: true });
const previous = existsSync(jsonFile) ? JSON.parse(readFileSync(jsonFile, 'utf8')) as Record<string, unknown> : {};
// Entries of another shape (from earlier versions of this benchmark) are dropped.
const all = Object.fromEntries(Object.entries(previous).filter(([, v]) => typeof v === 'object' && v !== null && ('interleaved' in v || 'paired' in v))) as Record<string, Entry>;
all[backend] = { ...all[backend], ...entry };
writeFileSync(jsonFile, `${JSON.stringify(all, null, 2)}\n`);

/** The WebGPU runtime's counters per run, off against on (median over rounds): what statistics add to a run once and per sample. */
function counterTable(runs: readonly (readonly [string, NonNullable<Entry['interleaved']>])[]): string[] {
  const withCounters = runs.filter(([, r]) => r.rows.every((row) => row.counters));
  if (withCounters.length === 0) return [];
  const of = (r: NonNullable<Entry['interleaved']>, stats: boolean, key: keyof Counters) => median(r.rows.filter((row) => row.stats === stats).map((row) => row.counters![key]));
  const cell = (r: NonNullable<Entry['interleaved']>, key: keyof Counters) => `${of(r, false, key)} / ${of(r, true, key)}`;
  return [
    'The runtime\'s counters per run (whole run, final evaluation included; median over rounds), off / on:',
    '',
    '| backend | pipelines compiled | compile time (ms) | bind groups made | dispatches |',
    '|---|---|---|---|---|',
    ...withCounters.map(([name, r]) => `| ${name} | ${cell(r, 'pipelines')} | ${cell(r, 'compileMs')} | ${cell(r, 'bindGroups')} | ${cell(r, 'dispatches')} |`),
    '',
  ];
}

const runs = Object.entries(all).flatMap(([name, e]) => (e.interleaved ? [[name, e.interleaved] as const] : []));
const pairs = Object.entries(all).flatMap(([name, e]) => (e.paired ? [[name, e.paired] as const] : []));
writeFileSync(join(out, 'stats-overhead.md'), [
  `# Statistics sampling overhead (default model, statistics every ${interval} steps)`,
  '',
  'Machine: 2 CPU cores, shared with other work; WebGPU on lavapipe (software Vulkan). Target: under 5% of throughput.',
  '',
  '## Interleaved runs',
  '',
  `Runs with statistics every ${interval} steps and at step 1 alternate with runs without (off, on, on, off, ...); the cost is the mean over rounds of 1 - on/off within a round.`,
  '',
  '| backend | steps per run | rounds | tokens/s off (median) | tokens/s on (median) | cost by the clock, per round | by the clock (mean) | cost in CPU time, per round | in CPU time (mean) | load average start / end |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...runs.map(([name, r]) => `| ${name} | ${r.steps} | ${r.rounds} | ${r.offTokensPerSec} | ${r.onTokensPerSec} | ${r.roundCosts.map(pct).join(', ')} | ${pct(r.cost)} | ${r.roundCpuCosts.map(pct).join(', ')} | ${pct(r.cpuCost)} | ${load(r.loadavgStart)} / ${load(r.loadavgEnd)} |`),
  '',
  ...counterTable(runs),
  '## Paired steps',
  '',
  'One run reading the loss after every step, statistics every 2 steps: each sampled step against the unsampled step after it (median over the pairs). Divided by the interval, the extra of one sample is the steady-state cost of sampling every that many steps.',
  '',
  `| backend | steps | pairs | a sample's extra, by the clock | in CPU time | estimated cost every ${interval} steps, by the clock | in CPU time | load average start / end |`,
  '|---|---|---|---|---|---|---|---|',
  ...pairs.map(([name, r]) => `| ${name} | ${r.steps} | ${r.pairs} | ${pct(r.sampleExtra)} | ${pct(r.sampleCpuExtra)} | ${pct(r.estimatedCost)} | ${pct(r.estimatedCpuCost)} | ${load(r.loadavgStart)} / ${load(r.loadavgEnd)} |`),
  '',
].join('\n'));
if (entry.interleaved) {
  const r = entry.interleaved;
  console.log(`statistics every ${interval} steps cost ${pct(r.cost)} of throughput by the clock (rounds: ${r.roundCosts.map(pct).join(', ')}), ${pct(r.cpuCost)} in CPU time (rounds: ${r.roundCpuCosts.map(pct).join(', ')})`);
}
