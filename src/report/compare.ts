// `mixprec compare`: the same model, data and seed trained under several
// precision set-ups one after another, each in its own run directory under
// `out`, then results.json and report.html beside them.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MixprecError } from '../errors.js';
import { GPT } from '../nn/gpt.js';
import { tensor } from '../tensor/creation.js';
import { tidy } from '../tensor/tensor.js';
import { CpuBackend } from '../backend/cpu/backend.js';
import { withPolicy, parsePolicy } from '../amp/policy.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { resolveTrainConfig, resolveLossScale, type TrainConfig } from '../train/config.js';
import { createOptimizer, modelConfig, train, type TrainSummary } from '../train/trainer.js';
import { readMetrics, METRICS_FILE, SUMMARY_FILE } from '../train/metrics.js';
import { releaseBackend, selectBackend, type SelectedBackend } from '../train/select-backend.js';
import { computeMemory, measureMemory } from './memory.js';
import { NumericsObserver, type StatsRecord } from './observer.js';
import { recommendScale } from './recommend.js';
import { renderReport } from './html.js';
import { ReportError, type SetupResult, type SetupSpec } from './results.js';

export const REPORT_FILE = 'report.html';
export const RESULTS_FILE = 'results.json';
/** The static scale of the 'fp16 static' set-up when no float32 run recommended one. */
export const FALLBACK_STATIC_SCALE = 2 ** 10;

/** The set-ups of the figure: float32, float16 three ways, float16 without float32 master weights, bfloat16. */
export const DEFAULT_SETUPS: readonly SetupSpec[] = [
  { name: 'fp32', precision: 'fp32', lossScale: 'none' },
  { name: 'fp16 no scaling', precision: 'fp16', lossScale: 'none' },
  // 'auto' here means: the scale recommended by the float32 run's gradients.
  { name: 'fp16 static', precision: 'fp16', lossScale: 'auto' },
  { name: 'fp16 dynamic', precision: 'fp16', lossScale: 'dynamic' },
  // PyTorch refuses to unscale float16 gradients, so float16 weights without master copies train unscaled.
  { name: 'fp16 weights, no fp32 master', precision: 'fp16-master', lossScale: 'none', masterWeights: false },
  { name: 'bf16', precision: 'bf16', lossScale: 'none' },
];

export interface CompareOptions {
  /** The training options shared by every set-up (as for `train`). */
  config: Partial<TrainConfig>;
  out: string;
  setups?: readonly SetupSpec[];
  /** Statistics every this many steps (default: about 20 samples per run). */
  statsInterval?: number;
  findNonFinite?: boolean;
  log?: (message: string) => void;
  /** The command line, for the report's subtitle. */
  command?: string;
}

/** A directory name for a set-up. */
export function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** The memory of a set-up's model and optimizer, computed and measured on `selected`'s backend with one batch. */
async function setupMemory(c: TrainConfig, selected: SelectedBackend): Promise<SetupResult['memory']> {
  // A fresh CPU backend has its own peak, so each set-up's activations are measured.
  const backend = selected.kind === 'cpu' ? new CpuBackend() : selected.backend;
  const policy = parsePolicy(c.precision, resolveLossScale(c));
  const vocab = (await loadTokenizer(c.tokenizer)).vocabSize;
  const ids = Array.from({ length: c.batchSize * c.blockSize }, (_, i) => (i * 7919) % vocab);
  const { measured, model, optimizer } = measureMemory(backend, {
    createModel: () => new GPT(modelConfig(c, vocab), { backend, dtype: policy.params as 'float32' | 'float16' | 'bfloat16', seed: c.seed }),
    createOptimizer: (m) => createOptimizer(m, c),
    forwardBackward: (m) => tidy(() => {
      const x = tensor(ids, { shape: [c.batchSize, c.blockSize], dtype: 'int32', backend });
      withPolicy(policy, () => m.loss(x, x)).backward();
    }),
  });
  const computed = computeMemory(model, optimizer);
  optimizer.dispose();
  model.dispose();
  return { computed, measured };
}

/** A set-up's result from its run directory (metrics.jsonl) and its summary. */
export async function readSetupResult(runDir: string, setup: SetupSpec, summary: TrainSummary | null, memory: SetupResult['memory'], stopReason?: string): Promise<SetupResult> {
  const records = await readMetrics(join(runDir, METRICS_FILE));
  const train: SetupResult['train'] = [], evals: SetupResult['eval'] = [], stats: SetupResult['stats'] = [];
  // The first gradient that overflowed at the latest skipped step before each record that reports one.
  const named = new Map<number, string>();
  for (const r of records) {
    if (r.type === 'train') {
      train.push({ step: r.step, loss: r.loss, scale: r.scale, skipped: r.skipped });
      if (r.overflowIn?.length) named.set(r.step, r.overflowIn[0]!);
    } else if (r.type === 'eval') evals.push({ step: r.step, valLoss: r.valLoss });
    else if ((r as { type: string }).type === 'stats') {
      const s = r as unknown as StatsRecord;
      stats.push({ step: s.step, scale: s.scale, tensors: s.tensors });
    }
  }
  // Skipped steps show as increments of the running count at logging steps.
  const skipped: SetupResult['skipped'] = [];
  let prev = 0;
  for (const t of train) {
    for (let k = prev; k < t.skipped; k++) skipped.push({ step: t.step, ...(named.has(t.step) ? { tensor: named.get(t.step)! } : {}) });
    prev = t.skipped;
  }
  return {
    setup, status: stopReason === undefined ? 'completed' : 'stopped', ...(stopReason === undefined ? {} : { stopReason }),
    steps: summary?.steps ?? train.at(-1)?.step ?? 0, train, eval: evals, stats, skipped, memory,
    tokensPerSec: summary?.tokensPerSec ?? 0,
    finalValLoss: summary?.finalValLoss ?? null,
  };
}

