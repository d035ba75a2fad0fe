import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IndexOutOfRangeError, view, type HeadLayout, type View } from '../../../src/backend/backend.js';
import { buf, cpu, read } from '../../helpers/cpu-views.js';
import type { DType } from '../../../src/dtype/dtype.js';

const I = Infinity;

describe('cpu softmax', () => {
  it('a fully masked row gives NaN (as PyTorch), a partly masked row puts 0 on masked entries', () => {
    const x = buf('float32', [-I, -I, -I, 0, -I, 0, 1000, 1000, 1000]);
    const out = view(cpu.alloc('float32', 9));
    cpu.softmax(x, out, 3, 3, false);
    const v = read(out);
    assert.ok(v.slice(0, 3).every(Number.isNaN));
    assert.deepEqual(v.slice(3, 6), [0.5, 0, 0.5]);
    assert.deepEqual(v.slice(6), [1 / 3, 1 / 3, 1 / 3].map(Math.fround), 'large inputs do not overflow');
    cpu.softmax(x, out, 3, 3, true);
    const l = read(out);
    assert.ok(l.slice(0, 3).every(Number.isNaN));
    assert.deepEqual(l.slice(3, 6), [Math.fround(-Math.LN2), -I, Math.fround(-Math.LN2)]);
  });

  it('softmaxBackward: y * (gy - sum(gy * y)) and, for log, gy - exp(y) * sum(gy)', () => {
    const y = buf('float64', [0.2, 0.3, 0.5]), gy = buf('float64', [1, -2, 0.5]);
    const out = view(cpu.alloc('float64', 3));
    cpu.softmaxBackward(y, gy, out, 1, 3, false);
    const dot = 0.2 - 0.6 + 0.25;
    read(out).forEach((v, i) => assert.ok(Math.abs(v - [0.2, 0.3, 0.5][i]! * ([1, -2, 0.5][i]! - dot)) < 1e-15));
    const ly = buf('float64', [0.2, 0.3, 0.5].map(Math.log));
    cpu.softmaxBackward(ly, gy, out, 1, 3, true);
    read(out).forEach((v, i) => assert.ok(Math.abs(v - ([1, -2, 0.5][i]! - [0.2, 0.3, 0.5][i]! * -0.5)) < 1e-15));
  });
});

describe('cpu layerNorm', () => {
  it('stores mean and rstd and normalises; a constant row gives zeros (eps keeps rstd finite)', () => {
    const x = buf('float32', [1, 2, 3, 4, 5, 5, 5, 5]);
    const out = view(cpu.alloc('float32', 8)), mean = view(cpu.alloc('float32', 2)), rstd = view(cpu.alloc('float32', 2));
    cpu.layerNorm(x, null, null, out, mean, rstd, 2, 4, 1e-5);
    assert.deepEqual(read(mean), [2.5, 5]);
    assert.equal(read(rstd)[0], Math.fround(1 / Math.sqrt(1.25 + 1e-5)));
    assert.equal(read(rstd)[1], Math.fround(1 / Math.sqrt(1e-5)));
    assert.deepEqual(read(out).slice(4), [0, 0, 0, 0]);
  });
});

describe('cpu embedding kernels', () => {
  it('gather picks rows; scatterAdd accumulates repeated ids into what the output holds', () => {
    const table = buf('float32', [1, 2, 3, 4, 5, 6]);
    const ids = buf('int32', [2, 0, 2]);
    const out = view(cpu.alloc('float32', 6));
    cpu.gather(table, ids, out, 3, 2);
    assert.deepEqual(read(out), [5, 6, 1, 2, 5, 6]);
    const acc = buf('float32', [100, 100, 100, 100, 100, 100]);
    cpu.scatterAdd(buf('float32', [1, 2, 3, 4, 5, 6]), ids, acc, 3, 2);
    assert.deepEqual(read(acc), [103, 104, 100, 100, 106, 108]);
  });
});

