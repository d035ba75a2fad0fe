import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ShapeError, Tensor, cat, clone, expand, memory, mul, permute, reshape, slice, squeeze, sum, tensor, transpose, unsqueeze,
} from '../../../src/index.js';
import { checkAndDispose, host, randLeaf } from '../../helpers/gradcheck.js';

describe('shape op gradients (float64 finite differences)', () => {
  it('reshape (with -1), unsqueeze, squeeze, clone', () => {
    checkAndDispose((x) => reshape(x, [4, -1]), [randLeaf([2, 3, 2], 1)], 'reshape');
    checkAndDispose((x) => unsqueeze(x, 1), [randLeaf([2, 3], 2)], 'unsqueeze');
    checkAndDispose((x) => unsqueeze(x, -1), [randLeaf([2, 3], 3)], 'unsqueeze -1');
    checkAndDispose((x) => squeeze(x), [randLeaf([2, 1, 3, 1], 4)], 'squeeze all');
    checkAndDispose((x) => squeeze(x, 1), [randLeaf([2, 1, 3], 5)], 'squeeze dim');
    checkAndDispose((x) => clone(x), [randLeaf([2, 3], 6)], 'clone');
  });

  it('permute and transpose', () => {
    checkAndDispose((x) => permute(x, [2, 0, 1]), [randLeaf([2, 3, 4], 11)], 'permute');
    checkAndDispose((x) => permute(x, [1, 3, 0, 2]), [randLeaf([2, 3, 2, 2], 12)], 'permute 4-D');
    checkAndDispose((x) => transpose(x, 0, 2), [randLeaf([2, 3, 4], 13)], 'transpose');
    checkAndDispose((x) => x.T, [randLeaf([3, 4], 14)], '.T');
  });

  it('expand (new leading dims, stretched size-1 dims, -1)', () => {
    checkAndDispose((x) => expand(x, [2, 3, 4]), [randLeaf([3, 1], 21)], 'expand [3,1] -> [2,3,4]');
    checkAndDispose((x) => expand(x, [-1, 5]), [randLeaf([2, 1], 22)], 'expand with -1');
    checkAndDispose((x) => expand(x, [3, 2]), [randLeaf([2], 23)], 'expand 1-D');
  });

  it('slice (middle, negative indices, last dim)', () => {
    checkAndDispose((x) => slice(x, 1, 1, 3), [randLeaf([2, 4, 3], 31)], 'slice middle');
    checkAndDispose((x) => slice(x, -1, -2), [randLeaf([2, 4, 3], 32)], 'slice negative');
    checkAndDispose((x) => slice(x, 0, 1, 2), [randLeaf([3, 2], 33)], 'slice dim 0');
  });

  it('cat along each dim, with an input that needs no gradient', () => {
    checkAndDispose((a, b) => cat([a, b], 0), [randLeaf([2, 3], 41), randLeaf([1, 3], 42)], 'cat dim 0');
    checkAndDispose((a, b) => cat([a, b, a], 1), [randLeaf([2, 3], 43), randLeaf([2, 2], 44)], 'cat dim 1, repeated input');
    const c = randLeaf([2, 1], 45, { grad: false });
    checkAndDispose((a) => cat([c, a], -1), [randLeaf([2, 2], 46)], 'cat with a constant');
    c.dispose();
  });

  it('a chain of shape ops', () => {
    checkAndDispose((x) => sum(mul(permute(reshape(expand(x, [2, 3, 4]), [6, 4]).T.reshape([2, 2, 6]), [2, 1, 0]), 2), 1),
      [randLeaf([3, 1], 51)], 'chain');
  });
});

