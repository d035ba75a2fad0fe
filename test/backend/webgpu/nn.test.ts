// Reductions and the row kernels of the WebGPU backend (softmax, layer norm,
// cross-entropy, embedding gradient) against the CPU backend.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IndexOutOfRangeError, type ReduceOp, type View } from '../../../src/backend/backend.js';
import type { DType } from '../../../src/dtype/dtype.js';
import {
  FLOATS, both, bothEmpty, collect, compare, compareBits, cpu, normal, rtolFor, sameGpuBits, skip, uniform, webgpu, whole,
} from './helpers.js';

/** Tolerance for f32 reductions and row kernels (f32 accumulation on the GPU, f64 on the CPU). */
function tolFor(dtype: DType, f32 = 1e-5, atol = 1e-6) {
  return dtype === 'float32' ? { rtol: f32, atol } : { rtol: rtolFor(dtype), atol: Math.max(atol, 1e-3 * rtolFor(dtype)) };
}

describe('webgpu reductions and row kernels', { skip }, () => {
  test('reduce: sum, max, min over the middle axis, every float dtype, short and long axes, NaN propagation', () => collect(async (check) => {
    // Inner sizes that are multiples of 4 at offset 0 take the vectorised path.
    const shapes: [number, number, number, number][] = [[3, 5, 4, 1], [3, 5, 8, 0], [2, 300, 12, 0], [1, 3000, 1, 1], [2, 700, 3, 1], [4, 1, 6, 1], [1, 0, 3, 1], [5, 64, 1, 1]];
    for (const op of ['sum', 'max', 'min'] as ReduceOp[]) {
      for (const dtype of FLOATS) {
        for (const [outer, r, inner, pad] of shapes) {
          const n = outer * r * inner;
          const data = uniform(n, outer * 7 + r, -2, 2);
          if (n > 10 && op !== 'sum') data[5] = NaN;
          if (n > 10 && op === 'sum') data[7] = Infinity;
          const [gx, cx] = both(dtype, data, pad);
          for (const outDtype of dtype === 'float32' ? ['float32'] as const : [dtype, 'float32'] as const) {
            const [go, co] = bothEmpty(outDtype, outer * inner, pad);
            webgpu().reduce(op, gx, go, outer, r, inner);
            cpu.reduce(op, cx, co, outer, r, inner);
            // A sum of r values of size ~1 in f32: error grows like sqrt(r) ulps.
            const tol = op === 'sum' ? tolFor(outDtype, 1e-5, 1e-5 * Math.sqrt(r + 1)) : { rtol: 0, atol: 0 };
            await check(() => compare(whole(go), whole(co), tol, `${op} ${dtype} -> ${outDtype} [${outer}, ${r}, ${inner}]`));
          }
        }
      }
    }
  }));

  test('softmax and log-softmax, forward and backward, short and long rows, masked rows', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      for (const [rows, cols] of [[6, 10], [3, 1500], [5, 7]] as const) {
        for (const log of [false, true]) {
          const data = normal(rows * cols, rows + cols, 3);
          // A row with -inf entries and a fully masked row (NaN out, as PyTorch).
          for (let j = 0; j < cols; j += 2) data[j] = -Infinity;
          for (let j = 0; j < cols; j++) data[cols + j] = -Infinity;
          const [gx, cx] = both(dtype, data, 1);
          // Under autocast softmax outputs float32 from 16-bit inputs; without, its input's dtype.
          const outDtype: DType = rows === 5 ? dtype : 'float32';
          const [gy, cy] = bothEmpty(outDtype, rows * cols, 1);
          webgpu().softmax(gx, gy, rows, cols, log);
          cpu.softmax(cx, cy, rows, cols, log);
          await check(() => compare(whole(gy), whole(cy), outDtype === 'float32' ? { rtol: 1e-5, atol: 1e-7 } : { rtol: rtolFor(outDtype), atol: 1e-7 }, `softmax log=${log} ${dtype} -> ${outDtype} ${rows}x${cols}`));
          // Backward from the (CPU) output, so both start from the same y.
          const yv = await cpu.read(cy);
          const [gyy, cyy] = both(outDtype, yv.map((v) => (Number.isNaN(v) ? 0 : v)));
          const gdata = normal(rows * cols, 99 + rows);
          const [gg, cg] = both(dtype, gdata);
          const [gdx, cdx] = bothEmpty(dtype, rows * cols, 1);
          webgpu().softmaxBackward(gyy, gg, gdx, rows, cols, log);
          cpu.softmaxBackward(cyy, cg, cdx, rows, cols, log);
          await check(() => compare(whole(gdx), whole(cdx), tolFor(dtype, 1e-5, 1e-5 * Math.sqrt(cols)), `softmaxBackward log=${log} ${dtype} ${rows}x${cols}`));
        }
      }
    }
  }));

  test('layer norm forward and backward, with and without weight and bias, 16-bit inputs and odd shapes', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      // pad 0 with a row length divisible by 4: the vectorised kernels; pad 1: the general ones.
      for (const [rows, cols, pad] of [[7, 32, 1], [70, 32, 0], [3, 1100, 1], [600, 5, 1], [1, 8, 0]] as const) {
        for (const affine of [true, false]) {
          const x = normal(rows * cols, rows * 3 + cols, 2).map((v, i) => v + (i % cols === 0 ? 5 : 0));
          const w = uniform(cols, 4, 0.5, 1.5), b = uniform(cols, 5, -0.5, 0.5);
          const [gx, cx] = both(dtype, x, pad);
          const [gw, cw] = both(dtype, w);
          const [gb, cb] = both(dtype, b, pad);
          const [gy, cy] = bothEmpty(dtype, rows * cols, pad);
          const [gm, cm] = bothEmpty('float32', rows);
          const [gr, cr] = bothEmpty('float32', rows, 1);
          webgpu().layerNorm(gx, affine ? gw : null, affine ? gb : null, gy, gm, gr, rows, cols, 1e-5);
          cpu.layerNorm(cx, affine ? cw : null, affine ? cb : null, cy, cm, cr, rows, cols, 1e-5);
          const what = `${dtype} ${rows}x${cols} affine=${affine}`;
          await check(() => compare(whole(gy), whole(cy), tolFor(dtype, 1e-5, 1e-5), `layerNorm y ${what}`));
          await check(() => compare(gm, cm, { rtol: 1e-5, atol: 1e-6 }, `layerNorm mean ${what}`));
          await check(() => compare(gr, cr, { rtol: 1e-5, atol: 0 }, `layerNorm rstd ${what}`));
          const g = normal(rows * cols, 77, 1);
          const [gg, cg] = both(dtype, g);
          const [gdx, cdx] = bothEmpty(dtype, rows * cols, pad);
          const [gdw, cdw] = bothEmpty(dtype, cols, pad);
          const [gdb, cdb] = bothEmpty(dtype, cols);
          // Backward from the CPU's statistics, so both use the same mean and rstd.
          const [sm, sr] = [await cpu.read(cm), await cpu.read(cr)];
          const [gm2] = both('float32', sm), [gr2] = both('float32', sr);
          webgpu().layerNormBackward(gx, affine ? gw : null, gm2, gr2, gg, gdx, affine ? gdw : null, gdb, rows, cols);
          cpu.layerNormBackward(cx, affine ? cw : null, cm, cr, cg, cdx, affine ? cdw : null, cdb, rows, cols);
          await check(() => compare(whole(gdx), whole(cdx), tolFor(dtype, 2e-5, 2e-5), `layerNorm gx ${what}`));
          if (affine) await check(() => compare(whole(gdw), whole(cdw), tolFor(dtype, 1e-5, 1e-5 * Math.sqrt(rows)), `layerNorm gw ${what}`));
          await check(() => compare(whole(gdb), whole(cdb), tolFor(dtype, 1e-5, 1e-5 * Math.sqrt(rows)), `layerNorm gb ${what}`));
        }
      }
    }
  }));

  test('cross-entropy forward (mean over counted rows, count, lse) and backward, ignored targets', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      for (const [rows, cols, pad] of [[9, 17, 1], [12, 64, 0], [4, 2000, 1], [1, 3, 1]] as const) {
        const logits = normal(rows * cols, rows + cols, 4);
        const targets = uniform(rows, 3, 0, cols).map(Math.floor);
        if (rows > 2) { targets[1] = -100; targets[rows - 1] = -100; }
        const [gl, cl] = both(dtype, logits, pad);
        const [gt, ct] = both('int32', targets, 1);
        const [gloss, closs] = bothEmpty('float32', 1, 1);
        const [glse, clse] = bothEmpty('float32', rows);
        const [gc, cc] = bothEmpty('float32', 1);
        webgpu().crossEntropy(gl, gt, gloss, glse, gc, rows, cols, -100);
        cpu.crossEntropy(cl, ct, closs, clse, cc, rows, cols, -100);
        const what = `${dtype} ${rows}x${cols}`;
        await check(() => compare(whole(gloss), whole(closs), { rtol: 1e-5, atol: 1e-6 }, `crossEntropy loss ${what}`));
        await check(() => compare(glse, clse, { rtol: 1e-6, atol: 1e-6 }, `crossEntropy lse ${what}`));
        await check(() => compareBits(gc, cc, `crossEntropy count ${what}`));
        const [ggy, cgy] = both('float32', [2.5]);
        const [gg, cg] = bothEmpty(dtype, rows * cols, pad);
        webgpu().crossEntropyBackward(gl, gt, glse, gc, ggy, gg, rows, cols, -100);
        cpu.crossEntropyBackward(cl, ct, clse, cc, cgy, cg, rows, cols, -100);
        await check(() => compare(whole(gg), whole(cg), tolFor(dtype, 1e-5, 1e-7), `crossEntropyBackward ${what}`));
      }
    }
  }));

  test('cross-entropy: every target ignored gives NaN loss (0 / 0) and count 0', async () => {
    const [gl] = both('float32', normal(12, 1));
    const [gt] = both('int32', [-100, -100, -100]);
    const [gloss] = bothEmpty('float32', 1), [glse] = bothEmpty('float32', 3), [gc] = bothEmpty('float32', 1);
    webgpu().crossEntropy(gl, gt, gloss, glse, gc, 3, 4, -100);
    assert.ok(Number.isNaN((await webgpu().read(gloss))[0]));
    assert.equal((await webgpu().read(gc))[0], 0);
  });

  test('scatterAdd (embedding gradient): repeated ids, deterministic, every float dtype, odd row lengths', () => collect(async (check) => {
    for (const dtype of FLOATS) {
      for (const dim of [6, 5]) {
        const rows = 13, n = 40;
        const ids = uniform(n, dim, 0, rows).map(Math.floor);
        ids[0] = 4; ids[5] = 4; ids[39] = 4;
        const g = normal(n * dim, 8);
        const init = normal(rows * dim, 9);
        const [gg, cg] = both(dtype, g, 1);
        const [gi, ci] = both('int32', ids);
        const [go, co] = both(dtype, init, 1);
        webgpu().scatterAdd(gg, gi, go, n, dim);
        cpu.scatterAdd(cg, ci, co, n, dim);
        await check(() => compare(whole(go), whole(co), tolFor(dtype, 1e-5, 1e-5), `scatterAdd ${dtype} dim ${dim}`));
        // The same call again gives the same bits (a fixed order of additions).
        const [go2] = both(dtype, init, 1);
        webgpu().scatterAdd(gg, gi, go2, n, dim);
        await check(() => sameGpuBits(whole(go2), whole(go), `scatterAdd deterministic ${dtype}`));
      }
    }
  }));

  test('scatterAdd: many positions and a large table (two radix passes, many blocks), the CPU result to the bit', () => collect(async (check) => {
    for (const [n, rows, dim] of [[20000, 50257, 3], [3000, 700, 4], [1000, 1, 2], [777, 300, 5]] as const) {
      // Skewed ids: half the positions share a few ids, in runs and scattered, so chains are long.
      const ids = uniform(n, n + rows, 0, rows).map((x, i) => Math.floor(i % 2 ? x : x % 7));
      for (const dtype of FLOATS) {
        const [gg, cg] = both(dtype, normal(n * dim, 5), 1);
        const [gi, ci] = both('int32', ids, 1);
        const [go, co] = both(dtype, normal(rows * dim, 6), 1);
        webgpu().scatterAdd(gg, gi, go, n, dim);
        cpu.scatterAdd(cg, ci, co, n, dim);
        await check(() => compareBits(whole(go), whole(co), `scatterAdd ${dtype} n ${n} rows ${rows}`));
      }
    }
  }));

  test('ids and targets out of range: the first bad position of the first failing op is raised at the next read, then cleared', async () => {
    const outOfRange = (what: string, position: number, value: number) => (e: unknown) =>
      e instanceof IndexOutOfRangeError && e.what === what && e.position === position && e.value === value;
    const b = webgpu();
    const [table] = both('float32', normal(10, 1));
    const [out] = bothEmpty('float32', 18);
    const [ids] = both('int32', [0, 5, 2, 6, -1, 9], 1);
    b.gather(table, ids, out, 6, 2);
    // Rows of bad ids are zeros, good rows are gathered.
    await assert.rejects(b.read(out), outOfRange('token id', 1, 5));
    const rows = await b.read(out);
    assert.deepEqual(Array.from(rows.slice(2, 4)), [0, 0]);
    assert.deepEqual(Array.from(rows.slice(0, 2)), Array.from((await b.read(table)).slice(0, 2)));
    // The error was cleared: a good gather reads normally.
    const [good] = both('int32', [1, 2, 3], 1);
    b.gather(table, good, out, 3, 2);
    await b.read(out);
    // Two failing ops: the first is reported, by sync as well as by read.
    const [logits] = both('float32', normal(12, 2));
    const [loss] = bothEmpty('float32', 1), [lse] = bothEmpty('float32', 4), [count] = bothEmpty('float32', 1);
    const [targets] = both('int32', [0, -100, 3, 400], 1);
    b.crossEntropy(logits, targets, loss, lse, count, 4, 3, -100);
    b.scatterAdd(out, ids, table, 6, 2);
    await assert.rejects(b.sync(), outOfRange('target', 2, 3));
    b.scatterAdd(out, ids, table, 6, 2);
    await assert.rejects(b.read(loss), outOfRange('token id', 1, 5));
    const [ignored] = both('int32', [0, -100, 2, 1], 1);
    b.crossEntropy(logits, ignored, loss, lse, count, 4, 3, -100);
    assert.equal((await b.read(count))[0], 3);
  });
});
