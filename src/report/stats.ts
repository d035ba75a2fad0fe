// Tensor statistics for the numerics report, computed on the device in one
// pass per tensor (the backend's magnitudeCounts) and read back in one transfer.
//
// Every statistic is a count of |x| >= t for a fixed list of thresholds t.
// The thresholds are the exact rounding boundaries of float16 and bfloat16
// (round to nearest even), so "would overflow / be subnormal / underflow"
// means what a cast would do, to the bit. The counts are differences of those.

import { Tensor, keep, tidy } from '../tensor/tensor.js';
import { cat } from '../tensor/ops.js';
import { fusions } from '../tensor/fusions.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export class StatsError extends MixprecError {
  override readonly code: ErrorCode = 'STATS_INVALID';
}

/** log2-magnitude histogram bins [2^k, 2^(k+1)) for k from HISTOGRAM_LOW to HISTOGRAM_HIGH - 1. */
export const HISTOGRAM_LOW = -64;
export const HISTOGRAM_HIGH = 20;

/** Where the values of a format fall: fractions of all elements (with zeros and nonFinite, they sum to 1). */
export interface RangeFractions {
  /** Finite values that round to infinity. */
  overflow: number;
  normal: number;
  subnormal: number;
  /** Nonzero values that round to zero. */
  underflow: number;
}

export type StatsKind = 'weight-grad' | 'activation-grad' | 'activation' | 'weight';

export interface TensorStats {
  name: string;
  kind: StatsKind;
  dtype: string;
  size: number;
  /** Largest |x| (Infinity if any value is infinite; NaN is ignored). */
  maxAbs: number;
  /** Smallest nonzero |x| (Infinity when every value is zero). */
  minNonzeroAbs: number;
  /** Fraction of exact zeros. */
  zeros: number;
  /** Fraction of infinities and NaNs. */
  nonFinite: number;
  float16: RangeFractions;
  bfloat16: RangeFractions;
  /**
   * Counts of nonzero finite values by log2 magnitude: `below` (< 2^HISTOGRAM_LOW),
   * `bins[i]` in [2^(HISTOGRAM_LOW+i), 2^(HISTOGRAM_LOW+i+1)), `above` (>= 2^HISTOGRAM_HIGH).
   */
  histogram: { low: number; below: number; bins: number[]; above: number };
}

/** What to measure: a tensor and how the report names it. */
export interface StatsEntry {
  name: string;
  kind: StatsKind;
  tensor: Tensor;
}

const F32_MIN_SUBNORMAL = 2 ** -149;
/** The rounding boundaries of a 16-bit format: values >= each one round to at least the named class. */
interface Boundaries { overflow: number; normal: number; nonzero: number }
const FLOAT16: Boundaries = {
  overflow: 65520, // max 65504 plus half an ulp (16): ties go to the even infinity
  normal: 2 ** -14 - 2 ** -25, // halfway below the smallest normal rounds up to it (even mantissa)
  nonzero: 2 ** -25 * (1 + 2 ** -23), // exactly 2^-25 rounds to zero (even), anything above to 2^-24
};
const BFLOAT16: Boundaries = {
  overflow: 2 ** 128 - 2 ** 119,
  normal: 2 ** -126 - 2 ** -134,
  nonzero: 2 ** -134 + 2 ** -149,
};

// The thresholds as the device compares them (float32), ascending, each once.
const HIST_EDGES = Array.from({ length: HISTOGRAM_HIGH - HISTOGRAM_LOW + 1 }, (_, i) => 2 ** (HISTOGRAM_LOW + i));
const THRESHOLDS = [...new Set([0, Infinity, F32_MIN_SUBNORMAL, ...Object.values(FLOAT16), ...Object.values(BFLOAT16), ...HIST_EDGES].map(Math.fround))]
  .sort((a, b) => a - b);
/** A statistics row: the count for each threshold, then max |x| and min nonzero |x|. */
const WIDTH = THRESHOLDS.length + 2;

/** The statistics rows of `xs` (one backend) as a device tensor [xs.length, WIDTH]. */
function deviceCounts(xs: readonly Tensor[]): Tensor {
  const b = xs[0]!.backend;
  const out = Tensor.empty([xs.length, WIDTH], 'float32', b, 'tensor statistics');
  fusions(b).magnitudeCounts(xs.map((x) => x.storageView), THRESHOLDS, out.storageView);
  return out;
}

