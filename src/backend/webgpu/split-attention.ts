// Attention on tensors larger than one binding (see split.ts). Every (batch,
// head) pair is independent, so the parts are ranges of whole batches and,
// where one batch does not fit, ranges of heads within it; each part binds
// windows of its operands' buffers and runs the kernels on a smaller spec.
// One pair's rows must fit one binding (GPT-2: T x 3C elements of the fused
// projection, 9.4 MB at T = 1024 in float32).

import type { AttentionSpec, HeadLayout, View } from '../backend.js';
import { BufferTooLargeError } from './errors.js';
import type { Runtime } from './runtime.js';
import { tooLarge, windowBytes, windowViews } from './split.js';

/** A view addressed by a head layout, and whether its rows are queries or keys. */
export interface HeadOperand {
  view: View;
  layout: HeadLayout;
  rows: 'q' | 'k';
}

/** First batch, batches, first head and heads of a part. */
interface Box {
  b0: number; nb: number; h0: number; nh: number;
}

/**
 * Runs attention `run` (forward or backward) over `ops` and the log-sum-exp
 * `lse` ([batch * heads, tq]) in parts of (batch, head) pairs that each fit
 * one binding; once, on the operands themselves, when everything fits.
 */
export function attentionInParts(
  rt: Runtime, what: string, spec: AttentionSpec, ops: readonly HeadOperand[], lse: View,
  run: (ops: View[], layouts: HeadLayout[], lse: View, part: AttentionSpec) => void,
): void {
  const { batch, heads, tq, tk } = spec;
  if (!tooLarge(rt, [...ops.map((o) => o.view.buf), lse.buf])) {
    run(ops.map((o) => o.view), ops.map((o) => o.layout), lse, spec);
    return;
  }
  const ranges = (x: Box) => {
    const out = ops.map((o) => {
      const L = o.layout;
      const lo = L.offset + x.b0 * L.sB + x.h0 * L.sH;
      const rows = Math.max(o.rows === 'q' ? tq : tk, 1);
      return { view: o.view, lo, hi: lo + (x.nb - 1) * L.sB + (x.nh - 1) * L.sH + (rows - 1) * L.sT + spec.headDim };
    });
    const lo = (x.b0 * heads + x.h0) * tq;
    out.push({ view: lse, lo, hi: lo + x.nb * x.nh * tq });
    return out;
  };
  const fits = (x: Box) => windowBytes(ranges(x)) <= rt.maxBindingBytes;
  const emit = (x: Box) => {
    const views = windowViews(ranges(x));
    run(views.slice(0, ops.length), ops.map((o) => ({ ...o.layout, offset: 0 })), views[ops.length]!, { ...spec, batch: x.nb, heads: x.nh });
  };
  for (let b0 = 0; b0 < batch;) {
    const nb = longest(batch - b0, (n) => fits({ b0, nb: n, h0: 0, nh: heads }));
    if (nb > 0) {
      emit({ b0, nb, h0: 0, nh: heads });
      b0 += nb;
      continue;
    }
    for (let h0 = 0; h0 < heads;) {
      const nh = longest(heads - h0, (n) => fits({ b0, nb: 1, h0, nh: n }));
      if (nh === 0) {
        const pair = { b0, nb: 1, h0, nh: 1 };
        throw new BufferTooLargeError(windowBytes(ranges(pair)), rt.maxBindingBytes, 'maxStorageBufferBindingSize', `${what} of one (batch, head) pair (${tq} queries, ${tk} keys of ${spec.headDim})`);
      }
      emit({ b0, nb: 1, h0, nh });
      h0 += nh;
    }
    b0++;
  }
}

/** The largest n in [1, max] with ok(n), for ok true up to some n and false after; 0 when ok(1) is false. */
function longest(max: number, ok: (n: number) => boolean): number {
  if (!ok(1)) return 0;
  let lo = 1, hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid; else hi = mid - 1;
  }
  return lo;
}
