// Weight-only quantization (dtype/quant.ts) and the CPU reference product with a
// quantized matrix, against a product computed here from the dequantized values.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { view, type QuantizedMatmulSpec } from '../../../src/backend/backend.js';
import { Generator } from '../../../src/backend/random.js';
import { gelu } from '../../../src/backend/cpu/elementwise.js';
import {
  QuantizeError, dequantizeMatrix, quantAt, quantLayout, quantizeMatrix, type QuantFormat,
} from '../../../src/dtype/quant.js';
import { quantizedMatmul as composedQuantizedMatmul } from '../../../src/tensor/composed/quantized.js';
import { buf, cpu, read } from '../../helpers/cpu-views.js';

const normal = (n: number, seed: number) => Array.from(new Generator(seed).normal(n));

const CASES: [QuantFormat, number | undefined][] = [['int8', undefined], ['int8', 16], ['int4', 32], ['int4', 64]];

describe('quantizeMatrix', () => {
  for (const [format, groupSize] of CASES) {
    it(`${format}, group ${groupSize ?? 'row'}: every value within half a step of its scale, absmax exact`, () => {
      const n = 5, k = 128;
      const w = normal(n * k, 1);
      const l = quantLayout(format, n, k, groupSize, 'w');
      const { words, scales } = quantizeMatrix(w, l);
      const back = dequantizeMatrix(words, scales, l);
      const qmax = format === 'int8' ? 127 : 7;
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < k; c++) {
          const s = scales[r * (k / l.groupSize) + Math.floor(c / l.groupSize)]!;
          assert.ok(Math.abs(back[r * k + c]! - w[r * k + c]!) <= s / 2 + 1e-7, `(${r}, ${c})`);
          assert.ok(Math.abs(quantAt(words, l, r, c)) <= qmax);
        }
      }
      // The largest magnitude of each group maps to +-qmax.
      const g0 = w.slice(0, l.groupSize).map(Math.abs);
      const at = g0.indexOf(Math.max(...g0));
      assert.equal(Math.abs(quantAt(words, l, 0, at)), qmax);
    });
  }

  it('refuses bad formats, group sizes and values, naming them', () => {
    assert.throws(() => quantLayout('int3', 2, 64, undefined, 'h.0.w'), (e: Error) => e instanceof QuantizeError && /h\.0\.w.*int3/.test(e.message));
    assert.throws(() => quantLayout('int4', 2, 64, 16, 'w'), /group size must be 32 or 64, got 16/);
    assert.throws(() => quantLayout('int8', 2, 30, undefined, 'w'), /group size 30 must divide the 30 inputs and be a multiple of 4/);
    assert.throws(() => quantizeMatrix([1, NaN, 0, 0], quantLayout('int8', 1, 4, undefined, 'w')), /NaN at row 0, input 1/);
  });
});

describe('cpu quantizedMatmul', () => {
  for (const [format, groupSize] of CASES) {
    for (const epilogue of [false, true]) {
      it(`${format}, group ${groupSize ?? 'row'}${epilogue ? ', bias and GELU' : ''}: x @ dequantize(W)^T`, () => {
        const m = 3, n = 6, k = 64;
        const l = quantLayout(format, n, k, groupSize, 'w');
        const { words, scales } = quantizeMatrix(normal(n * k, 2), l);
        const x = normal(m * k, 3), bias = normal(n, 4);
        const wf = dequantizeMatrix(words, scales, l);
        const spec: QuantizedMatmulSpec = { ...l, m, bias: epilogue ? buf('float32', bias) : undefined, gelu: epilogue };
        const out = buf('float32', new Array(m * n).fill(0));
        const qv = view(cpu.alloc('int32', words.length));
        cpu.writeRaw(qv, words);
        cpu.quantizedMatmul(buf('float32', x), qv, buf('float32', scales), out, spec);
        const got = read(out);
        for (let r = 0; r < m; r++) {
          for (let j = 0; j < n; j++) {
            let v = 0;
            for (let i = 0; i < k; i++) v += x[r * k + i]! * wf[j * k + i]!;
            if (epilogue) v = gelu(v + bias[j]!);
            assert.ok(Math.abs(got[r * n + j]! - v) <= 1e-5 * (1 + Math.abs(v)), `(${r}, ${j}): ${got[r * n + j]} vs ${v}`);
          }
        }
        // The composition (dequantize, then matmul) gives the same values.
        const composed = buf('float32', new Array(m * n).fill(0));
        composedQuantizedMatmul(cpu, buf('float32', x), qv, buf('float32', scales), composed, spec);
        read(composed).forEach((v, i) => assert.ok(Math.abs(v - got[i]!) <= 1e-5 * (1 + Math.abs(v)), `composed [${i}]`));
      });
    }
  }
});
