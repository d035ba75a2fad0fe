// The report's summary in words, generated from the numbers: how each set-up
// compares with float32, what it lost to underflow, whether it diverged,
// stalled or lagged, what it skipped, and which static scale the gradients
// call for.

import { recommendScale, type ScaleRecommendation } from './recommend.js';
import type { SetupResult } from './results.js';
import type { TensorStats } from './stats.js';

/** A set-up follows float32 when its final validation loss is within this fraction of float32's. */
export const FOLLOW_TOLERANCE = 0.02;
/** A set-up stalled when its loss fell by less than this fraction of float32's fall. */
export const STALL_FRACTION = 0.5;

export interface Verdict {
  name: string;
  /** Final validation loss relative to float32's, minus 1 (null without both). */
  relativeToFp32: number | null;
  follows: boolean;
  lags: boolean;
  stalled: boolean;
  diverged: boolean;
  /** Fraction of gradient values that were exact zeros. */
  zeroFraction: number | null;
  /** Exact zeros beyond float32's: gradient values lost to underflow (0 when none more). */
  lostToUnderflow: number | null;
  skippedSteps: number;
}

export interface Summary {
  verdicts: Verdict[];
  recommendation: ScaleRecommendation | null;
  sentences: string[];
}

const pct = (x: number, digits = 2) => `${(x * 100).toFixed(digits)}%`;
/** Four decimals, or four significant digits for losses near zero. */
const loss = (x: number) => (Math.abs(x) >= 0.1 || !Number.isFinite(x) ? x.toFixed(4) : x.toPrecision(4));
const isBaseline = (r: SetupResult) => r.setup.precision === 'fp32' || r.setup.precision === 'params=float32,compute=float32,output=float32';

/** Size-weighted fraction of exact zeros over every gradient tensor of every sample. */
export function gradientZeroFraction(r: SetupResult): number | null {
  const ts: TensorStats[] = r.stats.flatMap((s) => s.tensors.filter((t) => t.kind.endsWith('grad') && t.nonFinite === 0));
  const n = ts.reduce((a, t) => a + t.size, 0);
  return n > 0 ? ts.reduce((a, t) => a + t.zeros * t.size, 0) / n : null;
}

function lossDrop(r: SetupResult): number | null {
  const first = r.train[0]?.loss, last = r.eval.at(-1)?.valLoss ?? r.train.at(-1)?.loss;
  return first !== undefined && last !== undefined ? first - last : null;
}

function verdict(r: SetupResult, base: SetupResult | undefined): Verdict {
  const val = r.finalValLoss, baseVal = base?.finalValLoss ?? null;
  const relativeToFp32 = val !== null && baseVal !== null && Number.isFinite(val) ? val / baseVal - 1 : null;
  const first = r.train[0]?.loss;
  const diverged = r.status === 'stopped' || val === null || !Number.isFinite(val) || (first !== undefined && val > first);
  const drop = lossDrop(r), baseDrop = base ? lossDrop(base) : null;
  const stalled = !diverged && drop !== null && baseDrop !== null && baseDrop > 0 && drop < STALL_FRACTION * baseDrop;
  const follows = !diverged && relativeToFp32 !== null && Math.abs(relativeToFp32) <= FOLLOW_TOLERANCE;
  const zeroFraction = gradientZeroFraction(r);
  const baseZeros = base ? gradientZeroFraction(base) : null;
  return {
    name: r.setup.name, relativeToFp32, follows, stalled, diverged,
    lags: !diverged && relativeToFp32 !== null && relativeToFp32 > FOLLOW_TOLERANCE,
    zeroFraction,
    lostToUnderflow: zeroFraction !== null && baseZeros !== null ? Math.max(0, zeroFraction - baseZeros) : null,
    skippedSteps: r.skipped.length,
  };
}

