import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DTypeError, Generator, ShapeError, Tensor, TensorError, causalMask, causalSelfAttention, crossEntropy, dropout, embedding,
  layerNorm, logSoftmax, matmul, memory, mul, permute, reshape, scaledDotProductAttention, slice, softmax, sum, tensor, transpose,
} from '../../../src/index.js';
import { checkAndDispose, host, randLeaf } from '../../helpers/gradcheck.js';

const ids = (values: number[], shape?: number[]) => tensor(new Int32Array(values), shape ? { shape } : {});

/** Attention written out with plain ops: softmax(q k^T * scale [masked]) v. */
function attentionByOps(q: Tensor, k: Tensor, v: Tensor, causal: boolean): Tensor {
  const d = q.shape[q.ndim - 1]!;
  const scores = mul(matmul(q, transpose(k, -2, -1)), 1 / Math.sqrt(d));
  return matmul(softmax(causal ? causalMask(scores) : scores, -1), v);
}

describe('softmax and logSoftmax gradients (float64 finite differences)', () => {
  it('over the last dim and over another dim', () => {
    checkAndDispose((x) => softmax(x), [randLeaf([3, 5], 1)], 'softmax last');
    checkAndDispose((x) => softmax(x, 0), [randLeaf([3, 5], 2)], 'softmax dim 0');
    checkAndDispose((x) => softmax(x, 1), [randLeaf([2, 3, 4], 3)], 'softmax middle dim');
    checkAndDispose((x) => logSoftmax(x), [randLeaf([3, 5], 4)], 'logSoftmax last');
    checkAndDispose((x) => logSoftmax(x, -3), [randLeaf([2, 3, 4], 5)], 'logSoftmax dim 0');
  });
});

describe('layerNorm gradients (float64 finite differences)', () => {
  it('with weight and bias, with weight only, without either', () => {
    checkAndDispose((x, w, b) => layerNorm(x, w, b), [randLeaf([3, 6], 11, { scale: 2, shift: 1 }), randLeaf([6], 12, { shift: 1 }), randLeaf([6], 13)], 'layerNorm w b');
    checkAndDispose((x, w) => layerNorm(x, w), [randLeaf([2, 2, 5], 14), randLeaf([5], 15, { shift: 1 })], 'layerNorm w');
    checkAndDispose((x) => layerNorm(x), [randLeaf([4, 5], 16)], 'layerNorm');
    checkAndDispose((x, b) => layerNorm(x, null, b, 1e-3), [randLeaf([4, 5], 17, { scale: 0.1 }), randLeaf([5], 18)], 'layerNorm b, eps 1e-3');
  });

  it('with a constant weight', () => {
    const w = randLeaf([5], 19, { grad: false });
    checkAndDispose((x, b) => layerNorm(x, w, b), [randLeaf([3, 5], 20), randLeaf([5], 21)], 'layerNorm, constant weight');
    w.dispose();
  });
});

describe('embedding and crossEntropy gradients (float64 finite differences)', () => {
  it('embedding with repeated ids accumulates the scatter-add', () => {
    const i = ids([1, 3, 1, 0, 1, 3], [2, 3]);
    checkAndDispose((w) => embedding(i, w), [randLeaf([5, 4], 31)], 'embedding');
    i.dispose();
  });

  it('crossEntropy (mean), with and without ignored targets', () => {
    const t = ids([2, 0, 4, 1]);
    checkAndDispose((x) => crossEntropy(x, t), [randLeaf([4, 5], 41, { scale: 2 })], 'crossEntropy');
    const ti = ids([2, -100, 4, -100, 0, 3], [2, 3]);
    checkAndDispose((x) => crossEntropy(x, ti), [randLeaf([2, 3, 5], 42, { scale: 2 })], 'crossEntropy ignoring -100');
    const tj = ids([7, 1, 7]);
    checkAndDispose((x) => crossEntropy(x, tj, { ignoreIndex: 7 }), [randLeaf([3, 4], 43)], 'crossEntropy, ignoreIndex 7');
    for (const x of [t, ti, tj]) x.dispose();
  });
});

