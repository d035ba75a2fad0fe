// What sampling tensor statistics costs: the default run's training throughput
// with statistics every 10 steps against none, in interleaved rounds (off, on,
// off, on, ...) so that a change of load on a shared machine touches both alike.
//
//   node --import tsx bench/stats-overhead.ts [--backend cpu|webgpu] [--steps N] [--rounds N] [--interval N]
//
// Writes bench/results/stats-overhead.json and .md. The target: under 5% of throughput.

import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { train } from '../src/train/trainer.js';
import { NumericsObserver } from '../src/report/observer.js';
import type { BackendChoice } from '../src/train/config.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const backend = option('backend', 'cpu') as BackendChoice;
const steps = Number(option('steps', '60'));
const rounds = Number(option('rounds', '3'));
const interval = Number(option('interval', '10'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const rows: { round: number; stats: boolean; tokensPerSec: number }[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const stats of [false, true]) {
    const summary = await train({ backend, maxSteps: steps, evalInterval: steps, saveInterval: 0, logInterval: 10 }, {
      runDir: null,
      observers: stats ? (model) => [new NumericsObserver(model, { statsInterval: interval })] : undefined,
    });
    rows.push({ round, stats, tokensPerSec: summary.tokensPerSec });
    console.log(`round ${round}, statistics ${stats ? `every ${interval} steps` : 'off'}: ${summary.tokensPerSec} tokens/s`);
  }
}
const off = median(rows.filter((r) => !r.stats).map((r) => r.tokensPerSec));
const on = median(rows.filter((r) => r.stats).map((r) => r.tokensPerSec));
const cost = 1 - on / off;
const result = { backend, steps, rounds, interval, loadavg: loadavg(), offTokensPerSec: off, onTokensPerSec: on, cost, rows };
const out = join(ROOT, 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'stats-overhead.json'), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(out, 'stats-overhead.md'), [
  `# Statistics sampling overhead (${backend}, default model, ${steps} steps, ${rounds} interleaved rounds)`,
  '',
  '| statistics | tokens/s (median) |',
  '|---|---|',
  `| off | ${off} |`,
  `| every ${interval} steps | ${on} |`,
  '',
  `Cost: ${(cost * 100).toFixed(1)}% of throughput (target: under 5%). Load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(', ')}.`,
  '',
].join('\n'));
console.log(`statistics every ${interval} steps cost ${(cost * 100).toFixed(1)}% of throughput (${on} vs ${off} tokens/s)`);