function describe(v: Verdict, r: SetupResult, base: SetupResult | undefined): string {
  const parts: string[] = [];
  const val = r.finalValLoss;
  if (r.status === 'stopped') parts.push(`stopped at step ${r.steps}: ${r.stopReason ?? 'no reason given'}`);
  else if (v.diverged) parts.push(`diverged (final validation loss ${val === null ? 'missing' : loss(val)}, above its starting loss ${r.train[0] ? loss(r.train[0].loss) : '?'})`);
  else if (base && v.relativeToFp32 !== null) {
    const against = `${loss(val!)} against float32's ${loss(base.finalValLoss!)}`;
    if (v.follows) parts.push(`follows float32 within ${pct(FOLLOW_TOLERANCE, 0)} (final validation loss ${against}, ${v.relativeToFp32 >= 0 ? '+' : ''}${pct(v.relativeToFp32)})`);
    else if (v.lags) parts.push(`lags float32 by ${pct(v.relativeToFp32)} in final validation loss (${against})`);
    else parts.push(`ends ${pct(-v.relativeToFp32)} below float32's final validation loss (${against})`);
    if (v.stalled) parts.push(`stalled: its loss fell by ${lossDrop(r)!.toFixed(3)}, less than ${pct(STALL_FRACTION, 0)} of float32's ${lossDrop(base)!.toFixed(3)}`);
  } else if (val !== null) parts.push(`final validation loss ${loss(val)}`);
  // Below a thousandth of a percent it would print as 0.000%.
  if (v.lostToUnderflow !== null && v.lostToUnderflow >= 5e-6) {
    parts.push(`lost ${pct(v.lostToUnderflow, 3)} of its gradient values to underflow (exact zeros ${pct(v.zeroFraction!, 3)}, float32 ${pct(v.zeroFraction! - v.lostToUnderflow, 3)})`);
  }
  if (v.skippedSteps > 0) {
    const named = r.skipped.find((s) => s.tensor);
    parts.push(`skipped ${v.skippedSteps} step${v.skippedSteps === 1 ? '' : 's'}${named ? ` (the first at step ${named.step}, overflow in ${named.tensor})` : ''}`);
  }
  return `${r.setup.name}: ${parts.join('; ') || 'no measurements'}.`;
}

/** The verdicts and the sentences of the summary. Float32 (the first fp32 set-up) is the reference. */
export function summarize(results: readonly SetupResult[]): Summary {
  const base = results.find(isBaseline);
  const verdicts = results.map((r) => verdict(r, base));
  const sentences: string[] = [];
  if (!base) sentences.push('No float32 set-up was run, so nothing is compared with float32.');
  else sentences.push(`Reference: float32 (${base.setup.name}), final validation loss ${base.finalValLoss === null ? 'missing' : loss(base.finalValLoss)} after ${base.steps} steps. A set-up "follows" float32 within ${pct(FOLLOW_TOLERANCE, 0)} of its final validation loss.`);
  results.forEach((r, i) => { if (r !== base) sentences.push(describe(verdicts[i]!, r, base)); });
  const recommendation = recommendScale((base ?? results[0])?.stats ?? []);
  if (recommendation) {
    sentences.push(`Static loss scale: the largest gradient seen was ${recommendation.maxGradient.toExponential(2)}, so 2^${recommendation.log2Scale} = ${recommendation.scale} is the largest power of two that keeps it below float16's maximum (65504) with a margin of 2^${recommendation.marginLog2}; it would still lose ${pct(recommendation.underflowAtScale, 3)} of the nonzero gradient values to underflow (${pct(recommendation.underflowUnscaled, 3)} without scaling).`);
  }
  const fastest = results.reduce<SetupResult | null>((a, r) => (!a || r.tokensPerSec > a.tokensPerSec ? r : a), null);
  if (base && fastest && base.tokensPerSec > 0) sentences.push(`Throughput: ${fastest.setup.name} was the fastest at ${Math.round(fastest.tokensPerSec).toLocaleString('en-US')} tokens/s (${(fastest.tokensPerSec / base.tokensPerSec).toFixed(2)}x float32).`);
  return { verdicts, recommendation, sentences };
}
