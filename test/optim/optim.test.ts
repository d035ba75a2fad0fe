// AdamW and SGD against torch.optim on a fixed gradient sequence
// (test/fixtures/optim/optim.json, from scripts/fixtures/gen_optim.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as mp from '../../src/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';

interface Arr { shape: number[]; data: number[] }
interface Case {
  name: string;
  optimizer: 'AdamW' | 'SGD';
  options: Record<string, unknown>;
  groups: ({ params: number[] } & Record<string, unknown>)[];
  params: ({ name: string } & Arr)[];
  steps: { skipped: boolean; lr: number[]; grads: Arr[]; params_after: Arr[] }[];
  final_state: Record<string, Arr | number | null>[];
  schedule?: { learning_rate: number; min_lr: number; warmup_iters: number; lr_decay_iters: number };
}

const fixture = JSON.parse(readFileSync(new URL('../fixtures/optim/optim.json', import.meta.url), 'utf8')) as { cases: Case[] };

/** torch's snake_case keyword arguments as mixprec options. */
function options(o: Record<string, unknown>): Record<string, unknown> {
  const names: Record<string, string> = { weight_decay: 'weightDecay' };
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [names[k] ?? k, v]));
}

// float32 rounding differs from torch's op-by-op order by a few ulps per step.
function close(actual: ArrayLike<number>, expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    const tol = 1e-5 * Math.max(Math.abs(expected[i]!), 1e-2);
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tol, `${what}[${i}]: ${actual[i]} vs torch ${expected[i]}`);
  }
}

for (const c of fixture.cases) {
  test(`${c.name} matches torch.optim.${c.optimizer}`, async () => {
    const params = c.params.map((p) => mp.tensor(p.data, { shape: p.shape, requiresGrad: true }));
    const groups = c.groups.map((g) => ({ ...options(g), params: g.params.map((i) => params[i]!) }));
    const Opt = c.optimizer === 'AdamW' ? mp.AdamW : mp.SGD;
    const opt = new Opt(groups as never, options(c.options) as never);
    c.steps.forEach((s, k) => {
      params.forEach((p, i) => { p.grad = mp.keep(mp.tensor(s.grads[i]!.data, { shape: s.grads[i]!.shape })); });
      if (c.schedule) {
        const lr = mp.warmupCosine(k, { lr: c.schedule.learning_rate, minLr: c.schedule.min_lr, warmup: c.schedule.warmup_iters, decaySteps: c.schedule.lr_decay_iters });
        assert.ok(Math.abs(lr - s.lr[0]!) < 1e-15, `schedule at step ${k}: ${lr} vs ${s.lr[0]}`);
        opt.setLr(lr);
      }
      // A skipped step goes through the found-inf flag, as GradScaler does it.
      const found = mp.tensor(s.skipped ? 1 : 0);
      opt.step({ foundInf: found });
      found.dispose();
      params.forEach((p, i) => close(p.toArraySync(), s.params_after[i]!.data, `${c.name} step ${k} ${c.params[i]!.name}`));
      for (const p of params) { p.grad!.dispose(); p.grad = null; }
    });
    const sd = await opt.stateDict();
    // State is indexed in group order, as in torch's state_dict.
    const order = c.groups.flatMap((g) => g.params);
    c.final_state.forEach((fs, p) => {
      const i = order.indexOf(p);
      for (const [k, v] of Object.entries(fs)) {
        if (k === 'step') assert.equal(sd.steps[sd.groups.findIndex((g) => g.params.includes(i))], v, 'steps taken');
        else if (v && typeof v === 'object') close(sd.state[i]![k]!, v.data, `${c.name} state ${i}.${k}`);
      }
    });
    opt.dispose();
    params.forEach((p: Tensor) => p.dispose());
  });
}

test('AdamW defaults are PyTorch\'s', () => {
  assert.deepEqual(mp.ADAMW_DEFAULTS, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
});

test('optimizer options are validated with errors that name them', () => {
  const p = mp.zeros([2], { requiresGrad: true });
  assert.throws(() => new mp.AdamW([p], { lr: -1 }), /invalid learning rate -1/);
  assert.throws(() => new mp.AdamW([p], { betas: [0.9, 1] }), /beta parameter at index 1: 1/);
  assert.throws(() => new mp.SGD([p], { nesterov: true }), /Nesterov/);
  assert.throws(() => new mp.SGD([]), /empty parameter list/);
  assert.throws(() => new mp.SGD([p, p]), /more than one group/);
  assert.throws(() => new mp.SGD([mp.zeros([2])]), /does not require grad/);
  p.dispose();
});
