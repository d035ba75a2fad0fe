import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DTypeError, ShapeError, Tensor, addmm, linear, matmul, memory, sum, tensor } from '../../../src/index.js';
import { roundTo } from '../../../src/dtype/codec.js';
import { checkAndDispose, host, randLeaf } from '../../helpers/gradcheck.js';

/** Naive batched product of row-major [batch, m, k] and [batch, k, n] arrays (batch stride 0 where the batch is 1). */
function naiveMatmul(a: ArrayLike<number>, b: ArrayLike<number>, batch: number, m: number, k: number, n: number, shareA = false, shareB = false): number[] {
  const out: number[] = [];
  for (let p = 0; p < batch; p++) {
    const ao = shareA ? 0 : p * m * k, bo = shareB ? 0 : p * k * n;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < k; q++) s += a[ao + i * k + q]! * b[bo + q * n + j]!;
      out.push(s);
    }
  }
  return out;
}

const GELU = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

describe('matmul gradients (float64 finite differences)', () => {
  it('2-D, with sizes that are not multiples of the 4x4 block', () => {
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([5, 3], 1), randLeaf([3, 6], 2)], '[5,3] @ [3,6]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([1, 1], 3), randLeaf([1, 2], 4)], '[1,1] @ [1,2]');
  });

  it('batched: [2,3,4,5] @ [5,6] and [2,1,4,5] @ [3,5,2] (broadcast batch dims)', () => {
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([2, 3, 4, 5], 11), randLeaf([5, 6], 12)], '[2,3,4,5] @ [5,6]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([2, 1, 4, 5], 13), randLeaf([3, 5, 2], 14)], '[2,1,4,5] @ [3,5,2]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([3, 2], 15), randLeaf([2, 2, 3], 16)], '[3,2] @ [2,2,3]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([2, 3, 4], 17), randLeaf([2, 4, 2], 18)], '[2,3,4] @ [2,4,2]');
  });

  it('1-D operands: vector @ matrix, matrix @ vector, vector @ vector, vector @ batch', () => {
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([4], 21), randLeaf([4, 3], 22)], '[4] @ [4,3]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([3, 4], 23), randLeaf([4], 24)], '[3,4] @ [4]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([4], 25), randLeaf([4], 26)], '[4] @ [4]');
    checkAndDispose((a, b) => matmul(a, b), [randLeaf([4], 27), randLeaf([2, 4, 3], 28)], '[4] @ [2,4,3]');
  });

  it('one operand constant', () => {
    const w = randLeaf([3, 2], 31, { grad: false });
    checkAndDispose((a) => matmul(a, w), [randLeaf([2, 4, 3], 32)], 'x @ const');
    checkAndDispose((b) => matmul(w.T, b), [randLeaf([3, 5], 33)], 'const @ x');
    w.dispose();
  });
});

describe('linear / addmm gradients (float64 finite differences)', () => {
  it('linear with and without bias, weight [in, out] and [out, in]', () => {
    checkAndDispose((x, w, b) => linear(x, w, b, { weightLayout: 'in,out' }), [randLeaf([5, 3], 41), randLeaf([3, 4], 42), randLeaf([4], 43)], 'linear [in, out] + bias');
    checkAndDispose((x, w) => linear(x, w, null, { weightLayout: 'in,out' }), [randLeaf([2, 3, 3], 44), randLeaf([3, 4], 45)], 'linear [in, out], 3-D input, no bias');
    checkAndDispose((x, w, b) => linear(x, w, b), [randLeaf([5, 3], 46), randLeaf([4, 3], 47), randLeaf([4], 48)], 'linear [out, in]');
  });

  it('the fused GELU epilogue', () => {
    checkAndDispose((x, w, b) => linear(x, w, b, { weightLayout: 'in,out', gelu: true }), [randLeaf([2, 3, 3], 51), randLeaf([3, 6], 52), randLeaf([6], 53)], 'linear [in, out] + gelu');
    checkAndDispose((x, w) => linear(x, w, null, { gelu: true }), [randLeaf([4, 3], 54), randLeaf([5, 3], 55)], 'linear [out, in] + gelu, no bias');
    const w = randLeaf([3, 2], 56, { grad: false });
    checkAndDispose((x, b) => linear(x, w, b, { weightLayout: 'in,out', gelu: true }), [randLeaf([4, 3], 57), randLeaf([2], 58)], 'linear + gelu, constant weight');
    w.dispose();
  });

  it('linear (PyTorch F.linear) and addmm (torch.addmm)', () => {
    checkAndDispose((x, w, b) => linear(x, w, b), [randLeaf([3, 4], 61), randLeaf([2, 4], 62), randLeaf([2], 63)], 'linear');
    checkAndDispose((b, x, w) => addmm(b, x, w), [randLeaf([2], 64), randLeaf([3, 4], 65), randLeaf([4, 2], 66)], 'addmm');
  });
});

