import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { view, type MatmulSpec, type View } from '../../../src/backend/backend.js';
import { buf, cpu } from '../../helpers/cpu-views.js';
import { gelu } from '../../../src/backend/cpu/elementwise.js';
import { Generator } from '../../../src/backend/random.js';
import { roundTo } from '../../../src/dtype/codec.js';
import type { DType } from '../../../src/dtype/dtype.js';

function values(n: number, seed: number, dtype: DType = 'float64'): number[] {
  return Array.from(new Generator(seed).normal(n), (x) => roundTo(x, dtype));
}

/** C[b] = op(A[b]) @ op(B[b]) (+ bias, gelu, accumulate), one element at a time. */
function naive(a: number[], b: number[], c0: number[] | null, s: MatmulSpec, bias: number[] | null): { c: number[]; pre: number[] } {
  const c: number[] = [], pre: number[] = [];
  for (let p = 0; p < s.batch; p++) {
    for (let i = 0; i < s.m; i++) for (let j = 0; j < s.n; j++) {
      let acc = 0;
      for (let q = 0; q < s.k; q++) {
        const av = a[p * s.strideA + (s.transA ? q * s.m + i : i * s.k + q)]!;
        const bv = b[p * s.strideB + (s.transB ? j * s.k + q : q * s.n + j)]!;
        acc += av * bv;
      }
      if (bias) acc += bias[j]!;
      pre.push(acc);
      let v = s.gelu ? gelu(acc) : acc;
      if (c0) v += c0[c.length]!;
      c.push(v);
    }
  }
  return { c, pre };
}

function close(got: ArrayLike<number>, want: number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= tol * (1 + Math.abs(want[i]!)))) assert.fail(`${what} at ${i}: ${got[i]} vs ${want[i]}`);
  }
}

describe('cpu matmul kernel against a naive loop', () => {
  const shapes: [number, number, number, number][] = [[1, 1, 1, 1], [1, 5, 7, 3], [3, 4, 4, 4], [2, 9, 6, 13], [2, 1, 8, 1]];
  for (const [batch, m, n, k] of shapes) {
    for (const transA of [false, true]) for (const transB of [false, true]) for (const [shareA, shareB] of [[false, false], [true, false], [false, true]]) {
      it(`batch ${batch}, ${m}x${k} @ ${k}x${n}, transA ${transA}, transB ${transB}, batch stride 0 for ${shareA ? 'A' : shareB ? 'B' : 'neither'}`, () => {
        const spec: MatmulSpec = {
          batch, m, n, k, transA, transB, strideA: shareA ? 0 : m * k, strideB: shareB ? 0 : k * n,
        };
        const a = values((shareA ? 1 : batch) * m * k, 1), b = values((shareB ? 1 : batch) * k * n, 2);
        const out = view(cpu.alloc('float64', batch * m * n));
        cpu.matmul(buf('float64', a), buf('float64', b), out, spec);
        close(cpu.readSync(out), naive(a, b, null, spec, null).c, 1e-13, 'C');
      });
    }
  }

  it('bias, GELU epilogue and preGelu', () => {
    const spec: MatmulSpec = { batch: 2, m: 3, n: 5, k: 4, transA: false, transB: true, strideA: 12, strideB: 0 };
    const a = values(24, 3), b = values(20, 4), bias = values(5, 5);
    const out = view(cpu.alloc('float64', 30)), pre = view(cpu.alloc('float64', 30));
    cpu.matmul(buf('float64', a), buf('float64', b), out, { ...spec, bias: buf('float64', bias), gelu: true, preGelu: pre });
    const want = naive(a, b, null, { ...spec, gelu: true }, bias);
    close(cpu.readSync(out), want.c, 1e-13, 'C');
    close(cpu.readSync(pre), want.pre, 1e-13, 'preGelu');
  });

  it('accumulate adds to what C holds', () => {
    const spec: MatmulSpec = { batch: 2, m: 3, n: 2, k: 5, transA: true, transB: false, strideA: 15, strideB: 10, accumulate: true };
    const a = values(30, 6), b = values(20, 7), c0 = values(12, 8);
    const out = buf('float64', c0);
    cpu.matmul(buf('float64', a), buf('float64', b), out, spec);
    close(cpu.readSync(out), naive(a, b, c0, spec, null).c, 1e-13, 'C += AB');
  });

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype} operands: products accumulate wide and the result is rounded once`, () => {
      const spec: MatmulSpec = { batch: 1, m: 6, n: 7, k: 33, transA: false, transB: false, strideA: 0, strideB: 0 };
      const a = values(6 * 33, 9, dtype), b = values(33 * 7, 10, dtype);
      const out = view(cpu.alloc(dtype, 42));
      cpu.matmul(buf(dtype, a), buf(dtype, b), out, spec);
      const want = naive(a, b, null, spec, null).c.map((v) => roundTo(v, dtype));
      assert.deepEqual([...cpu.readSync(out)], want);
      // Accumulating into a 16-bit C rounds the sum once as well.
      const c0 = values(42, 11, dtype);
      const acc = buf(dtype, c0);
      cpu.matmul(buf(dtype, a), buf(dtype, b), acc, { ...spec, accumulate: true });
      assert.deepEqual([...cpu.readSync(acc)], naive(a, b, c0, spec, null).c.map((v) => roundTo(v, dtype)));
    });
  }

  it('mixed dtypes: float16 A, float32 B, float32 C', () => {
    const spec: MatmulSpec = { batch: 1, m: 2, n: 3, k: 4, transA: false, transB: false, strideA: 0, strideB: 0 };
    const a = values(8, 12, 'float16'), b = values(12, 13, 'float32');
    const out = view(cpu.alloc('float32', 6));
    cpu.matmul(buf('float16', a), buf('float32', b), out, spec);
    assert.deepEqual([...cpu.readSync(out)], naive(a, b, null, spec, null).c.map(Math.fround));
  });

  it('views with offsets read and write only their own elements', () => {
    const spec: MatmulSpec = { batch: 1, m: 2, n: 2, k: 2, transA: false, transB: false, strideA: 0, strideB: 0 };
    const big = view(cpu.alloc('float64', 12));
    cpu.write(big, [9, 9, 1, 2, 3, 4, 1, 0, 0, 1, 9, 9]);
    const a = view(big.buf, 2, 4), b = view(big.buf, 6, 4);
    const out = view(cpu.alloc('float64', 8));
    cpu.fill(out, -1);
    cpu.matmul(a, b, view(out.buf, 2, 4), spec);
    assert.deepEqual([...cpu.readSync(out)], [-1, -1, 1, 2, 3, 4, -1, -1]);
  });
});

describe('cpu reference precision', () => {
  it('matmul and sum accumulate in float64 and round once: 2^24 + 1 + 1 is 2^24 + 2, not float32 order-dependent 2^24', () => {
    const terms = [2 ** 24, 1, 1];
    const spec: MatmulSpec = { batch: 1, m: 1, n: 1, k: 3, transA: false, transB: false, strideA: 0, strideB: 0 };
    const c = view(cpu.alloc('float32', 1));
    cpu.matmul(buf('float32', terms), buf('float32', [1, 1, 1]), c, spec);
    assert.equal(cpu.readSync(c)[0], 2 ** 24 + 2);
    const s = view(cpu.alloc('float32', 1));
    cpu.reduce('sum', buf('float32', terms), s, 1, 3, 1);
    assert.equal(cpu.readSync(s)[0], 2 ** 24 + 2);
  });
});
