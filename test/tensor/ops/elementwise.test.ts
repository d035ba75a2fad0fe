import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DTypeError, ShapeError, Tensor, abs, add, affine, div, eq, exp, ge, gelu, gt, le, log, lt, maximum, memory, minimum, mul, ne, neg,
  pow, reciprocal, relu, rsqrt, sigmoid, sqrt, square, sub, sum, tanh, tensor, to, where,
} from '../../../src/index.js';
import { roundTo, toFloat16Bits } from '../../../src/dtype/codec.js';
import type { DType } from '../../../src/dtype/dtype.js';
import { checkAndDispose, host, randLeaf } from '../../helpers/gradcheck.js';

const positive = (shape: number[], seed: number) => randLeaf(shape, seed, { scale: 0.3, shift: 1.5, awayFrom: [0] });

describe('elementwise gradients (float64 finite differences)', () => {
  it('add, sub, mul, div on equal shapes', () => {
    checkAndDispose((a, b) => add(a, b), [randLeaf([2, 3], 1), randLeaf([2, 3], 2)], 'add');
    checkAndDispose((a, b) => sub(a, b), [randLeaf([2, 3], 3), randLeaf([2, 3], 4)], 'sub');
    checkAndDispose((a, b) => mul(a, b), [randLeaf([2, 3], 5), randLeaf([2, 3], 6)], 'mul');
    checkAndDispose((a, b) => div(a, b), [randLeaf([2, 3], 7), positive([2, 3], 8)], 'div');
  });

  it('broadcasting: [2,3,4] + [4], [2,1,4] * [3,1], [4] - [2,3,4], [3,1] / [2,1,4]', () => {
    checkAndDispose((a, b) => add(a, b), [randLeaf([2, 3, 4], 11), randLeaf([4], 12)], 'add [2,3,4] + [4]');
    checkAndDispose((a, b) => mul(a, b), [randLeaf([2, 1, 4], 13), randLeaf([3, 1], 14)], 'mul [2,1,4] * [3,1]');
    checkAndDispose((a, b) => sub(a, b), [randLeaf([4], 15), randLeaf([2, 3, 4], 16)], 'sub [4] - [2,3,4]');
    checkAndDispose((a, b) => div(a, b), [randLeaf([3, 1], 17), positive([2, 1, 4], 18)], 'div [3,1] / [2,1,4]');
    checkAndDispose((a, b) => mul(a, b), [randLeaf([], 19), randLeaf([2, 3], 20)], 'mul scalar tensor * [2,3]');
  });

  it('only one operand requiring a gradient, and the same tensor used twice', () => {
    const c = randLeaf([2, 3], 21, { grad: false });
    checkAndDispose((a) => mul(a, c), [randLeaf([2, 3], 22)], 'mul by a constant');
    checkAndDispose((a) => div(c, a), [positive([2, 3], 23)], 'div of a constant');
    c.dispose();
    checkAndDispose((a) => add(mul(a, a), a), [randLeaf([3], 24)], 'a*a + a');
  });

  it('with number operands', () => {
    checkAndDispose((a) => add(a, 2.5), [randLeaf([3], 31)], 'add number');
    checkAndDispose((a) => sub(1, a), [randLeaf([3], 32)], 'number - tensor');
    checkAndDispose((a) => mul(-3, a), [randLeaf([3], 33)], 'number * tensor');
    checkAndDispose((a) => div(a, 4), [randLeaf([3], 34)], 'tensor / number');
    checkAndDispose((a) => div(2, a), [positive([3], 35)], 'number / tensor');
    checkAndDispose((a) => affine(a, 0.5, -1), [randLeaf([3], 36)], 'affine');
  });

  it('unary: neg, exp, log, sqrt, rsqrt, reciprocal, tanh, sigmoid, square', () => {
    checkAndDispose((a) => neg(a), [randLeaf([2, 3], 41)], 'neg');
    checkAndDispose((a) => exp(a), [randLeaf([2, 3], 42)], 'exp');
    checkAndDispose((a) => log(a), [positive([2, 3], 43)], 'log');
    checkAndDispose((a) => sqrt(a), [positive([2, 3], 44)], 'sqrt');
    checkAndDispose((a) => rsqrt(a), [positive([2, 3], 45)], 'rsqrt');
    checkAndDispose((a) => reciprocal(a), [positive([2, 3], 46)], 'reciprocal');
    checkAndDispose((a) => tanh(a), [randLeaf([2, 3], 47, { scale: 2 })], 'tanh');
    checkAndDispose((a) => sigmoid(a), [randLeaf([2, 3], 48, { scale: 3 })], 'sigmoid');
    checkAndDispose((a) => square(a), [randLeaf([2, 3], 49)], 'square');
  });

  it('pow by a scalar (integer, fractional and negative exponents)', () => {
    checkAndDispose((a) => pow(a, 3), [randLeaf([4], 51)], 'pow 3');
    checkAndDispose((a) => pow(a, 2), [randLeaf([4], 52)], 'pow 2');
    checkAndDispose((a) => pow(a, 0.5), [positive([4], 53)], 'pow 0.5');
    checkAndDispose((a) => pow(a, -1.5), [positive([4], 54)], 'pow -1.5');
  });

  it('kinks: relu, abs, gelu (tanh approximation), away from 0', () => {
    checkAndDispose((a) => relu(a), [randLeaf([3, 4], 61, { awayFrom: [0] })], 'relu');
    checkAndDispose((a) => abs(a), [randLeaf([3, 4], 62, { awayFrom: [0] })], 'abs');
    checkAndDispose((a) => gelu(a), [randLeaf([3, 4], 63, { scale: 2 })], 'gelu');
  });

  it('maximum / minimum, with broadcasting and with a number', () => {
    // Two independent normals are never within 1e-6 of each other at these seeds (checked below).
    const a = randLeaf([2, 3], 71), b = randLeaf([3], 72);
    const gap = Math.min(...Array.from(host(sub(a, b).abs()), Math.abs));
    assert.ok(gap > 1e-3);
    checkAndDispose((x, y) => maximum(x, y), [a, b], 'maximum');
    checkAndDispose((x, y) => minimum(x, y), [randLeaf([2, 3], 71), randLeaf([3], 72)], 'minimum');
    checkAndDispose((x) => maximum(x, 0.1), [randLeaf([5], 73, { awayFrom: [0.1] })], 'maximum with a number');
    checkAndDispose((x) => minimum(0.1, x), [randLeaf([5], 74, { awayFrom: [0.1] })], 'minimum, number first');
  });

  it('where, with broadcast condition and operands', () => {
    const cond = tensor([[1, 0, 1], [0, 0, 1]], { dtype: 'float64' });
    checkAndDispose((a, b) => where(cond, a, b), [randLeaf([2, 3], 81), randLeaf([3], 82)], 'where');
    const row = tensor([1, 0, 1]);
    checkAndDispose((a, b) => where(row, a, b), [randLeaf([2, 1], 83), randLeaf([2, 3], 84)], 'where, broadcast condition');
    cond.dispose();
    row.dispose();
  });

  it('a composite expression', () => {
    checkAndDispose((a, b) => div(exp(mul(tanh(a), b)), add(square(b), 1)), [randLeaf([2, 2], 91), randLeaf([2, 2], 92)], 'composite');
  });
});

