import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DTypeError, Generator, ShapeError, TensorError, arange, full, manualSeed, ones, onesLike, rand, randn, tensor, zeros, zerosLike,
} from '../../src/index.js';
import { roundTo } from '../../src/dtype/codec.js';

describe('tensor()', () => {
  it('takes numbers, nested arrays and typed arrays, with an optional shape', () => {
    const s = tensor(3.5), n = tensor([[1, 2, 3], [4, 5, 6]]), f = tensor(new Float32Array([1, 2, 3, 4]), { shape: [2, 2] });
    const i = tensor(new Int32Array([1, 2])), b = tensor([true, false]);
    assert.deepEqual([s.shape, n.shape, f.shape, i.shape], [[], [2, 3], [2, 2], [2]]);
    assert.deepEqual([s.dtype, n.dtype, i.dtype], ['float32', 'float32', 'int32']);
    assert.deepEqual([...n.toArraySync()], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...b.toArraySync()], [1, 0]);
    for (const t of [s, n, f, i, b]) t.dispose();
  });

  it('rounds values to the dtype once, to nearest even', () => {
    const vals = [0.1, 1 + 2 ** -11, 65519, 65520, 1e-8, -2.5];
    for (const dtype of ['float16', 'bfloat16', 'float32'] as const) {
      const t = tensor(vals, { dtype });
      assert.deepEqual([...t.toArraySync()], vals.map((v) => roundTo(v, dtype)), dtype);
      t.dispose();
    }
    const d = tensor([0.1], { dtype: 'f64' });
    assert.equal(d.toArraySync()[0], 0.1);
    d.dispose();
  });

  it('bad input: unknown dtype, ragged arrays, values that do not fill the shape', () => {
    assert.throws(() => tensor([1], { dtype: 'float8' }), (e: Error) => e instanceof DTypeError && /unknown dtype 'float8'/.test(e.message));
    assert.throws(() => tensor([[1, 2], [3]]), (e: Error) => e instanceof ShapeError && /ragged/.test(e.message));
    assert.throws(() => tensor([1, 2, 3], { shape: [2, 2] }), (e: Error) => e instanceof ShapeError && /3 values do not fill shape \[2, 2\]/.test(e.message));
    assert.throws(() => zeros([2, -1]), (e: Error) => e instanceof TensorError && /invalid shape \[2, -1\]/.test(e.message));
    assert.throws(() => zeros([1.5]), TensorError);
  });
});

describe('constants and ranges', () => {
  it('full, zeros, ones and the *Like variants', () => {
    const f = full([2, 2], 7, { dtype: 'bf16' }), z = zeros([3]), o = ones([2], { dtype: 'float64' });
    const zl = zerosLike(f), ol = onesLike(o);
    assert.deepEqual([...f.toArraySync()], [7, 7, 7, 7]);
    assert.deepEqual([f.dtype, zl.dtype, ol.dtype], ['bfloat16', 'bfloat16', 'float64']);
    assert.deepEqual([...z.toArraySync(), ...zl.toArraySync(), ...ol.toArraySync()], [0, 0, 0, 0, 0, 0, 0, 1, 1]);
    for (const t of [f, z, o, zl, ol]) t.dispose();
  });

  it('arange: int32 for integer arguments, float32 otherwise, empty when end <= start', () => {
    const a = arange(5), b = arange(1, 2, 0.25), c = arange(3, 1), d = arange(5, 0, -2);
    assert.deepEqual([a.dtype, b.dtype], ['int32', 'float32']);
    assert.deepEqual([...a.toArraySync()], [0, 1, 2, 3, 4]);
    assert.deepEqual([...b.toArraySync()], [1, 1.25, 1.5, 1.75]);
    assert.equal(c.size, 0);
    assert.deepEqual([...d.toArraySync()], [5, 3, 1]);
    assert.throws(() => arange(0, 1, 0), /step must not be 0/);
    for (const t of [a, b, c, d]) t.dispose();
  });
});

describe('rand and randn', () => {
  it('draw from the given generator: same state, same tensor; drawing advances the state', () => {
    const g1 = new Generator(42), g2 = new Generator(42);
    const a = randn([3, 4], { generator: g1 }), b = randn([3, 4], { generator: g2 });
    assert.deepEqual([...a.toArraySync()], [...b.toArraySync()]);
    const c = randn([3, 4], { generator: g1 });
    assert.notDeepEqual([...a.toArraySync()], [...c.toArraySync()]);
    const u = rand([1000], { generator: new Generator(1) });
    assert.ok(u.toArraySync().every((v) => v > 0 && v < 1));
    for (const t of [a, b, c, u]) t.dispose();
  });

  it('manualSeed seeds the default generator', () => {
    manualSeed(9);
    const a = rand([5]);
    manualSeed(9);
    const b = rand([5]);
    assert.deepEqual([...a.toArraySync()], [...b.toArraySync()]);
    const c = rand([5], { dtype: 'float16' });
    assert.equal(c.dtype, 'float16');
    for (const t of [a, b, c]) t.dispose();
  });
});
