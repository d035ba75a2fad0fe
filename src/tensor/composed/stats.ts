// Magnitude counts (tensor statistics) composed out of primitives: one broadcast
// comparison of a chunk of |x| against every threshold and a sum over the chunk.

import type { Backend, View } from '../../backend/backend.js';
import { broadcastScalar, whole, withScratch } from './scratch.js';

/** Values per comparison, so the [chunk, thresholds] intermediate stays a few MB. */
const CHUNK = 1 << 15;

/** One element of `v` as a view of its own. */
const at = (v: View, i: number): View => ({ buf: v.buf, offset: v.offset + i, size: 1, dtype: v.dtype });

export function magnitudeCounts(b: Backend, views: readonly View[], thresholds: readonly number[], out: View): void {
  const t = thresholds.length, width = t + 2;
  withScratch(b, (sc) => {
    const th = sc.view('float32', t);
    b.write(th, thresholds);
    const zero = broadcastScalar(sc.constant('float32', 0), 1), inf = broadcastScalar(sc.constant('float32', Infinity), 1);
    const longest = Math.max(0, ...views.map((v) => v.size));
    const a = sc.view('float32', longest), mask = sc.view('float32', longest), masked = sc.view('float32', longest);
    const cmp = sc.view('float32', Math.min(longest, CHUNK) * t), part = sc.view('float32', t), counts = sc.view('float32', t);
    views.forEach((v, k) => {
      const n = v.size, row = k * width;
      const abs = { ...a, size: n };
      b.copy(whole(v), whole(abs), [n]);
      b.unary('abs', abs, abs);
      b.fill(counts, 0);
      for (let start = 0; start < n; start += CHUNK) {
        const len = Math.min(n, start + CHUNK) - start, c = { ...cmp, size: len * t };
        b.binary('ge', { view: abs, offset: start, strides: [1, 0] }, { view: th, offset: 0, strides: [0, 1] }, c, [len, t]);
        b.reduce('sum', c, part, 1, len, t);
        b.binary('add', whole(counts), whole(part), counts, [t]);
      }
      b.copy(whole(counts), { view: out, offset: row, strides: [1] }, [t]);
      // NaN fails every comparison: it is left out of the maximum, and of the nonzero minimum.
      const m = { ...mask, size: n }, x = { ...masked, size: n };
      b.binary('ge', whole(abs), zero, m, [n]);
      b.where(whole(m), whole(abs), zero, x, [n]);
      b.reduce('max', x, at(out, row + t), 1, n, 1);
      b.binary('gt', whole(abs), zero, m, [n]);
      b.where(whole(m), whole(abs), inf, x, [n]);
      b.reduce('min', x, at(out, row + t + 1), 1, n, 1);
    });
  });
}