/** Trains every set-up and writes results.json and report.html into `out`. */
export async function compare(opts: CompareOptions): Promise<{ results: SetupResult[]; reportFile: string }> {
  const setups = opts.setups ?? DEFAULT_SETUPS;
  if (setups.length === 0) throw new ReportError('compare: no set-ups to run');
  const names = new Set<string>();
  for (const s of setups) {
    if (names.has(slug(s.name))) throw new ReportError(`compare: two set-ups are named '${s.name}'`);
    names.add(slug(s.name));
  }
  const base = resolveTrainConfig(opts.config);
  const statsInterval = opts.statsInterval ?? Math.max(1, Math.floor(base.maxSteps / 20));
  const log = opts.log ?? (() => {});
  await mkdir(opts.out, { recursive: true });
  const selected = await selectBackend(base.backend);
  const results: SetupResult[] = [];
  try {
    for (const setup of setups) {
      let lossScale = setup.lossScale;
      if (setup.lossScale === 'auto' && setup.precision.startsWith('fp16') && setup.name.includes('static')) {
        const rec = recommendScale(results.find((r) => r.setup.precision === 'fp32')?.stats ?? []);
        lossScale = rec?.scale ?? FALLBACK_STATIC_SCALE;
      }
      const resolved: SetupSpec = { ...setup, lossScale };
      const c: Partial<TrainConfig> = { ...opts.config, precision: setup.precision, lossScale, masterWeights: setup.masterWeights ?? true };
      const runDir = join(opts.out, slug(setup.name));
      log(`set-up ${results.length + 1}/${setups.length}: ${setup.name} (precision ${setup.precision}, loss scale ${lossScale}) in ${runDir}`);
      const memory = await setupMemory(resolveTrainConfig(c), selected);
      let summary: TrainSummary | null = null, stopReason: string | undefined;
      try {
        summary = await train(c, { runDir, backend: selected, observers: (model) => [new NumericsObserver(model, { statsInterval, findNonFinite: opts.findNonFinite })] });
      } catch (e) {
        // A set-up that fails (its scale collapsed, say) is a result too; the comparison goes on.
        if (!(e instanceof MixprecError)) throw e;
        stopReason = e.message;
        log(`${setup.name} stopped: ${e.message}`);
      }
      results.push(await readSetupResult(runDir, resolved, summary, memory, stopReason));
    }
  } finally {
    releaseBackend(selected);
  }
  await writeFile(join(opts.out, RESULTS_FILE), `${JSON.stringify(results)}\n`);
  const reportFile = join(opts.out, REPORT_FILE);
  await writeFile(reportFile, renderReport(results, { title: 'mixprec compare', subtitle: opts.command }));
  return { results, reportFile };
}

/**
 * The report of one training run (what `mixprec train` writes into its run
 * directory), from its metrics.jsonl and summary.json.
 */
export async function writeRunReport(runDir: string, command: string, memory: SetupResult['memory'] = null): Promise<string> {
  const records = await readMetrics(join(runDir, METRICS_FILE));
  const start = records.find((r) => r.type === 'start');
  if (!start || start.type !== 'start') throw new ReportError(`${join(runDir, METRICS_FILE)}: no start record, so no run to report`);
  const config = start.config as Partial<TrainConfig>;
  const summary = JSON.parse(await readFile(join(runDir, SUMMARY_FILE), 'utf8').catch(() => 'null')) as TrainSummary | null;
  const setup: SetupSpec = { name: String(config.precision ?? start.precision), precision: String(config.precision ?? start.precision), lossScale: config.lossScale ?? 'auto', masterWeights: config.masterWeights ?? true };
  const result = await readSetupResult(runDir, setup, summary, memory);
  const file = join(runDir, REPORT_FILE);
  await writeFile(file, renderReport([result], { title: `mixprec train: ${runDir}`, subtitle: command }));
  return file;
}

/** Renders report.html again from a comparison's results.json. */
export async function rerenderReport(out: string): Promise<string> {
  const results = JSON.parse(await readFile(join(out, RESULTS_FILE), 'utf8')) as SetupResult[];
  const file = join(out, REPORT_FILE);
  await writeFile(file, renderReport(results, { title: 'mixprec compare' }));
  return file;
}
