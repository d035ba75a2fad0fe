import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tensor, TensorError, max, mean, memory, min, sum, tensor } from '../../../src/index.js';
import { expandTo, sumToShape } from '../../../src/tensor/ops/reduce.js';
import { gradcheck, host, randLeaf } from '../../helpers/gradcheck.js';

function check(fn: (x: Tensor) => Tensor, x: Tensor, name: string): void {
  try {
    gradcheck(fn, [x], { name });
  } finally {
    x.dispose();
  }
}

/** Naive reduction over `dims` of a row-major array, for expected values. */
function naive(op: (a: number, b: number) => number, init: number, data: ArrayLike<number>, shape: number[], dims: number[]): number[] {
  const outShape = shape.map((d, i) => (dims.includes(i) ? 1 : d));
  const out = new Array(outShape.reduce((a, b) => a * b, 1)).fill(init);
  const idx = new Array(shape.length).fill(0);
  for (let flat = 0; flat < data.length; flat++) {
    let o = 0;
    for (let d = 0; d < shape.length; d++) o = o * outShape[d]! + (dims.includes(d) ? 0 : idx[d]);
    out[o] = op(out[o], data[flat]!);
    for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d] < shape[d]!) break; idx[d] = 0; }
  }
  return out;
}

const SHAPE = [2, 3, 4];
const DIMS: [number[] | number | undefined, string][] = [
  [0, 'dim 0'], [1, 'dim 1'], [-1, 'last dim'], [[0, 2], 'dims 0 and 2'], [[1, 2], 'dims 1 and 2'], [[0, 1, 2], 'all dims (listed)'], [undefined, 'all dims'],
];

describe('reduction gradients (float64 finite differences)', () => {
  for (const keepdim of [false, true]) {
    for (const [dims, what] of DIMS) {
      it(`sum, mean, max, min over ${what}, keepdim ${keepdim}`, () => {
        check((x) => sum(x, dims, keepdim), randLeaf(SHAPE, 1), `sum ${what}`);
        check((x) => mean(x, dims, keepdim), randLeaf(SHAPE, 2), `mean ${what}`);
        check((x) => max(x, dims, keepdim), randLeaf(SHAPE, 3), `max ${what}`);
        check((x) => min(x, dims, keepdim), randLeaf(SHAPE, 4), `min ${what}`);
      });
    }
  }

  it('max shares the gradient evenly between tied maxima', () => {
    const x = tensor([[1, 3, 3], [2, 0, 2]], { dtype: 'float64', requiresGrad: true });
    max(x, 1).sum().backward();
    assert.deepEqual([...host(x.grad!)], [0, 0.5, 0.5, 0.5, 0, 0.5]);
    x.dispose();
  });
});

describe('reduction values', () => {
  it('match a naive reduction for every dim combination and keepdim', () => {
    const x = randLeaf(SHAPE, 5, { grad: false });
    const data = host(x);
    for (const [dims, what] of DIMS) {
      const ds = dims === undefined ? [0, 1, 2] : (typeof dims === 'number' ? [dims] : dims).map((d) => (d < 0 ? d + 3 : d));
      for (const keepdim of [false, true]) {
        const s = sum(x, dims, keepdim), m = mean(x, dims, keepdim), mx = max(x, dims, keepdim), mn = min(x, dims, keepdim);
        const wantShape = keepdim ? SHAPE.map((d, i) => (ds.includes(i) ? 1 : d)) : SHAPE.filter((_, i) => !ds.includes(i));
        for (const t of [s, m, mx, mn]) assert.deepEqual(t.shape, wantShape, what);
        const count = ds.reduce((a, d) => a * SHAPE[d]!, 1);
        const close = (got: Float64Array, want: number[]) => got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-12, `${what}: ${v} vs ${want[i]}`));
        close(host(s), naive((a, b) => a + b, 0, data, SHAPE, ds));
        close(host(m), naive((a, b) => a + b, 0, data, SHAPE, ds).map((v) => v / count));
        assert.deepEqual([...host(mx)], naive(Math.max, -Infinity, data, SHAPE, ds));
        assert.deepEqual([...host(mn)], naive(Math.min, Infinity, data, SHAPE, ds));
        for (const t of [s, m, mx, mn]) t.dispose();
      }
    }
    x.dispose();
  });

  it('sum of float16 accumulates in float32 or better and rounds once', () => {
    // 4096 ones plus 1: a float16 running sum would stick at 2048.
    const x = tensor(new Array(4097).fill(1), { dtype: 'float16' });
    const s = sum(x);
    assert.equal(s.dtype, 'float16');
    assert.equal(s.toArraySync()[0], 4096, '4097 rounds to 4096 in float16 (spacing 4)');
    const s2 = sum(tensor(new Array(3000).fill(1), { dtype: 'float16' }));
    assert.equal(s2.toArraySync()[0], 3000);
    x.dispose();
    s.dispose();
    s2.dispose();
  });

  it('int32 sums stay int32', () => {
    const x = tensor(new Int32Array([1, 2, 3, 4]));
    const s = sum(x);
    assert.equal(s.dtype, 'int32');
    assert.equal(s.toArraySync()[0], 10);
    x.dispose();
    s.dispose();
  });

  it('NaN propagates through sum, max and min', () => {
    const x = tensor([[1, NaN, 3], [4, 5, 6]]);
    for (const f of [sum, max, min]) {
      const y = f(x, 1);
      const v = y.toArraySync();
      assert.ok(Number.isNaN(v[0]));
      assert.ok(!Number.isNaN(v[1]));
      y.dispose();
    }
    x.dispose();
  });

  it('sumToShape undoes broadcasting; expandTo broadcasts', () => {
    const g = tensor([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]]);
    const a = sumToShape(g, [3, 1]);
    assert.deepEqual([...a.toArraySync()], [1 + 2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12]);
    const b = sumToShape(g, [2]);
    assert.deepEqual([...b.toArraySync()], [36, 42]);
    assert.equal(sumToShape(g, [2, 3, 2]), g);
    assert.throws(() => sumToShape(b, [2, 3, 2]), TensorError);
    const e = expandTo(tensor([[1], [2]]), [2, 3]);
    assert.deepEqual([...e.toArraySync()], [1, 1, 1, 2, 2, 2]);
    for (const t of [g, a, b, e]) t.dispose();
  });

  it('errors name the op and the problem', () => {
    const x = tensor([[1, 2], [3, 4]]);
    assert.throws(() => sum(x, 2), /sum: dimension 2 is out of range for a tensor with 2 dimensions/);
    assert.throws(() => max(tensor([])), /max: cannot reduce an empty tensor/);
    assert.throws(() => mean(tensor(new Int32Array([1]))), /mean: expected a floating-point tensor/);
    x.dispose();
  });

  it('reductions and their backward free every intermediate', () => {
    const x = randLeaf(SHAPE, 6);
    const before = memory();
    for (const f of [sum, mean, max, min]) {
      const y = f(x, [0, 2]);
      const s = sum(y);
      s.backward();
      x.grad!.dispose();
      x.grad = null;
      y.dispose();
      s.dispose();
    }
    const after = memory();
    assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes]);
    x.dispose();
  });
});
