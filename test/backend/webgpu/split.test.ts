// Tensors larger than one binding, on small sizes: the backend of this file
// binds at most 4 KiB of a buffer (MIXPREC_WEBGPU_MAX_BINDING), so every
// tensor here is processed in parts, and each op must still agree with the
// CPU backend within the tolerances of the unsplit tests. split-buffers.test.ts
// runs this file again with buffers of at most 8 KiB (MIXPREC_WEBGPU_MAX_BUFFER):
// its tensors are held in several buffers too, and parts that straddle two
// are staged.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AttentionSpec, HeadLayout, Strided, View } from '../../../src/backend/backend.js';
import type { DType } from '../../../src/dtype/dtype.js';
import { ADAMW_RULE as adamw } from '../../../src/optim/adamw.js';
import * as mp from '../../../src/index.js';
import { createWebGPUBackend } from '../../../src/backend/webgpu/backend.js';
import { CURVE_TOLERANCE, lossCurve } from '../../helpers/training-curve.js';

process.env.MIXPREC_WEBGPU_MAX_BINDING = '4096';
const {
  FLOATS, assertClose, both, bothEmpty, collect, compare, compareBits, cpu, empty, normal, rtolFor, skip, uniform, upload, webgpu, whole,
} = await import('./helpers.js');

const LIMIT = 4096;
/** Elements well past one binding of float32 (several parts). */
const BIG = 3000;

const s = (view: View, strides: number[], offset = 0): Strided => ({ view, offset, strides });
const BUFFER_LIMIT = process.env.MIXPREC_WEBGPU_MAX_BUFFER;

