// What the training loop does beyond the AMP recipe, for people watching the
// numbers: calls the step observers, names the gradient that overflowed when
// steps were skipped, and stops a run whose loss scale collapsed (minScale).
// Without observers nothing runs on the steps; the rest happens only at
// logging steps, where values are read back anyway.

import { LossScaleCollapsedError, type GradScaler } from '../amp/grad-scaler.js';
import type { MetricsRecord, SkipRecord } from './metrics.js';
import type { StepObserver } from './observer.js';

export type { StepObserver };

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
   * At a logging step: when steps were skipped since the last one, records the
   * latest overflow by gradient name (and tells `onSkip`); when the scale would
   * have fallen below minScale, runs `beforeStop` (a checkpoint) and throws LossScaleCollapsedError.
   */
  async atLog(step: number, skipped: number, on: { onSkip?: (r: SkipRecord) => void; beforeStop: () => Promise<unknown> }): Promise<void> {
    if (skipped > this.skipped) {
      const last = await this.scaler.lastOverflow();
      const record: SkipRecord = { type: 'skip', step, skipped, tensor: last?.tensors[0] ?? null, tensors: last?.tensors ?? [] };
      this.append(record);
      on.onSkip?.(record);
    }
    this.skipped = skipped;
    await this.scaler.checkScale().catch(async (e: unknown) => {
      if (e instanceof LossScaleCollapsedError) await on.beforeStop();
      throw e;
    });
  }

  dispose(): void {
    for (const o of this.observers) o.dispose?.();
  }
}
