// The reference sampler: one token per row of logits with temperature, top-k
// and top-p, from a uniform number given per row, so equal logits and uniforms
// give equal tokens on every backend.

import type { SampleSpec, View } from '../backend.js';
import { raw, values } from './arrays.js';

/** The token for one row (see Fusions.sample); -1 when a logit is not finite. */
export function sampleRow(logits: ArrayLike<number>, u: number, spec: Omit<SampleSpec, 'rows' | 'cols'>): number {
  const V = logits.length;
  let best = 0;
  for (let i = 0; i < V; i++) {
    if (!Number.isFinite(logits[i]!)) return -1;
    if (logits[i]! > logits[best]!) best = i;
  }
  if (spec.temperature === 0) return best;
  const cutoff = spec.topK > 0 && spec.topK < V ? Float64Array.from(logits).sort()[V - spec.topK]! : -Infinity;
  const max = logits[best]! / spec.temperature;
  const p = new Float64Array(V);
  let sum = 0;
  for (let i = 0; i < V; i++) {
    if (logits[i]! < cutoff) continue;
    p[i] = Math.exp(logits[i]! / spec.temperature - max);
    sum += p[i]!;
  }
  if (spec.topP < 1) {
    // The smallest probability among the most probable tokens that first reach topP of the total.
    const sorted = p.filter((x) => x > 0).sort().reverse();
    let acc = 0, floor = 0;
    for (const x of sorted) {
      acc += x;
      floor = x;
      if (acc >= spec.topP * sum) break;
    }
    sum = 0;
    for (let i = 0; i < V; i++) {
      if (p[i]! < floor) p[i] = 0;
      sum += p[i]!;
    }
  }
  let target = u * sum;
  // The first index whose running sum reaches the target.
  let last = best;
  for (let i = 0; i < V; i++) {
    if (p[i] === 0) continue;
    last = i;
    target -= p[i]!;
    if (target <= 0) return i;
  }
  return last;
}

export function sample(logits: View, uniforms: View, out: View, spec: SampleSpec): void {
  const l = values(logits), u = values(uniforms), o = raw(out) as Int32Array;
  for (let r = 0; r < spec.rows; r++) o[r] = sampleRow(l.subarray(r * spec.cols, (r + 1) * spec.cols), u[r]!, spec);
}