describe(`webgpu ops on tensors larger than one binding${BUFFER_LIMIT ? `, held in buffers of at most ${BUFFER_LIMIT} bytes` : ''}`, { skip }, () => {
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

  for (const kernel of ['fast', 'simple'] as const) {
    test(`matmul split along N, K and M, batched, with bias (${kernel} kernel)`, () => collect(async (check) => {
      // [m, k] x [n, k]^T with a large B (the LM head), [m, n] x [n, k] (its input gradient, split
      // along K) and [n, m]^T x [n, k] with a large output (its weight gradient, split along M).
      const g = kernel === 'fast' ? webgpu() : await createWebGPUBackend({ register: false, matmul: 'simple' });
      const two = (dtype: DType, data: number[]): [View, View] => [upload(g, dtype, data), upload(cpu, dtype, data)];
      const twoEmpty = (dtype: DType, size: number): [View, View] => [empty(g, dtype, size), empty(cpu, dtype, size)];
      const near = async (gv: View, cv: View, tol: { rtol: number; atol: number }, what: string) => assertClose(await g.read(gv), await cpu.read(cv), tol, what);
      const m = 8, n = 256, k = 24;
      try {
        for (const dtype of FLOATS) {
          const tol = { rtol: rtolFor(dtype, 1e-5), atol: 1e-4 };
          const [ga, ca] = two(dtype, uniform(m * k, 6));
          const [gw, cw] = two(dtype, uniform(n * k, 7));
          const [gbias, cbias] = two(dtype, uniform(n, 8));
          const [gl, cl] = twoEmpty('float32', m * n);
          const fwd = { batch: 1, m, n, k, transA: false, transB: true, strideA: 0, strideB: 0 };
          g.matmul(ga, gw, gl, { ...fwd, bias: gbias }); cpu.matmul(ca, cw, cl, { ...fwd, bias: cbias });
          await check(() => near(gl, cl, tol, `matmul N split ${dtype}`));
          const [gg, cg] = two(dtype, uniform(m * n, 9));
          const [gx, cx] = twoEmpty('float32', m * k);
          const back = { batch: 1, m, n: k, k: n, transA: false, transB: false, strideA: 0, strideB: 0 };
          g.matmul(gg, gw, gx, back); cpu.matmul(cg, cw, cx, back);
          await check(() => near(gx, cx, tol, `matmul K split ${dtype}`));
          const [gx16, cx16] = twoEmpty(dtype, m * k);
          g.matmul(gg, gw, gx16, back); cpu.matmul(cg, cw, cx16, back);
          await check(() => near(gx16, cx16, { rtol: rtolFor(dtype), atol: 1e-4 }, `matmul K split into ${dtype}`));
          const [gdw, cdw] = twoEmpty('float32', n * k);
          const grad = { batch: 1, m: n, n: k, k: m, transA: true, transB: false, strideA: 0, strideB: 0 };
          g.matmul(gg, ga, gdw, grad); cpu.matmul(cg, ca, cdw, grad);
          await check(() => near(gdw, cdw, tol, `matmul M split ${dtype}`));
          const batched = { batch: 2, m: 4, n, k, transA: false, transB: true, strideA: 3 * k, strideB: 0 };
          g.matmul(ga, gw, gl, batched); cpu.matmul(ca, cw, cl, batched);
          await check(() => near(gl, cl, tol, `batched matmul ${dtype}`));
          // The MLP's first product: B stored [K, N] is split along K, and the bias, the pre-activation
          // and GELU (then accumulation into C) apply to the float32 sum of the parts.
          const [gx2, cx2] = two(dtype, uniform(m * n, 10));
          const [gpre, cpre] = twoEmpty(dtype, m * k);
          const [gh, ch] = two(dtype, uniform(m * k, 11));
          const mlp = { batch: 1, m, n: k, k: n, transA: false, transB: false, strideA: 0, strideB: 0, gelu: true };
          for (const accumulate of [false, true]) {
            g.matmul(gx2, gw, gh, { ...mlp, accumulate, bias: gbias, preGelu: gpre }); cpu.matmul(cx2, cw, ch, { ...mlp, accumulate, bias: cbias, preGelu: cpre });
            await check(() => near(gpre, cpre, { rtol: rtolFor(dtype, 1e-5), atol: 1e-4 }, `matmul K split, pre-activation ${dtype}`));
            await check(() => near(gh, ch, { rtol: rtolFor(dtype, 1e-5), atol: 1e-4 }, `matmul K split, GELU${accumulate ? ' accumulated' : ''} ${dtype}`));
          }
        }
      } finally {
        if (g !== webgpu()) g.destroy();
      }
    }));
  }

  test('attention forward and backward by ranges of batches and of heads, separate and fused layouts', () => collect(async (check) => {
    // Separate [B, H, T, d]: one batch fits in 16-bit, only two heads in float32. Fused [B, T, 3C]:
    // q, k and v of one batch share a window, so parts are whole batches (one or two).
    const cases = [
      { name: 'separate', B: 3, H: 3, T: 40, d: 8, fused: false },
      { name: 'fused', B: 3, H: 2, T: 16, d: 8, fused: true },
    ];
    for (const c of cases) {
      for (const dtype of FLOATS) {
        const { B, H, T, d } = c, C = H * d;
        const spec: AttentionSpec = { batch: B, heads: H, tq: T, tk: T, headDim: d, scale: 1 / Math.sqrt(d), causal: true };
        const what = `${c.name} ${dtype}`;
        const tol = (f32: number) => (dtype === 'float32' ? { rtol: f32, atol: f32 } : { rtol: rtolFor(dtype), atol: 4 * rtolFor(dtype) * 0.05 });
        const sep: HeadLayout = { offset: 0, sB: H * T * d, sH: T * d, sT: d };
        const inL = (part: number): HeadLayout => (c.fused ? { offset: part * C, sB: T * 3 * C, sH: d, sT: 3 * C } : sep);
        const oL: HeadLayout = c.fused ? { offset: 0, sB: T * C, sH: d, sT: C } : sep;
        const n = B * H * T * d;
        const [gq, cq] = both(dtype, normal(c.fused ? 3 * n : n, 1, 1.5));
        const [gk, ck] = c.fused ? [gq, cq] : both(dtype, normal(n, 2, 1.5));
        const [gv, cv] = c.fused ? [gq, cq] : both(dtype, normal(n, 3));
        const [go, co] = bothEmpty(dtype, n);
        const [gl, cl] = bothEmpty('float32', B * H * T);
        webgpu().attention(gq, inL(0), gk, inL(1), gv, inL(2), go, oL, gl, spec);
        cpu.attention(cq, inL(0), ck, inL(1), cv, inL(2), co, oL, cl, spec);
        await check(() => compare(go, co, tol(2e-5), `attention o ${what}`));
        await check(() => compare(gl, cl, { rtol: 1e-5, atol: 1e-5 }, `attention lse ${what}`));
        const [ggo, cgo] = both(dtype, normal(n, 4));
        const grads = (): [View, View][] => {
          if (c.fused) { const g = bothEmpty(dtype, 3 * n); return [g, g, g]; }
          return [bothEmpty(dtype, n), bothEmpty(dtype, n), bothEmpty(dtype, n)];
        };
        const [dq, dk, dv] = grads();
        webgpu().attentionBackward(gq, inL(0), gk, inL(1), gv, inL(2), go, oL, gl, ggo, oL, dq![0], inL(0), dk![0], inL(1), dv![0], inL(2), spec);
        cpu.attentionBackward(cq, inL(0), ck, inL(1), cv, inL(2), co, oL, cl, cgo, oL, dq![1], inL(0), dk![1], inL(1), dv![1], inL(2), spec);
        for (const [name, [g, cc]] of [['dq', dq!], ['dk', dk!], ['dv', dv!]] as const) {
          await check(() => compare(g, cc, tol(5e-5), `attention ${name} ${what}`));
        }
      }
    }
  }));

  test('attention whose one (batch, head) pair is larger than a binding is refused, naming it', () => {
    const T = 200, d = 8;
    const spec: AttentionSpec = { batch: 1, heads: 1, tq: T, tk: T, headDim: d, scale: 1, causal: true };
    const L: HeadLayout = { offset: 0, sB: T * d, sH: T * d, sT: d };
    const [q] = bothEmpty('float32', T * d);
    const [o] = bothEmpty('float32', T * d);
    const [lse] = bothEmpty('float32', T);
    assert.throws(() => webgpu().attention(q, L, q, L, q, L, o, L, lse, spec),
      (e: Error) => e instanceof mp.MixprecError && /attention of one \(batch, head\) pair \(200 queries, 200 keys of 8\) needs \d+ bytes, more than this adapter's maxStorageBufferBindingSize of 4096/.test(e.message));
  });

  test('a tensor larger than maxBufferSize is held in several buffers: written, read and computed on across them', async () => {
    await assert.rejects(createWebGPUBackend({ register: false, maxBufferBytes: 100 }), /maxBufferBytes is 100; it must be a whole number of bytes, at least 4096/);
    const gpu = await createWebGPUBackend({ register: false, maxBindingBytes: 4096, maxBufferBytes: 8192 });
    try {
      assert.equal(gpu.rt.maxBufferBytes, 8192);
      for (const dtype of FLOATS) {
        // 5000 values: 20,000 bytes of float32 in 3 buffers, 10,000 bytes of 16-bit in 2.
        const n = 5000, values = uniform(n, 9);
        const g = upload(gpu, dtype, values), c = upload(cpu, dtype, values);
        const block = (g.buf as unknown as { block: { segments: unknown[] } }).block;
        assert.equal(block.segments.length, dtype === 'float32' ? 3 : 2, dtype);
        assert.deepEqual(Array.from(await gpu.readRaw(g)), Array.from(await cpu.readRaw(c)), `${dtype}: written and read back across the buffers`);
        const across = { ...g, offset: 1900, size: 300 }; // 16-bit: bytes 3800..4400; float32: 7600..8800, across the first boundary
        assert.deepEqual(Array.from(await gpu.read(across)), Array.from(await cpu.read({ ...c, offset: 1900, size: 300 })), `${dtype}: a range across a boundary`);
        // An op over the whole tensor (parts in one buffer and parts staged across two), and a gather of rows.
        const gy = empty(gpu, dtype, n), cy = empty(cpu, dtype, n);
        const staged = gpu.rt.stats.staged;
        gpu.unary('gelu', g, gy); cpu.unary('gelu', c, cy);
        assertClose(await gpu.read(gy), await cpu.read(cy), { rtol: rtolFor(dtype), atol: 1e-6 }, `gelu ${dtype}`);
        assert.ok(gpu.rt.stats.staged > staged, `${dtype}: some parts of gelu straddle two buffers and are staged`);
        const ids = [0, 99, 47, 50, 51, 12], dim = 50;
        const gi = upload(gpu, 'int32', ids), ci = upload(cpu, 'int32', ids);
        const go = empty(gpu, dtype, ids.length * dim), co = empty(cpu, dtype, ids.length * dim);
        gpu.gather(g, gi, go, ids.length, dim); cpu.gather(c, ci, co, ids.length, dim);
        assert.deepEqual(Array.from(await gpu.readRaw(go)), Array.from(await cpu.readRaw(co)), `gather ${dtype}`);
      }
    } finally {
      gpu.destroy();
    }
  });

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
    // Held in buffers too (split-buffers.test.ts): 64 KiB ones, which every (batch, head) pair of attention fits.
    const gpu = await createWebGPUBackend({ register: false, maxBindingBytes: 96 * 1024, ...(BUFFER_LIMIT ? { maxBufferBytes: 64 * 1024 } : {}) });
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
  test('a GPT whose attention is split by batches too follows the CPU loss curve', async () => {
    // Under 16 KiB every weight matrix, the token table, the logits and the fused [4, 16, 192]
    // projection (48 KiB; 12 KiB a batch) are processed in parts.
    const shape = { config: mp.gptConfig('tiny', { vocabSize: 128, nLayer: 1, nEmbd: 64, nHead: 4, blockSize: 16 }), B: 4, T: 16 };
    const gpu = await createWebGPUBackend({ register: false, maxBindingBytes: 16 * 1024, ...(BUFFER_LIMIT ? { maxBufferBytes: 32 * 1024 } : {}) });
    try {
      const cpuLosses = await lossCurve(new mp.CpuBackend(), 'fp16', 4, shape);
      const gpuLosses = await lossCurve(gpu, 'fp16', 4, shape);
      assert.ok(cpuLosses[3]! < cpuLosses[0]!, `the model learns (${cpuLosses[0]} -> ${cpuLosses[3]})`);
      cpuLosses.forEach((c, k) => assert.ok(Math.abs(gpuLosses[k]! - c) <= CURVE_TOLERANCE.fp16!, `step ${k}: webgpu ${gpuLosses[k]} vs cpu ${c}`));
    } finally {
      gpu.destroy();
    }
  });
});
