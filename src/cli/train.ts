// `mixprec train`: trains a GPT, with live progress, metrics, checkpoints,
// Ctrl-C handling and --resume.

import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { PRESETS as POLICY_PRESETS, parsePolicy } from '../amp/policy.js';
import { GPT_PRESETS } from '../nn/gpt.js';
import { TOKENIZER_NAMES } from '../data/tokenizer.js';
import {
  DEFAULT_TRAIN_CONFIG as D, TrainConfigError, formatDuration, parseDuration, type TrainConfig,
} from '../train/config.js';
import { CHECKPOINT_DIR, Trainer, type TrainSummary } from '../train/trainer.js';
import { METRICS_FILE, SUMMARY_FILE, type EvalRecord } from '../train/metrics.js';
import { UsageError, parseCommandArgs, shortUsage, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { EXIT_INTERRUPTED, EXIT_OK } from './errors.js';
import { HELP_OPTION, backendOption } from './common.js';
import { StatusLine, type OutputStream } from './progress.js';
import type { GPT } from '../nn/gpt.js';
import { NumericsObserver, type NumericsOptions } from '../report/observer.js';
import { REPORT_FILE, writeRunReport } from '../report/compare.js';
import { computeMemory } from '../report/memory.js';

export function parseLossScale(raw: string): TrainConfig['lossScale'] {
  if (raw === 'dynamic' || raw === 'none') return raw;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v <= 0) throw new Error(`expected dynamic, none or a positive number, got '${raw}'`);
  return v;
}

export function parsePrecision(raw: string): string {
  parsePolicy(raw); // throws PolicyError naming what is wrong
  return raw;
}

const presetNames = Object.keys(GPT_PRESETS);

