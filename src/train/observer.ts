// Looking into a training run's steps from outside the loop: an observer is
// told when a step starts, when its backward passes are done (the gradients
// are in place, still scaled) and when it has ended, and may hand back
// records for metrics.jsonl. The loop calls nothing when no observer is given.

import type { Tensor } from '../tensor/tensor.js';

/** A record an observer adds to metrics.jsonl (its `type` names what it is). */
export interface ObserverRecord {
  type: string;
  step: number;
  [key: string]: unknown;
}

export interface StepObserver {
  /** Before the forward pass of step `step` (counted from 1). */
  beforeStep?(step: number): void;
  /** After the step's backward passes, before unscaling; `scale` is the loss scale they used (a device tensor, or 1). */
  afterBackward?(step: number, scale: Tensor | 1): void;
  /** After the step and the scale update; may read back from the device. */
  afterStep?(step: number): Promise<ObserverRecord[]>;
  /** The run has ended (or failed): release what was kept. */
  dispose?(): void;
}
