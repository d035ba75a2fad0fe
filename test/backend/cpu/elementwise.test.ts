import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contiguous, view, type View } from '../../../src/backend/backend.js';
import { CpuBackend } from '../../../src/backend/cpu/backend.js';
import { buf, cpu, read } from '../../helpers/cpu-views.js';
import { counterOf } from '../../helpers/random.js';
import { geluGrad, gelu } from '../../../src/backend/cpu/elementwise.js';
import { collapse } from '../../../src/backend/cpu/strided.js';
import { bitsToUniform, randomBits, streamKey } from '../../../src/backend/random.js';
import { roundTo } from '../../../src/dtype/codec.js';
import type { DType } from '../../../src/dtype/dtype.js';


describe('cpu reduce', () => {
  it('reduces the middle axis of [outer, r, inner]', () => {
    // [2, 3, 2]: x[a][k][i] = 6a + 2k + i
    const x = buf('float32', Array.from({ length: 12 }, (_, i) => i));
    const out = view(cpu.alloc('float32', 4));
    cpu.reduce('sum', x, out, 2, 3, 2);
    assert.deepEqual(read(out), [0 + 2 + 4, 1 + 3 + 5, 6 + 8 + 10, 7 + 9 + 11]);
    cpu.reduce('max', x, out, 2, 3, 2);
    assert.deepEqual(read(out), [4, 5, 10, 11]);
    cpu.reduce('min', x, out, 1, 12, 1);
    assert.deepEqual(read(view(out.buf, 0, 1)), [0]);
  });

  it('NaN anywhere in a slice makes sum, max and min NaN (wherever the NaN is)', () => {
    for (const pos of [0, 1, 2]) {
      const data = [1, 2, 3, 4, 5, 6];
      data[pos * 2] = NaN;
      const x = buf('float32', data);
      for (const op of ['sum', 'max', 'min'] as const) {
        const out = view(cpu.alloc('float32', 2));
        cpu.reduce(op, x, out, 1, 3, 2);
        const [a, b] = read(out);
        assert.ok(Number.isNaN(a), `${op} with NaN at row ${pos}`);
        assert.ok(!Number.isNaN(b));
      }
    }
  });

  it('max of -inf is -inf, sum of inf and -inf is NaN, an empty reduction is the identity', () => {
    const out = view(cpu.alloc('float32', 1));
    cpu.reduce('max', buf('float32', [-Infinity, -Infinity]), out, 1, 2, 1);
    assert.deepEqual(read(out), [-Infinity]);
    cpu.reduce('sum', buf('float32', [Infinity, -Infinity]), out, 1, 2, 1);
    assert.ok(Number.isNaN(read(out)[0]));
    cpu.reduce('sum', buf('float32', []), out, 1, 0, 1);
    assert.deepEqual(read(out), [0]);
  });

  it('16-bit sums accumulate wide and round once', () => {
    const x = buf('float16', new Array(3000).fill(1));
    const out = view(cpu.alloc('float16', 1));
    cpu.reduce('sum', x, out, 1, 3000, 1);
    assert.deepEqual(read(out), [3000]);
    const y = buf('bfloat16', [1, 2 ** -9, 2 ** -9, 2 ** -9, 2 ** -9]);
    const o2 = view(cpu.alloc('bfloat16', 1));
    cpu.reduce('sum', y, o2, 1, 5, 1);
    assert.deepEqual(read(o2), [roundTo(1 + 4 * 2 ** -9, 'bfloat16')]);
    assert.equal(read(o2)[0], 1 + 2 ** -7);
  });
});