/** Options that map onto TrainConfig keys (camelCase of the option name). */
export const CONFIG_OPTIONS: OptionSpec[] = [
  { name: 'precision', type: 'string', metavar: 'POLICY', default: D.precision, parse: parsePrecision,
    help: `${Object.keys(POLICY_PRESETS).join(', ')}, or a policy string such as params=float32,compute=bfloat16` },
  { name: 'loss-scale', type: 'string', metavar: 'dynamic|none|X', parse: parseLossScale, default: D.lossScale,
    defaultText: 'dynamic with float16 compute, none otherwise', help: 'loss scaling: dynamic (GradScaler), none, or a fixed scale' },
  { name: 'min-scale', type: 'float', min: 0, default: D.minScale, defaultText: 'none', help: 'stop (with a checkpoint) when the dynamic scale would fall below this' },
  { name: 'hysteresis', type: 'int', min: 1, default: D.hysteresis, help: 'back the dynamic scale off only after N consecutive overflows' },
  backendOption(D.backend),
  { name: 'model', type: 'enum', values: presetNames, metavar: 'PRESET', defaultText: `${D.model} with ${D.nLayer} layers, ${D.nHead} heads, width ${D.nEmbd}`,
    help: `GPT preset: ${presetNames.join(', ')}` },
  { name: 'n-layer', type: 'int', min: 1, defaultText: "the preset's", help: 'transformer blocks' },
  { name: 'n-head', type: 'int', min: 1, defaultText: "the preset's", help: 'attention heads' },
  { name: 'n-embd', type: 'int', min: 1, defaultText: "the preset's", help: 'embedding width' },
  { name: 'dropout', type: 'float', min: 0, default: D.dropout, help: 'dropout probability' },
  { name: 'tokenizer', type: 'enum', values: TOKENIZER_NAMES, default: D.tokenizer, defaultText: 'byte; gpt2 with --init-from', help: 'byte (256 tokens) or gpt2 (BPE, 50257 tokens)' },
  { name: 'data', type: 'string', metavar: 'PATH', defaultText: 'the Brown corpus', help: 'a text file, a directory of text files or a glob; the last 10% is validation' },
  { name: 'batch-size', type: 'int', min: 1, default: D.batchSize, help: 'sequences per micro-batch' },
  { name: 'block-size', type: 'int', min: 1, default: D.blockSize, help: 'tokens per sequence (context length)' },
  { name: 'grad-accum', type: 'int', min: 1, default: D.gradAccum, help: 'micro-batches per optimizer step' },
  { name: 'lr', type: 'float', default: D.lr, help: 'peak learning rate (AdamW); with --model gpt2* 6e-4, with --init-from 3e-5' },
  { name: 'min-lr', type: 'float', min: 0, default: D.minLr, help: 'learning rate at the end of the cosine decay; with --model gpt2* 6e-5, with --init-from 3e-5 (constant)' },
  { name: 'warmup', type: 'int', min: 0, default: D.warmup, help: 'linear warm-up steps' },
  { name: 'max-steps', type: 'int', min: 1, default: D.maxSteps, help: 'optimizer steps; the cosine decay ends here' },
  { name: 'weight-decay', type: 'float', min: 0, default: D.weightDecay, help: 'AdamW weight decay of matrices and embeddings (not biases or LayerNorm)' },
  { name: 'beta1', type: 'float', default: D.beta1, help: 'AdamW beta1' },
  { name: 'beta2', type: 'float', default: D.beta2, help: 'AdamW beta2' },
  { name: 'clip', type: 'float', min: 0, default: D.clip, help: 'clip the gradient norm to this (0: off)' },
  { name: 'eval-interval', type: 'int', min: 1, default: D.evalInterval, help: 'evaluate every N steps (and at the end)' },
  { name: 'eval-steps', type: 'int', min: 1, default: D.evalSteps, help: 'validation batches per evaluation (fixed windows)' },
  { name: 'log-interval', type: 'int', min: 1, default: D.logInterval, help: 'read back and record the loss every N steps' },
  { name: 'save-interval', type: 'int', min: 0, default: D.saveInterval, help: 'save a checkpoint every N steps (0: only at the end)' },
  { name: 'seed', type: 'int', min: 0, default: D.seed, help: 'seeds initialisation, dropout and batch sampling' },
  { name: 'time-budget', type: 'string', metavar: 'DURATION', parse: parseDuration, defaultText: 'none',
    help: 'end this session in time (e.g. 9m, 1h30m), with a final evaluation and checkpoint' },
  { name: 'init-from', type: 'string', metavar: 'DIR', help: 'start from a Hugging Face GPT-2 directory (fine-tuning)' },
  { name: 'recompute', type: 'flag', help: "recompute each block's activations in backward instead of keeping them: less memory, more compute, the same results" },
];

/** Options of train and compare that look at the numbers, not at what is trained. */
export const NUMERICS_OPTIONS: OptionSpec[] = [
  { name: 'stats-interval', type: 'int', min: 0, defaultText: 'off for train, max-steps / 20 for compare', help: 'sample gradient statistics every N steps into metrics.jsonl and report.html (0: off)' },
  { name: 'find-nonfinite', type: 'flag', help: 'name the first inf/NaN tensor (module path, forward or gradient) of every step that has one (slower)' },
];

/** What the numerics options ask for; `defaultInterval` when --stats-interval is not given. */
export function numericsOptions(values: Record<string, unknown>, defaultInterval: number): NumericsOptions {
  const interval = values['stats-interval'] as number | undefined;
  return { statsInterval: interval ?? defaultInterval, findNonFinite: values['find-nonfinite'] === true };
}

