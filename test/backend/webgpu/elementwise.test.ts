// The generated elementwise kernels of the WebGPU backend against the CPU
// backend: bit-identical for moves and rounding (fill, cast, copy, where,
// dropout's mask, causal fill, gather), within a dtype-dependent tolerance for
// arithmetic.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BinaryOp, Strided, UnaryOp, View } from '../../../src/backend/backend.js';
import { contiguousStrides } from '../../../src/backend/backend.js';
import { counterOf } from '../../helpers/random.js';
import type { DType } from '../../../src/dtype/dtype.js';
import {
  FLOATS, assertClose, both, bothEmpty, collect, compare, compareBits, cpu, mixed, rtolFor, skip, uniform, webgpu, whole,
} from './helpers.js';

const ALL: DType[] = ['float32', 'float16', 'bfloat16', 'int32'];

function s(view: View, strides: number[], offset = 0): Strided {
  return { view, offset, strides };
}

describe('webgpu elementwise', { skip }, () => {
  test('fill: every dtype, special values, odd offsets and sizes, neighbours untouched', async () => {
    for (const dtype of ALL) {
      const values = dtype === 'int32' ? [0, -1, 7, -100, 2 ** 31 - 1] : [0, -0, 1.1, -3.7, 1e-40, 70000, Infinity, NaN, 1 / 3];
      for (const value of values) {
        for (const [pad, size] of [[0, 8], [1, 7], [1, 1], [0, 3]] as const) {
          const [g, c] = bothEmpty(dtype, size, pad);
          webgpu().fill(g, value);
          cpu.fill(c, value);
          await compareBits(whole(g), whole(c), `fill ${dtype} ${value} pad ${pad} size ${size}`);
        }
      }
    }
  });

  test('cast: every pair of dtypes, bit-identical, at even and odd offsets', async () => {
    for (const from of ALL) {
      for (const to of ALL) {
        // Float -> int32 truncates; keep those values finite and in range.
        const data = from === 'int32' || to === 'int32' ? uniform(37, 3, -5000, 5000) : mixed(37, 3, from);
        for (const [pin, pout] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const) {
          const [gx, cx] = both(from, data, pin);
          const [go, co] = bothEmpty(to, data.length, pout);
          webgpu().cast(gx, go);
          cpu.cast(cx, co);
          await compareBits(whole(go), whole(co), `cast ${from} -> ${to} (offsets ${pin}, ${pout})`);
        }
      }
    }
  });

  test('copy: permute, broadcast and slices (strided 16-bit destinations at odd offsets)', async () => {
    for (const dtype of ALL) {
      const data = dtype === 'int32' ? uniform(30, 5, -1e6, 1e6).map(Math.round) : mixed(30, 5, dtype);
      // Transpose [2, 3, 5] -> [5, 3, 2].
      {
        const [gx, cx] = both(dtype, data, 1);
        const [go, co] = bothEmpty(dtype, 30);
        const shape = [5, 3, 2];
        webgpu().copy(s(gx, [1, 5, 15]), s(go, contiguousStrides(shape)), shape);
        cpu.copy(s(cx, [1, 5, 15]), s(co, contiguousStrides(shape)), shape);
        await compareBits(go, co, `permute ${dtype}`);
      }
      // Broadcast a [3, 1] column to [3, 4].
      {
        const [gx, cx] = both(dtype, data.slice(0, 3));
        const [go, co] = bothEmpty(dtype, 12, 1);
        webgpu().copy(s(gx, [1, 0]), s(go, [4, 1]), [3, 4]);
        cpu.copy(s(cx, [1, 0]), s(co, [4, 1]), [3, 4]);
        await compareBits(whole(go), whole(co), `broadcast ${dtype}`);
      }
      // Write [3, 3] into columns 1..3 of a [3, 5] destination (concatenation's pattern), and a column with stride 5.
      for (const [cols, off] of [[3, 1], [1, 2]] as const) {
        const [gx, cx] = both(dtype, data.slice(0, 3 * cols));
        const [go, co] = bothEmpty(dtype, 15, 1);
        webgpu().copy(s(gx, [cols, 1]), s(go, [5, 1], off), [3, cols]);
        cpu.copy(s(cx, [cols, 1]), s(co, [5, 1], off), [3, cols]);
        await compareBits(whole(go), whole(co), `slice write ${dtype} cols ${cols}`);
      }
    }
  });

  const UNARY: [UnaryOp, number, number?][] = [
    ['neg', 0], ['exp', 0], ['log', 0], ['sqrt', 0], ['rsqrt', 0], ['tanh', 0], ['relu', 0], ['gelu', 0],
    ['sigmoid', 0], ['abs', 0], ['square', 0], ['reciprocal', 0], ['sign', 0],
    ['pow', 3], ['pow', 0.5], ['pow', -2], ['pow', 2], ['affine', 1.5, -0.25],
  ];
  /** f32 tolerances: the GPU's transcendental functions are within a few ulp, or a tiny absolute error near zero. */
  const F32_TOL: Partial<Record<UnaryOp, { rtol: number; atol: number }>> = {
    exp: { rtol: 4e-6, atol: 0 }, log: { rtol: 2e-6, atol: 4e-7 }, tanh: { rtol: 4e-6, atol: 0 },
    gelu: { rtol: 4e-6, atol: 1e-7 }, sigmoid: { rtol: 4e-6, atol: 0 }, pow: { rtol: 8e-6, atol: 0 },
  };

  test('unary: every op and float dtype (and 16-bit in, float32 out) on values with infinities, NaN and subnormals', () => collect(async (check) => {
    for (const [op, a, b] of UNARY) {
      for (const dtype of FLOATS) {
        for (const outDtype of dtype === 'float32' ? ['float32'] as const : [dtype, 'float32'] as const) {
          const data = mixed(301, 11, dtype);
          const [gx, cx] = both(dtype, data, 1);
          const [go, co] = bothEmpty(outDtype, data.length, 1);
          webgpu().unary(op, gx, go, a, b);
          cpu.unary(op, cx, co, a, b);
          const t = F32_TOL[op] ?? { rtol: 1e-6, atol: 0 };
          const tol = outDtype === 'float32' ? { rtol: t.rtol, atol: Math.max(t.atol, 1.2e-38) } : { rtol: rtolFor(outDtype), atol: 6e-8 };
          await check(() => compare(whole(go), whole(co), tol, `${op}(${a ?? ''}) ${dtype} -> ${outDtype}`));
        }
      }
    }
  }));

  test('unary affine on int32 (neg of ids, offsets)', async () => {
    const data = uniform(50, 2, -1e5, 1e5).map(Math.round);
    const [gx, cx] = both('int32', data);
    const [go, co] = bothEmpty('int32', data.length);
    webgpu().unary('affine', gx, go, -1, 3);
    cpu.unary('affine', cx, co, -1, 3);
    await compareBits(go, co, 'affine int32');
  });

  const BINARY: BinaryOp[] = [
    'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'gt', 'ge', 'lt', 'le',
    'relu_grad', 'gelu_grad', 'tanh_grad', 'sigmoid_grad',
  ];

  test('binary: every op and float dtype, with broadcasting over [4, 3, 5]', () => collect(async (check) => {
    const shape = [4, 3, 5];
    for (const op of BINARY) {
      for (const dtype of FLOATS) {
        // a is [4, 1, 5] (broadcast over dim 1), b is [1, 3, 5] (over dim 0), read from odd offsets.
        const da = mixed(20, 21, dtype), db = mixed(15, 22, dtype);
        // Make some elements equal so comparisons see ties.
        da[3] = db[3]!; da[9] = db[4]!;
        if (op === 'pow') for (let i = 0; i < db.length; i++) db[i] = Number.isFinite(db[i]!) ? Math.round(db[i]! * 2) / 2 : db[i]!;
        const [ga, ca] = both(dtype, da, 1);
        const [gb, cb] = both(dtype, db);
        const [go, co] = bothEmpty(dtype, 60, 1);
        const sa = [5, 0, 1], sb = [0, 5, 1];
        webgpu().binary(op, s(ga, sa), s(gb, sb), go, shape);
        cpu.binary(op, s(ca, sa), s(cb, sb), co, shape);
        const f32 = op === 'pow' || op === 'gelu_grad' ? { rtol: 8e-6, atol: 1.2e-38 } : { rtol: 1e-6, atol: 1.2e-38 };
        const tol = dtype === 'float32' ? f32 : { rtol: rtolFor(dtype), atol: 6e-8 };
        await check(() => compare(whole(go), whole(co), tol, `${op} ${dtype}`));
      }
    }
  }));

  test('binary: scalar operands, mixed dtypes and int32', async () => {
    const shape = [7, 9];
    for (const [ta, tb, to] of [['float16', 'float32', 'float32'], ['bfloat16', 'float16', 'float32'], ['int32', 'int32', 'int32'], ['int32', 'float32', 'float32']] as const) {
      for (const op of ['add', 'mul', 'sub', 'eq', 'lt', 'maximum'] as const) {
        const da = ta === 'int32' ? uniform(63, 4, -50, 50).map(Math.round) : mixed(63, 4, ta);
        const [ga, ca] = both(ta, da);
        const [gb, cb] = both(tb, [tb === 'int32' ? 3 : 0.75]);
        const [go, co] = bothEmpty(to, 63);
        webgpu().binary(op, s(ga, [9, 1]), s(gb, [0, 0]), go, shape);
        cpu.binary(op, s(ca, [9, 1]), s(cb, [0, 0]), co, shape);
        await compare(go, co, { rtol: 1e-6, atol: 1.2e-38 }, `${op} ${ta} x ${tb} -> ${to}`);
      }
    }
  });

  test('where: bit-identical selection, conditions of every dtype (-0 is false, NaN is true)', async () => {
    const shape = [3, 8];
    for (const condType of ALL) {
      for (const [ta, tb, to] of [['float32', 'float32', 'float32'], ['float16', 'float16', 'float16'], ['bfloat16', 'bfloat16', 'bfloat16'], ['float16', 'float32', 'float32']] as const) {
        const cond = condType === 'int32' ? [0, 1, -1, 0, 5, 0, 0, 2] : [0, -0, NaN, 1, 1e-40, -2, 0, Infinity];
        const [gc, cc] = both(condType, cond);
        const [ga, ca] = both(ta, mixed(24, 8, ta));
        const [gb, cb] = both(tb, mixed(8, 9, tb), 1);
        const [go, co] = bothEmpty(to, 24, 1);
        // cond broadcasts over rows, b over rows too.
        webgpu().where(s(gc, [0, 1]), s(ga, [8, 1]), s(gb, [0, 1]), go, shape);
        cpu.where(s(cc, [0, 1]), s(ca, [8, 1]), s(cb, [0, 1]), co, shape);
        await compareBits(whole(go), whole(co), `where cond ${condType}, ${ta}/${tb} -> ${to}`);
      }
    }
  });

  test('dropout: the same mask as the CPU (counter-based RNG), values within rounding', async () => {
    for (const dtype of FLOATS) {
      for (const [p, start] of [[0.1, 0], [0.5, 12345], [0.9, 2 ** 32 - 10]] as const) {
        const data = uniform(1001, 6, 0.5, 2);
        const [gx, cx] = both(dtype, data, 1);
        const [go, co] = bothEmpty(dtype, data.length, 1);
        webgpu().dropout(gx, go, p, 0x9e3779b9, start);
        cpu.dropout(cx, co, p, 0x9e3779b9, start);
        const g = await webgpu().read(go), c = await cpu.read(co);
        const maskG = Array.from(g, (v) => v === 0), maskC = Array.from(c, (v) => v === 0);
        assert.deepEqual(maskG, maskC, `dropout mask ${dtype} p=${p}`);
        const kept = maskC.filter((z) => !z).length;
        assert.ok(Math.abs(kept / data.length - (1 - p)) < 0.06, `kept fraction ${kept / data.length} for p=${p}`);
        assertClose(g, c, { rtol: rtolFor(dtype, 3e-7) }, `dropout values ${dtype}`);
      }
    }
  });

  test('dropout: the same mask bit for bit at the keep threshold, for p = 0.2 and random p', async () => {
    // The counters whose random words fall next to p * 2^24, where a rule of other
    // precision would decide differently: found by inverting randomBits.
    const key = 0x2545f491;
    const ps = [0.2, ...uniform(40, 17, 0, 1)];
    for (const p of ps) {
      const edge = Math.floor(p * 2 ** 24);
      for (const top of [edge - 1, edge, edge + 1]) {
        for (const low of [0, 0x80, 0xff]) {
          const start = counterOf(key, ((top << 8) | low) >>> 0);
          const [gx, cx] = both('float32', [1.5]);
          const [go, co] = bothEmpty('float32', 1);
          webgpu().dropout(gx, go, p, key, start);
          cpu.dropout(cx, co, p, key, start);
          const g = (await webgpu().read(go))[0], c = (await cpu.read(co))[0];
          assert.equal(g === 0, c === 0, `p = ${p}: word ${top}:${low} (counter ${start}) kept on ${g === 0 ? 'the CPU' : 'WebGPU'} only`);
        }
      }
    }
  });

  test('causalFill: bit-identical, square and rectangular, odd offsets', async () => {
    for (const dtype of FLOATS) {
      for (const [rows, t, s2] of [[2, 4, 4], [3, 3, 5], [1, 5, 3]] as const) {
        const n = rows * t * s2;
        const [gx, cx] = both(dtype, mixed(n, 13, dtype), 1);
        const [go, co] = bothEmpty(dtype, n, 1);
        webgpu().causalFill(gx, go, rows, t, s2, -Infinity);
        cpu.causalFill(cx, co, rows, t, s2, -Infinity);
        await compareBits(whole(go), whole(co), `causalFill ${dtype} ${rows}x${t}x${s2}`);
      }
    }
  });

  test('gather: embedding rows for every dtype, odd row lengths and offsets', async () => {
    for (const dtype of ALL) {
      for (const dim of [4, 5]) {
        const rows = 11, n = 9;
        const data = dtype === 'int32' ? uniform(rows * dim, 1, -1e6, 1e6).map(Math.round) : mixed(rows * dim, 1, dtype);
        const [gt, ct] = both(dtype, data, 1);
        const ids = [3, 0, 10, 3, 7, 7, 1, 10, 2];
        const [gi, ci] = both('int32', ids, 1);
        const [go, co] = bothEmpty(dtype, n * dim, 1);
        webgpu().gather(gt, gi, go, n, dim);
        cpu.gather(ct, ci, co, n, dim);
        await compareBits(whole(go), whole(co), `gather ${dtype} dim ${dim}`);
      }
    }
  });
});
