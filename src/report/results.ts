// What one set-up of a comparison (or one training run) produced, as the
// report reads it: plain data, the same in Node and in a browser.

import { MixprecError, type ErrorCode } from '../errors.js';
import type { MemoryBreakdown } from './memory.js';
import type { StatsSample } from './recommend.js';

export interface SetupSpec {
  /** A short label, e.g. 'fp16 dynamic'. */
  name: string;
  /** A precision preset or policy string (TrainConfig.precision). */
  precision: string;
  /** 'auto', 'dynamic', 'none' or a fixed scale. */
  lossScale: 'auto' | 'dynamic' | 'none' | number;
  /** Float32 master weights for 16-bit parameters (default true). */
  masterWeights?: boolean;
}

export interface SetupResult {
  setup: SetupSpec;
  /** How the run ended: completed, or the error that stopped it (e.g. the loss scale collapsing). */
  status: 'completed' | 'stopped';
  stopReason?: string;
  steps: number;
  train: { step: number; loss: number; scale: number; skipped: number }[];
  eval: { step: number; valLoss: number }[];
  stats: StatsSample[];
  /** Skipped steps, with the tensor that overflowed first when it is known. */
  skipped: { step: number; tensor?: string }[];
  /** Computed from the tensors and, where measured, the backend's byte counts. */
  memory: { computed: MemoryBreakdown; measured: MemoryBreakdown | null } | null;
  tokensPerSec: number;
  finalValLoss: number | null;
}

/** Report or comparison input that cannot be used (set-ups, metrics, options). */
export class ReportError extends MixprecError {
  override readonly code: ErrorCode = 'REPORT_INVALID';
}