export const TRAIN_SPEC: CommandSpec = {
  name: 'train',
  summary: 'Train a GPT with mixed precision (autocast, float32 master weights, dynamic loss scaling).',
  usage: 'train [options]',
  options: [
    ...CONFIG_OPTIONS,
    { name: 'out', type: 'string', metavar: 'DIR', defaultText: 'runs/<date>-<time>', help: 'run directory: metrics.jsonl, summary.json, checkpoint/' },
    { name: 'resume', type: 'string', metavar: 'RUN_DIR', help: 'continue the run in RUN_DIR from its checkpoint (exactly)' },
    ...NUMERICS_OPTIONS,
    HELP_OPTION,
  ],
  epilog: [
    'With no options: a small GPT on the Brown corpus, bytes as tokens, fp16 compute with',
    'float32 master weights and dynamic loss scaling, on the best backend available.',
    '',
    'Ctrl-C finishes the current step, saves a checkpoint and prints how to resume.',
    'When resuming, only --max-steps, --time-budget, --eval-interval, --eval-steps,',
    '--log-interval, --save-interval, --backend and --recompute may change.',
    '',
    'examples:',
    '  mixprec train',
    '  mixprec train --precision bf16 --max-steps 1000 --out runs/bf16',
    '  mixprec train --resume runs/bf16 --max-steps 2000',
    '  mixprec train --init-from gpt2/ --data notes.txt --lr 3e-5 --block-size 256 --batch-size 4',
  ].join('\n'),
};

