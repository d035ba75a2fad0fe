import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GradError, Generator, ShapeError, Tensor, add, linear, enableGrad, exp, keep, mean, memory, mul, noGrad, randn, square, sub, sum,
  tanh, tensor, tidy, to,
} from '../../src/index.js';
import type { DType } from '../../src/dtype/dtype.js';
import { host } from '../helpers/gradcheck.js';

describe('backward', () => {
  it('gives d(sum(x*x + 3x))/dx = 2x + 3 and accumulates across two backward calls', () => {
    const x = tensor([1, -2, 0.5], { requiresGrad: true });
    const f = () => sum(add(mul(x, x), mul(x, 3)));
    f().backward();
    assert.deepEqual([...x.grad!.toArraySync()], [5, -1, 4]);
    const g = x.grad;
    f().backward();
    assert.deepEqual([...x.grad!.toArraySync()], [10, -2, 8], 'the second gradient is added');
    assert.equal(x.grad, g, 'accumulated in place, in the same tensor');
    x.dispose();
    g!.dispose();
  });

  it('handles a tensor used twice (add(x, x)) and a diamond', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    sum(add(x, x)).backward();
    assert.deepEqual([...x.grad!.toArraySync()], [2, 2]);
    x.grad!.dispose();
    x.grad = null;
    const e = exp(x);
    sum(mul(add(e, 1), sub(e, 1))).backward(); // e^2 - 1: derivative 2 e^2
    host(x.grad!).forEach((v, i) => assert.ok(Math.abs(v - 2 * Math.exp(2 * (i + 1))) < 1e-4 * v));
    x.dispose();
  });

  it('backward twice on the same graph is a GradError', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = sum(mul(x, x));
    y.backward();
    assert.throws(() => y.backward(), (e: Error) => e instanceof GradError && /already freed/.test(e.message));
    x.dispose();
  });

  it('backward on a tensor that does not require grad is a GradError naming it', () => {
    const x = tensor([1, 2]);
    const y = sum(x);
    assert.throws(() => y.backward(), (e: Error) => e instanceof GradError && /\[\] float32 does not require grad/.test(e.message));
    const z = noGrad(() => sum(tensor([1], { requiresGrad: true })));
    assert.throws(() => z.backward(), GradError);
    x.dispose();
  });

  it('a non-scalar root needs an explicit gradient of its size', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const y = mul(x, 2);
    assert.throws(() => y.backward(), (e: Error) => e instanceof GradError && /not a scalar/.test(e.message));
    assert.throws(() => y.backward(tensor([1, 2])), (e: Error) => e instanceof ShapeError && /\[2\]/.test(e.message) && /\[3\]/.test(e.message));
    y.backward(tensor([1, 10, 100], { dtype: 'float64' }));
    assert.deepEqual([...x.grad!.toArraySync()], [2, 20, 200]);
    x.dispose();
  });

  it('backward on a leaf seeds its own gradient', () => {
    const x = tensor(5, { requiresGrad: true });
    x.backward();
    assert.deepEqual([...x.grad!.toArraySync()], [1]);
    x.dispose();
  });

  it('gradients arrive in each leaf\'s dtype through casts', () => {
    const w = tensor([0.5, 0.25], { dtype: 'float16', requiresGrad: true });
    const y = sum(mul(to(w, 'float32'), tensor([3, 4])));
    y.backward();
    assert.equal(w.grad!.dtype, 'float16');
    assert.deepEqual([...w.grad!.toArraySync()], [3, 4]);
    w.dispose();
  });

  it('a broadcast leaf gets a gradient of its own shape', () => {
    const b = tensor([[1], [2]], { requiresGrad: true });
    sum(add(b, tensor([[1, 2, 3], [4, 5, 6]]))).backward();
    assert.deepEqual(b.grad!.shape, [2, 1]);
    assert.deepEqual([...b.grad!.toArraySync()], [3, 3]);
    b.dispose();
  });
});

describe('noGrad', () => {
  it('records no graph; enableGrad turns recording back on', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = noGrad(() => mul(x, x));
    assert.equal(y.requiresGrad, false);
    assert.equal(y.node, null);
    const z = noGrad(() => enableGrad(() => mul(x, x)));
    assert.equal(z.requiresGrad, true);
    assert.notEqual(z.node, null);
    const w = mul(x, x);
    assert.ok(w.requiresGrad, 'recording is back on after noGrad returns');
    assert.throws(() => noGrad(() => { throw new Error('inside'); }), /inside/);
    assert.ok(mul(x, 1).requiresGrad, 'and after noGrad throws');
    x.dispose();
  });

  it('detach cuts the graph', () => {
    const x = tensor([3], { requiresGrad: true });
    const y = mul(mul(x, x).detach(), x);
    y.backward(tensor([1]));
    assert.deepEqual([...x.grad!.toArraySync()], [9]);
    x.dispose();
  });
});