describe('matmul and linear values', () => {
  it('batched broadcast matmul matches a naive loop', () => {
    const a = randLeaf([2, 1, 4, 5], 71, { grad: false }), b = randLeaf([3, 5, 2], 72, { grad: false });
    const y = matmul(a, b);
    assert.deepEqual(y.shape, [2, 3, 4, 2]);
    const av = host(a), bv = host(b), got = host(y);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) {
      const want = naiveMatmul(av.subarray(i * 20, i * 20 + 20), bv.subarray(j * 10, j * 10 + 10), 1, 4, 5, 2);
      const off = (i * 3 + j) * 8;
      want.forEach((v, q) => assert.ok(Math.abs(got[off + q]! - v) < 1e-12));
    }
    for (const t of [a, b, y]) t.dispose();
  });

  it('1-D results drop the added dimension', () => {
    const v = tensor([1, 2, 3]), m = tensor([[1, 0], [0, 1], [1, 1]]);
    const vm = matmul(v, m), mv = matmul(m.T, v), vv = matmul(v, v);
    assert.deepEqual([vm.shape, mv.shape, vv.shape], [[2], [2], []]);
    assert.deepEqual([...vm.toArraySync(), ...mv.toArraySync(), ...vv.toArraySync()], [4, 5, 4, 5, 14]);
    for (const t of [v, m, vm, mv, vv]) t.dispose();
  });

  it('linear with bias and GELU equals gelu(x @ w + b)', () => {
    const x = randLeaf([3, 4], 73, { grad: false }), w = randLeaf([4, 5], 74, { grad: false }), b = randLeaf([5], 75, { grad: false });
    const y = linear(x, w, b, { weightLayout: 'in,out', gelu: true });
    const want = naiveMatmul(host(x), host(w), 1, 3, 4, 5).map((v, i) => GELU(v + host(b)[i % 5]!));
    host(y).forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-12));
    for (const t of [x, w, b, y]) t.dispose();
  });

  it('float16 matmul accumulates in float32 or better and rounds once', () => {
    // 1 + 2^-11 * 64: a float16 running sum would never leave 1 (each 2^-11 step ties back to even).
    const k = 65;
    const a = tensor([1, ...new Array(k - 1).fill(2 ** -11)], { dtype: 'float16', shape: [1, k] });
    const b = tensor(new Array(k).fill(1), { dtype: 'float16', shape: [k, 1] });
    const y = matmul(a, b);
    assert.equal(y.dtype, 'float16');
    assert.equal(y.toArraySync()[0], 1 + 64 * 2 ** -11);
    // Random operands: exactly roundTo(exact dot product).
    const p = randLeaf([6, 7], 76, { grad: false }), q = randLeaf([7, 5], 77, { grad: false });
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const p16 = p.to(dtype), q16 = q.to(dtype);
      const z = matmul(p16, q16);
      const want = naiveMatmul(host(p16), host(q16), 1, 6, 7, 5).map((v) => roundTo(v, dtype));
      assert.deepEqual([...host(z)], want, dtype);
      for (const t of [p16, q16, z]) t.dispose();
    }
    for (const t of [a, b, y, p, q]) t.dispose();
  });
});

describe('errors', () => {
  it('shape mismatches name both shapes', () => {
    const a = tensor([[1, 2, 3]]), b = tensor([[1, 2]]);
    assert.throws(() => matmul(a, b), (e: Error) => e instanceof ShapeError && /\[1, 3\]/.test(e.message) && /\[1, 2\]/.test(e.message));
    assert.throws(() => linear(a, b, null, { weightLayout: 'in,out' }), (e: Error) => e instanceof ShapeError && /\[1, 3\]/.test(e.message) && /\[1, 2\]/.test(e.message));
    assert.throws(() => linear(b, b.T, tensor([1, 2, 3]), { weightLayout: 'in,out' }), /bias \[3\] does not fit 1 outputs/);
    assert.throws(() => matmul(tensor(1), a), /at least one dimension/);
    const c = tensor(new Array(8).fill(0), { shape: [2, 2, 2] }), d = tensor(new Array(12).fill(0), { shape: [3, 2, 2] });
    assert.throws(() => matmul(c, d), (e: Error) => e instanceof ShapeError && /\[2\] and \[3\]/.test(e.message));
    for (const t of [a, b, c, d]) t.dispose();
  });

  it('integer operands are DTypeErrors', () => {
    const i = tensor(new Int32Array([1, 2, 3, 4]), { shape: [2, 2] }), f = tensor([[1, 2], [3, 4]]);
    assert.throws(() => matmul(i, f), DTypeError);
    assert.throws(() => linear(f, i, null, { weightLayout: 'in,out' }), DTypeError);
    i.dispose();
    f.dispose();
  });
});

describe('memory', () => {
  it('matmul and linear free their intermediates (1-D reshapes, broadcast expands) outside tidy', () => {
    const cases: [number[], number[]][] = [[[4], [4, 3]], [[3, 4], [4]], [[2, 1, 4, 5], [3, 5, 2]], [[2, 3], [3, 2]]];
    for (const [sa, sb] of cases) {
      const a = randLeaf(sa, 81), b = randLeaf(sb, 82);
      const before = memory();
      const y = matmul(a, b);
      const s = sum(y);
      s.backward();
      for (const t of [a, b]) { t.grad!.dispose(); t.grad = null; }
      s.dispose();
      y.dispose();
      const after = memory();
      assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes], `${sa} @ ${sb}`);
      a.dispose();
      b.dispose();
    }
    const x = randLeaf([2, 3], 83), w = randLeaf([3, 4], 84), bias = randLeaf([4], 85);
    const before = memory();
    const y = linear(x, w, bias, { weightLayout: 'in,out', gelu: true });
    const s = sum(y);
    s.backward();
    for (const t of [x, w, bias]) { t.grad!.dispose(); t.grad = null; }
    s.dispose();
    y.dispose();
    const after = memory();
    assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes], 'linear');
    for (const t of [x, w, bias]) t.dispose();
  });
});
