// AdamW and SGD of the WebGPU backend against the CPU backend: float32
// parameters, 16-bit parameters with float32 master weights (and bf16
// stochastic rounding, bit-identical), steps skipped on the device by the
// GradScaler's flag, the step counter advanced only by steps taken.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend, OptimizerGroup, View } from '../../../src/backend/backend.js';
import type { DType } from '../../../src/dtype/dtype.js';
import { collect, compare, compareBits, cpu, normal, rtolFor, skip, webgpu, whole } from './helpers.js';

interface Tensors {
  params: View[]; grads: View[]; m: View[]; v: View[]; master?: View[]; step: View; found: View;
}

/**
 * Four parameters (sizes 7, 64, 1, 37): two in one buffer at odd offsets, the
 * others with their tensors at assorted offsets; the last one with every tensor
 * at offset 0 (the vectorised path, with a ragged end).
 */
function setup(b: Backend, dtype: DType, withMaster: boolean): Tensors {
  const sizes = [7, 64, 1, 37];
  const up = (d: DType, data: number[], pad = 0): View => {
    const buf = b.alloc(d, data.length + pad + 1);
    b.write({ buf, offset: 0, size: buf.size, dtype: d }, new Array<number>(buf.size).fill(0.5));
    const view: View = { buf, offset: pad, size: data.length, dtype: d };
    b.write(view, data);
    return view;
  };
  // Parameters 0 and 1 share a buffer: offsets 1 and 9.
  const shared = b.alloc(dtype, 80);
  b.write({ buf: shared, offset: 0, size: 80, dtype }, new Array<number>(80).fill(0.25));
  const p0: View = { buf: shared, offset: 1, size: 7, dtype }, p1: View = { buf: shared, offset: 9, size: 64, dtype };
  const init = sizes.map((n, i) => normal(n, 10 + i, 0.5));
  b.write(p0, init[0]!);
  b.write(p1, init[1]!);
  const params = [p0, p1, up(dtype, init[2]!, 1), up(dtype, init[3]!, 0)];
  const aligned = (i: number, pad: number) => (i === 3 ? 0 : pad);
  const grads = sizes.map((n, i) => up(dtype, normal(n, 20 + i, 0.1), aligned(i, i)));
  const m = sizes.map((n, i) => up('float32', normal(n, 30 + i, 0.01), aligned(i, i % 2)));
  const v = sizes.map((n, i) => up('float32', normal(n, 40 + i, 0.01).map(Math.abs), 0));
  const master = withMaster ? init.map((x, i) => up('float32', x, aligned(i, (i + 1) % 2))) : undefined;
  return { params, grads, m, v, master, step: up('float32', [0]), found: up('float32', [0]) };
}

function group(t: Tensors, sr?: { key: number; start: number }): OptimizerGroup {
  return {
    params: t.params, grads: t.grads, state0: t.m, state1: t.v, master: t.master,
    step: t.step, foundInf: t.found, stochasticRounding: sr,
  };
}

async function compareAll(g: Tensors, c: Tensors, dtype: DType, what: string, check: (f: () => Promise<void>) => Promise<void>): Promise<void> {
  const tol = { rtol: 2e-6, atol: 1e-7 };
  for (let i = 0; i < g.params.length; i++) {
    if (g.master) {
      await check(() => compare(g.master![i]!, c.master![i]!, tol, `${what} master ${i}`));
      // The 16-bit parameter is the master rounded once, so it agrees to one unit in the last place.
      await check(() => compare(whole(g.params[i]!), whole(c.params[i]!), { rtol: rtolFor(dtype), atol: 1e-7 }, `${what} param ${i}`));
    } else {
      await check(() => compare(whole(g.params[i]!), whole(c.params[i]!), dtype === 'float32' ? tol : { rtol: rtolFor(dtype), atol: 1e-7 }, `${what} param ${i}`));
    }
    await check(() => compare(g.m[i]!, c.m[i]!, tol, `${what} exp_avg/momentum ${i}`));
    if (g.v[i]) await check(() => compare(g.v[i]!, c.v[i]!, tol, `${what} exp_avg_sq ${i}`));
  }
  await check(() => compareBits(g.step, c.step, `${what} step`));
}