describe('cpu binary, where and copy with strides', () => {
  it('broadcasts with stride-0 operands', () => {
    const a = buf('float32', [1, 2, 3]), b = buf('float32', [10, 20]);
    const out = view(cpu.alloc('float32', 6));
    // [2, 3]: a broadcast over rows, b over columns.
    cpu.binary('add', { view: a, offset: 0, strides: [0, 1] }, { view: b, offset: 0, strides: [1, 0] }, out, [2, 3]);
    assert.deepEqual(read(out), [11, 12, 13, 21, 22, 23]);
    cpu.binary('maximum', { view: a, offset: 0, strides: [0, 1] }, { view: buf('float32', [2, NaN]), offset: 0, strides: [1, 0] }, out, [2, 3]);
    const v = read(out);
    assert.deepEqual(v.slice(0, 3), [2, 2, 3]);
    assert.ok(v.slice(3).every(Number.isNaN));
  });

  it('backward helpers compute the documented formulas', () => {
    const x = buf('float64', [-1.5, 0, 0.7]), g = buf('float64', [2, 3, 4]);
    const out = view(cpu.alloc('float64', 3));
    const run = (op: 'relu_grad' | 'gelu_grad' | 'tanh_grad' | 'sigmoid_grad') => {
      cpu.binary(op, contiguous(x, [3]), contiguous(g, [3]), out, [3]);
      return read(out);
    };
    assert.deepEqual(run('relu_grad'), [0, 0, 4]);
    assert.deepEqual(run('gelu_grad'), [-1.5, 0, 0.7].map((v, i) => [2, 3, 4][i]! * geluGrad(v)));
    assert.deepEqual(run('tanh_grad'), [-1.5, 0, 0.7].map((y, i) => [2, 3, 4][i]! * (1 - y * y)));
    assert.deepEqual(run('sigmoid_grad'), [-1.5, 0, 0.7].map((y, i) => [2, 3, 4][i]! * y * (1 - y)));
    // gelu'(x) against a central difference of gelu.
    for (const v of [-3, -0.5, 0.2, 2.5]) assert.ok(Math.abs(geluGrad(v) - (gelu(v + 1e-6) - gelu(v - 1e-6)) / 2e-6) < 1e-8);
  });

  it('where selects by condition with broadcasting', () => {
    const c = buf('float32', [1, 0]), a = buf('float32', [1, 2, 3, 4]), b = buf('float32', [-1]);
    const out = view(cpu.alloc('float32', 4));
    cpu.where({ view: c, offset: 0, strides: [0, 1] }, contiguous(a, [2, 2]), { view: b, offset: 0, strides: [0, 0] }, out, [2, 2]);
    assert.deepEqual(read(out), [1, -1, 3, -1]);
  });

  it('copy into a strided destination keeps the elements it does not touch (also in float16)', () => {
    for (const dtype of ['float32', 'float16'] as const) {
      const dst = buf(dtype, [0, 0, 0, 0, 0, 0]);
      const src = buf(dtype, [7, 8, 9]);
      // Write src into column 1 of a [3, 2] destination.
      cpu.copy(contiguous(src, [3]), { view: dst, offset: 1, strides: [2] }, [3]);
      assert.deepEqual(read(dst), [0, 7, 0, 8, 0, 9], dtype);
    }
  });

  it('collapse merges contiguous dims and drops size-1 dims', () => {
    const c = collapse([2, 1, 3, 4], [{ offset: 0, strides: [12, 12, 4, 1] }, { offset: 0, strides: [0, 0, 4, 1] }]);
    assert.deepEqual(c.shape, [2, 12]);
    assert.deepEqual(c.strides, [[12, 1], [0, 1]]);
  });
});