describe('cpu index range checks', () => {
  const outOfRange = (what: string, position: number, value: number) => (e: unknown) =>
    e instanceof IndexOutOfRangeError && e.what === what && e.position === position && e.value === value
    && e.message.includes(`${what} ${value} at position ${position}`);

  it('gather and scatterAdd raise IndexOutOfRangeError for the first id outside the table, naming position and value', () => {
    const table = buf('float32', [1, 2, 3, 4, 5, 6]);
    const out = view(cpu.alloc('float32', 8));
    for (const [ids, position, value] of [[[0, 2, 3, -1], 2, 3], [[1, -1, 0, 7], 1, -1], [[0, 1, 2, 99], 3, 99]] as const) {
      assert.throws(() => cpu.gather(table, buf('int32', [...ids]), out, 4, 2), outOfRange('token id', position, value));
      assert.throws(() => cpu.scatterAdd(out, buf('int32', [...ids]), table, 4, 2), outOfRange('token id', position, value));
    }
    assert.deepEqual(read(table), [1, 2, 3, 4, 5, 6], 'nothing was added before the error');
  });

  it('crossEntropy raises for a target outside the classes; the ignore index is allowed', () => {
    const logits = buf('float32', new Array(12).fill(0));
    const loss = view(cpu.alloc('float32', 1)), lse = view(cpu.alloc('float32', 4)), count = view(cpu.alloc('float32', 1));
    assert.throws(() => cpu.crossEntropy(logits, buf('int32', [0, -100, 400, 3]), loss, lse, count, 4, 3, -100), outOfRange('target', 2, 400));
    assert.throws(() => cpu.crossEntropy(logits, buf('int32', [0, -1, 2, 1]), loss, lse, count, 4, 3, -100), outOfRange('target', 1, -1));
    assert.throws(() => cpu.crossEntropy(logits, buf('int32', [0, 1, 2, -100]), loss, lse, count, 4, 3, 5), outOfRange('target', 3, -100));
    cpu.crossEntropy(logits, buf('int32', [0, 5, 2, 1]), loss, lse, count, 4, 3, 5);
    assert.deepEqual(read(count), [3]);
  });
});

describe('cpu crossEntropy', () => {
  it('mean over counted rows, lse per row, count; backward zero on ignored rows', () => {
    const logits = buf('float64', [0, 0, 0, 1, 2, 3, 5, 5, 5]);
    const targets = buf('int32', [1, -100, 2]);
    const loss = view(cpu.alloc('float64', 1)), lse = view(cpu.alloc('float64', 3)), count = view(cpu.alloc('float32', 1));
    cpu.crossEntropy(logits, targets, loss, lse, count, 3, 3, -100);
    assert.deepEqual(read(count), [2]);
    assert.ok(Math.abs(read(loss)[0]! - Math.log(3)) < 1e-15, 'both counted rows are uniform: log 3');
    assert.ok(Math.abs(read(lse)[1]! - (3 + Math.log(1 + Math.exp(-1) + Math.exp(-2)))) < 1e-15);
    const g = view(cpu.alloc('float64', 9));
    cpu.crossEntropyBackward(logits, targets, lse, count, buf('float64', [2]), g, 3, 3, -100);
    const v = read(g);
    // Row 0: (1/3 - onehot) * 2 / 2.
    [1 / 3, -2 / 3, 1 / 3].forEach((w, i) => assert.ok(Math.abs(v[i]! - w) < 1e-15));
    assert.deepEqual(v.slice(3, 6), [0, 0, 0]);
  });
});

describe('cpu attention', () => {
  it('with one key the output is that value; causal rows with T < S see S - T + i keys', () => {
    const lay = (t: number, d: number): HeadLayout => ({ offset: 0, sB: t * d, sH: t * d, sT: d });
    // q: 1 query; k, v: 1 key.
    const q = buf('float64', [0.3, -0.2]), k = buf('float64', [1, 2]), v = buf('float64', [7, -8]);
    const o = view(cpu.alloc('float64', 2)), lse = view(cpu.alloc('float64', 1));
    cpu.attention(q, lay(1, 2), k, lay(1, 2), v, lay(1, 2), o, lay(1, 2), lse, { batch: 1, heads: 1, tq: 1, tk: 1, headDim: 2, scale: 0.5, causal: true });
    assert.deepEqual(read(o), [7, -8]);
    assert.ok(Math.abs(read(lse)[0]! - 0.5 * (0.3 - 0.4)) < 1e-15);
    // T=2, S=3, causal, all scores equal: row 0 averages v0..v1, row 1 averages v0..v2.
    const q2 = buf('float64', [0, 0, 0, 0]), k2 = buf('float64', [1, 1, 1, 1, 1, 1]), v2 = buf('float64', [3, 0, 6, 0, 9, 0]);
    const o2 = view(cpu.alloc('float64', 4)), lse2 = view(cpu.alloc('float64', 2));
    cpu.attention(q2, lay(2, 2), k2, lay(3, 2), v2, lay(3, 2), o2, lay(2, 2), lse2, { batch: 1, heads: 1, tq: 2, tk: 3, headDim: 2, scale: 1, causal: true });
    assert.deepEqual(read(o2), [4.5, 0, 6, 0]);
    assert.deepEqual(read(lse2), [Math.log(2), Math.log(3)]);
  });
});
