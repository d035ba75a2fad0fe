// The overflow culprit: which tensor became inf or NaN first.
//
// While a NonFiniteFinder is attached to a model, every submodule's forward
// output is checked on the device, and so is the gradient flowing back into
// each of those outputs (in backward order). Each check is two numbers kept on
// the device (the count of non-finite values and the largest finite
// magnitude); `firstNonFinite()` reads them all at once and names the first
// tensor, in forward-then-backward order, that held an inf or a NaN. Detached,
// nothing of it remains on the model.

import { noGrad } from '../autograd/backward.js';
import type { Module } from '../nn/module.js';
import { Tensor, keep, tidy } from '../tensor/tensor.js';
import { tensor as makeTensor } from '../tensor/creation.js';
import { abs, cat, le, max, reshape, sub, sum, to, where } from '../tensor/ops.js';
import { installForwardHooks, tapGradient } from './probe.js';

const FLOAT32_MAX = 3.4028234663852886e38;

export type CheckedTensor = 'forward output' | 'gradient';

export interface NonFiniteReport {
  /** The module path, e.g. h.3.attn.c_proj. */
  module: string;
  /** The module's forward output, or the gradient flowing back into that output. */
  tensor: CheckedTensor;
  dtype: string;
  shape: number[];
  /** Values that are inf or NaN. */
  nonFinite: number;
  /** The largest finite |x| in that tensor. */
  largestFinite: number;
  /** The tensor checked just before it and its largest finite |x| (what went in, usually). */
  previous: { module: string; tensor: CheckedTensor; largestFinite: number } | null;
}

interface Check {
  module: string;
  tensor: CheckedTensor;
  dtype: string;
  shape: number[];
  /** [non-finite count, largest finite |x|] on the device. */
  values: Tensor;
}

/** [count of inf/NaN, largest finite |x|] of x, as a device tensor [2]. */
function nonFiniteCheck(x: Tensor): Tensor {
  return noGrad(() => tidy(() => {
    const a = abs(reshape(to(x, 'float32'), [x.size]));
    const finite = le(a, FLOAT32_MAX); // NaN and inf fail it
    const zero = makeTensor([0], { shape: [], backend: x.backend });
    const count = sub(makeTensor([x.size], { shape: [], backend: x.backend }), sum(finite));
    return cat([reshape(count, [1]), reshape(max(where(finite, a, zero)), [1])]);
  }));
}

export class NonFiniteFinder {
  private forwardChecks: Check[] = [];
  private gradientChecks: Check[] = [];
  private remove: (() => void) | null;

  /** Attaches to `model`: from now on its forward outputs and their gradients are checked. */
  constructor(model: Module) {
    this.remove = installForwardHooks(model, (path, out) => this.watch(path, out));
  }

  private watch(module: string, out: Tensor): Tensor {
    const meta = { module, dtype: out.dtype, shape: [...out.shape] };
    this.forwardChecks.push({ ...meta, tensor: 'forward output', values: keep(nonFiniteCheck(out)) });
    return tapGradient(out, (g) => {
      this.gradientChecks.push({ ...meta, dtype: g.dtype, tensor: 'gradient', values: keep(nonFiniteCheck(g)) });
    });
  }

  /**
   * The first tensor since the last call (or `clear()`) that held an inf or a
   * NaN, in forward order and then backward order; null when every one was
   * finite. Reads the checks back (one transfer) and clears them.
   */
  async firstNonFinite(): Promise<NonFiniteReport | null> {
    const checks = [...this.forwardChecks, ...this.gradientChecks];
    this.forwardChecks = [];
    this.gradientChecks = [];
    if (checks.length === 0) return null;
    const all = tidy(() => cat(checks.map((c) => c.values)));
    let values: ArrayLike<number>;
    try {
      values = await all.toArray();
    } finally {
      all.dispose();
      for (const c of checks) c.values.dispose();
    }
    const i = checks.findIndex((_, k) => values[2 * k]! > 0);
    if (i < 0) return null;
    const c = checks[i]!, p = checks[i - 1];
    return {
      module: c.module, tensor: c.tensor, dtype: c.dtype, shape: c.shape,
      nonFinite: values[2 * i]!, largestFinite: values[2 * i + 1]!,
      previous: p ? { module: p.module, tensor: p.tensor, largestFinite: values[2 * i - 1]! } : null,
    };
  }

  /** Drops the checks recorded so far. */
  clear(): void {
    for (const c of [...this.forwardChecks, ...this.gradientChecks]) c.values.dispose();
    this.forwardChecks = [];
    this.gradientChecks = [];
  }

  /** Removes the hooks from the model and drops the checks. */
  dispose(): void {
    this.clear();
    this.remove?.();
    this.remove = null;
  }
}

/** Describes a report in one line, e.g. for a training log. */
export function describeNonFinite(r: NonFiniteReport): string {
  const before = r.previous ? `; before it, ${r.previous.module} (${r.previous.tensor}) peaked at ${r.previous.largestFinite.toExponential(3)}` : '';
  return `first non-finite tensor: ${r.module} ${r.tensor} [${r.shape.join(', ')}] ${r.dtype}, ${r.nonFinite} inf/NaN values, largest finite |x| ${r.largestFinite.toExponential(3)}${before}`;
}
