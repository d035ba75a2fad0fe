// `npm run bench`: matmul throughput and training throughput and memory, on
// every available backend, written as <out>/<name>.json and <out>/<name>.md.
//
//   npm run bench -- [--out DIR] [--name NAME] [--backends cpu,webgpu] [--quick] [--only matmul|train] [--rounds N]
//                    [--device] [--budget SECONDS]
//
// --device is the GPU profile that bench/device.sh runs: the WebGPU backend only, matmul
// at n = 1024 to 8192 and GPT-2 124M for every policy, named after the adapter alone
// (with --quick: small sizes and the default GPT, a few minutes on a software adapter).
// --budget bounds the whole run: every case gets at most the time left, cases past the
// budget are reported as skipped, and the files are rewritten after every case.
//
// Every case runs in its own process (bench/cases.ts): each configuration gets a
// fresh backend, so its peak memory is its own, and a failure stays local. The
// training configurations of the default GPT run in several interleaved rounds
// (every policy on every backend, then again), so that a change of load on a
// shared machine touches all of them alike; the table gives the median round.

import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRAIN_CONFIG } from '../src/train/config.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const POLICIES = ['fp32', 'fp16', 'fp16-master', 'bf16', 'bf16-master'] as const;
const DTYPES = ['float32', 'float16', 'bfloat16'] as const;

interface Options {
  out: string;
  name?: string;
  backends?: string[];
  quick: boolean;
  only?: 'matmul' | 'train';
  rounds?: number;
  device: boolean;
  budget?: number;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { out: join(ROOT, 'bench', 'results'), quick: false, device: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`bench: ${flag} needs a value`);
      return v;
    };
    if (flag === '--out') o.out = resolve(value());
    else if (flag === '--name') o.name = value();
    else if (flag === '--backends') o.backends = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--quick') o.quick = true;
    else if (flag === '--rounds') o.rounds = Number(value());
    else if (flag === '--device') o.device = true;
    else if (flag === '--budget') {
      o.budget = Number(value());
      if (!(o.budget > 0)) throw new Error(`bench: --budget ${o.budget}: expected a positive number of seconds`);
    }
    else if (flag === '--only') {
      const v = value();
      if (v !== 'matmul' && v !== 'train') throw new Error(`bench: --only ${v}: expected matmul or train`);
      o.only = v;
    } else throw new Error(`bench: unknown option ${flag} (--out DIR, --name NAME, --backends cpu,webgpu, --quick, --only matmul|train, --rounds N, --device, --budget SECONDS)`);
  }
  for (const b of o.backends ?? []) if (b !== 'cpu' && b !== 'webgpu') throw new Error(`bench: --backends: unknown backend '${b}' (cpu, webgpu)`);
  return o;
}

// ---- running one case ----------------------------------------------------------------------------------------

type Result = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface CaseOutcome {
  results: Result[];
  error?: string;
  seconds: number;
}

/** When the run's --budget is spent (performance.now() time). */
let deadline = Infinity;
const SKIPPED = 'skipped: the time budget (--budget) was spent';

/**
 * Runs `bench/cases.ts args...` in a child process, for at most `timeoutSec` and, unless
 * `budgeted` is false, the budget left; its RESULT lines, or why it failed.
 */
function runCase(args: string[], timeoutSec: number, budgeted = true): Promise<CaseOutcome> {
  const t0 = performance.now();
  const leftSec = (deadline - t0) / 1000;
  if (budgeted && leftSec < 5) return Promise.resolve({ results: [], error: SKIPPED, seconds: 0 });
  if (budgeted) timeoutSec = Math.min(timeoutSec, leftSec);
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'cases.ts'), ...args], {
      cwd: ROOT, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutSec * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const results = stdout.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => JSON.parse(l.slice(7)) as Result);
      const seconds = (performance.now() - t0) / 1000;
      if (code === 0 && !timedOut) return done({ results, seconds });
      const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/artificially reduced|^at /.test(l));
      // The thrown error's own line ("BufferTooLargeError: ..."), not the source line Node prints above it.
      const reason = timedOut ? `timed out after ${timeoutSec.toFixed(0)} s`
        : lines.find((l) => /^[A-Z]\w*(Error|Exception)\b/.test(l)) ?? lines.find((l) => /Error\b/.test(l)) ?? lines.at(-1) ?? `exit code ${code}`;
      done({ results, error: reason.slice(0, 300), seconds });
    });
  });
}

