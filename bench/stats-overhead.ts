// What sampling tensor statistics costs: the default run's training throughput
// with statistics every 10 steps against none, in interleaved rounds (off, on,
// off, on, ...) so that a change of load on a shared machine touches both alike.
//
//   node --import tsx bench/stats-overhead.ts [--backend cpu|webgpu] [--steps N] [--rounds N] [--interval N]
//
// Each run is timed from the start of its first step to the end of its last
// (startup and the final evaluation left out), by the clock and by the
// process's CPU time. On a CPU adapter (lavapipe) the device's work runs on this
// process's threads, so CPU time counts the work itself and is much less
// disturbed than the clock by other processes competing for the cores.
//
// Writes this backend's figures into bench/results/stats-overhead.json (one entry
// per backend) and the table of every backend there into stats-overhead.md. A
// cost is the median over rounds of 1 - on/off within a round (the two runs of a
// round are back to back). The target: under 5% of throughput.

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
const steps = Number(option('steps', '60'));
const rounds = Number(option('rounds', '3'));
const interval = Number(option('interval', '10'));
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const loadStart = loadavg();
interface Row { round: number; stats: boolean; tokensPerSec: number; tokensPerCpuSec: number }
const rows: Row[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const stats of [false, true]) {
    let wall = 0, cpu = 0;
    // The clocks start before any other observer sees step 1 and stop after every one has seen the last step.
    const start: StepObserver = { beforeStep: (step) => { if (step === 1) { wall = performance.now(); cpu = cpuSeconds(); } } };
    const stop: StepObserver = { afterStep: async (step) => { if (step === steps) { wall = (performance.now() - wall) / 1000; cpu = cpuSeconds() - cpu; } return []; } };
    const summary = await train({ backend, maxSteps: steps, evalInterval: steps, saveInterval: 0, logInterval: 10 }, {
      runDir: null,
      observers: (model) => [start, ...(stats ? [new NumericsObserver(model, { statsInterval: interval })] : []), stop],
    });
    const tokens = summary.tokens;
    rows.push({ round, stats, tokensPerSec: Math.round(tokens / wall), tokensPerCpuSec: Math.round(tokens / cpu) });
    console.log(`round ${round}, statistics ${stats ? `every ${interval} steps` : 'off'}: ${rows.at(-1)!.tokensPerSec} tokens/s, ${rows.at(-1)!.tokensPerCpuSec} tokens per CPU second`);
  }
}
const costs = (key: 'tokensPerSec' | 'tokensPerCpuSec') => Array.from({ length: rounds }, (_, i) => {
  const of = (stats: boolean) => rows.find((r) => r.round === i + 1 && r.stats === stats)![key];
  return 1 - of(true) / of(false);
});
const roundCosts = costs('tokensPerSec'), roundCpuCosts = costs('tokensPerCpuSec');
const result = {
  steps, rounds, interval, loadavgStart: loadStart, loadavgEnd: loadavg(),
  offTokensPerSec: median(rows.filter((r) => !r.stats).map((r) => r.tokensPerSec)),
  onTokensPerSec: median(rows.filter((r) => r.stats).map((r) => r.tokensPerSec)),
  cost: median(roundCosts), roundCosts, cpuCost: median(roundCpuCosts), roundCpuCosts, rows,
};
type Result = typeof result;
const out = join(ROOT, 'bench', 'results');
const jsonFile = join(out, 'stats-overhead.json');
mkdirSync(out, { recursive: true });
const previous = existsSync(jsonFile) ? JSON.parse(readFileSync(jsonFile, 'utf8')) as Record<string, unknown> : {};
// Earlier versions wrote one backend's figures at the top level: those are replaced.
const all: Record<string, Result> = Object.fromEntries(Object.entries(previous).filter(([, v]) => typeof v === 'object' && v !== null && 'roundCosts' in v)) as Record<string, Result>;
all[backend] = result;
writeFileSync(jsonFile, `${JSON.stringify(all, null, 2)}\n`);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');
writeFileSync(join(out, 'stats-overhead.md'), [
  `# Statistics sampling overhead (default model, statistics every ${interval} steps and at step 1, against none)`,
  '',
  'Runs alternate (off, on, off, on, ...) in one process; the cost is the median over rounds of 1 - on/off within a round.',
  '',
  '| backend | steps per run | rounds | tokens/s off (median) | tokens/s on (median) | cost by the clock, per round | by the clock (median) | cost in CPU time, per round | in CPU time (median) | load average start / end |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...Object.entries(all).map(([name, r]) => `| ${name} | ${r.steps} | ${r.rounds} | ${r.offTokensPerSec} | ${r.onTokensPerSec} | ${r.roundCosts.map(pct).join(', ')} | ${pct(r.cost)} | ${r.roundCpuCosts.map(pct).join(', ')} | ${pct(r.cpuCost)} | ${load(r.loadavgStart)} / ${load(r.loadavgEnd)} |`),
  '',
  'Target: under 5%. Machine: 2 CPU cores, shared; WebGPU on lavapipe (software Vulkan).',
  '',
].join('\n'));
console.log(`statistics every ${interval} steps cost ${pct(result.cost)} of throughput by the clock (rounds: ${roundCosts.map(pct).join(', ')}), ${pct(result.cpuCost)} in CPU time (rounds: ${roundCpuCosts.map(pct).join(', ')})`);
