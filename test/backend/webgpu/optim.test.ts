// Update rules on the WebGPU backend against the CPU backend: AdamW and SGD
// with float32 parameters, 16-bit parameters with float32 master weights (and
// bf16 stochastic rounding, bit-identical), steps skipped on the device by the
// GradScaler's flag, the step counter advanced only by steps taken; SGD's
// per-parameter first step; gradient scaling, unscaling with the correctly
// rounded reciprocal of the scale, and the loss-scale rule.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Backend, View } from '../../../src/backend/backend.js';
import type { KernelSource } from '../../../src/backend/webgpu/runtime.js';
import { WGSL_RULE_HELPERS } from '../../../src/backend/webgpu/kernels/rule-wgsl.js';
import { GUARDED_UPDATE_SCALE_RULE, UNSCALE_RULE, UPDATE_SCALE_RULE } from '../../../src/amp/loss-scale-rules.js';
import { ADAMW_RULE } from '../../../src/optim/adamw.js';
import { SCALE_RULE } from '../../../src/optim/clip.js';
import { sgdRule } from '../../../src/optim/sgd.js';
import type { DType } from '../../../src/dtype/dtype.js';
import { FLOATS, both, bothEmpty, collect, compare, compareBits, cpu, normal, rtolFor, skip, webgpu, whole } from './helpers.js';

interface Tensors {
  params: View[]; grads: View[]; m: View[]; v: View[]; master?: View[]; step: View; found: View;
  /** SGD's per-parameter momentum_step. */
  ms: View[];
}

/** The tensors of one parameter group (the optimizer's view of it). */
interface Group {
  params: readonly View[]; grads: readonly View[]; state0: readonly View[]; state1: readonly View[]; ms: readonly View[];
  master?: readonly View[]; step: View; foundInf?: View; stochasticRounding?: { key: number; start: number };
}

function scaleInPlace(b: Backend, views: readonly View[], coef: View): void {
  b.update(SCALE_RULE, { hypers: {}, scalars: { coef }, tensors: views.map((grad) => ({ grad })) });
}

function unscaleAndCheck(b: Backend, views: readonly View[], scale: View, foundInf: View): void {
  b.update(UNSCALE_RULE, { hypers: {}, scalars: { scale, foundInf }, tensors: views.map((grad) => ({ grad })) });
}

function updateScale(b: Backend, scale: View, growthTracker: View, foundInf: View, growthFactor: number, backoffFactor: number, growthInterval: number): void {
  b.update(UPDATE_SCALE_RULE, { hypers: { growthFactor, backoffFactor, growthInterval }, scalars: { scale, growthTracker, foundInf }, tensors: [] });
}

const hyperPerTensor = (wd: readonly number[]) => wd.map((weightDecay) => ({ weightDecay }));
const scalarsOf = (g: Group) => ({ step: g.step, ...(g.foundInf ? { foundInf: g.foundInf } : {}) });

function adamw(b: Backend, g: Group, h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: readonly number[] }): void {
  b.update(ADAMW_RULE, {
    hypers: { lr: h.lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: 0 }, tensorHypers: hyperPerTensor(h.weightDecay),
    scalars: scalarsOf(g), master: g.master, stochasticRounding: g.stochasticRounding,
    tensors: g.params.map((param, i) => ({ param, grad: g.grads[i]!, exp_avg: g.state0[i]!, exp_avg_sq: g.state1[i]! })),
  });
}

function sgd(b: Backend, g: Group, h: { lr: number; momentum: number; dampening: number; nesterov: boolean; weightDecay: readonly number[] }): void {
  b.update(sgdRule(h.momentum !== 0, h.nesterov), {
    hypers: { lr: h.lr, momentum: h.momentum, dampening: h.dampening, weightDecay: 0 }, tensorHypers: hyperPerTensor(h.weightDecay),
    scalars: scalarsOf(g), master: g.master, stochasticRounding: g.stochasticRounding,
    tensors: g.params.map((param, i) => ({ param, grad: g.grads[i]!, momentum_buffer: g.state0[i]!, momentum_step: g.ms[i]! })),
  });
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
  const ms = sizes.map(() => up('float32', [0]));
  return { params, grads, m, v, master, step: up('float32', [0]), found: up('float32', [0]), ms };
}

