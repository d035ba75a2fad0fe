// Learning-rate schedules.

export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Learning rate at and after `decaySteps`. */
  minLr: number;
  warmup: number;
  decaySteps: number;
}

/**
 * nanoGPT's get_lr: linear warm-up over `warmup` steps (lr * (it + 1) / (warmup + 1)),
 * then cosine decay to minLr at `decaySteps`, constant afterwards.
 */
export function warmupCosine(it: number, o: WarmupCosineOptions): number {
  if (it < o.warmup) return (o.lr * (it + 1)) / (o.warmup + 1);
  if (it > o.decaySteps) return o.minLr;
  const ratio = o.decaySteps === o.warmup ? 1 : (it - o.warmup) / (o.decaySteps - o.warmup);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return o.minLr + coeff * (o.lr - o.minLr);
}