function rangeFractions(c: (t: number) => number, b: Boundaries, n: number): RangeFractions {
  const inf = c(Infinity), nonzero = c(F32_MIN_SUBNORMAL);
  return {
    overflow: (c(b.overflow) - inf) / n,
    normal: (c(b.normal) - c(b.overflow)) / n,
    subnormal: (c(b.nonzero) - c(b.normal)) / n,
    underflow: (nonzero - c(b.nonzero)) / n,
  };
}

function fromCounts(e: StatsMeta, row: ArrayLike<number>): TensorStats {
  const n = e.size;
  /** The count of |x| >= t (t as float32: bfloat16's overflow boundary is then infinity). */
  const c = (t: number): number => row[THRESHOLDS.indexOf(Math.fround(t))]!;
  const notNaN = c(0), inf = c(Infinity), nonzero = c(F32_MIN_SUBNORMAL);
  const edge = (k: number): number => c(HIST_EDGES[k]!);
  const bins = Array.from({ length: HISTOGRAM_HIGH - HISTOGRAM_LOW }, (_, k) => edge(k) - edge(k + 1));
  return {
    name: e.name, kind: e.kind, dtype: e.dtype, size: n,
    maxAbs: row[WIDTH - 2]!, minNonzeroAbs: row[WIDTH - 1]!,
    zeros: (notNaN - nonzero) / n,
    nonFinite: (n - notNaN + inf) / n,
    float16: rangeFractions(c, FLOAT16, n),
    bfloat16: rangeFractions(c, BFLOAT16, n),
    histogram: { low: HISTOGRAM_LOW, below: nonzero - edge(0), bins, above: edge(HISTOGRAM_HIGH - HISTOGRAM_LOW) - inf },
  };
}

function checkEntries(entries: readonly StatsEntry[]): void {
  for (const e of entries) {
    if (e.tensor.isDisposed) throw new StatsError(`tensorStats: '${e.name}' (${e.kind}) was disposed`);
    if (e.tensor.dtype === 'int32') throw new StatsError(`tensorStats: '${e.name}' (${e.kind}) is an int32 tensor; statistics are for floating-point values`);
    if (e.tensor.size === 0) throw new StatsError(`tensorStats: '${e.name}' (${e.kind}) is empty`);
    if (e.tensor.backend !== entries[0]!.tensor.backend) throw new StatsError(`tensorStats: '${e.name}' is on backend '${e.tensor.backend.name}', '${entries[0]!.name}' on '${entries[0]!.tensor.backend.name}'`);
  }
}

/** What a statistics row is about, once its tensor may be gone. */
export type StatsMeta = Omit<StatsEntry, 'tensor'> & { dtype: string; size: number };

/**
 * The statistics of `xs` (on one backend) as a device tensor [xs.length, row],
 * owned by the caller (kept from enclosing `tidy` scopes), for collecting
 * several without reading back: decode them with `decodeStats`.
 */
export function statsOnDevice(xs: readonly Tensor[]): Tensor {
  return keep(deviceCounts(xs));
}

/** Reads row tensors made by `statsOnDevice` (rows in `meta` order) back in one transfer, and disposes them. */
export async function decodeStats(meta: readonly StatsMeta[], rows: readonly Tensor[]): Promise<TensorStats[]> {
  if (rows.length === 0) return [];
  let flat: ArrayLike<number>;
  try {
    if (rows.length === 1) flat = await rows[0]!.toArray();
    else {
      const all = tidy(() => cat(rows));
      try {
        flat = await all.toArray();
      } finally {
        all.dispose();
      }
    }
  } finally {
    for (const r of rows) r.dispose();
  }
  return meta.map((m, i) => fromCounts(m, Array.prototype.slice.call(flat, i * WIDTH, (i + 1) * WIDTH) as number[]));
}

/**
 * Statistics of every entry, computed on the entries' backend with one read-back
 * for all of them. The tensors are not changed.
 */
export async function tensorStats(entries: readonly StatsEntry[]): Promise<TensorStats[]> {
  checkEntries(entries);
  const meta = entries.map((e) => ({ name: e.name, kind: e.kind, dtype: e.tensor.dtype, size: e.tensor.size }));
  return decodeStats(meta, entries.length === 0 ? [] : [statsOnDevice(entries.map((e) => e.tensor))]);
}
