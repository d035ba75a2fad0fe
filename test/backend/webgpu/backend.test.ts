// The WebGPU backend as a whole: transfers at any offset, the buffer pool and
// memory accounting, typed errors, batching without host waits, matmul through
// the Backend interface (both kernels), and the tensor API running on it.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MatmulSpec, View } from '../../../src/backend/backend.js';
import { BackendError } from '../../../src/backend/backend.js';
import { createWebGPUBackend, DeviceLostError, type WebGPUBackend } from '../../../src/backend/webgpu/backend.js';
import { needsUnsafeF16 } from '../../../src/backend/webgpu/device.js';
import { dawnCreateOptions } from '../../../src/backend/webgpu/node.js';
import { decodeBFloat16, decodeFloat16 } from '../../../src/dtype/codec.js';
import type { DType } from '../../../src/dtype/dtype.js';
import * as mp from '../../../src/index.js';
import { FLOATS, both, bothEmpty, collect, compareBits, cpu, mixed, normal, rtolFor, skip, uniform, webgpu, whole } from './helpers.js';

describe('webgpu backend', { skip }, () => {
  test('adapterInfo and description say which adapter and whether it has shader-f16', () => {
    const info = webgpu().adapterInfo;
    assert.equal(typeof info.description, 'string');
    assert.ok(info.description.length > 0);
    assert.equal(typeof info.hasF16, 'boolean');
    assert.equal(typeof info.isSoftware, 'boolean');
    assert.ok(webgpu().description.includes(info.description));
    assert.equal(webgpu().supports('float64'), false);
    for (const d of ['float32', 'float16', 'bfloat16', 'int32'] as const) assert.ok(webgpu().supports(d));
  });

  test('write/read and writeRaw/readRaw round-trip at even and odd offsets and sizes, leaving neighbours alone', async () => {
    for (const dtype of ['float32', 'float16', 'bfloat16', 'int32'] as DType[]) {
      for (const [pad, size] of [[0, 6], [1, 5], [1, 6], [0, 1], [3, 1], [2, 0]] as const) {
        const data = dtype === 'int32' ? uniform(size, 3, -1e9, 1e9).map(Math.round) : mixed(size, 4, dtype);
        const [g, c] = both(dtype, data, pad);
        await compareBits(whole(g), whole(c), `write ${dtype} pad ${pad} size ${size}`);
        const raw = await cpu.readRaw(c);
        const [g2, c2] = bothEmpty(dtype, size, pad);
        webgpu().writeRaw(g2, raw);
        cpu.writeRaw(c2, raw);
        await compareBits(whole(g2), whole(c2), `writeRaw ${dtype} pad ${pad} size ${size}`);
        const back = await webgpu().read(g);
        const expected = await cpu.read(c);
        assert.deepEqual(Array.from(back, (x) => (Number.isNaN(x) ? 'NaN' : x)), Array.from(expected, (x) => (Number.isNaN(x) ? 'NaN' : x)));
        assert.ok(dtype === 'int32' ? back instanceof Int32Array : back instanceof Float32Array);
      }
    }
  });

  test('16-bit reads decode with the codec', async () => {
    const bits = Uint16Array.from([0x3c00, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x8000, 0x3555]);
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const [g] = bothEmpty(dtype, bits.length, 1);
      webgpu().writeRaw(g, bits);
      const expected = new Float32Array(bits.length);
      (dtype === 'float16' ? decodeFloat16 : decodeBFloat16)(bits, expected);
      assert.deepEqual(Array.from(await webgpu().read(g)), Array.from(expected));
      assert.deepEqual(Array.from(await webgpu().readRaw(g)), Array.from(bits));
    }
  });

  test('typed errors: wrong lengths, float64, double free', () => {
    const b = webgpu();
    const buf = b.alloc('float32', 4);
    assert.throws(() => b.write({ buf, offset: 0, size: 4, dtype: 'float32' }, [1, 2, 3]), BackendError);
    assert.throws(() => b.alloc('float64', 4), /float64/);
    b.free(buf);
    assert.throws(() => b.free(buf), /freed twice/);
  });

  test('the pool reuses freed buffers: a repeated workload allocates nothing new', async () => {
    const b = webgpu();
    const work = () => {
      const views = [b.alloc('float32', 1000), b.alloc('float16', 333), b.alloc('int32', 7)];
      const v: View = { buf: views[0]!, offset: 0, size: 1000, dtype: 'float32' };
      b.fill(v, 2);
      b.reduce('sum', v, { ...v, size: 1 }, 1, 1000, 1);
      for (const x of views) b.free(x);
    };
    work();
    await b.sync();
    const before = b.memory();
    for (let i = 0; i < 5; i++) work();
    await b.sync();
    const after = b.memory();
    assert.equal(after.bytes, before.bytes);
    assert.equal(after.buffers, before.buffers);
    assert.ok(after.peakBytes >= after.bytes);
  });

  test('a repeated step whose dispatch count is no multiple of the group size makes no new bind groups after its first run', async () => {
    const b = webgpu();
    const batch = b.alloc('float32', 4), x = b.alloc('float32', 64);
    const xv: View = { buf: x, offset: 0, size: 64, dtype: 'float32' };
    b.fill(xv, 1);
    // A step: write the batch (a block the step's kernels do not use), then 7 kernels.
    const step = () => {
      b.write({ buf: batch, offset: 0, size: 4, dtype: 'float32' }, [1, 2, 3, 4]);
      for (let k = 0; k < 7; k++) b.unary('affine', xv, xv, 1, k);
    };
    step();
    step();
    const made = b.rt.stats.bindGroups;
    for (let i = 0; i < 60; i++) step();
    await b.sync();
    assert.equal(b.rt.stats.bindGroups, made);
    b.free(batch);
    b.free(x);
  });

  test('kernels are recorded without waiting and submitted in groups; reads see every earlier write', async () => {
    const b = webgpu();
    const n = 1000;
    const buf = b.alloc('float32', n);
    const v: View = { buf, offset: 0, size: n, dtype: 'float32' };
    b.fill(v, 0);
    const submits = b.rt.stats.submits;
    for (let i = 0; i < 200; i++) b.unary('affine', v, v, 1, 1);
    assert.ok(b.rt.stats.submits - submits < 20, 'dispatches are grouped into few submits');
    // A host write between kernels lands in order: the pending group is submitted first.
    b.write({ ...v, offset: 5, size: 1 }, [-1]);
    b.unary('affine', v, v, 2, 0);
    const out = await b.read(v);
    assert.equal(out[0], 400);
    assert.equal(out[5], -2);
    b.free(buf);
  });

  test('a buffer freed with work pending and handed out again is written only after that work', async () => {
    const b = webgpu();
    const a = b.alloc('float32', 64);
    const va: View = { buf: a, offset: 0, size: 64, dtype: 'float32' };
    const out = b.alloc('float32', 64);
    const vo: View = { buf: out, offset: 0, size: 64, dtype: 'float32' };
    b.write(va, new Array(64).fill(3));
    b.unary('square', va, vo);
    b.free(a);
    const again = b.alloc('float32', 64);
    b.write({ buf: again, offset: 0, size: 64, dtype: 'float32' }, new Array(64).fill(100));
    assert.deepEqual(Array.from(await b.read(vo)), new Array(64).fill(9));
    b.free(again);
    b.free(out);
  });

  // The tuned kernels have their own exhaustive tests (matmul.test.ts, slow to compile on a software
  // adapter); here the backend's wiring of views, strides and epilogues into them is checked, and the
  // simple kernel in full.
  const MATMULS: [string, MatmulSpec, number, number, readonly DType[]][] = [
    ['plain', { batch: 1, m: 9, n: 13, k: 17, transA: false, transB: false, strideA: 0, strideB: 0 }, 9 * 17, 17 * 13, ['float32', 'float16']],
    ['transposed B, bias, gelu, preGelu', { batch: 1, m: 33, n: 20, k: 8, transA: false, transB: true, strideA: 0, strideB: 0, gelu: true }, 33 * 8, 20 * 8, ['float32']],
    ['transposed A, accumulate', { batch: 1, m: 6, n: 10, k: 40, transA: true, transB: false, strideA: 0, strideB: 0, accumulate: true }, 40 * 6, 40 * 10, ['bfloat16']],
    ['batched, shared B', { batch: 3, m: 5, n: 7, k: 6, transA: false, transB: false, strideA: 30, strideB: 0 }, 90, 42, ['float32']],
  ];

  for (const kernel of ['fast', 'simple'] as const) {
    test(`matmul through the backend (${kernel} kernel): transposes, batches, epilogues${kernel === 'simple' ? ', every float dtype' : ''}`, () => collect(async (check) => {
      const g: WebGPUBackend = kernel === 'fast' ? webgpu() : await createWebGPUBackend({ register: false, matmul: 'simple' });
      try {
        for (const [name, spec0, na, nb, dtypes] of MATMULS) {
          for (const dtype of kernel === 'simple' ? FLOATS : dtypes) {
            const spec = { ...spec0 };
            const a = normal(na, na), bb = normal(nb, nb);
            const ga = up(g, dtype, a, 1), ca = up(cpu, dtype, a, 1);
            const gb = up(g, dtype, bb), cb = up(cpu, dtype, bb);
            const nOut = spec.batch * spec.m * spec.n;
            const init = normal(nOut, 5);
            const gc = up(g, dtype, init, 1), cc = up(cpu, dtype, init, 1);
            const cspec = { ...spec };
            if (spec.gelu) {
              const bias = normal(spec.n, 6);
              spec.bias = up(g, dtype, bias); cspec.bias = up(cpu, dtype, bias);
              spec.preGelu = up(g, dtype, new Array(nOut).fill(0)); cspec.preGelu = up(cpu, dtype, new Array(nOut).fill(0));
            }
            g.matmul(ga, gb, gc, spec);
            cpu.matmul(ca, cb, cc, cspec);
            const tol = dtype === 'float32' ? { rtol: 1e-5, atol: 1e-5 } : { rtol: rtolFor(dtype), atol: 4 * rtolFor(dtype) };
            const what = `matmul ${name} ${dtype}`;
            await check(async () => assertCloseViews(g, gc, cc, tol, what));
            if (spec.preGelu) await check(async () => assertCloseViews(g, spec.preGelu!, cspec.preGelu!, tol, `${what} preGelu`));
          }
        }
      } finally {
        if (g !== webgpu()) g.destroy();
      }
    }));
  }

  test('without subgroups and shader-f16: packed float16 reads, tree reductions, tiled attention, simple matmul', async () => {
    const plain = await createWebGPUBackend({ register: false, useSubgroups: false, useF16: false, matmul: 'simple' });
    try {
      assert.equal(plain.adapterInfo.hasSubgroups, false);
      assert.equal(plain.adapterInfo.hasF16, false);
      const put = (b: mp.Backend, dtype: DType, data: number[], pad = 0) => up(b, dtype, data, pad);
      // Long rows take the workgroup-per-row kernels (tree reductions without subgroups).
      const rows = 3, cols = 1500;
      const x = normal(rows * cols, 7, 3);
      for (const dtype of ['float16', 'bfloat16'] as const) {
        const gx = put(plain, dtype, x, 1), cx = put(cpu, dtype, x, 1);
        const gy = put(plain, 'float32', new Array(rows * cols).fill(0)), cy = put(cpu, 'float32', new Array(rows * cols).fill(0));
        plain.softmax(gx, gy, rows, cols, true);
        cpu.softmax(cx, cy, rows, cols, true);
        await assertCloseViews(plain, gy, cy, { rtol: 1e-5, atol: 1e-5 }, `log-softmax ${dtype} without subgroups`);
        const gs = put(plain, 'float32', [0, 0, 0]), cs = put(cpu, 'float32', [0, 0, 0]);
        plain.reduce('max', gx, gs, rows, cols, 1);
        cpu.reduce('max', cx, cs, rows, cols, 1);
        await assertCloseViews(plain, gs, cs, { rtol: 0, atol: 0 }, `max ${dtype} (packed reads)`);
      }
      // Attention in the tiled kernels (workgroup memory, barriers), fused layout.
      const B = 2, H = 2, T = 21, d = 8, C = H * d;
      const qkv = normal(B * T * 3 * C, 8);
      const gq = put(plain, 'float16', qkv), cq = put(cpu, 'float16', qkv);
      const go = put(plain, 'float16', new Array(B * T * C).fill(0)), co = put(cpu, 'float16', new Array(B * T * C).fill(0));
      const gl = put(plain, 'float32', new Array(B * H * T).fill(0)), cl = put(cpu, 'float32', new Array(B * H * T).fill(0));
      const inL = (part: number) => ({ offset: part * C, sB: T * 3 * C, sH: d, sT: 3 * C });
      const oL = { offset: 0, sB: T * C, sH: d, sT: C };
      const spec = { batch: B, heads: H, tq: T, tk: T, headDim: d, scale: 0.35, causal: true };
      plain.attention(gq, inL(0), gq, inL(1), gq, inL(2), go, oL, gl, spec);
      cpu.attention(cq, inL(0), cq, inL(1), cq, inL(2), co, oL, cl, spec);
      await assertCloseViews(plain, go, co, { rtol: rtolFor('float16'), atol: 2e-3 }, 'tiled attention output');
      await assertCloseViews(plain, gl, cl, { rtol: 1e-5, atol: 1e-5 }, 'tiled attention lse');
      const ggo = normal(B * T * C, 9);
      const gg = put(plain, 'float16', ggo), cg = put(cpu, 'float16', ggo);
      const gd = put(plain, 'float16', new Array(B * T * 3 * C).fill(0)), cd = put(cpu, 'float16', new Array(B * T * 3 * C).fill(0));
      plain.attentionBackward(gq, inL(0), gq, inL(1), gq, inL(2), go, oL, gl, gg, oL, gd, inL(0), gd, inL(1), gd, inL(2), spec);
      cpu.attentionBackward(cq, inL(0), cq, inL(1), cq, inL(2), co, oL, cl, cg, oL, cd, inL(0), cd, inL(1), cd, inL(2), spec);
      await assertCloseViews(plain, gd, cd, { rtol: rtolFor('float16'), atol: 4e-3 }, 'tiled attention gradients');
    } finally {
      plain.destroy();
    }
  });

  test('a lost device makes every later call fail with DeviceLostError', async () => {
    const b = await createWebGPUBackend({ register: false });
    const buf = b.alloc('float32', 4);
    b.rt.device.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(b.read({ buf, offset: 0, size: 4, dtype: 'float32' }), DeviceLostError);
    assert.throws(() => b.alloc('float32', 4), DeviceLostError);
    b.destroy();
  });

  test('trim() with recorded, unsubmitted commands on pooled buffers leaves the backend usable', async () => {
    const b = await createWebGPUBackend({ register: false });
    try {
      // The backend's own buffers (the index-check record) are there from the start.
      const own = b.memory().buffers;
      const a = b.alloc('float32', 1024);
      b.fill({ buf: a, offset: 0, size: 1024, dtype: 'float32' }, 3);
      b.free(a);
      // The fill is recorded but not submitted; trim destroys a's block.
      b.trim();
      const c = b.alloc('float32', 4);
      b.fill({ buf: c, offset: 0, size: 4, dtype: 'float32' }, 2);
      assert.deepEqual(Array.from(await b.read({ buf: c, offset: 0, size: 4, dtype: 'float32' })), [2, 2, 2, 2]);
      await b.sync();
      assert.equal(b.memory().buffers, own + 1);
    } finally {
      b.destroy();
    }
  });

  test('globalThis.setImmediate is never replaced: before, during and after device waits', async () => {
    const original = globalThis.setImmediate;
    const b = await createWebGPUBackend({ register: false });
    try {
      const v = up(b, 'float32', [1, 2, 3, 4]);
      const seen: (typeof setImmediate)[] = [];
      const watch = setInterval(() => seen.push(globalThis.setImmediate), 0);
      const waits = Promise.all([b.read(v), b.sync(), b.read(v)]);
      // The waits have begun (a replacement would be installed by now), whether or not a timer fires before they end.
      seen.push(globalThis.setImmediate);
      const [back] = await waits;
      clearInterval(watch);
      assert.deepEqual(Array.from(back), [1, 2, 3, 4]);
      assert.ok(seen.length > 0);
      for (const f of seen) assert.equal(f, original);
      // Dawn polls through the global: reads still complete with it untouched.
      assert.deepEqual(Array.from(await b.read(v)), [1, 2, 3, 4]);
    } finally {
      b.destroy();
    }
    assert.equal(globalThis.setImmediate, original);
  });

  test('the tensor API on WebGPU: linear + GELU + layer norm + attention + cross-entropy, forward and backward, as on the CPU', async () => {
    const gpu = webgpu();
    const run = async (backend: mp.Backend) => {
      mp.manualSeed(0);
      const opts = { backend, requiresGrad: true } as const;
      const x = mp.tensor(normal(2 * 8 * 12, 1), { ...opts, shape: [2, 8, 12] });
      const w = mp.tensor(normal(12 * 36, 2, 0.3), { ...opts, shape: [12, 36] });
      const bias = mp.tensor(normal(36, 3, 0.1), { ...opts, shape: [36] });
      const g = mp.tensor(uniform(12, 4, 0.5, 1.5), { ...opts, shape: [12] });
      const wo = mp.tensor(normal(12 * 5, 5, 0.3), { ...opts, shape: [12, 5] });
      const targets = mp.tensor(Int32Array.from({ length: 16 }, (_, i) => i % 5), { backend, shape: [2, 8], dtype: 'int32' });
      const h = mp.linear(mp.layerNorm(x, g, null), w, bias, { weightLayout: 'in,out', gelu: true });
      const y = mp.causalSelfAttention(h, 3);
      const logits = mp.linear(y, wo, null, { weightLayout: 'in,out' });
      const loss = mp.crossEntropy(logits, targets);
      loss.backward();
      const out = {
        loss: await loss.item(),
        grads: await Promise.all([x, w, bias, g, wo].map((t) => t.grad!.toArray())),
      };
      for (const t of [x, w, bias, g, wo, targets, h, y, logits, loss]) t.dispose();
      return out;
    };
    const c = await run(cpu);
    const gg = await run(gpu);
    assert.ok(Math.abs(gg.loss - c.loss) < 1e-5 * Math.abs(c.loss), `loss ${gg.loss} vs ${c.loss}`);
    gg.grads.forEach((grad, i) => assertCloseArrays(grad, c.grads[i]!, { rtol: 1e-4, atol: 1e-6 }, `grad ${i}`));
  });

  test('causalSelfAttention with dropout on the probabilities (explicit form) drops the same ones as on the CPU, forward and backward, float32 and under fp16 autocast', async () => {
    const gpu = webgpu();
    const [B, T, C, H] = [2, 8, 12, 3];
    for (const dtype of ['float32', 'float16'] as const) {
      const run = async (backend: mp.Backend) => {
        const qkv = mp.tensor(normal(B * T * 3 * C, 11), { backend, shape: [B, T, 3 * C], requiresGrad: true });
        const generator = new mp.Generator(9);
        const y = mp.autocast({ dtype: 'float16', enabled: dtype === 'float16' }, () => mp.causalSelfAttention(qkv, H, { dropout: 0.1, generator }));
        const r = mp.tensor(normal(B * T * C, 12), { backend, shape: [B, T, C] });
        const loss = mp.sum(mp.mul(y, r));
        loss.backward();
        const out = { y: await y.toArray(), grad: await qkv.grad!.toArray(), drawn: generator.offset };
        for (const t of [qkv, y, r, loss]) t.dispose();
        return out;
      };
      const c = await run(cpu), g = await run(gpu);
      assert.equal(g.drawn, B * H * T * T);
      assert.equal(c.drawn, g.drawn);
      const tol = dtype === 'float16' ? { rtol: rtolFor('float16'), atol: 2e-3 } : { rtol: 1e-5, atol: 1e-6 };
      assertCloseArrays(g.y, c.y, tol, `${dtype} output`);
      assertCloseArrays(g.grad, c.grad, tol, `${dtype} gradient`);
    }
  });
});