describe('memory', () => {
  it('backward frees the activations the graph saved', () => {
    const x = randn([32, 16], { generator: new Generator(1), dtype: 'float32' });
    const w = randn([16, 16], { generator: new Generator(2), requiresGrad: true });
    const start = memory();
    // Intermediates are disposed by tidy, but the graph behind `loss` holds what backward needs.
    const loss = tidy(() => sum(tanh(linear(tanh(linear(x, w, null, { weightLayout: 'in,out' })), w, null, { weightLayout: 'in,out' }))));
    const held = memory();
    assert.equal(held.tensors, start.tensors + 1);
    assert.ok(held.buffers > start.buffers + 1, 'saved activations are alive before backward');
    loss.backward();
    const after = memory();
    // Left: loss and w.grad.
    assert.equal(after.tensors, start.tensors + 2);
    assert.equal(after.buffers, start.buffers + 2);
    assert.equal(after.bytes, start.bytes + 4 + 16 * 16 * 4);
    loss.dispose();
    w.grad!.dispose();
    for (const t of [x, w]) t.dispose();
  });

  it('disposing a loss without calling backward frees its graph', () => {
    const w = randn([8, 8], { generator: new Generator(3), requiresGrad: true });
    const start = memory();
    const loss = tidy(() => sum(exp(tanh(mul(w, w)))));
    assert.ok(memory().buffers > start.buffers + 1);
    loss.dispose();
    const end = memory();
    assert.deepEqual([end.tensors, end.buffers, end.bytes], [start.tensors, start.buffers, start.bytes]);
    w.dispose();
  });
});

// ---- end to end: a two-layer MLP fitting y = sin(2x) by plain gradient descent ----

interface Mlp { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor }

function makeMlp(dtype: DType, hidden: number): Mlp {
  const g = new Generator(11);
  const init = (shape: number[], scale: number) => {
    const v = (g.normal(shape.reduce((a, b) => a * b, 1)) as Float64Array).map((x) => x * scale);
    return tensor(v, { shape, dtype, requiresGrad: true });
  };
  return { w1: init([1, hidden], 1), b1: init([hidden], 0.5), w2: init([hidden, 1], 1 / Math.sqrt(hidden)), b2: init([1], 0) };
}

function lossOf(m: Mlp, x: Tensor, y: Tensor): Tensor {
  const h = tanh(linear(x, m.w1, m.b1, { weightLayout: 'in,out' }));
  return mean(square(sub(linear(h, m.w2, m.b2, { weightLayout: 'in,out' }), y)));
}

/** One step of gradient descent: forward, backward, and p <- p - lr * grad under noGrad (stored in p's dtype). */
function step(m: Mlp, x: Tensor, y: Tensor, lr: number): number {
  return tidy(() => {
    const loss = lossOf(m, x, y);
    loss.backward();
    const value = loss.toArraySync()[0]!;
    noGrad(() => {
      for (const k of Object.keys(m) as (keyof Mlp)[]) {
        const p = m[k];
        const next = keep(sub(p, mul(p.grad!, lr))).requiresGrad_();
        assert.equal(next.dtype, p.dtype);
        p.grad!.dispose();
        p.dispose();
        m[k] = next;
      }
    });
    return value;
  });
}

function data(dtype: DType): { x: Tensor; y: Tensor } {
  const xs = Array.from({ length: 48 }, (_, i) => -1.5 + (3 * i) / 47);
  return { x: tensor(xs, { shape: [48, 1], dtype }), y: tensor(xs.map((v) => Math.sin(2 * v)), { shape: [48, 1], dtype }) };
}

describe('end to end: a two-layer MLP trained by gradient descent', () => {
  for (const dtype of ['float32', 'float16'] as const) {
    it(`reduces its loss with ${dtype} parameters and gradients`, () => {
      const m = makeMlp(dtype, 16);
      const { x, y } = data(dtype);
      const losses: number[] = [];
      for (let i = 0; i < 150; i++) losses.push(step(m, x, y, 0.2));
      for (const p of Object.values(m) as Tensor[]) {
        assert.equal(p.dtype, dtype);
        assert.ok(host(p).every(Number.isFinite));
      }
      assert.ok(losses.every(Number.isFinite));
      assert.ok(losses[losses.length - 1]! < 0.05 * losses[0]!, `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
      if (dtype === 'float16') {
        // Every stored parameter is a float16 value.
        const w = Object.values(m).flatMap((p: Tensor) => [...host(p)]);
        assert.ok(w.every((v) => new Float32Array([v])[0] === v));
      }
      for (const t of [...Object.values(m), x, y] as Tensor[]) t.dispose();
    });
  }

  it('float16 training tracks float32 training closely over the first steps', () => {
    const m32 = makeMlp('float32', 16), m16 = makeMlp('float16', 16);
    const d32 = data('float32'), d16 = data('float16');
    for (let i = 0; i < 10; i++) {
      const a = step(m32, d32.x, d32.y, 0.2), b = step(m16, d16.x, d16.y, 0.2);
      assert.ok(Math.abs(a - b) < 0.02 * a + 1e-3, `step ${i}: ${a} vs ${b}`);
    }
    for (const t of [...Object.values(m32), ...Object.values(m16), d32.x, d32.y, d16.x, d16.y] as Tensor[]) t.dispose();
  });

  it('memory is flat: 100 steps leave tensors and bytes where they started, and every step ends at the same count', () => {
    const m = makeMlp('float32', 16);
    const { x, y } = data('float32');
    const start = memory();
    const counts: [number, number, number][] = [];
    let peakAfterFirst = 0;
    for (let i = 0; i < 100; i++) {
      step(m, x, y, 0.1);
      const now = memory();
      counts.push([now.tensors, now.buffers, now.bytes]);
      if (i === 0) peakAfterFirst = now.peakBytes;
    }
    const end = memory();
    assert.deepEqual([end.tensors, end.buffers, end.bytes], [start.tensors, start.buffers, start.bytes]);
    assert.ok(counts.every((c) => c[0] === counts[0]![0] && c[1] === counts[0]![1] && c[2] === counts[0]![2]));
    assert.equal(end.peakBytes, peakAfterFirst, 'no step needs more memory than the first');
    for (const t of [...Object.values(m), x, y] as Tensor[]) t.dispose();
  });
});
