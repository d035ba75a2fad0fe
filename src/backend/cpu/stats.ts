// Tensor statistics on the CPU backend: magnitude counts in one pass per view.

import type { View } from '../backend.js';
import { output, values } from './arrays.js';

/**
 * Each element falls in the bin of the thresholds at or below its magnitude
 * (a binary search); the count of |x| >= thresholds[j] is then the sum of the
 * bins above j. Values and thresholds compare as float32, as stored.
 */
export function magnitudeCounts(views: readonly View[], thresholds: readonly number[], out: View): void {
  const t = thresholds.length, width = t + 2;
  const th = Float32Array.from(thresholds);
  const o = output(out);
  views.forEach((v, k) => {
    const x = values(v), bins = new Float64Array(t + 1);
    let max = 0, minNonzero = Infinity;
    for (let i = 0; i < x.length; i++) {
      const a = Math.abs(Math.fround(x[i]!));
      if (Number.isNaN(a)) continue;
      let lo = 0, hi = t;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (th[mid]! <= a) lo = mid + 1;
        else hi = mid;
      }
      bins[lo]!++;
      if (a > max) max = a;
      if (a > 0 && a < minNonzero) minNonzero = a;
    }
    let above = 0;
    for (let j = t - 1; j >= 0; j--) o.arr[k * width + j] = above += bins[j + 1]!;
    o.arr[k * width + t] = max;
    o.arr[k * width + t + 1] = minNonzero;
  });
  o.commit();
}