describe('webgpu optimizers', { skip }, () => {
  test('AdamW: float32 and 16-bit parameters with master weights, several steps, a skipped step', () => collect(async (check) => {
    for (const [dtype, master] of [['float32', false], ['float16', true], ['bfloat16', true], ['bfloat16', false]] as const) {
      const g = setup(webgpu(), dtype, master), c = setup(cpu, dtype, master);
      const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0.1, 0, 0.01, 0.1] };
      for (let s = 0; s < 4; s++) {
        const skipStep = s === 2;
        webgpu().write(g.found, [skipStep ? 1 : 0]);
        cpu.write(c.found, [skipStep ? 1 : 0]);
        webgpu().adamw(group(g), hyper);
        cpu.adamw(group(c), hyper);
      }
      await compareAll(g, c, dtype, `adamw ${dtype} master=${master}`, check);
      assert.equal((await webgpu().read(g.step))[0], 3, 'three steps taken, one skipped');
    }
  }));

  test('AdamW: bf16 stochastic rounding from the master copy is bit-identical to the CPU', async () => {
    const g = setup(webgpu(), 'bfloat16', true), c = setup(cpu, 'bfloat16', true);
    const hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: [0.1, 0.1, 0, 0.05] };
    for (let s = 0; s < 3; s++) {
      const sr = { key: 0x1234567 + s, start: 2 ** 32 - 40 + s * 100 };
      webgpu().adamw(group(g, sr), hyper);
      cpu.adamw(group(c, sr), hyper);
    }
    // Bits of the parameters agree where the masters agree bit for bit; compare masters closely and
    // parameters exactly when computed from the same master.
    for (let i = 0; i < 4; i++) await compare(g.master![i]!, c.master![i]!, { rtol: 2e-6, atol: 1e-7 }, `master ${i}`);
    const masters = await Promise.all(c.master!.map((m) => cpu.read(m)));
    // Write the CPU's masters to both and run one more step with zero learning rate: the rounding alone.
    masters.forEach((m, i) => webgpu().write(g.master![i]!, m));
    const still = { ...hyper, lr: 0, weightDecay: [0, 0, 0, 0] };
    const sr = { key: 99, start: 7 };
    webgpu().adamw(group(g, sr), still);
    cpu.adamw(group(c, sr), still);
    for (let i = 0; i < 4; i++) await compareBits(whole(g.params[i]!), whole(c.params[i]!), `stochastically rounded param ${i}`);
  });

  test('SGD: momentum (first step copies the gradient), nesterov, dampening, weight decay, skip', () => collect(async (check) => {
    for (const [dtype, master] of [['float32', false], ['float16', true], ['bfloat16', true]] as const) {
      for (const opts of [
        { momentum: 0.9, dampening: 0, nesterov: false },
        { momentum: 0.9, dampening: 0, nesterov: true },
        { momentum: 0.5, dampening: 0.3, nesterov: false },
        { momentum: 0, dampening: 0, nesterov: false },
      ]) {
        const g = setup(webgpu(), dtype, master), c = setup(cpu, dtype, master);
        const hyper = { lr: 0.05, weightDecay: [0.01, 0, 0.1, 0.02], ...opts };
        for (let s = 0; s < 3; s++) {
          webgpu().write(g.found, [s === 1 ? 1 : 0]);
          cpu.write(c.found, [s === 1 ? 1 : 0]);
          webgpu().sgd(group(g), hyper);
          cpu.sgd(group(c), hyper);
        }
        const what = `sgd ${dtype} master=${master} ${JSON.stringify(opts)}`;
        g.v = []; c.v = [];
        await compareAll(g, c, dtype, what, check);
      }
    }
  }));

  test('a group without a found-inf flag always steps', async () => {
    const g = setup(webgpu(), 'float32', false);
    const grp = { ...group(g), foundInf: undefined };
    webgpu().adamw(grp, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0, 0, 0, 0] });
    webgpu().adamw(grp, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0, 0, 0, 0] });
    assert.equal((await webgpu().read(g.step))[0], 2);
  });
});
