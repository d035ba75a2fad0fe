// "Which loss scale should I choose?", answered from a run's own gradients:
// the largest power-of-two static scale that keeps the largest gradient below
// float16's maximum with a margin, and what that scale would still lose to
// underflow.

import type { TensorStats } from './stats.js';

export const FLOAT16_MAX = 65504;
/** Room left above the largest gradient seen: a factor of 2^3 (gradients grow as training goes on). */
export const DEFAULT_MARGIN_LOG2 = 3;

/** Statistics sampled at one step, with the loss scale the gradients carried then. */
export interface StatsSample {
  step: number;
  /** The loss scale at this step (1 without loss scaling). */
  scale: number;
  tensors: TensorStats[];
}

export interface ScaleRecommendation {
  /** The recommended static scale, a power of two. */
  scale: number;
  log2Scale: number;
  marginLog2: number;
  /** The largest unscaled gradient magnitude seen (finite samples only). */
  maxGradient: number;
  /** Fraction of the nonzero gradient values that this scale would still lose to underflow in float16. */
  underflowAtScale: number;
  /** The same fraction without scaling (scale 1). */
  underflowUnscaled: number;
  /** Samples used (those with no inf or NaN). */
  samples: number;
}

/**
 * The recommendation from gradient statistics (weight and activation
 * gradients). The histograms are shifted by each sample's scale; a value is
 * counted as lost when its bin lies wholly below float16's rounding-to-zero
 * boundary 2^-25 after scaling. Null when no sample was finite.
 */
export function recommendScale(samples: readonly StatsSample[], marginLog2 = DEFAULT_MARGIN_LOG2): ScaleRecommendation | null {
  const usable = samples.filter((s) => s.tensors.length > 0 && s.tensors.every((t) => t.nonFinite === 0));
  const grads = usable.flatMap((s) => s.tensors.filter((t) => t.kind.endsWith('grad')).map((t) => ({ t, shift: Math.log2(s.scale) })));
  if (grads.length === 0) return null;
  const maxGradient = Math.max(...grads.map(({ t, shift }) => t.maxAbs / 2 ** shift));
  if (!(maxGradient > 0)) return null;
  const log2Scale = Math.floor(Math.log2(FLOAT16_MAX / maxGradient)) - marginLog2;
  const lostAt = (log2: number): number => {
    let lost = 0, total = 0;
    for (const { t, shift } of grads) {
      const h = t.histogram;
      total += h.below + h.above + h.bins.reduce((a, b) => a + b, 0);
      // Unscaled bin k covers [2^(k - shift), ...); scaled by 2^log2 its top edge is 2^(k + 1 - shift + log2).
      lost += h.below * (h.low - shift + log2 <= -25 ? 1 : 0);
      h.bins.forEach((c, i) => { if (h.low + i + 1 - shift + log2 <= -25) lost += c; });
    }
    return total > 0 ? lost / total : 0;
  };
  return {
    scale: 2 ** log2Scale, log2Scale, marginLog2, maxGradient,
    underflowAtScale: lostAt(log2Scale), underflowUnscaled: lostAt(0), samples: usable.length,
  };
}