describe('masking, dropout and attention gradients (float64 finite differences)', () => {
  it('causalMask (square and T != S), alone with a finite fill and under softmax with -inf', () => {
    checkAndDispose((x) => causalMask(x, -5), [randLeaf([2, 3, 3], 51)], 'causalMask -5');
    checkAndDispose((x) => softmax(causalMask(x)), [randLeaf([2, 3, 5], 52)], 'softmax(causalMask) T<S');
  });

  it('dropout with a fixed generator state', () => {
    checkAndDispose((x) => dropout(x, 0.3, { generator: new Generator(7, 100) }), [randLeaf([4, 5], 61)], 'dropout');
  });

  it('scaledDotProductAttention, causal and not, T != S', () => {
    for (const causal of [false, true]) {
      checkAndDispose((q, k, v) => scaledDotProductAttention(q, k, v, { causal }),
        [randLeaf([2, 2, 3, 4], 71), randLeaf([2, 2, 5, 4], 72), randLeaf([2, 2, 5, 4], 73)], `sdpa causal=${causal} T<S`);
      checkAndDispose((q, k, v) => scaledDotProductAttention(q, k, v, { causal, scale: 0.7 }),
        [randLeaf([1, 2, 4, 3], 74), randLeaf([1, 2, 4, 3], 75), randLeaf([1, 2, 4, 3], 76)], `sdpa causal=${causal} square, scale 0.7`);
    }
    checkAndDispose((q, k, v) => scaledDotProductAttention(q, k, v),
      [randLeaf([1, 1, 4, 3], 77), randLeaf([1, 1, 2, 3], 78), randLeaf([1, 1, 2, 3], 79)], 'sdpa T>S');
  });

  it('causalSelfAttention from a fused qkv tensor', () => {
    checkAndDispose((qkv) => causalSelfAttention(qkv, 2), [randLeaf([2, 3, 12], 81)], 'causalSelfAttention');
    checkAndDispose((qkv) => causalSelfAttention(qkv, 1), [randLeaf([1, 4, 6], 82)], 'causalSelfAttention, one head');
  });

  it('causalSelfAttention with dropout on the probabilities, the mask fixed by the generator state', () => {
    const attend = (qkv: Tensor) => causalSelfAttention(qkv, 2, { dropout: 0.3, generator: new Generator(7, 100) });
    checkAndDispose(attend, [randLeaf([2, 5, 12], 83)], 'causalSelfAttention, dropout 0.3');
  });
});