// ---- the machine ---------------------------------------------------------------------------------------------

interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  webgpu: {
    available: boolean; adapter?: string; shaderF16?: boolean; subgroups?: boolean; isSoftware?: boolean; reason?: string;
    // From the probe's second adapter (bench/cases.ts adapterDetails).
    vendor?: string; architecture?: string; features?: string[]; subgroupMinSize?: number; subgroupMaxSize?: number;
    subgroupMatrixConfigs?: Record<string, unknown>[]; maxStorageBufferBindingSize?: number; maxBufferSize?: number; detailsError?: string;
  };
  commit: string;
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha} (src/ modified)` : sha;
  } catch {
    return 'unknown';
  }
}

async function describeMachine(): Promise<Machine> {
  // Always run (a few seconds): without it there is no report at all.
  const probe = await runCase(['probe'], 120, false);
  const p = probe.results[0];
  const { kind: _, description: __, ...details } = p ?? {};
  const webgpu = p?.available ? { ...details, available: true } : { available: false, reason: (p?.reason as string | undefined) ?? probe.error ?? 'unknown' };
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: platform() === 'linux' ? 'Linux' : platform(), node: process.version, webgpu, commit: gitCommit(),
  };
}

/** The adapter as a file name: lavapipe, swiftshader, nvidia-h200, or nogpu. */
function adapterName(m: Machine): string {
  if (!m.webgpu.available) return 'nogpu';
  const d = m.webgpu.adapter ?? '';
  if (/llvmpipe|lavapipe/i.test(d)) return 'lavapipe';
  if (/swiftshader/i.test(d)) return 'swiftshader';
  return d.split(/[(:]/)[0]!.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 32) || 'gpu';
}

/** cpu<cores>-<adapter>: e.g. cpu2-lavapipe, cpu16-nvidia-h200, cpu8-nogpu; the adapter alone for --device. */
function machineName(m: Machine, o: Options): string {
  return o.device ? adapterName(m) : `cpu${m.cores}-${adapterName(m)}`;
}

// ---- the plan ------------------------------------------------------------------------------------------------

interface TrainPlan {
  model: 'default' | 'gpt2';
  batch: number;
  block: number;
  warmup: number;
  steps: number;
  rounds: number;
}

function matmulSizes(backend: string, o: Options): number[] {
  const quick = o.quick;
  if (o.device) return quick ? [64, 128] : [1024, 2048, 4096, 8192];
  if (quick) return backend === 'cpu' ? [256, 512, 1024] : [256, 512, 1024, 2048];
  // The CPU backend stops at 2048: one 4096 product takes about half a minute in pure TypeScript.
  return backend === 'cpu' ? [256, 512, 1024, 2048] : [256, 512, 1024, 2048, 4096];
}

// The default run's model, batch and block; GPT-2 124M on short windows, so that a step fits a small machine.
const DEFAULT_SHAPE = { batch: DEFAULT_TRAIN_CONFIG.batchSize, block: DEFAULT_TRAIN_CONFIG.blockSize };
const GPT2_SHAPE = { batch: 1, block: 128 };

// --device: GPT-2 124M at the peer harness's gpt2 workload shape (batch 4 x context 256); --quick: a small default GPT.
const DEVICE_PLAN: TrainPlan = { model: 'gpt2', batch: 4, block: 256, warmup: 2, steps: 8, rounds: 1 };
const DEVICE_QUICK_PLAN: TrainPlan = { model: 'default', batch: 4, block: 32, warmup: 1, steps: 2, rounds: 1 };

function trainPlans(backend: string, o: Options): TrainPlan[] {
  if (o.device) return [o.quick ? DEVICE_QUICK_PLAN : DEVICE_PLAN];
  if (o.quick) {
    // GPT-2 on the CPU backend takes over half a minute per step: left to the full run.
    return [
      { model: 'default', ...DEFAULT_SHAPE, warmup: 2, steps: 5, rounds: o.rounds ?? 1 },
      ...(backend === 'cpu' ? [] : [{ model: 'gpt2' as const, ...GPT2_SHAPE, warmup: 1, steps: 2, rounds: 1 }]),
    ];
  }
  // A default-GPT step takes ~0.6 s on the CPU backend and ~0.1 s on a WebGPU adapter, even a software one:
  // the faster backend gets more steps and rounds for the same time. GPT-2 on the CPU backend: ~35 s a step.
  const cpu = backend === 'cpu';
  return [
    { model: 'default', ...DEFAULT_SHAPE, warmup: 3, steps: cpu ? 20 : 50, rounds: o.rounds ?? (cpu ? 3 : 5) },
    { model: 'gpt2', ...GPT2_SHAPE, warmup: 1, steps: cpu ? 3 : 10, rounds: 1 },
  ];
}

// ---- the report ----------------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

const fmt = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const MB = (bytes: number) => bytes / 2 ** 20;

interface TrainRow {
  backend: string;
  model: string;
  precision: string;
  runs: Result[];
  error?: string;
}

function trainSummary(row: TrainRow) {
  const runs = row.runs;
  if (!runs.length) return null;
  const tps = runs.map((r) => r.tokensPerSec as number);
  return {
    tokensPerSec: median(tps), tokensPerSecMin: Math.min(...tps), tokensPerSecMax: Math.max(...tps),
    msPerStep: median(runs.map((r) => r.msPerStep as number)),
    peakBytes: Math.max(...runs.map((r) => r.peakBytes as number)),
    peakRssMB: Math.max(...runs.map((r) => r.peakRssMB as number)),
    first: runs[0]!,
  };
}

/** The adapter's features, subgroup sizes, subgroup-matrix configurations and buffer limits. */
function adapterFeatureLines(w: Machine['webgpu']): string[] {
  const matrices = (w.subgroupMatrixConfigs ?? []).map((c) => `${c.componentType} → ${c.resultComponentType} ${c.M}×${c.N}×${c.K}`);
  return [
    `- **Subgroups:** sizes ${w.subgroupMinSize ?? '?'} to ${w.subgroupMaxSize ?? '?'}; **subgroup-matrix configurations:** ${matrices.length ? matrices.join(', ') : 'none'}`,
    `- **Limits:** maxStorageBufferBindingSize ${fmt(MB(w.maxStorageBufferBindingSize ?? NaN), 0)} MiB, maxBufferSize ${fmt(MB(w.maxBufferSize ?? NaN), 0)} MiB`,
    `- **Adapter features:** ${w.features!.join(', ')}`,
  ];
}

function markdown(report: Report): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`# mixprec benchmarks: ${report.name}${report.quick ? ' (quick)' : ''}`, '');
  out.push(`- **CPU:** ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.os}; Node ${m.node}`);
  out.push(m.webgpu.available
    ? `- **WebGPU adapter:** ${m.webgpu.adapter}; shader-f16: ${m.webgpu.shaderF16 ? 'yes' : 'no'}; subgroups: ${m.webgpu.subgroups ? 'yes' : 'no'}${m.webgpu.isSoftware ? ' (a software rasteriser on the same CPU cores, not a GPU)' : ''}`
    : `- **WebGPU:** not available (${m.webgpu.reason})`);
  if (m.webgpu.features) out.push(...adapterFeatureLines(m.webgpu));
  out.push(`- **Backends measured:** ${report.backends.join(', ')}; mixprec ${m.commit}; ${report.date}; ${fmt(report.seconds / 60, 1)} min`);
  out.push(`- **Load average (1/5/15 min):** ${report.loadStart.join(' / ')} at the start, ${report.loadEnd.join(' / ')} at the end`, '');

  if (report.matmul.length) {
    out.push('## Matmul', '');
    out.push('C = A·B with n×n×n through `backend.matmul`, A, B and C stored in the dtype, float32 accumulation.',
      'GFLOP/s = 2n³ / median time per product (batches of products, each ended by a sync, after a warm-up).', '');
    out.push('| backend | n | float32 | float16 | bfloat16 | f16 / f32 | bf16 / f32 |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const backend of report.backends) {
      const sizes = [...new Set(report.matmul.filter((r) => r.backend === backend).map((r) => r.n as number))].sort((a, b) => a - b);
      for (const n of sizes) {
        const g = (d: string) => report.matmul.find((r) => r.backend === backend && r.n === n && r.dtype === d)?.gflops as number | undefined;
        const f32 = g('float32'), f16 = g('float16'), bf16 = g('bfloat16');
        out.push(`| ${backend} | ${n} | ${fmt(f32)} | ${fmt(f16)} | ${fmt(bf16)} | ${f32 && f16 ? fmt(f16 / f32, 2) : '–'} | ${f32 && bf16 ? fmt(bf16 / f32, 2) : '–'} |`);
      }
    }
    if (report.ceiling) {
      out.push('', `The WebGPU adapter's float32 ceiling, a kernel of multiply-adds on registers only (\`bench/adapter-ceiling.ts\`), which no matmul`,
        `can exceed there: **${fmt(report.ceiling.gflops as number)} GFLOP/s**.`);
    }
    if (report.backends.includes('cpu')) out.push('', 'The CPU backend stops at n = 2048: a 4096 product takes about half a minute in pure TypeScript.');
    out.push('');
  }

  if (report.train.length) {
    out.push('## Training', '');
    out.push('One step = forward under the policy\'s autocast, scaled backward, unscale, gradient clipping at 1, AdamW, scale update, zero grad,',
      'all inside `tidy`, then the loss read back to the host (a device sync), as in the peer-framework protocol. Synthetic tokens.',
      '**tokens/s** = batch × block / median step time over the timed steps (after warm-up); with several rounds, the median round',
      '(the spread across rounds in brackets). **peak MB** = the backend\'s allocation high-water mark (`memory(backend).peakBytes`:',
      'parameters, gradients, optimizer state, activations; on WebGPU including the buffer pool\'s free blocks), each configuration',
      'in a fresh process with a fresh backend. **RSS** = the process peak resident set (on a software WebGPU adapter it includes the device memory).', '');
    out.push('| backend | model | batch × block | precision | tokens/s | ms/step | vs fp32 | peak MB | RSS MB | loss first → last | rounds × steps |',
      '|---|---|---|---|---:|---:|---:|---:|---:|---|---|');
    for (const backend of report.backends) {
      for (const model of ['default', 'gpt2']) {
        const rows = report.train.filter((r) => r.backend === backend && r.model === model);
        if (!rows.length) continue;
        const fp32 = trainSummary(rows.find((r) => r.precision === 'fp32') ?? { backend, model, precision: 'fp32', runs: [] });
        for (const row of rows) {
          const s = trainSummary(row);
          const plan = report.plans[backend]?.find((p) => p.model === model);
          const label = model === 'default' ? 'default GPT' : 'GPT-2 124M';
          if (!s) {
            out.push(`| ${backend} | ${label} | ${plan ? `${plan.batch} × ${plan.block}` : ''} | ${row.precision} | **failed** (below) | | | | | | |`);
            continue;
          }
          const r = s.first;
          const spread = row.runs.length > 1 ? ` (${fmt(s.tokensPerSecMin, 0)}–${fmt(s.tokensPerSecMax, 0)})` : '';
          out.push(`| ${backend} | ${model === 'default' ? `${label} (${fmt(r.parameters / 1e6, 2)}M)` : label} | ${r.batch} × ${r.block} | ${row.precision} | ${fmt(s.tokensPerSec, s.tokensPerSec < 100 ? 2 : 0)}${spread} | ${fmt(s.msPerStep, 0)} | ${fp32 ? fmt(s.tokensPerSec / fp32.tokensPerSec, 2) : '–'} | ${fmt(MB(s.peakBytes), 1)} | ${fmt(s.peakRssMB, 0)} | ${fmt(r.lossFirst, 3)} → ${fmt(r.lossFinal, 3)} | ${row.runs.length} × (${plan?.warmup}+${plan?.steps}) |`);
        }
      }
    }
    out.push('', '**Speed-ups over fp32** (tokens/s ratio, same backend and model, measured in the same run):', '');
    for (const backend of report.backends) {
      for (const model of ['default', 'gpt2']) {
        const get = (p: string) => trainSummary(report.train.find((r) => r.backend === backend && r.model === model && r.precision === p) ?? { backend, model, precision: p, runs: [] });
        const fp32 = get('fp32');
        if (!fp32) continue;
        const ratio = (p: string) => { const s = get(p); return s ? fmt(s.tokensPerSec / fp32.tokensPerSec, 2) : '–'; };
        out.push(`- ${backend}, ${model === 'default' ? 'default GPT' : 'GPT-2 124M'}: fp16 / fp32 = **${ratio('fp16')}**, bf16 / fp32 = **${ratio('bf16')}** (fp16-master ${ratio('fp16-master')}, bf16-master ${ratio('bf16-master')})`);
      }
    }
    out.push('');
  }
  if (report.failures.length) {
    // One line per distinct error, naming every case that hit it.
    const byError = new Map<string, string[]>();
    for (const f of report.failures) {
      const [what, ...why] = f.split(': ');
      const key = why.join(': ');
      byError.set(key, [...(byError.get(key) ?? []), what!]);
    }
    out.push('## Failed cases', '', ...[...byError].map(([why, cases]) => `- ${cases.join('; ')}: ${why}`), '');
  }
  return out.join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------------