describe('to()', () => {
  it('passes the gradient through, converted to the input dtype', () => {
    const x = randLeaf([2, 3], 1);
    const y = to(x, 'float32');
    assert.equal(y.dtype, 'float32');
    const r = tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] });
    sum(mul(y, r)).backward();
    assert.equal(x.grad!.dtype, 'float64');
    assert.deepEqual([...host(x.grad!)], [1, 2, 3, 4, 5, 6]);
    for (const t of [x, y, r]) t.dispose();
  });

  it('float64 -> float16 -> float64 keeps the gradient exact when it is representable', () => {
    const x = randLeaf([4], 2);
    const y = to(to(x, 'f16'), 'float64');
    assert.deepEqual([...host(y)], [...host(x)].map((v) => roundTo(v, 'float16')));
    sum(mul(y, 3)).backward();
    assert.deepEqual([...host(x.grad!)], [3, 3, 3, 3]);
    x.dispose();
  });

  it('returns the same tensor for the same dtype and refuses int32 on a tensor that requires grad', () => {
    const x = randLeaf([2], 3);
    assert.equal(to(x, 'float64'), x);
    assert.throws(() => to(x, 'int32'), DTypeError);
    assert.throws(() => to(x, 'float8'), /unknown dtype 'float8'/);
    const i = to(tensor([1.7, -2.5, 3]), 'int32');
    assert.deepEqual([...i.toArraySync()], [1, -2, 3]);
    x.dispose();
    i.dispose();
  });
});