describe('values', () => {
  it('softmax rows sum to 1, logSoftmax is its log, along any dim', () => {
    const x = randLeaf([2, 3, 4], 91, { grad: false });
    for (const dim of [0, 1, 2]) {
      const s = softmax(x, dim), l = logSoftmax(x, dim);
      const sums = host(sum(s, dim));
      sums.forEach((v) => assert.ok(Math.abs(v - 1) < 1e-14));
      host(l).forEach((v, i) => assert.ok(Math.abs(Math.exp(v) - host(s)[i]!) < 1e-14));
      s.dispose();
      l.dispose();
    }
    x.dispose();
  });

  it('softmax of a fully masked row is NaN, as in PyTorch; a partly masked row is fine', () => {
    const x = tensor([[-Infinity, -Infinity], [0, -Infinity]]);
    const s = softmax(x), l = logSoftmax(x);
    const v = s.toArraySync(), lv = l.toArraySync();
    assert.ok(Number.isNaN(v[0]) && Number.isNaN(v[1]));
    assert.deepEqual([v[2], v[3]], [1, 0]);
    assert.ok(Number.isNaN(lv[0]));
    assert.deepEqual([lv[2], lv[3]], [0, -Infinity]);
    for (const t of [x, s, l]) t.dispose();
  });

  it('layerNorm normalises each row (mean 0, variance 1 with eps), then applies weight and bias', () => {
    const x = randLeaf([3, 8], 92, { scale: 3, shift: 2, grad: false });
    const y = host(layerNorm(x));
    for (let r = 0; r < 3; r++) {
      const row = y.subarray(r * 8, r * 8 + 8);
      const m = row.reduce((a, b) => a + b) / 8, v = row.reduce((a, b) => a + (b - m) ** 2, 0) / 8;
      assert.ok(Math.abs(m) < 1e-12);
      assert.ok(Math.abs(v - 1) < 1e-5);
    }
    const w = tensor([2, 2, 2, 2, 2, 2, 2, 2], { dtype: 'float64' }), b = tensor([1, 1, 1, 1, 1, 1, 1, 1], { dtype: 'float64' });
    const z = host(layerNorm(x, w, b));
    z.forEach((v, i) => assert.ok(Math.abs(v - (2 * y[i]! + 1)) < 1e-12));
    x.dispose();
  });

  it('crossEntropy equals the mean of -logSoftmax at the targets over non-ignored rows; all ignored gives NaN', () => {
    const x = randLeaf([4, 3], 93, { grad: false });
    const t = ids([2, -100, 0, 1]);
    const loss = crossEntropy(x, t).toArraySync()[0]!;
    const ls = host(logSoftmax(x));
    const want = -(ls[2]! + ls[6]! + ls[10]!) / 3;
    assert.ok(Math.abs(loss - want) < 1e-14);
    const all = crossEntropy(x, ids([-100, -100, -100, -100]));
    assert.ok(Number.isNaN(all.toArraySync()[0]));
    x.dispose();
  });

  it('embedding picks rows', () => {
    const w = tensor([[1, 2], [3, 4], [5, 6]]);
    const e = embedding(ids([2, 0, 2], [3]), w);
    assert.deepEqual(e.shape, [3, 2]);
    assert.deepEqual([...e.toArraySync()], [5, 6, 1, 2, 5, 6]);
    w.dispose();
  });

  it('causalMask fills above the diagonal, shifted when T != S', () => {
    const x = tensor(new Array(6).fill(1), { shape: [2, 3] });
    const y = causalMask(x, 0);
    // T=2, S=3: row i keeps columns 0..i+1.
    assert.deepEqual([...y.toArraySync()], [1, 1, 0, 1, 1, 1]);
    x.dispose();
    y.dispose();
  });

  it('dropout: the same generator state gives the same mask; kept values are scaled by 1/(1-p); p=0 or eval is the identity', () => {
    const x = tensor(new Array(10000).fill(1));
    const a = dropout(x, 0.25, { generator: new Generator(3) }), b = dropout(x, 0.25, { generator: new Generator(3) });
    const c = dropout(x, 0.25, { generator: new Generator(4) });
    assert.deepEqual([...a.toArraySync()], [...b.toArraySync()]);
    assert.notDeepEqual([...a.toArraySync()], [...c.toArraySync()]);
    const av = a.toArraySync();
    const kept = av.filter((v) => v !== 0);
    assert.ok(kept.every((v) => v === Math.fround(1 / 0.75)));
    assert.ok(Math.abs(kept.length / 10000 - 0.75) < 0.02, `kept ${kept.length}`);
    assert.equal(dropout(x, 0), x);
    assert.equal(dropout(x, 0.5, { training: false }), x);
    const g = new Generator(5);
    const d = dropout(x, 0.1, { generator: g });
    assert.equal(g.offset, 10000, 'dropout consumes one counter per element');
    assert.throws(() => dropout(x, 1), /probability must be in \[0, 1\), got 1/);
    for (const t of [x, a, b, c, d]) t.dispose();
  });

  it('scaledDotProductAttention equals attention written with plain ops (causal and not, T != S)', () => {
    const q = randLeaf([2, 2, 3, 4], 94, { grad: false }), k = randLeaf([2, 2, 5, 4], 95, { grad: false }), v = randLeaf([2, 2, 5, 4], 96, { grad: false });
    for (const causal of [false, true]) {
      const fused = host(scaledDotProductAttention(q, k, v, { causal }));
      const plain = host(attentionByOps(q, k, v, causal));
      fused.forEach((x, i) => assert.ok(Math.abs(x - plain[i]!) < 1e-12, `causal=${causal} at ${i}`));
    }
    for (const t of [q, k, v]) t.dispose();
  });

  it('causalSelfAttention equals split heads + causal attention + merge', () => {
    const [B, T, C, H] = [2, 4, 6, 3];
    const qkv = randLeaf([B, T, 3 * C], 97, { grad: false });
    const heads = (part: number) => permute(reshape(slice(qkv, 2, part * C, (part + 1) * C), [B, T, H, C / H]), [0, 2, 1, 3]);
    const o = scaledDotProductAttention(heads(0), heads(1), heads(2), { causal: true });
    const want = host(reshape(permute(o, [0, 2, 1, 3]), [B, T, C]));
    const got = causalSelfAttention(qkv, H);
    assert.deepEqual(got.shape, [B, T, C]);
    host(got).forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < 1e-12));
    qkv.dispose();
  });

  it('causalSelfAttention with dropout equals split heads + softmax + dropout of the probabilities (the same counters) + merge', () => {
    const [B, T, C, H, p] = [2, 5, 6, 3, 0.3];
    const qkv = randLeaf([B, T, 3 * C], 99, { grad: false });
    const heads = (part: number) => permute(reshape(slice(qkv, 2, part * C, (part + 1) * C), [B, T, H, C / H]), [0, 2, 1, 3]);
    const scores = mul(matmul(heads(0), transpose(heads(1), -2, -1)), 1 / Math.sqrt(C / H));
    const probs = dropout(softmax(causalMask(scores)), p, { generator: new Generator(5) });
    const want = host(reshape(permute(matmul(probs, heads(2)), [0, 2, 1, 3]), [B, T, C]));
    const generator = new Generator(5);
    const got = host(causalSelfAttention(qkv, H, { dropout: p, generator }));
    got.forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < 1e-12, `at ${i}: ${x} vs ${want[i]}`));
    assert.equal(generator.offset, B * H * T * T, 'one number per attention probability');
    const undropped = host(causalSelfAttention(qkv, H));
    assert.ok(got.some((x, i) => Math.abs(x - undropped[i]!) > 1e-6), 'some probabilities were dropped');
    const still = new Generator(5);
    assert.deepEqual(host(causalSelfAttention(qkv, H, { dropout: 0, generator: still })), undropped);
    assert.equal(still.offset, 0, 'dropout 0 is the fused kernel and draws nothing');
    qkv.dispose();
  });

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`causalSelfAttention backward in ${dtype} fills the q, k and v parts of the fused gradient`, () => {
      const x64 = randLeaf([1, 3, 12], 98, { grad: false });
      const grads = [x64.to('float32'), x64.to(dtype)].map((x) => {
        x.requiresGrad_();
        const y = causalSelfAttention(x, 2);
        sum(mul(y, y)).backward();
        return host(x.grad!);
      });
      const [ref, low] = grads as [Float64Array, Float64Array];
      const tol = dtype === 'float16' ? 2e-2 : 1e-1;
      // Every column block (q: 0..3, k: 4..7, v: 8..11) must carry gradient and agree with float32.
      for (const part of [0, 1, 2]) {
        let norm = 0;
        for (let t = 0; t < 3; t++) for (let c = 0; c < 4; c++) {
          const i = t * 12 + part * 4 + c;
          norm += Math.abs(low[i]!);
          assert.ok(Math.abs(low[i]! - ref[i]!) <= tol * (1 + Math.abs(ref[i]!)), `${dtype} part ${part} at ${i}: ${low[i]} vs ${ref[i]}`);
        }
        assert.ok(norm > 0, `${dtype}: the gradient of part ${part} is all zero`);
      }
      x64.dispose();
    });
  }
});