describe('shape op values', () => {
  const x = () => tensor([[1, 2, 3], [4, 5, 6]]);

  it('permute and transpose move elements', () => {
    const a = x(), t = transpose(a, 0, 1);
    assert.deepEqual(t.shape, [3, 2]);
    assert.deepEqual([...t.toArraySync()], [1, 4, 2, 5, 3, 6]);
    const b = tensor(Array.from({ length: 24 }, (_, i) => i), { shape: [2, 3, 4] });
    const p = permute(b, [2, 0, 1]);
    assert.deepEqual(p.shape, [4, 2, 3]);
    // p[k][i][j] = b[i][j][k] = 12 i + 4 j + k
    const v = p.toArraySync();
    for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) assert.equal(v[(k * 2 + i) * 3 + j], 12 * i + 4 * j + k);
    for (const t2 of [a, t, b, p]) t2.dispose();
  });

  it('slice clamps like Python and cat joins', () => {
    const a = x();
    const s = slice(a, 1, -2, 100);
    assert.deepEqual(s.shape, [2, 2]);
    assert.deepEqual([...s.toArraySync()], [2, 3, 5, 6]);
    const e = slice(a, 1, 2, 1);
    assert.deepEqual(e.shape, [2, 0]);
    const c = cat([a, s], 1);
    assert.deepEqual(c.shape, [2, 5]);
    assert.deepEqual([...c.toArraySync()], [1, 2, 3, 2, 3, 4, 5, 6, 5, 6]);
    for (const t of [a, s, e, c]) t.dispose();
  });

  it('cat promotes mixed dtypes', () => {
    const a = tensor([1], { dtype: 'float16' }), b = tensor([2], { dtype: 'bfloat16' });
    const c = cat([a, b]);
    assert.equal(c.dtype, 'float32');
    assert.deepEqual([...c.toArraySync()], [1, 2]);
    for (const t of [a, b, c]) t.dispose();
  });

  it('reshape shares storage: freed only when both tensors are disposed', () => {
    const before = memory();
    const a = tensor([1, 2, 3, 4, 5, 6]);
    const r = reshape(a, [2, 3]);
    assert.equal(memory().buffers, before.buffers + 1, 'one buffer for both');
    assert.equal(memory().tensors, before.tensors + 2);
    a.backend.write(a.storageView, [9, 2, 3, 4, 5, 6]);
    assert.equal(r.toArraySync()[0], 9, 'a write through one is seen through the other');
    a.dispose();
    assert.equal(memory().buffers, before.buffers + 1, 'still held by the reshape');
    assert.deepEqual([...r.toArraySync()], [9, 2, 3, 4, 5, 6]);
    r.dispose();
    const after = memory();
    assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes]);
  });

  it('squeeze of a non-1 dim keeps the shape; unsqueeze of the end appends', () => {
    const a = x();
    const s = squeeze(a, 0), u = unsqueeze(a, 2);
    assert.deepEqual(s.shape, [2, 3]);
    assert.deepEqual(u.shape, [2, 3, 1]);
    for (const t of [a, s, u]) t.dispose();
  });

  it('bad shapes are ShapeErrors naming the shapes', () => {
    const a = x();
    assert.throws(() => reshape(a, [4, 2]), (e: Error) => e instanceof ShapeError && /\[2, 3\]/.test(e.message) && /\[4, 2\]/.test(e.message));
    assert.throws(() => reshape(a, [-1, -1]), ShapeError);
    assert.throws(() => expand(a, [2, 4]), (e: Error) => e instanceof ShapeError && /\[2, 3\]/.test(e.message) && /\[2, 4\]/.test(e.message));
    assert.throws(() => permute(a, [0, 0]), /repeated dimension/);
    assert.throws(() => permute(a, [0]), ShapeError);
    const b = tensor([[1, 2]]);
    assert.throws(() => cat([a, b], 0), (e: Error) => e instanceof ShapeError && /\[2, 3\]/.test(e.message) && /\[1, 2\]/.test(e.message));
    assert.throws(() => cat([]), /no tensors/);
    assert.throws(() => transpose(a, 0, 5), /dimension 5 is out of range/);
    a.dispose();
    b.dispose();
  });

  it('shape ops and their backward free every intermediate', () => {
    const a = randLeaf([2, 3], 7), b = randLeaf([2, 1], 8);
    const before = memory();
    const outs = [reshape(a, [3, 2]), permute(a, [1, 0]), expand(b, [2, 2, 1]), slice(a, 1, 1), cat([a, b], 1), clone(a), unsqueeze(a, 0), squeeze(b)];
    for (const y of outs) {
      const s = sum(y);
      s.backward();
      s.dispose();
    }
    const ga = host(a.grad!);
    // Each output sums a's elements once, except expand (b only) and slice (columns 1..2 only).
    assert.deepEqual([...ga], [5, 6, 6, 5, 6, 6]);
    assert.deepEqual([...host(b.grad!)], [4, 4]);
    for (const t of [a, b]) { t.grad!.dispose(); t.grad = null; }
    for (const t of outs) t.dispose();
    const after = memory();
    assert.deepEqual([after.tensors, after.buffers, after.bytes], [before.tensors, before.buffers, before.bytes]);
    a.dispose();
    b.dispose();
  });
});