function up(b: mp.Backend, dtype: DType, data: number[], pad = 0): View {
  const buf = b.alloc(dtype, data.length + pad);
  const v: View = { buf, offset: pad, size: data.length, dtype };
  b.write(v, data);
  return v;
}

async function assertCloseViews(g: WebGPUBackend, gv: View, cv: View, tol: { rtol: number; atol: number }, what: string) {
  assertCloseArrays(await g.read(gv), await cpu.read(cv), tol, what);
}

function assertCloseArrays(a: ArrayLike<number>, e: ArrayLike<number>, tol: { rtol: number; atol: number }, what: string) {
  assert.equal(a.length, e.length);
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i]! - e[i]!);
    assert.ok(d <= tol.atol + tol.rtol * Math.abs(e[i]!), `${what}[${i}]: ${a[i]} vs ${e[i]}`);
  }
}



describe("Dawn's unsafe APIs", () => {
  test('are off unless asked for; the f16 toggles merge with the caller\'s enabled features', () => {
    assert.deepEqual(dawnCreateOptions([], false), []);
    assert.deepEqual(dawnCreateOptions(['backend=vulkan'], false), ['backend=vulkan']);
    assert.deepEqual(dawnCreateOptions(['enable-dawn-features=dump_shaders'], false), ['enable-dawn-features=dump_shaders']);
    assert.deepEqual(dawnCreateOptions(['enable-dawn-features=dump_shaders', 'backend=vulkan'], true),
      ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,dump_shaders', 'backend=vulkan']);
  });

  test('are asked for only when shader-f16 is wanted and an NVIDIA adapter lacks it', () => {
    const adapter = (vendor: string, f16: boolean) => ({ features: new Set(f16 ? ['shader-f16'] : []), info: { vendor } }) as unknown as GPUAdapter;
    assert.equal(needsUnsafeF16(adapter('nvidia', false), {}), true);
    assert.equal(needsUnsafeF16(adapter('nvidia', true), {}), false);
    assert.equal(needsUnsafeF16(adapter('nvidia', false), { useF16: false }), false);
    assert.equal(needsUnsafeF16(adapter('mesa', false), {}), false);
    assert.equal(needsUnsafeF16(adapter('amd', false), {}), false);
  });
});