describe('errors', () => {
  it('shape mismatches name the shapes', () => {
    const x = tensor([[1, 2, 3]]);
    assert.throws(() => layerNorm(x, tensor([1, 2])), (e: Error) => e instanceof ShapeError && /weight \[2\]/.test(e.message) && /\[1, 3\]/.test(e.message));
    assert.throws(() => crossEntropy(x, ids([0, 1])), (e: Error) => e instanceof ShapeError && /targets \[2\]/.test(e.message) && /logits \[1, 3\]/.test(e.message));
    assert.throws(() => embedding(ids([0]), tensor([1, 2])), /weight must be 2-D/);
    const q = tensor(new Array(8).fill(0), { shape: [1, 1, 2, 4] }), k = tensor(new Array(6).fill(0), { shape: [1, 1, 2, 3] });
    assert.throws(() => scaledDotProductAttention(q, k, k), (e: Error) => e instanceof ShapeError && /\[1, 1, 2, 4\]/.test(e.message) && /\[1, 1, 2, 3\]/.test(e.message));
    assert.throws(() => causalSelfAttention(tensor(new Array(10).fill(0), { shape: [1, 2, 5] }), 2), /\[1, 2, 5\]/);
    const qkv = tensor(new Array(12).fill(0), { shape: [1, 2, 6] });
    for (const p of [1, -0.1, NaN]) {
      assert.throws(() => causalSelfAttention(qkv, 2, { dropout: p }), (e: Error) => e instanceof TensorError && e.message.includes(`causalSelfAttention: dropout must be in [0, 1), got ${p}`));
    }
    assert.throws(() => causalMask(tensor([1, 2])), /at least 2 dimensions/);
    x.dispose();
  });

  it('dtype mistakes are DTypeErrors', () => {
    const x = tensor([[1, 2, 3]]);
    assert.throws(() => crossEntropy(x, tensor([0])), (e: Error) => e instanceof DTypeError && /targets must be an int32 tensor/.test(e.message));
    assert.throws(() => embedding(tensor([0]), x), (e: Error) => e instanceof DTypeError && /ids must be an int32 tensor/.test(e.message));
    assert.throws(() => softmax(ids([1, 2])), DTypeError);
    const h = tensor(new Array(4).fill(0), { shape: [1, 1, 1, 4], dtype: 'float16' }), f = tensor(new Array(4).fill(0), { shape: [1, 1, 1, 4] });
    assert.throws(() => scaledDotProductAttention(h, f, f), (e: Error) => e instanceof TensorError && /share a dtype/.test(e.message));
    x.dispose();
  });
});

