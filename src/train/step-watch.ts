// What the training loop does beyond the AMP recipe, for people watching the
// numbers: calls the step observers, names the gradient that overflowed when
// steps were skipped, and stops a run whose loss scale collapsed (minScale).
// Without observers nothing runs on the steps; the rest happens only at
// logging steps, where values are read back anyway.

import { LossScaleCollapsedError, type GradScaler } from '../amp/grad-scaler.js';
import type { MetricsRecord } from './metrics.js';
import type { StepObserver } from './observer.js';

export type { StepObserver };

/** Steps were skipped since the previous logging step: how many so far, and the latest overflow by gradient. */
export interface SkippedSteps {
  step: number;
  skipped: number;
  tensors: string[];
}

export class StepWatch {
  private skipped = 0;

  constructor(
    private readonly observers: readonly StepObserver[],
    private readonly scaler: GradScaler,
    private readonly append: (r: MetricsRecord) => void,
  ) {}

  /** The skipped-step count the run starts from (a resumed run's). */
  startFrom(skipped: number): void {
    this.skipped = skipped;
  }

  beforeStep(step: number): void {
    for (const o of this.observers) o.beforeStep?.(step);
  }

  /** The hook for ampStep's afterBackward, or undefined when nobody watches. */
  afterBackward(step: number): (() => void) | undefined {
    if (this.observers.length === 0) return undefined;
    return () => {
      const scale = this.scaler.enabled ? this.scaler.scaleTensor : 1;
      for (const o of this.observers) o.afterBackward?.(step, scale);
    };
  }

  async afterStep(step: number): Promise<void> {
    for (const o of this.observers) for (const r of (await o.afterStep?.(step)) ?? []) this.append(r as MetricsRecord);
  }

  /**
   * At a logging step: when steps were skipped since the last one, the
   * gradients that were inf or NaN at the latest of them, by parameter name
   * (as `{ overflowIn }` for the record, and told to `onSkip`).
   */
  async overflowSince(step: number, skipped: number, onSkip?: (r: SkippedSteps) => void): Promise<{ overflowIn?: string[] }> {
    const before = this.skipped;
    this.skipped = skipped;
    if (skipped <= before) return {};
    const tensors = (await this.scaler.lastOverflow())?.tensors ?? [];
    onSkip?.({ step, skipped, tensors });
    return { overflowIn: tensors };
  }

  /** Throws LossScaleCollapsedError, after `beforeStop` (a checkpoint), when the scale would have fallen below minScale. */
  async checkScale(beforeStop: () => Promise<unknown>): Promise<void> {
    await this.scaler.checkScale().catch(async (e: unknown) => {
      if (e instanceof LossScaleCollapsedError) await beforeStop();
      throw e;
    });
  }

  dispose(): void {
    for (const o of this.observers) o.dispose?.();
  }
}