describe('cpu unary, fill, cast, dropout and causalFill', () => {
  it('unary ops round once into 16-bit outputs; affine is x*a+b', () => {
    const x = buf('float32', [0.1, 1.3, 2.7]);
    const out = view(cpu.alloc('bfloat16', 3));
    cpu.unary('exp', x, out);
    assert.deepEqual(read(out), [0.1, 1.3, 2.7].map((v) => roundTo(Math.exp(Math.fround(v)), 'bfloat16')));
    cpu.unary('affine', x, out, 2, 1);
    assert.deepEqual(read(out), [0.1, 1.3, 2.7].map((v) => roundTo(Math.fround(v) * 2 + 1, 'bfloat16')));
    cpu.unary('pow', x, out, 2);
    assert.deepEqual(read(out), [0.1, 1.3, 2.7].map((v) => roundTo(Math.fround(v) ** 2, 'bfloat16')));
  });

  it('cast float32 -> float16 -> float32 rounds; int32 truncates on the way in', () => {
    const x = buf('float32', [65519, 65520, 1e-8, -0.1]);
    const h = view(cpu.alloc('float16', 4));
    cpu.cast(x, h);
    assert.deepEqual(read(h), [65504, Infinity, 0, roundTo(-0.1, 'float16')]);
    const f = view(cpu.alloc('float32', 4));
    cpu.cast(h, f);
    assert.deepEqual(read(f), read(h));
    assert.deepEqual([...cpu.readSync(buf('int32', [1.9, -1.9]))], [1, -1]);
  });

  it('raw reads and writes of 16-bit storage are bit patterns', async () => {
    const h = view(cpu.alloc('float16', 2));
    cpu.writeRaw(h, new Uint16Array([0x3c00, 0x7e00]));
    const v = read(h);
    assert.equal(v[0], 1);
    assert.ok(Number.isNaN(v[1]));
    assert.deepEqual([...(await cpu.readRaw(h))], [0x3c00, 0x7e00]);
  });

  it('dropout keeps element i when uniform(key, start + i) >= p and scales it', () => {
    const n = 1000, p = 0.4, key = streamKey(5), start = 77;
    const x = buf('float32', new Array(n).fill(2));
    const out = view(cpu.alloc('float32', n));
    cpu.dropout(x, out, p, key, start);
    read(out).forEach((v, i) => {
      const keep = bitsToUniform(randomBits(key, start + i)) >= p;
      assert.equal(v, keep ? Math.fround(2 / (1 - p)) : 0);
    });
  });

  it('dropout decides on the top 24 bits of the random word: keep <=> (bits24 + 0.5) / 2^24 >= p (p = 0.2)', () => {
    // 0.2 * 2^24 = 3355443.2: the words whose top 24 bits are 3355443 are kept ((3355443 + 0.5) / 2^24 > 0.2),
    // those at 3355442 dropped. A 23-bit rule would drop both.
    const key = streamKey(9), x = buf('float32', [1]), out = view(cpu.alloc('float32', 1));
    for (const [top, kept] of [[3355442, false], [3355443, true], [3355444, true]] as const) {
      for (const low of [0, 0xff]) {
        cpu.dropout(x, out, 0.2, key, counterOf(key, ((top << 8) | low) >>> 0));
        assert.equal(read(out)[0] !== 0, kept, `top 24 bits ${top}, low ${low}`);
      }
    }
  });

  it('causalFill fills s > t + (S - T) in each [T, S] block', () => {
    const x = buf('float32', new Array(2 * 2 * 4).fill(1));
    const out = view(cpu.alloc('float32', 16));
    cpu.causalFill(x, out, 2, 2, 4, -Infinity);
    const I = -Infinity;
    assert.deepEqual(read(out), [1, 1, 1, I, 1, 1, 1, 1, 1, 1, 1, I, 1, 1, 1, 1]);
  });
});

describe('cpu memory accounting', () => {
  it('counts buffers and bytes per dtype, frees once, and refuses a double free', () => {
    const b = new CpuBackend();
    const x = b.alloc('float16', 10), y = b.alloc('float64', 3);
    assert.deepEqual(b.memory(), { buffers: 2, bytes: 20 + 24, peakBytes: 44 });
    b.free(x);
    assert.deepEqual(b.memory(), { buffers: 1, bytes: 24, peakBytes: 44 });
    assert.throws(() => b.free(x), /freed twice/);
    b.free(y);
    assert.equal(b.memory().bytes, 0);
    assert.throws(() => b.alloc('float32', -1), /cannot allocate -1/);
    assert.throws(() => b.write(view(b.alloc('float32', 2)), [1]), /1 values into 2 elements/);
  });
});