describe('elementwise forward values', () => {
  it('match Math on float64 inputs', () => {
    const xs = [0.3, 1.7, 2.2, 0.01];
    const x = tensor(xs, { dtype: 'float64' });
    const cases: [Tensor, (v: number) => number][] = [
      [exp(x), Math.exp], [log(x), Math.log], [sqrt(x), Math.sqrt], [rsqrt(x), (v) => 1 / Math.sqrt(v)],
      [tanh(x), Math.tanh], [sigmoid(x), (v) => 1 / (1 + Math.exp(-v))], [square(x), (v) => v * v], [pow(x, 1.5), (v) => v ** 1.5],
      [gelu(x), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
    ];
    for (const [t, f] of cases) {
      host(t).forEach((v, i) => assert.ok(Math.abs(v - f(xs[i]!)) <= 1e-15 * Math.max(1, Math.abs(v)), `${v} vs ${f(xs[i]!)}`));
      t.dispose();
    }
    x.dispose();
  });

  it('comparisons give 1/0 in float32 (int32 for two int32 operands)', () => {
    const a = tensor([1, 2, 3]), b = tensor([2, 2, 2]);
    const results = [eq(a, b), ne(a, b), gt(a, b), ge(a, b), lt(a, b), le(a, 2)];
    assert.deepEqual(results.map((t) => [...t.toArraySync()]), [[0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]]);
    assert.ok(results.every((t) => t.dtype === 'float32'));
    const ia = tensor(new Int32Array([1, 5])), ib = tensor(new Int32Array([1, 2]));
    const ie = eq(ia, ib);
    assert.equal(ie.dtype, 'int32');
    for (const t of [...results, a, b, ia, ib, ie]) t.dispose();
  });

  it('relu and maximum propagate NaN', () => {
    const x = tensor([NaN, -1, 2]);
    const r = relu(x), m = maximum(x, 0);
    assert.ok(Number.isNaN(r.toArraySync()[0]!));
    assert.ok(Number.isNaN(m.toArraySync()[0]!));
    assert.deepEqual([...r.toArraySync()].slice(1), [0, 2]);
    for (const t of [x, r, m]) t.dispose();
  });

  it('mixed dtypes promote (float16 with bfloat16 gives float32; int32 with float gives the float)', () => {
    const h = tensor([1, 2], { dtype: 'float16' }), b = tensor([3, 4], { dtype: 'bfloat16' }), i = tensor(new Int32Array([5, 6]));
    const hb = add(h, b), hi = mul(h, i), bi = div(b, i);
    assert.deepEqual([hb.dtype, hi.dtype, bi.dtype], ['float32', 'float16', 'bfloat16']);
    assert.deepEqual([...hb.toArraySync()], [4, 6]);
    assert.deepEqual([...hi.toArraySync()], [5, 12]);
    for (const t of [h, b, i, hb, hi, bi]) t.dispose();
  });

  it('float / int32 divides (like PyTorch); int32 / int32 is refused', () => {
    const f = tensor([3, 4]), i = tensor(new Int32Array([2, 8]));
    const q = div(f, i);
    assert.equal(q.dtype, 'float32');
    assert.deepEqual([...q.toArraySync()], [1.5, 0.5]);
    assert.throws(() => div(i, i), DTypeError);
    for (const t of [f, i, q]) t.dispose();
  });
});

describe('16-bit inputs round their results exactly once', () => {
  /** Every pair from a sample of finite 16-bit values, as tensors. */
  function pairs(dtype: DType, n: number, seed: number): { a: number[]; b: number[] } {
    let s = seed;
    const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
    const pick = (): number => {
      for (;;) {
        const bits = next() & 0xffff;
        // Mostly moderate magnitudes, where sums and products stay finite, with some extremes.
        const v = dtype === 'float16' ? roundTo(fromBits16(bits, dtype), dtype) : fromBits16(bits, dtype);
        if (Number.isFinite(v) && (Math.abs(v) < 300 || next() % 8 === 0)) return v;
      }
    };
    const a = Array.from({ length: n }, pick), b = Array.from({ length: n }, pick);
    return { a, b };
  }

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype}: add, sub, mul, div, exp, sqrt, tanh, gelu equal roundTo of the exact result`, () => {
      const { a, b } = pairs(dtype, 4000, dtype === 'float16' ? 7 : 8);
      const ta = tensor(a, { dtype }), tb = tensor(b, { dtype });
      assert.deepEqual([...ta.toArraySync()], a, 'the sample is exactly representable');
      const binaries: [string, (x: Tensor, y: Tensor) => Tensor, (x: number, y: number) => number][] = [
        ['add', add, (x, y) => x + y], ['sub', sub, (x, y) => x - y], ['mul', mul, (x, y) => x * y], ['div', div, (x, y) => x / y],
      ];
      for (const [name, op, f] of binaries) {
        const y = op(ta, tb);
        assert.equal(y.dtype, dtype);
        const got = y.toArraySync();
        for (let i = 0; i < a.length; i++) {
          const want = roundTo(f(a[i]!, b[i]!), dtype);
          if (!Object.is(got[i], want) && !(Number.isNaN(got[i]) && Number.isNaN(want))) {
            assert.fail(`${dtype} ${name}(${a[i]}, ${b[i]}): got ${got[i]}, want ${want}`);
          }
        }
        y.dispose();
      }
      const unaries: [string, (x: Tensor) => Tensor, (x: number) => number][] = [
        ['exp', exp, Math.exp], ['sqrt', sqrt, Math.sqrt], ['tanh', tanh, Math.tanh],
        ['gelu', gelu, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))],
      ];
      for (const [name, op, f] of unaries) {
        const y = op(ta);
        const got = y.toArraySync();
        for (let i = 0; i < a.length; i++) {
          const want = roundTo(f(a[i]!), dtype);
          if (!Object.is(got[i], want) && !(Number.isNaN(got[i]) && Number.isNaN(want))) {
            assert.fail(`${dtype} ${name}(${a[i]}): got ${got[i]}, want ${want}`);
          }
        }
        y.dispose();
      }
      ta.dispose();
      tb.dispose();
    });
  }

  it('float16 add rounds to nearest even at a tie (1 + 2^-11 -> 1, 1 + 3*2^-11 -> 1 + 2^-9)', () => {
    const a = tensor([1, 1 + 2 ** -10], { dtype: 'float16' }), b = tensor([2 ** -11, 2 ** -11], { dtype: 'float16' });
    const y = add(a, b);
    assert.deepEqual([...y.toArraySync()], [1, 1 + 2 ** -9]);
    assert.deepEqual([...y.backend.readSync!(y.storageView)].map((v) => toFloat16Bits(v)), [0x3c00, 0x3c02]);
    for (const t of [a, b, y]) t.dispose();
  });

  it('float16 overflow gives inf, underflow gives signed zero', () => {
    const a = tensor([60000, -1e-4], { dtype: 'float16' }), b = tensor([2, 1e-4], { dtype: 'float16' });
    const y = mul(a, b);
    const v = y.toArraySync();
    assert.equal(v[0], Infinity);
    assert.ok(Object.is(v[1], -0));
    for (const t of [a, b, y]) t.dispose();
  });
});

function fromBits16(bits: number, dtype: DType): number {
  const f = new Float32Array(new Uint32Array([dtype === 'bfloat16' ? bits << 16 : 0]).buffer)[0]!;
  if (dtype === 'bfloat16') return f;
  const s = bits & 0x8000 ? -1 : 1, e = (bits >>> 10) & 0x1f, m = bits & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? NaN : s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('errors', () => {
  it('a shape mismatch names both shapes', () => {
    const a = tensor([[1, 2, 3], [4, 5, 6]]), b = tensor([1, 2, 3, 4]);
    assert.throws(() => add(a, b), (e: Error) => e instanceof ShapeError && /\[2, 3\]/.test(e.message) && /\[4\]/.test(e.message) && /add/.test(e.message));
    assert.throws(() => where(tensor([1, 0]), a, a), (e: Error) => e instanceof ShapeError && /where/.test(e.message));
    a.dispose();
    b.dispose();
  });

  it('an integer tensor where a float is needed is a DTypeError naming the op and the tensor', () => {
    const i = tensor(new Int32Array([1, 2]));
    for (const op of [exp, log, sqrt, tanh, relu, gelu, sigmoid]) {
      assert.throws(() => op(i), (e: Error) => e instanceof DTypeError && /integer tensor \[2\] int32/.test(e.message));
    }
    assert.throws(() => i.requiresGrad_(), (e: Error) => e instanceof DTypeError && /integer tensor/.test(e.message));
    i.dispose();
  });

  it('ops on numbers only are refused', () => {
    assert.throws(() => add(1, 2), DTypeError);
    assert.throws(() => maximum(1, 2), DTypeError);
  });
});

describe('memory', () => {
  it('ops and their backward free every intermediate when their results are disposed (outside tidy)', () => {
    const a = randLeaf([2, 3], 1), b = randLeaf([3], 2), cond = tensor([1, 0, 1]);
    const before = memory();
    const outs = [add(a, b), div(2, a), maximum(a, 0.5), where(cond, a, b), minimum(1, b), sub(a, 1), exp(a), abs(a)];
    const sums = outs.map((t) => sum(t));
    let total = sums[0]!;
    const partials: Tensor[] = [];
    for (const s of sums.slice(1)) { total = add(total, s); partials.push(total); }
    total.backward();
    for (const t of [a, b]) { t.grad!.dispose(); t.grad = null; }
    for (const t of [...outs, ...sums, ...partials]) t.dispose();
    const after = memory();
    assert.equal(after.tensors, before.tensors);
    assert.equal(after.buffers, before.buffers);
    assert.equal(after.bytes, before.bytes);
    for (const t of [a, b, cond]) t.dispose();
  });
});
