// The training loop: one ampStep (PyTorch's AMP recipe, see amp-step.ts) per
// iteration, with AdamW (nanoGPT's weight-decay groups) and nanoGPT's warm-up + cosine
// schedule. Nothing is read back from the backend except at logging intervals:
// the found-inf flags stay on the device, and skipped steps are counted there
// (iterations minus the optimizer's own step counter). Every step runs inside
// `tidy`, so memory is flat from step to step.
//
// A run directory holds metrics.jsonl, summary.json and checkpoint/; a run
// resumed from its checkpoint continues bit for bit on the CPU backend.

import { mkdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { mix32 } from '../backend/random.js';
import type { GradScaler } from '../amp/grad-scaler.js';
import type { AutocastDType } from '../amp/autocast.js';
import { parsePolicy, type Policy } from '../amp/policy.js';
import { GPT, countParameters } from '../nn/gpt.js';
import type { AdamW } from '../optim/adamw.js';
import type { BaseOptions, Optimizer } from '../optim/optimizer.js';
import { warmupCosine } from '../optim/schedule.js';
import { loadGPT2 } from '../io/gpt2.js';
import { isCheckpointDir, loadCheckpointModel, readCheckpoint, restoreOptimizer, restoreScaler, saveCheckpoint, type Checkpoint } from '../io/checkpoint.js';
import { BatchSampler, evalBatches, type Batch, type BatchSamplerState } from '../data/batches.js';
import { loadTokenizedSplits, type TokenizedSplits } from '../data/cache.js';
import { loadTokenizer, type Tokenizer } from '../data/tokenizer.js';
import { TrainConfigError, optionName, resolveLossScale, resolveTrainConfig, type TrainConfig } from './config.js';
import { createOptimizer, createScaler, modelConfig } from './run-setup.js';
import { METRICS_FILE, MetricsWriter, SUMMARY_FILE, truncateMetrics, type EvalRecord, type TrainRecord } from './metrics.js';
import { StepWatch, type SkippedSteps, type StepObserver } from './step-watch.js';
import { describeSelection, releaseBackend, selectBackend, type SelectedBackend } from './select-backend.js';
import { batchTensors, evaluateLoss, type EvalResult } from './evaluate.js';
import { ampStep, type AmpStepResult } from './amp-step.js';
import { writeFileAtomic } from '../io/atomic.js';

export { createOptimizer, createScaler, modelConfig } from './run-setup.js';

export const CHECKPOINT_DIR = 'checkpoint';

/** What the loop reports after every step (for progress displays). */
export interface StepProgress {
  step: number;
  maxSteps: number;
  tokens: number;
  /** Seconds since the run started (previous sessions of a resumed run included). */
  elapsedSec: number;
  /** An estimate of the seconds left, from recent step times (and the time budget). */
  remainingSec: number;
  /** Throughput of the most recent steps. */
  tokensPerSec: number;
  /** The latest values read back at a logging step (null before the first). */
  last: TrainRecord | null;
}

export interface TrainHooks {
  onStep?(p: StepProgress): void;
  onLog?(r: TrainRecord): void;
  onEval?(r: EvalRecord): void;
  onCheckpoint?(dir: string, step: number): void;
  /** Steps were skipped since the previous logging step: the latest overflow, by gradient. */
  onSkip?(r: SkippedSteps): void;
  /** Aborting stops the run after the current step, with a checkpoint. */
  signal?: AbortSignal;
}

export type StopReason = 'max-steps' | 'time-budget' | 'interrupted';

export interface TrainSummary {
  status: StopReason;
  steps: number;
  maxSteps: number;
  skippedSteps: number;
  tokens: number;
  finalTrainLoss: number | null;
  finalValLoss: number | null;
  finalValLossPerByte: number | null;
  finalValPerplexity: number | null;
  /** Wall time of the whole run, previous sessions of a resumed run included. */
  timeSec: number;
  /** Training tokens per second of step time (evaluations and saves excluded). */
  tokensPerSec: number;
  lossScale: number;
  backend: string;
  precision: string;
  parameters: number;
  runDir: string | null;
  checkpoint: string | null;
}

export interface TrainerOptions {
  /** Where metrics.jsonl, summary.json and checkpoint/ go; null writes nothing. */
  runDir?: string | null;
  /** A backend to use instead of selecting one from config.backend. */
  backend?: SelectedBackend;
  /** The token cache directory (default .cache/mixprec). */
  cacheDir?: string;
  /** Informational messages (data source, backend, model size). */
  log?: (message: string) => void;
  /** Observers of the steps (tensor statistics, say), made for the run's model. */
  observers?: (model: GPT) => StepObserver[];
}

/** The progress a checkpoint carries besides step, RNG and data position. */
interface Progress {
  tokens: number;
  elapsedSec: number;
  trainSec: number;
  lastTrainLoss: number | null;
}

/** The data sampler's seed: derived from the run's seed, so that it draws a stream apart from the model's. */
function dataSeed(seed: number): number {
  return mix32((seed ^ 0x0da7a5ed) >>> 0);
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

export class Trainer {
  step = 0;
  private progress: Progress = { tokens: 0, elapsedSec: 0, trainSec: 0, lastTrainLoss: null };
  private readonly evalSet: Batch[];
  private readonly metrics: MetricsWriter | null;
  private lastEval: EvalRecord | null = null;
  private lastSavedStep = -1;
  private lastRecord: TrainRecord | null = null;
  private watch!: StepWatch;
  /** Whether the backend was selected here (and is released by dispose) rather than passed in. */
  private ownsBackend = false;
  /** When this session started (creation included), and the seconds of earlier sessions of the run. */
  private sessionStart = performance.now();
  private earlierSessionsSec = 0;

  private constructor(
    readonly config: TrainConfig,
    readonly policy: Policy,
    readonly selected: SelectedBackend,
    readonly tokenizer: Tokenizer,
    readonly data: TokenizedSplits,
    readonly model: GPT,
    readonly optimizer: AdamW,
    readonly scaler: GradScaler,
    readonly sampler: BatchSampler,
    readonly runDir: string | null,
  ) {
    this.evalSet = evalBatches(data.validation, { batchSize: config.batchSize, blockSize: config.blockSize, steps: config.evalSteps, split: 'validation' });
    this.metrics = runDir ? new MetricsWriter(join(runDir, METRICS_FILE)) : null;
  }

  get backend(): Backend {
    return this.selected.backend;
  }

  get checkpointDir(): string | null {
    return this.runDir ? join(this.runDir, CHECKPOINT_DIR) : null;
  }

  get parameterCount(): number {
    return countParameters(this.model.config);
  }

  /** A new run (from scratch, or from a GPT-2 directory with config.initFrom). */
  static async create(config: Partial<TrainConfig>, opts: TrainerOptions = {}): Promise<Trainer> {
    const start = performance.now();
    const c = resolveTrainConfig(config);
    const runDir = opts.runDir ? resolve(opts.runDir) : null;
    if (runDir) {
      const existing = await stat(join(runDir, CHECKPOINT_DIR)).catch(() => null);
      if (existing) throw new TrainConfigError('out', `--out: ${runDir} already holds a run (continue it with --resume ${runDir}, or choose another --out)`);
    }
    const trainer = await Trainer.build(c, runDir, null, opts);
    trainer.sessionStart = start;
    try {
      if (runDir) {
        await mkdir(runDir, { recursive: true });
        await truncateMetrics(join(runDir, METRICS_FILE), -1);
      }
      trainer.writeStart(false);
    } catch (err) {
      trainer.dispose();
      throw err;
    }
    return trainer;
  }

  /**
   * Continues the run in `runDir` from its checkpoint. `overrides` may change how
   * long and how it runs (max-steps, time budget, intervals, backend), not what
   * it trains: other options must equal the checkpoint's.
   */
  static async resume(runDir: string, overrides: Partial<TrainConfig> = {}, opts: Omit<TrainerOptions, 'runDir'> = {}): Promise<Trainer> {
    const start = performance.now();
    let dir = resolve(runDir);
    // The checkpoint directory itself names its run too.
    if (basename(dir) === CHECKPOINT_DIR && (await isCheckpointDir(dir))) dir = dirname(dir);
    const ckpt = await readCheckpoint(join(dir, CHECKPOINT_DIR));
    const saved = resolveTrainConfig(ckpt.state.config as Partial<TrainConfig>);
    for (const [key, value] of Object.entries(overrides) as [keyof TrainConfig, unknown][]) {
      if (value === undefined || RESUMABLE_OPTIONS.includes(key)) continue;
      if (JSON.stringify(value) !== JSON.stringify(saved[key])) {
        throw new TrainConfigError(key, `--${optionName(key)}: cannot change from ${JSON.stringify(saved[key])} to ${JSON.stringify(value)} when resuming (only ${RESUMABLE_OPTIONS.map((k) => `--${optionName(k)}`).join(', ')} can change)`);
      }
    }
    const c = resolveTrainConfig({ ...saved, ...Object.fromEntries(Object.entries(overrides).filter(([k]) => RESUMABLE_OPTIONS.includes(k as keyof TrainConfig))) });
    const trainer = await Trainer.build(c, dir, ckpt, opts);
    trainer.sessionStart = start;
    trainer.earlierSessionsSec = trainer.progress.elapsedSec;
    try {
      await truncateMetrics(join(dir, METRICS_FILE), trainer.step);
      trainer.writeStart(true);
    } catch (err) {
      trainer.dispose();
      throw err;
    }
    return trainer;
  }

  private static async build(c: TrainConfig, runDir: string | null, ckpt: Checkpoint | null, opts: TrainerOptions): Promise<Trainer> {
    const policy = parsePolicy(c.precision, resolveLossScale(c));
    // Checked before anything is loaded, so a bad size is the first thing said.
    if (!ckpt && !c.initFrom) modelConfig(c, 256);
    if (opts.backend) return Trainer.buildOn(opts.backend, c, policy, runDir, ckpt, opts);
    const selected = await selectBackend(c.backend);
    try {
      const trainer = await Trainer.buildOn(selected, c, policy, runDir, ckpt, opts);
      trainer.ownsBackend = true;
      return trainer;
    } catch (err) {
      releaseBackend(selected);
      throw err;
    }
  }

  private static async buildOn(
    selected: SelectedBackend, c: TrainConfig, policy: Policy, runDir: string | null, ckpt: Checkpoint | null, opts: TrainerOptions,
  ): Promise<Trainer> {
    const log = opts.log ?? (() => {});
    const backend = selected.backend;
    log(describeSelection(selected));
    const tokenizer = await loadTokenizer(c.tokenizer);
    const data = await loadTokenizedSplits({ data: c.data ?? undefined, tokenizer, cacheDir: opts.cacheDir });
    log(`data: ${data.source}: ${data.train.length.toLocaleString('en-US')} training and ${data.validation.length.toLocaleString('en-US')} validation tokens (${c.tokenizer} tokenizer${data.cached ? ', cached' : ''})`);
    const dtype = policy.params as 'float32' | 'float16' | 'bfloat16';
    let model: GPT;
    if (ckpt) model = await loadCheckpointModel(ckpt, { backend, dtype });
    else if (c.initFrom) model = await loadGPT2(c.initFrom, { backend, dtype, dropout: c.dropout, seed: c.seed });
    else model = new GPT(modelConfig(c, tokenizer.vocabSize), { backend, dtype, seed: c.seed });
    model.recompute = c.recompute;
    let optimizer: AdamW | undefined;
    try {
      if (model.config.vocabSize !== tokenizer.vocabSize) {
        throw new TrainConfigError('tokenizer', `--tokenizer: the ${c.tokenizer} tokenizer has ${tokenizer.vocabSize} tokens, the model ${model.config.vocabSize} (GPT-2 models need --tokenizer gpt2)`);
      }
      if (c.blockSize > model.config.blockSize) {
        throw new TrainConfigError('blockSize', `--block-size: ${c.blockSize} is longer than the model's ${model.config.blockSize} positions`);
      }
      optimizer = createOptimizer(model, c);
      const scaler = createScaler(c, backend);
      const sampler = new BatchSampler(data.train, { batchSize: c.batchSize, blockSize: c.blockSize, seed: dataSeed(c.seed), split: 'train' });
      const trainer = new Trainer(c, policy, selected, tokenizer, data, model, optimizer, scaler, sampler, runDir);
      trainer.watch = new StepWatch(opts.observers?.(model) ?? [], scaler, (r) => trainer.metrics?.append(r));
      if (ckpt) {
        await restoreOptimizer(ckpt, optimizer);
        restoreScaler(ckpt, scaler);
        sampler.setState(ckpt.state.data as unknown as BatchSamplerState);
        trainer.step = ckpt.state.step;
        trainer.progress = { ...trainer.progress, ...(ckpt.state.progress as Partial<Progress>) };
        trainer.lastSavedStep = ckpt.state.step;
        trainer.watch.startFrom(ckpt.state.step - (await optimizer.paramGroups[0]!.step.item()));
      }
      return trainer;
    } catch (err) {
      optimizer?.dispose();
      model.dispose();
      throw err;
    }
  }

  private writeStart(resumed: boolean): void {
    this.metrics?.append({
      type: 'start', step: this.step, time: new Date().toISOString(), resumed,
      backend: this.selected.description, precision: this.policy.name, parameters: this.parameterCount,
      model: { ...this.model.config }, config: { ...this.config },
      data: { source: this.data.source, trainTokens: this.data.train.length, validationTokens: this.data.validation.length },
    });
  }

  private get tokensPerStep(): number {
    const c = this.config;
    return c.batchSize * c.blockSize * c.gradAccum;
  }

  private lrAt(it: number): number {
    const c = this.config;
    return warmupCosine(it, { lr: c.lr, minLr: c.minLr, warmup: c.warmup, decaySteps: c.maxSteps });
  }

  /**
   * One optimizer step over gradAccum micro-batches. Returns the step's loss and
   * gradient norm as device tensors when asked (for logging), else nothing.
   */
  private trainStep(keepValues: boolean): AmpStepResult | null {
    const c = this.config;
    const { model, optimizer, scaler, policy } = this;
    optimizer.setLr(this.lrAt(this.step));
    this.watch.beforeStep(this.step + 1);
    const result = ampStep(() => {
      const { x, y } = batchTensors(model, this.sampler.next(), c.batchSize, c.blockSize);
      return model.loss(x, y);
    }, {
      optimizer, scaler, maxGradNorm: c.clip, accumulationSteps: c.gradAccum, afterBackward: this.watch.afterBackward(this.step + 1),
      autocast: policy.compute === 'float32' ? null : (policy.compute as AutocastDType),
    });
    if (keepValues) return result;
    result.loss.dispose();
    result.gradNorm?.dispose();
    return null;
  }

  /** Mean validation loss on the fixed windows, under the run's precision policy and without dropout. */
  evaluate(): Promise<EvalResult> {
    const c = this.config;
    return evaluateLoss(this.model, this.evalSet, { policy: this.policy, batchSize: c.batchSize, blockSize: c.blockSize, tokenizer: this.tokenizer.name });
  }

  /** Seconds of this session. */
  private sessionElapsed(): number {
    return (performance.now() - this.sessionStart) / 1000;
  }

  /** Seconds of the whole run, earlier sessions of a resumed run included. */
  private elapsed(): number {
    return this.earlierSessionsSec + this.sessionElapsed();
  }

  /** Writes the training checkpoint (model, optimizer, scaler, RNG, data position, config). */
  async saveCheckpoint(): Promise<string | null> {
    const dir = this.checkpointDir;
    if (!dir) return null;
    this.progress.elapsedSec = this.elapsed();
    await saveCheckpoint(dir, {
      model: this.model,
      optimizer: this.optimizer as unknown as Optimizer<BaseOptions>,
      scaler: this.scaler,
      state: {
        step: this.step,
        config: { ...this.config },
        rng: { model: this.model.generator.state() },
        data: { ...this.sampler.state() },
        progress: { ...this.progress },
      },
    });
    this.lastSavedStep = this.step;
    return dir;
  }

  private async runEval(hooks: TrainHooks): Promise<{ record: EvalRecord; seconds: number }> {
    const t0 = performance.now();
    const r = await this.evaluate();
    const record: EvalRecord = { type: 'eval', step: this.step, ...r, elapsedSec: round(this.elapsed()) };
    this.lastEval = record;
    this.metrics?.append(record);
    hooks.onEval?.(record);
    return { record, seconds: (performance.now() - t0) / 1000 };
  }

  /** Trains until maxSteps, the time budget or an abort; evaluates and saves at the end. */
  async run(hooks: TrainHooks = {}): Promise<TrainSummary> {
    const c = this.config;
    const { signal } = hooks;
    let status: StopReason = 'max-steps';
    // Recent step times, for throughput and the time-left estimate.
    let recentSec = 0, recentSteps = 0, windowTokens = 0, windowSec = 0;
    let evalSec = 0, saveSec = 0;
    while (this.step < c.maxSteps) {
      if (signal?.aborted) { status = 'interrupted'; break; }
      const logging = (this.step + 1) % c.logInterval === 0 || this.step + 1 === c.maxSteps;
      const t0 = performance.now();
      const values = this.trainStep(logging);
      this.step++;
      this.progress.tokens += this.tokensPerStep;
      await this.watch.afterStep(this.step);
      let record: TrainRecord | null = null;
      if (values) {
        const loss = await values.loss.item();
        const gradNorm = values.gradNorm ? await values.gradNorm.item() : undefined;
        values.loss.dispose();
        values.gradNorm?.dispose();
        const optimizerSteps = await this.optimizer.paramGroups[0]!.step.item();
        record = {
          type: 'train', step: this.step, loss, lr: this.lrAt(this.step - 1), scale: await this.scaler.getScale(),
          skipped: this.step - optimizerSteps, ...(gradNorm === undefined ? {} : { gradNorm }),
          tokens: this.progress.tokens, tokensPerSec: 0, elapsedSec: 0,
        };
      }
      const stepSec = (performance.now() - t0) / 1000;
      this.progress.trainSec += stepSec;
      recentSec = recentSteps === 0 ? stepSec : 0.9 * recentSec + 0.1 * stepSec;
      recentSteps++;
      windowTokens += this.tokensPerStep;
      windowSec += stepSec;
      if (record) {
        record.tokensPerSec = Math.round(windowTokens / windowSec);
        record.elapsedSec = round(this.elapsed());
        windowTokens = windowSec = 0;
        this.progress.lastTrainLoss = record.loss;
        Object.assign(record, await this.watch.overflowSince(this.step, record.skipped, hooks.onSkip));
        this.lastRecord = record;
        this.metrics?.append(record);
        hooks.onLog?.(record);
        await this.watch.checkScale(() => this.timedSave(hooks));
      }
      if (this.step % c.evalInterval === 0 || this.step === c.maxSteps) evalSec = (await this.runEval(hooks)).seconds;
      if (c.saveInterval > 0 && this.step % c.saveInterval === 0 && this.step < c.maxSteps) saveSec = await this.timedSave(hooks);
      const elapsed = this.elapsed();
      const evalsLeft = Math.ceil((c.maxSteps - this.step) / c.evalInterval);
      let remaining = (c.maxSteps - this.step) * recentSec + evalsLeft * evalSec;
      if (c.timeBudget !== null) {
        // The budget is per session. Stop when one more step and the final evaluation and save would not fit.
        const used = this.sessionElapsed();
        // Before the first evaluation its cost is guessed: a forward pass is about a third of a training step.
        const finalEvalSec = evalSec || (this.evalSet.length * c.batchSize * c.blockSize / this.tokensPerStep) * recentSec / 3;
        if (this.step < c.maxSteps && used + recentSec + finalEvalSec + saveSec >= c.timeBudget) status = 'time-budget';
        remaining = Math.min(remaining, Math.max(0, c.timeBudget - used));
      }
      hooks.onStep?.({
        step: this.step, maxSteps: c.maxSteps, tokens: this.progress.tokens, elapsedSec: elapsed,
        remainingSec: remaining, tokensPerSec: recentSec > 0 ? this.tokensPerStep / recentSec : 0, last: this.lastRecord,
      });
      if (status === 'time-budget') break;
      // Lets signal handlers (Ctrl-C) run between steps.
      await yieldToEventLoop();
    }
    if (signal?.aborted) status = 'interrupted';
    if (status !== 'interrupted' && this.lastEval?.step !== this.step) await this.runEval(hooks);
    if (this.lastSavedStep !== this.step) await this.timedSave(hooks);
    return this.summary(status);
  }

  private async timedSave(hooks: TrainHooks): Promise<number> {
    const t0 = performance.now();
    const dir = await this.saveCheckpoint();
    if (dir) hooks.onCheckpoint?.(dir, this.step);
    return (performance.now() - t0) / 1000;
  }

  private async summary(status: StopReason): Promise<TrainSummary> {
    const optimizerSteps = await this.optimizer.paramGroups[0]!.step.item();
    const ev = this.lastEval?.step === this.step ? this.lastEval : null;
    const summary: TrainSummary = {
      status,
      steps: this.step,
      maxSteps: this.config.maxSteps,
      skippedSteps: this.step - optimizerSteps,
      tokens: this.progress.tokens,
      finalTrainLoss: this.progress.lastTrainLoss,
      finalValLoss: ev?.valLoss ?? null,
      finalValLossPerByte: ev?.valLossPerByte ?? null,
      finalValPerplexity: ev?.perplexity ?? null,
      timeSec: round(this.elapsed()),
      tokensPerSec: this.progress.trainSec > 0 ? Math.round(this.progress.tokens / this.progress.trainSec) : 0,
      lossScale: await this.scaler.getScale(),
      backend: this.selected.description,
      precision: this.policy.name,
      parameters: this.parameterCount,
      runDir: this.runDir,
      checkpoint: this.checkpointDir,
    };
    if (this.runDir && status !== 'interrupted') await writeFileAtomic(join(this.runDir, SUMMARY_FILE), `${JSON.stringify(summary, null, 2)}\n`);
    return summary;
  }

  /** Releases the model's, optimizer's and scaler's tensors, and the backend if this trainer selected it (a WebGPU device). */
  dispose(): void {
    this.watch.dispose();
    this.optimizer.dispose();
    this.scaler.dispose();
    this.model.dispose();
    if (this.ownsBackend) {
      this.ownsBackend = false;
      releaseBackend(this.selected);
    }
  }
}

/** Options a resumed run may change: how long and where it runs, not what it trains. */
export const RESUMABLE_OPTIONS: readonly (keyof TrainConfig)[] = ['maxSteps', 'timeBudget', 'evalInterval', 'evalSteps', 'logInterval', 'saveInterval', 'backend', 'recompute'];

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Trains a new run (or resumes `resume`) to the end; the library form of `mixprec train`. */
export async function train(config: Partial<TrainConfig>, opts: TrainerOptions & TrainHooks & { resume?: string } = {}): Promise<TrainSummary> {
  const trainer = opts.resume ? await Trainer.resume(opts.resume, config, opts) : await Trainer.create(config, opts);
  try {
    return await trainer.run(opts);
  } finally {
    trainer.dispose();
  }
}
