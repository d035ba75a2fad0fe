// SGD's momentum buffer is per parameter, as in PyTorch: a parameter that first
// gets a gradient on a later step starts its buffer then, from the gradient,
// without dampening (test/fixtures/optim/sgd_late_grad.json, from
// scripts/fixtures/gen_sgd_late_grad.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as mp from '../../src/index.js';

interface Arr { shape: number[]; data: number[] }
const fixture = JSON.parse(readFileSync(new URL('../fixtures/optim/sgd_late_grad.json', import.meta.url), 'utf8')) as {
  options: { lr: number; momentum: number; dampening: number; weight_decay: number };
  params: Arr[];
  steps: { grads: (Arr | null)[]; params_after: Arr[] }[];
};

test('SGD with dampening: a parameter whose first gradient comes on a later step matches torch.optim.SGD', () => {
  const o = fixture.options;
  const params = fixture.params.map((p) => mp.tensor(p.data, { shape: p.shape, requiresGrad: true }));
  const opt = new mp.SGD(params, { lr: o.lr, momentum: o.momentum, dampening: o.dampening, weightDecay: o.weight_decay });
  fixture.steps.forEach((s, k) => {
    params.forEach((p, i) => { p.grad = s.grads[i] ? mp.keep(mp.tensor(s.grads[i]!.data, { shape: s.grads[i]!.shape })) : null; });
    opt.step();
    opt.zeroGrad();
    params.forEach((p, i) => {
      const actual = p.toArraySync(), expected = s.params_after[i]!.data;
      expected.forEach((e, j) => assert.ok(Math.abs(actual[j]! - e) <= 1e-6 * Math.max(Math.abs(e), 1), `step ${k} param ${i}[${j}]: ${actual[j]} vs torch ${e}`));
    });
  });
  opt.dispose();
  params.forEach((p) => p.dispose());
});
