// The numerics of a training run, as a step observer: tensor statistics every
// `statsInterval` steps and, with `findNonFinite`, the first inf/NaN tensor of
// any step that produced one. Steps that are not sampled run untouched.

import type { Module } from '../nn/module.js';
import { Tensor, keep } from '../tensor/tensor.js';
import { clone } from '../tensor/ops.js';
import type { ObserverRecord, StepObserver } from '../train/observer.js';
import { NonFiniteFinder, type NonFiniteReport } from './culprit.js';
import { StatsSampler } from './sampler.js';
import type { StatsSample } from './recommend.js';

export interface NumericsOptions {
  /** Sample statistics every this many steps (0: never). */
  statsInterval?: number;
  /** Check every step for the first non-finite tensor (costs a check per module output and a read per step). */
  findNonFinite?: boolean;
}

export type StatsRecord = ObserverRecord & { type: 'stats' } & StatsSample;
export type NonFiniteRecord = ObserverRecord & { type: 'nonfinite' } & NonFiniteReport;

export class NumericsObserver implements StepObserver {
  private readonly sampler: StatsSampler | null;
  private readonly finder: NonFiniteFinder | null;
  private readonly interval: number;
  private scale: Tensor | 1 | null = null;

  constructor(model: Module, opts: NumericsOptions) {
    this.interval = opts.statsInterval ?? 0;
    this.sampler = this.interval > 0 ? new StatsSampler(model) : null;
    this.finder = opts.findNonFinite ? new NonFiniteFinder(model) : null;
  }

  beforeStep(step: number): void {
    // The first step too: its gradients are often the largest of the run.
    if (this.sampler && (step === 1 || step % this.interval === 0)) this.sampler.arm();
  }

  afterBackward(_step: number, scale: Tensor | 1): void {
    if (!this.sampler?.armed) return;
    this.sampler.collectWeightGradients();
    // The scale is updated on the device after the step: keep the value these gradients carried.
    this.scale = scale === 1 ? 1 : keep(clone(scale));
  }

  async afterStep(step: number): Promise<ObserverRecord[]> {
    const records: ObserverRecord[] = [];
    if (this.scale !== null) {
      const s = this.scale;
      this.scale = null;
      const value = s === 1 ? 1 : s.item().finally(() => s.dispose());
      records.push({ type: 'stats', ...(await this.sampler!.read(step, value)) } satisfies StatsRecord);
    }
    const culprit = await this.finder?.firstNonFinite();
    if (culprit) records.push({ type: 'nonfinite', step, ...culprit } satisfies NonFiniteRecord);
    return records;
  }

  dispose(): void {
    this.sampler?.dispose();
    this.finder?.dispose();
    if (this.scale instanceof Tensor) this.scale.dispose();
    this.scale = null;
  }
}
