// The metrics of a run: one JSON object per line in <run>/metrics.jsonl, appended
// as the run goes. A resumed run first drops the records written after its
// checkpoint, so the file reads as if the run had never stopped.

import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../io/atomic.js';

export const METRICS_FILE = 'metrics.jsonl';
export const SUMMARY_FILE = 'summary.json';

/** Written when a run starts or resumes. */
export interface StartRecord {
  type: 'start';
  step: number;
  time: string;
  resumed: boolean;
  backend: string;
  precision: string;
  parameters: number;
  model: Record<string, unknown>;
  config: Record<string, unknown>;
  data: { source: string; trainTokens: number; validationTokens: number };
}

/** Written every logInterval steps. */
export interface TrainRecord {
  type: 'train';
  step: number;
  /** Mean cross-entropy of the step's batch (all micro-batches), nats per token. */
  loss: number;
  lr: number;
  /** The loss scale after the step's update (1 without loss scaling). */
  scale: number;
  /** Steps skipped so far because a gradient was inf or NaN. */
  skipped: number;
  /** When steps were skipped since the previous record: the parameters whose gradients were inf or NaN at the latest of them. */
  overflowIn?: string[];
  /** Gradient norm before clipping (present when clipping is on). */
  gradNorm?: number;
  tokens: number;
  /** Throughput over the steps since the previous record. */
  tokensPerSec: number;
  elapsedSec: number;
}

/** Written at every evaluation. */
export interface EvalRecord {
  type: 'eval';
  step: number;
  /** Mean cross-entropy on the fixed validation windows, nats per token. */
  valLoss: number;
  /** The same per byte of text, for byte-level tokenizers. */
  valLossPerByte?: number;
  perplexity: number;
  evalTokens: number;
  elapsedSec: number;
}

/** Written by a step observer (tensor statistics, the first non-finite tensor, ...). */
export interface ObservedRecord {
  type: 'stats' | 'nonfinite';
  step: number;
  [key: string]: unknown;
}

export type MetricsRecord = StartRecord | TrainRecord | EvalRecord | ObservedRecord;

/** Appends records to a metrics file (synchronously: a record is on disk before the next step starts). */
export class MetricsWriter {
  constructor(readonly file: string) {}
  append(record: MetricsRecord): void {
    appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }
}

/** The records of a metrics file; a partly written last line (a crash mid-append) is ignored. */
export async function readMetrics(file: string): Promise<MetricsRecord[]> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const records: MetricsRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line) as MetricsRecord);
    } catch {
      // an incomplete final line
    }
  }
  return records;
}

/** Rewrites the metrics file without the records of steps after `step`. */
export async function truncateMetrics(file: string, step: number): Promise<void> {
  const kept = (await readMetrics(file)).filter((r) => r.step <= step);
  await writeFileAtomic(file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
}