export function camel(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function defaultRunDir(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  const base = join('runs', `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`);
  let dir = base;
  for (let i = 2; existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

function lossText(r: EvalRecord): string {
  const perByte = r.valLossPerByte !== undefined ? ` = ${r.valLossPerByte.toFixed(4)} nats/byte` : '';
  return `val loss ${r.valLoss.toFixed(4)} nats/token${perByte}, perplexity ${r.perplexity.toFixed(2)}`;
}

/** A path as the user would type it: relative to the working directory when inside it. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function quote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/** The configuration options given on the command line, as TrainConfig keys (--init-from implies the gpt2 tokenizer). */
export function givenConfig(args: ParsedArgs): Partial<TrainConfig> {
  const given: Partial<TrainConfig> = {};
  for (const o of CONFIG_OPTIONS) {
    if (args.given.has(o.name)) (given as Record<string, unknown>)[camel(o.name)] = args.values[o.name];
  }
  if (given.initFrom !== undefined && given.tokenizer === undefined) given.tokenizer = 'gpt2';
  return given;
}

export async function trainCommand(argv: readonly string[], out: OutputStream, err: OutputStream): Promise<number> {
  const args = parseCommandArgs(TRAIN_SPEC, argv, out);
  if (!args) return EXIT_OK;
  const usage = shortUsage(TRAIN_SPEC);
  const given = givenConfig(args);
  const resume = args.values.resume as string | undefined;
  if (resume !== undefined) {
    if (args.given.has('out')) throw new UsageError('options --resume and --out cannot be combined (a resumed run stays in its directory)', usage);
    if (args.given.has('init-from')) throw new UsageError('options --resume and --init-from cannot be combined', usage);
    const s = await stat(resume).catch(() => null);
    if (!s) throw new UsageError(`option --resume: run directory '${resume}' does not exist`, usage);
    if (!s.isDirectory()) throw new UsageError(`option --resume: '${resume}' is not a directory`, usage);
  }

  const status = new StatusLine(err);
  const log = (m: string) => status.print(m);
  let trainer: Trainer;
  try {
    const numerics = numericsOptions(args.values, 0);
    // Without statistics or the culprit search nothing watches the steps.
    const observers = numerics.statsInterval || numerics.findNonFinite ? (model: GPT) => [new NumericsObserver(model, numerics)] : undefined;
    trainer = resume !== undefined
      ? await Trainer.resume(resume, given, { log, observers })
      : await Trainer.create(given, { runDir: (args.values.out as string | undefined) ?? defaultRunDir(), log, observers });
  } catch (e) {
    if (e instanceof TrainConfigError) throw new UsageError(e.message, usage);
    throw e;
  }

  const runDir = trainer.runDir!;
  const c = trainer.config;
  log(`model: ${fmtInt(trainer.parameterCount)} parameters (${trainer.model.config.nLayer} layers, ${trainer.model.config.nHead} heads, width ${trainer.model.config.nEmbd}), precision ${trainer.policy.name}, loss scaling ${String(trainer.policy.lossScaling)}`);
  log(`${resume !== undefined ? `resuming at step ${trainer.step} of ${c.maxSteps}` : `training ${c.maxSteps} steps`} of ${c.batchSize} x ${c.blockSize} tokens${c.gradAccum > 1 ? ` x ${c.gradAccum} micro-batches` : ''}${c.timeBudget !== null ? `, time budget ${formatDuration(c.timeBudget)}` : ''}; run directory ${shown(runDir)}`);

  // Ctrl-C: finish the step, save, exit 130. A second Ctrl-C quits at once (the last complete checkpoint stays).
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      status.print('interrupted again: quitting without saving');
      process.exit(EXIT_INTERRUPTED);
    }
    status.print('interrupt: finishing the current step and saving a checkpoint (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  let summary: TrainSummary;
  try {
    summary = await trainer.run({
      signal: controller.signal,
      onStep: (p) => {
        const r = p.last;
        status.update([
          `step ${p.step}/${p.maxSteps}`,
          `loss ${r ? r.loss.toFixed(4) : '-'}`,
          `scale ${r ? r.scale : '-'}`,
          `skipped ${r ? r.skipped : 0}`,
          `${fmtInt(p.tokensPerSec)} tok/s`,
          `${formatDuration(p.elapsedSec)} elapsed`,
          `${formatDuration(p.remainingSec)} left`,
        ].join(' | '));
      },
      onLog: (r) => {
        if (!status.live) {
          status.print(`step ${r.step}/${c.maxSteps} | loss ${r.loss.toFixed(4)} | lr ${r.lr.toExponential(2)} | scale ${r.scale} | skipped ${r.skipped} | ${fmtInt(r.tokensPerSec)} tok/s | ${formatDuration(r.elapsedSec)} elapsed`);
        }
      },
      onEval: (r) => status.print(`step ${r.step}: ${lossText(r)}`),
      onCheckpoint: (dir, step) => status.print(`step ${step}: saved checkpoint ${shown(dir)}`),
      onSkip: (r) => status.print(`step ${r.step}: ${r.skipped} steps skipped so far; the latest overflow was in the gradient of ${r.tensors.join(', ') || 'an unnamed tensor'}`),
    });
    await writeRunReport(runDir, `mixprec train ${argv.join(' ')}`.trim(), { computed: computeMemory(trainer.model, trainer.optimizer), measured: null });
  } finally {
    process.off('SIGINT', onSigint);
    status.finish();
    trainer.dispose();
  }

  const resumeHint = `mixprec train --resume ${quote(shown(runDir))}`;
  if (summary.status === 'interrupted') {
    err.write(`interrupted at step ${summary.steps} of ${summary.maxSteps}; checkpoint saved in ${shown(join(runDir, CHECKPOINT_DIR))}\nresume with: ${resumeHint}\n`);
    return EXIT_INTERRUPTED;
  }
  const lines = [
    `${summary.status === 'time-budget' ? 'time budget used' : 'done'}: ${summary.steps}/${summary.maxSteps} steps (${summary.skippedSteps} skipped), ${fmtInt(summary.tokens)} tokens in ${formatDuration(summary.timeSec)}, ${fmtInt(summary.tokensPerSec)} tok/s`,
    `backend ${summary.backend}, precision ${summary.precision}, final loss scale ${summary.lossScale}`,
  ];
  if (summary.finalValLoss !== null) {
    const perByte = summary.finalValLossPerByte !== null ? ` = ${summary.finalValLossPerByte.toFixed(4)} nats/byte` : '';
    lines.push(`final validation loss ${summary.finalValLoss.toFixed(4)} nats/token${perByte}, perplexity ${summary.finalValPerplexity!.toFixed(2)}`);
  }
  lines.push(
    `run directory ${shown(runDir)} (${METRICS_FILE}, ${SUMMARY_FILE}, ${REPORT_FILE}, ${CHECKPOINT_DIR}/)`,
    `sample: mixprec generate --checkpoint ${quote(shown(runDir))} --prompt 'The '`,
  );
  if (summary.status === 'time-budget') lines.push(`continue: ${resumeHint}`);
  out.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}
