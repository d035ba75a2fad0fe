// Tensors larger than one binding, on small sizes: the backend of this file
// binds at most 4 KiB of a buffer (MIXPREC_WEBGPU_MAX_BINDING), so every
// tensor here is processed in parts, and each op must still agree with the
// CPU backend within the tolerances of the unsplit tests.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Strided, View } from '../../../src/backend/backend.js';
import { ADAMW_RULE as adamw } from '../../../src/optim/adamw.js';
import * as mp from '../../../src/index.js';
import { createWebGPUBackend } from '../../../src/backend/webgpu/backend.js';
import { CURVE_TOLERANCE, lossCurve } from '../../helpers/training-curve.js';

process.env.MIXPREC_WEBGPU_MAX_BINDING = '4096';
const {
  FLOATS, both, bothEmpty, collect, compare, compareBits, cpu, rtolFor, skip, uniform, webgpu, whole,
} = await import('./helpers.js');

const LIMIT = 4096;
/** Elements well past one binding of float32 (several parts). */
const BIG = 3000;

const s = (view: View, strides: number[], offset = 0): Strided => ({ view, offset, strides });

describe('webgpu ops on tensors larger than one binding', { skip }, () => {
  test('the lowered limit is in force, and whole-buffer bindings past it are refused', async () => {
    assert.equal(webgpu().rt.maxBindingBytes, LIMIT);
    await assert.rejects(createWebGPUBackend({ register: false, maxBindingBytes: 1000 }), /maxBindingBytes is 1000; it must be a whole number of bytes, at least 4096/);
    const [g] = both('float32', uniform(BIG, 1));
    assert.ok((g.buf as unknown as { block: { bytes: number } }).block.bytes > LIMIT);
    assert.throws(() => webgpu().rt.dispatch({ key: 'whole', params: [], body: '@compute @workgroup_size(1) fn main() { putbits_x(0u, 0u); }' },
      [{ name: 'x', buf: g.buf, access: 'read_write' }], [], [1]), /maxStorageBufferBindingSize of 4096/);
  });

  test('elementwise: unary, binary with broadcasting, transposed copy, where, cast, fill, dropout, causal fill', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      const tol = { rtol: rtolFor(dtype), atol: 1e-6 };
      const [gx, cx] = both(dtype, uniform(BIG, 2), 1);
      const [gy, cy] = bothEmpty(dtype, BIG, 3);
      webgpu().unary('gelu', gx, gy); cpu.unary('gelu', cx, cy);
      await check(() => compare(whole(gy), whole(cy), tol, `gelu ${dtype}`));
      // [rows, cols] + bias[cols], and a transposed copy of the [rows, cols] matrix.
      const rows = 50, cols = 60;
      const [gb, cb] = both(dtype, uniform(cols, 3));
      const [go, co] = bothEmpty(dtype, rows * cols);
      webgpu().binary('mul', s(gx, [cols, 1]), s(gb, [0, 1]), go, [rows, cols]);
      cpu.binary('mul', s(cx, [cols, 1]), s(cb, [0, 1]), co, [rows, cols]);
      await check(() => compare(go, co, tol, `broadcast mul ${dtype}`));
      const [gt, ct] = bothEmpty(dtype, rows * cols);
      webgpu().copy(s(gx, [1, cols]), s(gt, [rows, 1]), [cols, rows]);
      cpu.copy(s(cx, [1, cols]), s(ct, [rows, 1]), [cols, rows]);
      await check(() => compareBits(gt, ct, `transposed copy ${dtype}`));
      webgpu().where(s(gx, [1]), s(go, [1]), s(gt, [1]), gy, [rows * cols]);
      cpu.where(s(cx, [1]), s(co, [1]), s(ct, [1]), cy, [rows * cols]);
      await check(() => compareBits(gy, cy, `where ${dtype}`));
      const [gc, cc] = bothEmpty('float32', BIG);
      webgpu().cast(gx, gc); cpu.cast(cx, cc);
      await check(() => compareBits(gc, cc, `cast ${dtype} -> float32`));
      webgpu().fill(gy, 0.3); cpu.fill(cy, 0.3);
      await check(() => compareBits(whole(gy), whole(cy), `fill ${dtype}`));
      webgpu().dropout(gx, gy, 0.4, 77, 5); cpu.dropout(cx, cy, 0.4, 77, 5);
      await check(() => compare(gy, cy, tol, `dropout ${dtype}`));
      webgpu().causalFill(gx, gy, 3, 20, 50, -1e4); cpu.causalFill(cx, cy, 3, 20, 50, -1e4);
      await check(() => compareBits(gy, cy, `causal fill ${dtype}`));
    }
  }));

  test('gather and scatterAdd over a table larger than one binding, by row ranges', () => collect(async (check) => {
    const rows = 70, dim = 33, n = 24;
    const ids = Array.from({ length: n }, (_, i) => (i * 37 + 5) % rows);
    ids[3] = ids[9]!; // a repeated id
    for (const dtype of FLOATS) {
      const [gt, ct] = both(dtype, uniform(rows * dim, 4));
      const [gi, ci] = both('int32', ids);
      const [go, co] = bothEmpty(dtype, n * dim);
      webgpu().gather(gt, gi, go, n, dim); cpu.gather(ct, ci, co, n, dim);
      await check(() => compareBits(go, co, `gather ${dtype}`));
      const [gg, cg] = both(dtype, uniform(n * dim, 5));
      webgpu().scatterAdd(gg, gi, gt, n, dim); cpu.scatterAdd(cg, ci, ct, n, dim);
      await check(() => compare(gt, ct, { rtol: rtolFor(dtype, 1e-5), atol: 1e-5 }, `scatterAdd ${dtype}`));
    }
  }));

  test('matmul split along N, K and M, batched, with bias', () => collect(async (check) => {
    // [m, k] x [n, k]^T with a large B (the LM head), [m, n] x [n, k] (its input gradient, split
    // along K) and [n, m]^T x [n, k] with a large output (its weight gradient, split along M).
    const m = 8, n = 256, k = 24;
    for (const dtype of FLOATS) {
      const tol = { rtol: rtolFor(dtype, 1e-5), atol: 1e-4 };
      const [ga, ca] = both(dtype, uniform(m * k, 6));
      const [gw, cw] = both(dtype, uniform(n * k, 7));
      const [gbias, cbias] = both(dtype, uniform(n, 8));
      const [gl, cl] = bothEmpty('float32', m * n);
      const fwd = { batch: 1, m, n, k, transA: false, transB: true, strideA: 0, strideB: 0 };
      webgpu().matmul(ga, gw, gl, { ...fwd, bias: gbias }); cpu.matmul(ca, cw, cl, { ...fwd, bias: cbias });
      await check(() => compare(gl, cl, tol, `matmul N split ${dtype}`));
      const [gg, cg] = both(dtype, uniform(m * n, 9));
      const [gx, cx] = bothEmpty('float32', m * k);
      const back = { batch: 1, m, n: k, k: n, transA: false, transB: false, strideA: 0, strideB: 0 };
      webgpu().matmul(gg, gw, gx, back); cpu.matmul(cg, cw, cx, back);
      await check(() => compare(gx, cx, tol, `matmul K split ${dtype}`));
      const [gx16, cx16] = bothEmpty(dtype, m * k);
      webgpu().matmul(gg, gw, gx16, back); cpu.matmul(cg, cw, cx16, back);
      await check(() => compare(gx16, cx16, { rtol: rtolFor(dtype), atol: 1e-4 }, `matmul K split into ${dtype}`));
      const [gdw, cdw] = bothEmpty('float32', n * k);
      const grad = { batch: 1, m: n, n: k, k: m, transA: true, transB: false, strideA: 0, strideB: 0 };
      webgpu().matmul(gg, ga, gdw, grad); cpu.matmul(cg, ca, cdw, grad);
      await check(() => compare(gdw, cdw, tol, `matmul M split ${dtype}`));
      const batched = { batch: 2, m: 4, n, k, transA: false, transB: true, strideA: 3 * k, strideB: 0 };
      webgpu().matmul(ga, gw, gl, batched); cpu.matmul(ca, cw, cl, batched);
      await check(() => compare(gl, cl, tol, `batched matmul ${dtype}`));
    }
  }));

  test('AdamW with master weights and the sum of squares over tensors larger than one binding', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      const master = dtype !== 'float32';
      const make = (b: typeof cpu) => {
        const up = (data: number[], dt = dtype) => { const v = { buf: b.alloc(dt, data.length), offset: 0, size: data.length, dtype: dt }; b.write(v, data); return v; };
        const p = up(uniform(BIG, 10));
        return {
          p, g: up(uniform(BIG, 11)), m: up(new Array(BIG).fill(0), 'float32'), v: up(new Array(BIG).fill(0), 'float32'),
          master: master ? up(uniform(BIG, 10), 'float32') : null, step: up([0], 'float32'), norm: up([0], 'float32'),
        };
      };
      const gt = make(webgpu() as unknown as typeof cpu), ct = make(cpu);
      for (const [b, t] of [[webgpu(), gt], [cpu, ct]] as const) {
        const call = {
          hypers: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 },
          scalars: { step: t.step }, tensors: [{ param: t.p, grad: t.g, exp_avg: t.m, exp_avg_sq: t.v }],
          master: [t.master],
        };
        for (let i = 0; i < 2; i++) b.update(adamw, call);
        b.sumOfSquares([t.g, t.m], t.norm);
      }
      const tol = { rtol: 2e-6, atol: 1e-7 };
      await check(() => compare(gt.m, ct.m, tol, `adamw exp_avg ${dtype}`));
      await check(() => compare(gt.v, ct.v, tol, `adamw exp_avg_sq ${dtype}`));
      await check(() => compare(gt.p, ct.p, { rtol: rtolFor(dtype), atol: 1e-7 }, `adamw param ${dtype}`));
      await check(() => compare(gt.norm, ct.norm, { rtol: 1e-5 }, `sumOfSquares ${dtype}`));
    }
  }));

  test('row kernels by row ranges: softmax, layer norm and cross-entropy, each forward and backward', () => collect(async (check) => {
    const rows = 40, cols = 70;
    for (const dtype of FLOATS) {
      const tol = { rtol: rtolFor(dtype, 1e-5), atol: dtype === 'float32' ? 1e-5 : 1e-3 * rtolFor(dtype) };
      const [gx, cx] = both(dtype, uniform(rows * cols, 12));
      const [gy, cy] = bothEmpty('float32', rows * cols);
      webgpu().softmax(gx, gy, rows, cols, false); cpu.softmax(cx, cy, rows, cols, false);
      await check(() => compare(gy, cy, { rtol: 1e-5, atol: 1e-7 }, `softmax ${dtype}`));
      const [gd, cd] = bothEmpty(dtype, rows * cols);
      webgpu().softmaxBackward(gy, gx, gd, rows, cols, false); cpu.softmaxBackward(cy, cx, cd, rows, cols, false);
      await check(() => compare(gd, cd, tol, `softmaxBackward ${dtype}`));
      const [gw, cw] = both(dtype, uniform(cols, 13));
      const [gb, cb] = both(dtype, uniform(cols, 14));
      const [gm, cm] = bothEmpty('float32', rows);
      const [gr, cr] = bothEmpty('float32', rows);
      webgpu().layerNorm(gx, gw, gb, gd, gm, gr, rows, cols, 1e-5); cpu.layerNorm(cx, cw, cb, cd, cm, cr, rows, cols, 1e-5);
      await check(() => compare(gd, cd, tol, `layerNorm ${dtype}`));
      await check(() => compare(gr, cr, { rtol: 1e-5, atol: 1e-6 }, `layerNorm rstd ${dtype}`));
      const [gdx, cdx] = bothEmpty(dtype, rows * cols);
      const [gdw, cdw] = bothEmpty('float32', cols);
      const [gdb, cdb] = bothEmpty('float32', cols);
      webgpu().layerNormBackward(gx, gw, gm, gr, gd, gdx, gdw, gdb, rows, cols); cpu.layerNormBackward(cx, cw, cm, cr, cd, cdx, cdw, cdb, rows, cols);
      await check(() => compare(gdx, cdx, { rtol: rtolFor(dtype, 2e-5), atol: dtype === 'float32' ? 2e-5 : 1e-3 * rtolFor(dtype) }, `layerNorm gx ${dtype}`));
      await check(() => compare(gdw, cdw, { rtol: 1e-5, atol: 1e-5 * Math.sqrt(rows) }, `layerNorm gw ${dtype}`));
      await check(() => compare(gdb, cdb, { rtol: 1e-5, atol: 1e-5 * Math.sqrt(rows) }, `layerNorm gb ${dtype}`));
      const [gt, ct] = both('int32', uniform(rows, 15, 0, cols).map(Math.floor));
      const [gl, cl] = both('float32', uniform(rows, 16, 4, 5));
      const [gc, cc] = both('float32', [rows]);
      const [ggy, cgy] = both('float32', [2.5]);
      const [gloss, closs] = bothEmpty('float32', 1);
      const [glse, clse] = bothEmpty('float32', rows);
      const [gcount, ccount] = bothEmpty('float32', 1);
      webgpu().crossEntropy(gx, gt, gloss, glse, gcount, rows, cols, -100); cpu.crossEntropy(cx, ct, closs, clse, ccount, rows, cols, -100);
      await check(() => compare(gloss, closs, { rtol: 1e-5, atol: 1e-6 }, `crossEntropy loss ${dtype}`));
      await check(() => compare(glse, clse, { rtol: 1e-6, atol: 1e-6 }, `crossEntropy lse ${dtype}`));
      await check(() => compareBits(gcount, ccount, `crossEntropy count ${dtype}`));
      webgpu().crossEntropyBackward(gx, gt, gl, gc, ggy, gd, rows, cols, -100); cpu.crossEntropyBackward(cx, ct, cl, cc, cgy, cd, rows, cols, -100);
      await check(() => compare(gd, cd, { rtol: rtolFor(dtype, 1e-5), atol: 1e-7 }, `crossEntropyBackward ${dtype}`));
    }
  }));

  test('reductions by outer ranges, and by ranges of the reduced axis whose partial results are reduced again', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      const [gx, cx] = both(dtype, uniform(BIG * 2, 17));
      for (const op of ['sum', 'max', 'min'] as const) {
        // [100, 30, 2] over the middle axis: 60-element slices; [1, 3000, 2]: one slice larger than a window.
        for (const [outer, r, inner] of [[100, 30, 2], [1, BIG, 2]] as const) {
          const [go, co] = bothEmpty('float32', outer * inner);
          webgpu().reduce(op, gx, go, outer, r, inner); cpu.reduce(op, cx, co, outer, r, inner);
          await check(() => compare(go, co, { rtol: 1e-5, atol: 1e-5 }, `reduce ${op} ${dtype} [${outer}, ${r}, ${inner}]`));
        }
      }
    }
  }));

  test('a GPT whose embedding, its gradient and its AdamW moments are split follows the CPU loss curve', async () => {
    // The token embedding (512 x 64 float32, 128 KiB) is larger than the 96 KiB bound; the
    // activations, the logits (16 x 512) and the other weights are not.
    const shape = { config: mp.gptConfig('tiny', { vocabSize: 512, nLayer: 1, nEmbd: 64, nHead: 4, blockSize: 16 }), B: 1, T: 16 };
    const gpu = await createWebGPUBackend({ register: false, maxBindingBytes: 96 * 1024 });
    try {
      for (const precision of ['fp32', 'fp16']) {
        const cpuLosses = await lossCurve(new mp.CpuBackend(), precision, 6, shape);
        const gpuLosses = await lossCurve(gpu, precision, 6, shape);
        assert.ok(cpuLosses[5]! < cpuLosses[0]!, `the model learns (${cpuLosses[0]} -> ${cpuLosses[5]})`);
        cpuLosses.forEach((c, k) => assert.ok(Math.abs(gpuLosses[k]! - c) <= CURVE_TOLERANCE[precision]!, `${precision} step ${k}: webgpu ${gpuLosses[k]} vs cpu ${c}`));
      }
    } finally {
      gpu.destroy();
    }
  });
});
