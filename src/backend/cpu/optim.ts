// Multi-tensor kernels of the CPU backend: loss-scale bookkeeping, norms and
// optimizer updates over every tensor of a group in one call.

import { float32BitsToBFloat16Bits, float32Bits } from '../../dtype/codec.js';
import { randomBits } from '../random.js';
import type { AdamWHyper, OptimizerGroup, SGDHyper, View } from '../backend.js';
import { inout, output, raw, values } from './arrays.js';

function scalar(v: View): number {
  return values(v)[0]!;
}

function setScalar(v: View, x: number): void {
  const o = output(v);
  o.arr[0] = x;
  o.commit();
}

export function sumOfSquares(views: readonly View[], out: View): void {
  let s = 0;
  for (const v of views) {
    const x = values(v);
    for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  }
  setScalar(out, s);
}

export function scaleInPlace(views: readonly View[], scale: View): void {
  const s = scalar(scale);
  for (const v of views) {
    const o = inout(v);
    for (let i = 0; i < o.arr.length; i++) o.arr[i]! *= s;
    o.commit();
  }
}

export function unscaleAndCheck(views: readonly View[], invScale: View, foundInf: View): void {
  const inv = scalar(invScale);
  let found = scalar(foundInf) !== 0;
  for (const v of views) {
    const o = inout(v);
    const x = o.arr;
    for (let i = 0; i < x.length; i++) {
      const g = x[i]!;
      if (!Number.isFinite(g)) found = true;
      x[i] = g * inv;
    }
    o.commit();
  }
  if (found) setScalar(foundInf, 1);
}

export function updateScale(
  scale: View, growthTracker: View, foundInf: View,
  growthFactor: number, backoffFactor: number, growthInterval: number,
): void {
  const s = scalar(scale);
  if (scalar(foundInf) !== 0) {
    setScalar(scale, s * backoffFactor);
    setScalar(growthTracker, 0);
    return;
  }
  const successful = scalar(growthTracker) + 1;
  if (successful >= growthInterval) {
    const grown = Math.fround(s * growthFactor);
    if (Number.isFinite(grown)) setScalar(scale, grown);
    setScalar(growthTracker, 0);
  } else {
    setScalar(growthTracker, successful);
  }
}

/** Writes float32 master values into 16-bit parameters; bf16 may round stochastically (llm.c's rule). */
function writeBack(param: View, master: ArrayLike<number>, sr: { key: number; start: number } | undefined, offset: number): void {
  if (sr && param.dtype === 'bfloat16') {
    const r = raw(param) as Uint16Array;
    for (let i = 0; i < r.length; i++) {
      const bits = float32Bits(master[i]!);
      const isSpecial = (bits & 0x7f800000) === 0x7f800000;
      r[i] = isSpecial ? float32BitsToBFloat16Bits(bits) : ((bits + (randomBits(sr.key, (sr.start + offset + i) >>> 0) & 0xffff)) >>> 16);
    }
    return;
  }
  const o = output(param);
  o.arr.set(master);
  o.commit();
}

/** Runs `update` on each parameter's float32 values (the master copy when there is one) and writes back. */
function forEachParam(group: OptimizerGroup, update: (i: number, p: Float32Array | Float64Array, g: ArrayLike<number>) => void): void {
  let offset = 0;
  group.params.forEach((param, i) => {
    const target = group.master ? group.master[i]! : param;
    const o = inout(target);
    update(i, o.arr as Float32Array | Float64Array, values(group.grads[i]!));
    o.commit();
    if (group.master) writeBack(param, o.arr, group.stochasticRounding, offset);
    offset += param.size;
  });
}

/** True when the step must be skipped; otherwise advances the step counter and returns false. */
function skipOrAdvance(group: OptimizerGroup): boolean {
  if (group.foundInf && scalar(group.foundInf) !== 0) return true;
  setScalar(group.step, scalar(group.step) + 1);
  return false;
}

export function adamw(group: OptimizerGroup, h: AdamWHyper): void {
  if (skipOrAdvance(group)) return;
  const t = scalar(group.step);
  const bc1 = 1 - h.beta1 ** t, bc2 = 1 - h.beta2 ** t;
  const stepSize = h.lr / bc1, bc2Sqrt = Math.sqrt(bc2);
  forEachParam(group, (i, p, g) => {
    const m = inout(group.state0[i]!), v = inout(group.state1[i]!);
    const decay = 1 - h.lr * h.weightDecay[i]!;
    for (let j = 0; j < p.length; j++) {
      const gj = g[j]!;
      const mj = h.beta1 * m.arr[j]! + (1 - h.beta1) * gj;
      const vj = h.beta2 * v.arr[j]! + (1 - h.beta2) * gj * gj;
      m.arr[j] = mj;
      v.arr[j] = vj;
      p[j] = p[j]! * decay - stepSize * m.arr[j]! / (Math.sqrt(v.arr[j]!) / bc2Sqrt + h.eps);
    }
    m.commit(); v.commit();
  });
}

export function sgd(group: OptimizerGroup, h: SGDHyper): void {
  const first = scalar(group.step) === 0;
  if (skipOrAdvance(group)) return;
  forEachParam(group, (i, p, g) => {
    const wd = h.weightDecay[i]!;
    const buf = h.momentum !== 0 ? inout(group.state0[i]!) : null;
    for (let j = 0; j < p.length; j++) {
      let d = g[j]! + wd * p[j]!;
      if (buf) {
        const b = first ? d : h.momentum * buf.arr[j]! + (1 - h.dampening) * d;
        buf.arr[j] = b;
        d = h.nesterov ? d + h.momentum * buf.arr[j]! : buf.arr[j]!;
      }
      p[j] = p[j]! - h.lr * d;
    }
    buf?.commit();
  });
}
