import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DTypeError, DisposedError, GradError, Tensor, TensorError, add, exp, keep, memory, mul, noGrad, sum, tensor, tidy, zeros,
} from '../../src/index.js';

function live(): [number, number, number] {
  const m = memory();
  return [m.tensors, m.buffers, m.bytes];
}

describe('tidy', () => {
  it('disposes what was made inside and keeps what is returned (a tensor, or inside arrays and objects)', () => {
    const start = live();
    let inner: Tensor | undefined;
    const out = tidy(() => {
      inner = tensor([1, 2, 3]);
      const b = mul(inner, 2);
      return { sum: add(b, 1), list: [exp(inner)], n: 3 };
    });
    assert.ok(inner!.isDisposed);
    assert.ok(!out.sum.isDisposed && !out.list[0]!.isDisposed);
    assert.deepEqual([...out.sum.toArraySync()], [3, 5, 7]);
    assert.equal(out.n, 3);
    assert.deepEqual(live(), [start[0] + 2, start[1] + 2, start[2] + 24]);
    out.sum.dispose();
    out.list[0]!.dispose();
    assert.deepEqual(live(), start);
  });

  it('nested scopes: a returned tensor moves to the enclosing scope and is disposed when that one ends', () => {
    const start = live();
    let moved: Tensor | undefined;
    tidy(() => {
      moved = tidy(() => tensor([1]));
      assert.ok(!moved.isDisposed, 'alive after the inner scope');
      tensor([2]);
    });
    assert.ok(moved!.isDisposed, 'disposed by the outer scope');
    assert.deepEqual(live(), start);
  });

  it('keep exempts a tensor from every enclosing scope', () => {
    const start = live();
    let kept: Tensor | undefined;
    tidy(() => tidy(() => { kept = keep(tensor([1, 2])); }));
    assert.ok(!kept!.isDisposed);
    kept!.dispose();
    assert.deepEqual(live(), start);
  });

  it('tensors made before the scope are untouched; a scope that throws still disposes what it made', () => {
    const outside = tensor([1]);
    const start = live();
    let made: Tensor | undefined;
    assert.throws(() => tidy(() => { made = add(outside, 1); tidy(() => mul(made!, 2)); throw new Error('boom'); }), /boom/);
    assert.ok(made!.isDisposed);
    assert.ok(!outside.isDisposed);
    assert.deepEqual(live(), start);
    outside.dispose();
  });

  it('refuses an async function', () => {
    assert.throws(() => tidy((async () => tensor([1])) as never), (e: Error) => e instanceof TensorError && /synchronous/.test(e.message));
  });
});

describe('dispose', () => {
  it('is idempotent and releases storage and bytes', () => {
    const start = live();
    const t = zeros([10, 10]);
    assert.deepEqual(live(), [start[0] + 1, start[1] + 1, start[2] + 400]);
    t.dispose();
    t.dispose();
    assert.ok(t.isDisposed);
    assert.deepEqual(live(), start);
    assert.match(String(t), /disposed/);
  });

  it('use of a disposed tensor is a DisposedError naming the tensor', () => {
    const t = tensor([[1, 2]]);
    t.name = 'w';
    t.dispose();
    for (const use of [() => t.toArraySync(), () => add(t, 1), () => t.storageView, () => mul(t, t)]) {
      assert.throws(use, (e: Error) => e instanceof DisposedError && /disposed tensor/.test(e.message) && /'w' \[1, 2\] float32/.test(e.message));
    }
  });

  it('use of a tensor disposed by a tidy scope is a DisposedError', () => {
    let escaped: Tensor | undefined;
    tidy(() => { escaped = tensor([1, 2, 3]); });
    assert.throws(() => sum(escaped!), DisposedError);
    assert.throws(() => escaped!.toArraySync(), DisposedError);
  });

  it('disposing an input does not break a graph that saved it', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const c = tensor([4, 5, 6]);
    const y = sum(mul(x, c));
    c.dispose();
    y.backward();
    assert.deepEqual([...x.grad!.toArraySync()], [4, 5, 6]);
    x.grad!.dispose();
    for (const t of [x, y]) t.dispose();
  });
});

describe('memory', () => {
  it('float16 and bfloat16 storage take 2 bytes per element; float64 takes 8', () => {
    const start = memory().bytes;
    const sizes: [string, number][] = [['float16', 2], ['bfloat16', 2], ['float32', 4], ['int32', 4], ['float64', 8]];
    for (const [dtype, bytes] of sizes) {
      const t = zeros([3, 5], { dtype });
      assert.equal(memory().bytes - start, 15 * bytes, dtype);
      t.dispose();
    }
    assert.equal(memory().bytes, start);
  });

  it('reports the backend, buffers and a peak that never drops', () => {
    const m0 = memory();
    const t = zeros([1000]);
    const m1 = memory();
    t.dispose();
    const m2 = memory();
    assert.equal(m0.backend, 'cpu');
    assert.ok(m1.peakBytes >= m1.bytes && m1.peakBytes >= m0.peakBytes);
    assert.equal(m2.peakBytes, m1.peakBytes);
  });
});

describe('detach, reshape and reading', () => {
  it('detach shares values, is cut off from the graph and keeps the storage alive', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = mul(x, 3);
    const d = y.detach();
    assert.equal(d.requiresGrad, false);
    assert.ok(d.isLeaf);
    assert.deepEqual([...d.toArraySync()], [3, 6]);
    const buffers = memory().buffers;
    y.dispose();
    assert.equal(memory().buffers, buffers, 'the detached handle still holds the storage');
    assert.deepEqual([...d.toArraySync()], [3, 6]);
    assert.throws(() => sum(d).backward(), GradError);
    for (const t of [x, d]) t.dispose();
  });

  it('toArraySync hands out a copy, never the storage', () => {
    const t = tensor([1, 2, 3]);
    const a = t.toArraySync();
    a[0] = 99;
    assert.equal(t.toArraySync()[0], 1);
    t.dispose();
  });

  it('item, toArray and toList', async () => {
    const t = tensor([[1, 2], [3, 4]]);
    assert.deepEqual(await t.toList(), [[1, 2], [3, 4]]);
    assert.deepEqual([...(await t.toArray())], [1, 2, 3, 4]);
    await assert.rejects(() => t.item(), /4 elements, not 1/);
    const s = sum(t);
    assert.equal(await s.item(), 10);
    t.dispose();
    s.dispose();
  });

  it('requiresGrad_(false) on a non-leaf is refused; on an int tensor requiresGrad_ is a DTypeError', () => {
    const x = tensor([1], { requiresGrad: true });
    const y = mul(x, 2);
    assert.throws(() => y.requiresGrad_(false), (e: Error) => e instanceof GradError && /detach/.test(e.message));
    assert.throws(() => tensor(new Int32Array([1]), { requiresGrad: true }), DTypeError);
    for (const t of [x, y]) t.dispose();
  });
});

describe('noGrad inside tidy', () => {
  it('records nothing', () => {
    const x = tensor([1, 2], { requiresGrad: true });
    tidy(() => {
      const y = noGrad(() => mul(x, x));
      assert.equal(y.requiresGrad, false);
      assert.equal(y.node, null);
    });
    x.dispose();
  });
});