function group(t: Tensors, sr?: { key: number; start: number }): Group {
  return {
    params: t.params, grads: t.grads, state0: t.m, state1: t.v, master: t.master, ms: t.ms,
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
        adamw(webgpu(), group(g), hyper);
        adamw(cpu, group(c), hyper);
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
      adamw(webgpu(), group(g, sr), hyper);
      adamw(cpu, group(c, sr), hyper);
    }
    // Bits of the parameters agree where the masters agree bit for bit; compare masters closely and
    // parameters exactly when computed from the same master.
    for (let i = 0; i < 4; i++) await compare(g.master![i]!, c.master![i]!, { rtol: 2e-6, atol: 1e-7 }, `master ${i}`);
    const masters = await Promise.all(c.master!.map((m) => cpu.read(m)));
    // Write the CPU's masters to both and run one more step with zero learning rate: the rounding alone.
    masters.forEach((m, i) => webgpu().write(g.master![i]!, m));
    const still = { ...hyper, lr: 0, weightDecay: [0, 0, 0, 0] };
    const sr = { key: 99, start: 7 };
    adamw(webgpu(), group(g, sr), still);
    adamw(cpu, group(c, sr), still);
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
          sgd(webgpu(), group(g), hyper);
          sgd(cpu, group(c), hyper);
        }
        const what = `sgd ${dtype} master=${master} ${JSON.stringify(opts)}`;
        g.v = []; c.v = [];
        await compareAll(g, c, dtype, what, check);
      }
    }
  }));

  test('SGD: a parameter whose first gradient comes on a later step starts its momentum buffer then (per-parameter first step)', () => collect(async (check) => {
    for (const [dtype, master] of [['float32', false], ['bfloat16', true]] as const) {
      const g = setup(webgpu(), dtype, master), c = setup(cpu, dtype, master);
      const hyper = { lr: 0.05, momentum: 0.9, dampening: 0.3, nesterov: false, weightDecay: [0.01, 0, 0.1, 0.02] };
      // Parameters 2 and 3 have no gradient on the first two steps.
      const only = (grp: Group, n: number): Group => ({
        ...grp, params: grp.params.slice(0, n), grads: grp.grads.slice(0, n), state0: grp.state0.slice(0, n), state1: [],
        ms: grp.ms.slice(0, n), master: grp.master?.slice(0, n),
      });
      for (let s = 0; s < 4; s++) {
        const n = s < 2 ? 2 : 4;
        sgd(webgpu(), only(group(g), n), { ...hyper, weightDecay: hyper.weightDecay.slice(0, n) });
        sgd(cpu, only(group(c), n), { ...hyper, weightDecay: hyper.weightDecay.slice(0, n) });
      }
      g.v = []; c.v = [];
      await compareAll(g, c, dtype, `sgd late gradients ${dtype} master=${master}`, check);
      for (let i = 0; i < 4; i++) await check(() => compareBits(g.ms[i]!, c.ms[i]!, `momentum_step ${i}`));
      assert.deepEqual([...await webgpu().read(g.ms[2]!)], [3], 'parameter 2 started its buffer on step 3');
    }
  }));

  test('new hyperparameter values reuse the compiled pipelines (they are uniforms)', async () => {
    const g = setup(webgpu(), 'float32', false);
    const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0.1, 0, 0.01, 0.1] };
    adamw(webgpu(), group(g), hyper);
    await webgpu().sync();
    const pipelines = webgpu().rt.stats.pipelines;
    for (const lr of [3e-4, 1e-2, 0.5]) adamw(webgpu(), group(g), { ...hyper, lr, beta2: 0.95, weightDecay: [lr, 0.2, 0, 0.3] });
    await webgpu().sync();
    assert.equal(webgpu().rt.stats.pipelines, pipelines);
  });

  test('a group without a found-inf flag always steps', async () => {
    const g = setup(webgpu(), 'float32', false);
    const grp = { ...group(g), foundInf: undefined };
    adamw(webgpu(), grp, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0, 0, 0, 0] });
    adamw(webgpu(), grp, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: [0, 0, 0, 0] });
    assert.equal((await webgpu().read(g.step))[0], 2);
  });

  test('sumOfSquares, scaleInPlace, unscaleAndCheck over several views (adjacent ones merged)', async () => {
    for (const dtype of FLOATS) {
      const sizes = [5, 3000, 1, 70];
      const bufData = normal(3100, 3, 1);
      const [gbig, cbig] = both(dtype, bufData);
      // Views 0 and 1 are adjacent in one buffer; the others are separate buffers.
      const gviews: View[] = [{ ...gbig, size: 5 }, { ...gbig, offset: 5, size: 3000 }];
      const cviews: View[] = [{ ...cbig, size: 5 }, { ...cbig, offset: 5, size: 3000 }];
      for (const size of sizes.slice(2)) {
        const [g, c] = both(dtype, normal(size, size), 1);
        gviews.push(g); cviews.push(c);
      }
      const [gs, cs] = bothEmpty('float32', 1);
      webgpu().sumOfSquares(gviews, gs);
      cpu.sumOfSquares(cviews, cs);
      await compare(gs, cs, { rtol: 1e-5 }, `sumOfSquares ${dtype}`);
      const [gscale, cscale] = both('float32', [0.25]);
      scaleInPlace(webgpu(), gviews, gscale);
      scaleInPlace(cpu, cviews, cscale);
      for (let i = 0; i < gviews.length; i++) await compareBits(whole(gviews[i]!), whole(cviews[i]!), `scaleInPlace ${dtype} view ${i}`);
      const [ginv, cinv] = both('float32', [1024]);
      const [gf, cf] = both('float32', [0]);
      unscaleAndCheck(webgpu(), gviews, ginv, gf);
      unscaleAndCheck(cpu, cviews, cinv, cf);
      assert.equal((await webgpu().read(gf))[0], 0, 'no inf: flag stays 0');
      for (let i = 0; i < gviews.length; i++) await compareBits(whole(gviews[i]!), whole(cviews[i]!), `unscale ${dtype} view ${i}`);
      // One non-finite value anywhere raises the flag; other values are still unscaled.
      for (const bad of [Infinity, NaN, -Infinity]) {
        webgpu().write({ ...gviews[3]!, offset: gviews[3]!.offset + 17, size: 1 }, [bad]);
        cpu.write({ ...cviews[3]!, offset: cviews[3]!.offset + 17, size: 1 }, [bad]);
        webgpu().write(gf, [0]);
        cpu.write(cf, [0]);
        unscaleAndCheck(webgpu(), gviews, ginv, gf);
        unscaleAndCheck(cpu, cviews, cinv, cf);
        await compareBits(gf, cf, `found flag after ${bad}`);
        assert.equal((await webgpu().read(gf))[0], 1);
        for (let i = 0; i < gviews.length; i++) await compareBits(whole(gviews[i]!), whole(cviews[i]!), `unscale with ${bad} ${dtype} view ${i}`);
      }
    }
  });

  test('updateScale: growth after the interval, backoff on inf, bit-identical to the CPU', async () => {
    const [gs, cs] = both('float32', [65536, 0, 0]);
    const scale = (v: View): View => ({ ...v, size: 1 });
    const tracker = (v: View): View => ({ ...v, offset: 1, size: 1 });
    const found = (v: View): View => ({ ...v, offset: 2, size: 1 });
    const seq = [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0];
    for (const f of seq) {
      webgpu().write(found(gs), [f]);
      cpu.write(found(cs), [f]);
      updateScale(webgpu(), scale(gs), tracker(gs), found(gs), 2, 0.5, 3);
      updateScale(cpu, scale(cs), tracker(cs), found(cs), 2, 0.5, 3);
      await compareBits(gs, cs, `updateScale after found=${f}`);
    }
    // Growth to infinity is refused.
    const [gm, cm] = both('float32', [3e38, 0, 0]);
    updateScale(webgpu(), scale(gm), tracker(gm), found(gm), 2, 0.5, 1);
    updateScale(cpu, scale(cm), tracker(cm), found(cm), 2, 0.5, 1);
    await compareBits(gm, cm, 'updateScale at the top of float32');
  });

  test('guarded updateScale (hysteresis, minScale): bit-identical to the CPU', async () => {
    const [gs, cs] = both('float32', [8, 0, 0, 2, 0]);
    const at = (v: View, offset: number): View => ({ ...v, offset, size: 1 });
    const guarded = (b: Backend, v: View) => b.update(GUARDED_UPDATE_SCALE_RULE, {
      hypers: { growthFactor: 2, backoffFactor: 0.5, growthInterval: 3, hysteresis: 2, minScale: 2 },
      scalars: { scale: at(v, 0), growthTracker: at(v, 1), foundInf: at(v, 2), hysteresisLeft: at(v, 3), collapsed: at(v, 4) },
      tensors: [],
    });
    for (const f of [1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]) {
      webgpu().write(at(gs, 2), [f]);
      cpu.write(at(cs, 2), [f]);
      guarded(webgpu(), gs);
      guarded(cpu, cs);
      await compareBits(gs, cs, `guarded updateScale after found=${f}`);
    }
    assert.deepEqual([...(await cpu.read(cs))], [2, 0, 1, 2, 1], 'the scale stopped at minScale 2 and collapsed is set');
  });

  test('unscale multiplies by the correctly rounded float32 reciprocal of the scale, bit-identical to the CPU', () => collect(async (check) => {
    for (const s of [1000, 3, 65535, 2 ** 16 + 1, 0.7, 1e-30, 7, 12345.678]) {
      const grads = normal(77, 5, 2);
      const [gg, cg] = both('float32', grads, 1);
      const [gs, cs] = both('float32', [s]);
      const [gf, cf] = both('float32', [0]);
      unscaleAndCheck(webgpu(), [gg], gs, gf);
      unscaleAndCheck(cpu, [cg], cs, cf);
      await check(() => compareBits(whole(gg), whole(cg), `unscale by ${s}`));
    }
  }));
});