describe('memory', () => {
  it('nn ops and their backward free every intermediate outside tidy', () => {
    const x = randLeaf([2, 3, 4], 101), w = randLeaf([4], 102), b = randLeaf([4], 103), table = randLeaf([5, 4], 104);
    const qkv = randLeaf([2, 3, 12], 105), q = randLeaf([1, 2, 3, 4], 106);
    const targets = ids([0, 1, -100, 3, 2, 1], [2, 3]), which = ids([1, 1, 4]);
    const before = memory();
    const outs: [string, () => Tensor][] = [
      ['softmax', () => softmax(x, 1)], ['logSoftmax', () => logSoftmax(x)], ['layerNorm', () => layerNorm(x, w, b)],
      ['layerNorm, no grad to x', () => layerNorm(x.detach(), w, b)],
      ['embedding', () => embedding(which, table)], ['crossEntropy', () => crossEntropy(x, targets)], ['causalMask', () => causalMask(x, 0)],
      ['dropout', () => dropout(x, 0.5, { generator: new Generator(1) })], ['sdpa', () => scaledDotProductAttention(q, q, q, { causal: true })],
      ['causalSelfAttention', () => causalSelfAttention(qkv, 2)],
      ['causalSelfAttention with dropout', () => causalSelfAttention(qkv, 2, { dropout: 0.5, generator: new Generator(1) })],
    ];
    for (const [name, f] of outs) {
      const m0 = memory();
      const y = f();
      const s = sum(y);
      s.backward();
      for (const t of [x, w, b, table, qkv, q]) { t.grad?.dispose(); t.grad = null; }
      s.dispose();
      y.dispose();
      const m1 = memory();
      // layerNorm(x.detach()) leaves the detached handle alive: one tensor, no new buffer.
      const extra = name === 'layerNorm, no grad to x' ? 1 : 0;
      assert.deepEqual([m1.tensors, m1.buffers, m1.bytes], [m0.tensors + extra, m0.buffers, m0.bytes], name);
    }
    assert.equal(memory().buffers, before.buffers);
    for (const t of [x, w, b, table, qkv, q, targets, which]) t.dispose();
  });
});
