// Gradient checking by central finite differences, in float64 on the CPU backend.
//
// For a function f of tensors, the check draws a fixed random tensor r shaped
// like f's output and compares, for every element x_j of every input that
// requires a gradient,
//   analytic: d/dx_j sum(f(x) * r), from backward()
//   numeric:  (L(x_j + eps) - L(x_j - eps)) / (2 eps), L = sum(f(x) * r) on the host
// and passes when |analytic - numeric| <= atol + rtol * |numeric| for each element.
// With eps = 1e-6 in float64 the numeric estimate is good to about 1e-9 on the
// small, smooth problems used here (rounding error ~1e-16 / eps dominates), so
// the default tolerances (atol 1e-8, rtol 1e-7) leave a margin of about 5x
// while any wrong formula (a missing factor, a transposed index, a dropped
// broadcast sum) fails by orders of magnitude, and so does a float64 path that
// rounds an intermediate to float32 (an error near 1e-7).

import assert from 'node:assert/strict';
import { Generator } from '../../src/backend/random.js';
import { noGrad } from '../../src/autograd/backward.js';
import { tensor } from '../../src/tensor/creation.js';
import { mul, sum } from '../../src/tensor/ops.js';
import { Tensor, tidy } from '../../src/tensor/tensor.js';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-8). */
  atol?: number;
  /** Relative tolerance (default 1e-7). */
  rtol?: number;
  /** Seed of the random functional r (default 1). */
  seed?: number;
  /** Name for messages. */
  name?: string;
}

export interface GradcheckResult {
  /** Elements compared. */
  checked: number;
  maxAbsError: number;
}

/** Values of a CPU tensor as a float64 array. */
export function host(t: Tensor): Float64Array {
  return Float64Array.from(t.toArraySync());
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * Checks the gradients of `fn` with respect to every input that requires one.
 * Inputs must be float64 leaves; others (int32 ids, constants) pass through
 * unchanged. fn must return a float64 tensor and be deterministic (seed any
 * randomness inside fn). Leaves no tensors behind and clears the inputs' grads.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-8, rtol = opts.rtol ?? 1e-7;
  const name = opts.name ?? 'gradcheck';
  const wrt = inputs.filter((t) => t.requiresGrad);
  assert.ok(wrt.length > 0, `${name}: no input requires a gradient`);
  for (const t of wrt) {
    assert.equal(t.dtype, 'float64', `${name}: input ${t.describe()} must be float64`);
    assert.ok(t.isLeaf, `${name}: input ${t.describe()} must be a leaf`);
    t.grad?.dispose();
    t.grad = null;
  }

  // The value of L = sum(f(x) * r), computed on the host without recording.
  let r: Float64Array | null = null;
  const loss = (): number => noGrad(() => tidy(() => {
    const out = fn(...inputs);
    assert.equal(out.dtype, 'float64', `${name}: output must be float64, got ${out.describe()}`);
    r ??= new Generator(opts.seed ?? 1).normal(out.size) as Float64Array;
    return dot(host(out), r);
  }));
  const l0 = loss();
  assert.ok(Number.isFinite(l0), `${name}: the function value is not finite`);
  assert.equal(loss(), l0, `${name}: the function is not deterministic`);

  // Analytic gradients from backward().
  tidy(() => {
    const out = fn(...inputs);
    assert.ok(out.requiresGrad, `${name}: the output does not require grad`);
    sum(mul(out, tensor(r!, { dtype: 'float64', shape: out.shape }))).backward();
  });
  const analytic = wrt.map((t) => {
    assert.ok(t.grad, `${name}: no gradient reached input ${t.describe()}`);
    assert.deepEqual(t.grad.shape, t.shape, `${name}: gradient shape`);
    assert.equal(t.grad.dtype, t.dtype, `${name}: gradient dtype`);
    const g = host(t.grad);
    t.grad.dispose();
    t.grad = null;
    return g;
  });

  let checked = 0, maxAbsError = 0;
  wrt.forEach((t, i) => {
    const x = host(t);
    for (let j = 0; j < x.length; j++) {
      const x0 = x[j]!;
      x[j] = x0 + eps;
      t.backend.write(t.storageView, x);
      const up = loss();
      x[j] = x0 - eps;
      t.backend.write(t.storageView, x);
      const down = loss();
      x[j] = x0;
      t.backend.write(t.storageView, x);
      const numeric = (up - down) / (2 * eps);
      const a = analytic[i]![j]!;
      const err = Math.abs(a - numeric);
      maxAbsError = Math.max(maxAbsError, err);
      checked++;
      if (!(err <= atol + rtol * Math.abs(numeric))) {
        assert.fail(`${name}: input ${inputs.indexOf(t)} ${t.describe()} element ${j}: analytic ${a}, numeric ${numeric} (error ${err})`);
      }
    }
  });
  return { checked, maxAbsError };
}

/**
 * A float64 leaf of standard normal values (seeded), requiring grad. With
 * `awayFrom`, values closer than `gap` to any of those points are pushed away,
 * so finite differences never straddle a kink (relu at 0, ties of max, ...).
 */
export function randLeaf(shape: readonly number[], seed: number, opts: { scale?: number; shift?: number; awayFrom?: number[]; gap?: number; grad?: boolean } = {}): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Generator(seed).normal(n) as Float64Array;
  const gap = opts.gap ?? 0.05;
  for (let i = 0; i < n; i++) {
    let x = v[i]! * (opts.scale ?? 1) + (opts.shift ?? 0);
    for (const p of opts.awayFrom ?? []) if (Math.abs(x - p) < gap) x = p + (x < p ? -gap : gap);
    v[i] = x;
  }
  return tensor(v, { dtype: 'float64', shape, requiresGrad: opts.grad ?? true });
}

/** Runs a gradient check (throwing on failure) and disposes the inputs afterwards. */
export function checkAndDispose(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], name: string): void {
  try {
    gradcheck(fn, inputs, { name });
  } finally {
    for (const t of inputs) t.dispose();
  }
}