describe('webgpu correctly rounded reciprocal', { skip }, () => {
  test('recip_f gives Math.fround(1 / x) for scales that are not powers of two and the edge cases', async () => {
    const bits: number[] = [];
    // Random float32s over the whole exponent range, subnormals included, both signs.
    let x = 0x12345678;
    for (let i = 0; i < 4000; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      bits.push(x & 0x7fffffff ? x : 1, (x >>> 9) | 0x4b000000);
    }
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const bitsOf = (v: number) => { f[0] = v; return u[0]!; };
    // Powers of two, the subnormal-producing scales above 2^126, overflow from subnormal scales, zeros, infinities, NaN.
    for (const v of [1, 2, 0.5, 2 ** 126, 2 ** 127, 1.5 * 2 ** 126, 3e38, 3.4028234663852886e38, 2 ** -126, 2 ** -127, 2 ** -149, 1e-45, 3e-39,
      1.1754942e-38, 0, -0, Infinity, -Infinity, NaN, 65536, 1000, 3, -7, 0.1, 1 + 2 ** -23, 2 - 2 ** -23]) bits.push(bitsOf(v));
    const n = bits.length;
    const b = webgpu();
    const input = b.alloc('float32', n), output = b.alloc('float32', n);
    b.writeRaw({ buf: input, offset: 0, size: n, dtype: 'float32' }, new Float32Array(Uint32Array.from(bits).buffer));
    const src: KernelSource = {
      key: 'test recip_f', params: [['n', 'u32']],
      body: `${WGSL_RULE_HELPERS}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x >= P.n) { return; }
  putbits_y(gid.x, bitcast<u32>(recip_f(bitcast<f32>(loadbits_x(gid.x)))));
}`,
    };
    b.rt.dispatch(src, [{ name: 'x', buf: input, access: 'read' }, { name: 'y', buf: output, access: 'read_write' }], [n], [Math.ceil(n / 64)]);
    const got = new Uint32Array(((await b.readRaw({ buf: output, offset: 0, size: n, dtype: 'float32' })) as Float32Array).buffer);
    const wrong: string[] = [];
    bits.forEach((xb, i) => {
      u[0] = xb;
      const expected = bitsOf(Math.fround(1 / f[0]!));
      const isNaN = Number.isNaN(Math.fround(1 / (new Float32Array(Uint32Array.of(xb).buffer))[0]!));
      if (isNaN ? (got[i]! & 0x7fffffff) <= 0x7f800000 : got[i] !== expected) wrong.push(`1/0x${xb.toString(16)}: 0x${got[i]!.toString(16)}, expected 0x${expected.toString(16)}`);
    });
    b.free(input);
    b.free(output);
    assert.deepEqual(wrong.slice(0, 8), [], `${wrong.length} of ${n} reciprocals differ`);
  });
});
