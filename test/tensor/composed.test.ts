// The compositions of required primitives that stand in for a missing fusion
// (src/tensor/composed/): on a backend that offers no fusion, every fused op
// gives the CPU backend's fused results (forward and gradients, float64), and
// its gradients pass a finite-difference check.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { FUSION_GROUPS, type Backend } from '../../src/backend/backend.js';
import { WebGPUBackend } from '../../src/backend/webgpu/backend.js';
import { fusions } from '../../src/tensor/fusions.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { Generator } from '../../src/backend/random.js';
import { checkAndDispose, host, randLeaf } from '../helpers/gradcheck.js';
import { primitivesOnly } from '../backend/primitives-only.js';

const composedOnly = mp.setBackend(primitivesOnly({ readSync: true }));
const cpu = new mp.CpuBackend();
const FUSIONS = FUSION_GROUPS.flat();

interface Case {
  name: string;
  /** Input shapes (float64 leaves requiring grad unless listed in `ints`). */
  shapes: number[][];
  ints?: Record<number, number[]>;
  fn: (...xs: Tensor[]) => Tensor;
}

const attentionOf = (causal: boolean) => (q: Tensor, k: Tensor, v: Tensor) => mp.scaledDotProductAttention(q, k, v, { causal });

const cases: Case[] = [
  { name: 'softmax', shapes: [[3, 5]], fn: (x) => mp.softmax(x) },
  { name: 'softmax over dim 0', shapes: [[3, 5]], fn: (x) => mp.softmax(x, 0) },
  { name: 'logSoftmax', shapes: [[3, 5]], fn: (x) => mp.logSoftmax(x) },
  { name: 'layerNorm with weight and bias', shapes: [[3, 6], [6], [6]], fn: (x, w, b) => mp.layerNorm(x, w, b) },
  { name: 'layerNorm without affine', shapes: [[4, 5]], fn: (x) => mp.layerNorm(x) },
  { name: 'crossEntropy with an ignored target', shapes: [[2, 3, 5], [2, 3]], ints: { 1: [1, -100, 4, 0, 2, 3] }, fn: (l, t) => mp.crossEntropy(l, t) },
  { name: 'crossEntropy with ignoreIndex 2', shapes: [[4, 3], [4]], ints: { 1: [2, 0, 1, 2] }, fn: (l, t) => mp.crossEntropy(l, t, { ignoreIndex: 2 }) },
  { name: 'causalMask [.., 4, 4] then softmax', shapes: [[2, 4, 4]], fn: (x) => mp.softmax(mp.causalMask(x)) },
  { name: 'causalMask [.., 3, 5] with value 0', shapes: [[2, 3, 5]], fn: (x) => mp.causalMask(x, 0) },
  { name: 'scaledDotProductAttention, causal, 3 queries over 5 keys', shapes: [[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 4]], fn: attentionOf(true) },
  { name: 'scaledDotProductAttention, not causal', shapes: [[2, 1, 4, 3], [2, 1, 4, 3], [2, 1, 4, 3]], fn: attentionOf(false) },
  { name: 'causalSelfAttention', shapes: [[2, 3, 12]], fn: (qkv) => mp.causalSelfAttention(qkv, 2) },
  { name: 'dense with bias and GELU', shapes: [[2, 3, 4], [4, 5], [5]], fn: (x, w, b) => mp.linear(x, w, b, { weightLayout: 'in,out', gelu: true }) },
  { name: 'linear with bias', shapes: [[3, 4], [5, 4], [5]], fn: (x, w, b) => mp.linear(x, w, b) },
];

/** The inputs of a case on `backend`, from the same seeded values on every backend. */
function inputs(c: Case, backend: Backend): Tensor[] {
  return c.shapes.map((shape, i) => {
    const ids = c.ints?.[i];
    if (ids) return mp.tensor(Int32Array.from(ids), { shape, backend });
    const leaf = randLeaf(shape, 10 + i);
    const t = mp.tensor(host(leaf), { dtype: 'float64', shape, backend, requiresGrad: true });
    leaf.dispose();
    return t;
  });
}