interface Report {
  name: string;
  date: string;
  quick: boolean;
  seconds: number;
  machine: Machine;
  backends: string[];
  loadStart: number[];
  loadEnd: number[];
  plans: Record<string, TrainPlan[]>;
  matmul: Result[];
  /** The WebGPU adapter's float32 arithmetic ceiling (bench/adapter-ceiling.ts). */
  ceiling?: Result;
  train: TrainRow[];
  failures: string[];
}

const load = () => loadavg().map((x) => +x.toFixed(2));

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  if (o.budget) deadline = t0 + o.budget * 1000;
  const loadStart = load();
  const machine = await describeMachine();
  const backends = o.backends ?? (o.device ? ['webgpu'] : ['cpu', ...(machine.webgpu.available ? ['webgpu'] : [])]);
  if (backends.includes('webgpu') && !machine.webgpu.available) throw new Error(`bench: --backends webgpu: no WebGPU adapter (${machine.webgpu.reason})`);
  const name = o.name ?? `${machineName(machine, o)}${o.quick ? '-quick' : ''}`;
  console.log(`bench ${name}: ${machine.cpu}, ${machine.cores} cores; WebGPU: ${machine.webgpu.available ? `${machine.webgpu.adapter} (shader-f16: ${machine.webgpu.shaderF16 ? 'yes' : 'no'})` : 'none'}; load ${loadStart.join(' ')}`);

  const report: Report = {
    name, date: new Date().toISOString(), quick: o.quick, seconds: 0, machine, backends, loadStart, loadEnd: [],
    plans: Object.fromEntries(backends.map((b) => [b, trainPlans(b, o)])), matmul: [], train: [], failures: [],
  };
  const write = () => {
    report.seconds = (performance.now() - t0) / 1000;
    report.loadEnd = load();
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(o.out, `${name}.md`), markdown(report));
  };
  const log = (what: string, c: CaseOutcome, summary: string) =>
    console.log(`  ${what.padEnd(44)} ${c.error ? `FAILED: ${c.error}` : summary} (${c.seconds.toFixed(0)} s, load ${loadavg()[0]!.toFixed(2)})`);

  if (o.only !== 'train') {
    console.log('matmul');
    if (backends.includes('webgpu')) {
      const c = await runCase(['ceiling'], 120);
      report.ceiling = c.results[0];
      if (c.error) report.failures.push(`ceiling: ${c.error}`);
      log('webgpu float32 ceiling', c, `${fmt(report.ceiling?.gflops as number | undefined)} GFLOP/s`);
    }
    for (const backend of backends) {
      for (const dtype of DTYPES) {
        const sizes = matmulSizes(backend, o);
        const c = await runCase(['matmul', `--backend=${backend}`, `--dtype=${dtype}`, `--sizes=${sizes.join(',')}`,
          `--target-ms=${o.quick ? (o.device ? 20 : 150) : 400}`, `--batches=${o.quick ? (o.device ? 2 : 3) : 5}`], o.device ? 90 : 1200);
        report.matmul.push(...c.results);
        if (c.error) report.failures.push(`matmul ${backend} ${dtype}: ${c.error}`);
        log(`${backend} ${dtype}`, c, c.results.map((r) => `${r.n}: ${fmt(r.gflops)}`).join(', ') + ' GFLOP/s');
        write();
      }
    }
  }

  if (o.only !== 'matmul') {
    console.log('training');
    const rows = new Map<string, TrainRow>();
    for (const backend of backends) {
      for (const plan of report.plans[backend]!) {
        for (const precision of POLICIES) {
          const row: TrainRow = { backend, model: plan.model, precision, runs: [] };
          rows.set(`${backend}|${plan.model}|${precision}`, row);
          report.train.push(row);
        }
      }
    }
    // Model by model; within a model, rounds are interleaved: round r runs every policy on every backend
    // that has an r-th round, so that a change of load touches all of them alike.
    for (const model of ['default', 'gpt2'] as const) {
      const plans = backends.flatMap((backend) => report.plans[backend]!.filter((p) => p.model === model).map((plan) => ({ backend, plan })));
      const maxRounds = Math.max(0, ...plans.map(({ plan }) => plan.rounds));
      for (let round = 0; round < maxRounds; round++) {
        for (const { backend, plan } of plans) {
          if (round >= plan.rounds) continue;
          for (const precision of POLICIES) {
            const row = rows.get(`${backend}|${model}|${precision}`)!;
            if (row.error) continue; // failed once: it will fail again
            const c = await runCase(['train', `--backend=${backend}`, `--model=${model}`, `--precision=${precision}`,
              `--batch=${plan.batch}`, `--block=${plan.block}`, `--warmup=${plan.warmup}`, `--steps=${plan.steps}`], o.device ? 90 : model === 'gpt2' ? 1800 : 900);
            row.runs.push(...c.results);
            if (c.error) {
              row.error = c.error;
              report.failures.push(`train ${backend} ${model} ${precision}: ${c.error}`);
            }
            const r = c.results[0];
            log(`${backend} ${model} ${precision} (round ${round + 1}/${plan.rounds})`, c,
              r ? `${fmt(r.tokensPerSec, 1)} tok/s, ${fmt(r.msPerStep, 0)} ms/step, peak ${fmt(MB(r.peakBytes), 1)} MB` : '');
            write();
          }
        }
      }
    }
  }

  write();
  console.log(`wrote ${join(o.out, `${name}.json`)} and ${join(o.out, `${name}.md`)} (${fmt(report.seconds / 60, 1)} min)`);
}

await main();
