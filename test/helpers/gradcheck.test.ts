import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memory, mul, tensor } from '../../src/index.js';
import { gradcheck, randLeaf } from './gradcheck.js';

describe('gradcheck helper', () => {
  it('passes a correct gradient and reports what it compared', () => {
    const x = randLeaf([3, 4], 1);
    const res = gradcheck((a) => mul(a, a), [x]);
    assert.equal(res.checked, 12);
    assert.ok(res.maxAbsError < 1e-8);
    x.dispose();
  });

  it('fails a wrong gradient (a detached factor hides half of d(x*x)/dx)', () => {
    const x = randLeaf([5], 2);
    assert.throws(() => gradcheck((a) => mul(a, a.detach()), [x]), /analytic .* numeric/);
    x.dispose();
  });

  it('refuses inputs that cannot be checked', () => {
    const f32 = tensor([1, 2], { requiresGrad: true });
    assert.throws(() => gradcheck((a) => a, [f32]), /float64/);
    const none = tensor([1, 2], { dtype: 'float64' });
    assert.throws(() => gradcheck((a) => a, [none]), /no input requires a gradient/);
    f32.dispose();
    none.dispose();
  });

  it('leaves no tensors behind', () => {
    const x = randLeaf([2, 3], 3);
    const before = memory();
    gradcheck((a) => mul(a, 3), [x]);
    const after = memory();
    assert.equal(after.tensors, before.tensors);
    assert.equal(after.bytes, before.bytes);
    assert.equal(x.grad, null);
    x.dispose();
  });
});