/** Output and input gradients of sum(fn(x) * r) for a fixed random r. */
function run(c: Case, backend: Backend): { out: Float64Array; grads: Float64Array[] } {
  const xs = inputs(c, backend);
  const result = mp.tidy(() => {
    const y = c.fn(...xs);
    const r = mp.tensor(new Generator(5).normal(y.size) as Float64Array, { dtype: 'float64', shape: y.shape, backend });
    mp.sum(mp.mul(y, r)).backward();
    return { out: host(y), grads: xs.filter((x) => x.requiresGrad).map((x) => host(x.grad!)) };
  });
  for (const x of xs) { x.grad?.dispose(); x.dispose(); }
  return result;
}

function assertClose(actual: Float64Array, expected: Float64Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  expected.forEach((e, i) => {
    const a = actual[i]!;
    // Both compute in float64: they differ only in the order of roundings near 1e-16.
    assert.ok(Math.abs(a - e) <= 1e-12 + 1e-12 * Math.abs(e), `${what} element ${i}: composed ${a}, fused ${e}`);
  });
}

describe('compositions standing in for missing fusions', () => {
  test('the CPU and WebGPU backends offer every fusion; the primitives-only backend none', () => {
    for (const name of FUSIONS) {
      assert.equal(typeof cpu[name], 'function', `cpu offers ${name}`);
      assert.equal(typeof WebGPUBackend.prototype[name], 'function', `webgpu offers ${name}`);
      assert.equal(composedOnly[name], undefined, `primitives-only hides ${name}`);
      assert.ok(fusions(cpu)[name].name.startsWith('bound '), `the cpu backend's own ${name} is used`);
      assert.ok(!fusions(composedOnly)[name].name.startsWith('bound '), `the composition stands in for ${name}`);
    }
  });

  for (const c of cases) {
    test(`${c.name}: the composition gives the fused kernel's values and gradients (float64)`, () => {
      const fused = run(c, cpu), composed = run(c, composedOnly);
      assertClose(composed.out, fused.out, 'output');
      composed.grads.forEach((g, i) => assertClose(g, fused.grads[i]!, `gradient ${i}`));
    });

    test(`${c.name}: the composition's gradients pass a finite-difference check`, () => {
      checkAndDispose(c.fn, inputs(c, composedOnly), c.name);
    });
  }

  test('cachedSelfAttention: the composition gives the fused kernel\'s output and cache writes', () => {
    const outputs = [cpu, composedOnly].map((backend) => mp.noGrad(() => {
      const qkv = mp.tensor(host(randLeaf([1, 3, 12], 3)), { dtype: 'float64', shape: [1, 3, 12], backend });
      const keys = mp.zeros([1, 2, 6, 2], { dtype: 'float64', backend }), values = mp.zeros([1, 2, 6, 2], { dtype: 'float64', backend });
      const first = mp.cachedSelfAttention(mp.slice(qkv, 1, 0, 2), 2, keys, values, 0);
      const next = mp.cachedSelfAttention(mp.slice(qkv, 1, 2, 3), 2, keys, values, 2);
      return [first, next, keys, values].map((t) => host(t));
    }));
    outputs[1]!.forEach((v, i) => assertClose(v, outputs[0]![i]!, ['first', 'next', 'keys', 'values'][i]!));
  });

  test('sumOfSquares: the composition gives the fused total over several views and dtypes', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16', 'float64'] as const) {
      const totals = [cpu, composedOnly].map((backend) => mp.tidy(() => {
        const views = [[5], [300], [0], [2, 7]].map((shape, i) => mp.tensor(host(randLeaf(shape, 20 + i, { scale: 3, grad: false })), { dtype, shape, backend }));
        const out = mp.zeros([1], { dtype: dtype === 'float64' ? 'float64' : 'float32', backend });
        fusions(backend).sumOfSquares(views.map((v) => v.storageView), out.storageView);
        return host(out)[0]!;
      }));
      // The fused kernel sums in float64; the composition rounds each square and the running total to float32.
      const rtol = dtype === 'float64' ? 1e-12 : 1e-6;
      assert.ok(Math.abs(totals[1]! - totals[0]!) <= rtol * totals[0]!, `${dtype}: composed ${totals[1]}, fused ${totals[0]}`);
    }
  });

  test('a 16-bit cast through the composed copy rounds as the fused cast does', () => {
    const x = randLeaf([64], 4, { scale: 1000, grad: false });
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const fused = mp.to(mp.tensor(host(x), { dtype: 'float64', backend: cpu }), dtype);
      const composed = mp.to(mp.tensor(host(x), { dtype: 'float64', backend: composedOnly }), dtype);
      assert.deepEqual(host(composed), host(fused), dtype);
    }
  });
});
