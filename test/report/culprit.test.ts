// The overflow culprit: an overflow injected into one named layer is reported with that layer's path.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GPT, gptConfig, autocast, tensor, tidy, memory, CpuBackend } from '../../src/index.js';
import { NonFiniteFinder, describeNonFinite } from '../../src/report/culprit.js';

function setup() {
  const backend = new CpuBackend();
  const model = new GPT(gptConfig('tiny', { nLayer: 3, nEmbd: 32, nHead: 2, blockSize: 16, dropout: 0 }), { backend, seed: 7 });
  const ids = tensor(Array.from({ length: 32 }, (_, i) => (i * 37) % 256), { shape: [2, 16], dtype: 'int32', backend });
  const targets = tensor(Array.from({ length: 32 }, (_, i) => (i * 11) % 256), { shape: [2, 16], dtype: 'int32', backend });
  const step = () => tidy(() => {
    const loss = autocast({ dtype: 'float16' }, () => model.forward(ids, targets).loss!);
    loss.backward();
  });
  return { backend, model, step };
}

/** Multiplies one parameter by a factor (the injected fault). */
function scaleParameter(model: GPT, name: string, factor: number): void {
  const p = model.namedParameters().find(([n]) => n === name)![1];
  const values = p.toArraySync();
  p.backend.write(p.storageView, Float32Array.from(values, (v) => v * factor));
}

/** The culprit of one step of a model with these parameters multiplied by these factors (the injected faults). */
async function culpritOf(faults: [string, number][]) {
  const { model, step } = setup();
  for (const [name, factor] of faults) scaleParameter(model, name, factor);
  const finder = new NonFiniteFinder(model);
  step();
  const r = await finder.firstNonFinite();
  finder.dispose();
  assert.ok(r, 'an overflow was found');
  return r;
}

describe('NonFiniteFinder', () => {
  it('names the layer whose float16 forward output overflowed, with the largest finite value before it', async () => {
    // Weights that still fit float16 (their largest is about 3e4), inputs large enough that some outputs do not.
    const r = await culpritOf([['h.1.mlp.c_proj.weight', 1e6], ['h.1.ln_2.weight', 6]]);
    assert.equal(r.module, 'h.1.mlp.c_proj');
    assert.equal(r.tensor, 'forward output');
    assert.equal(r.dtype, 'float16');
    assert.deepEqual(r.shape, [2, 16, 32]);
    assert.ok(r.nonFinite > 0);
    assert.ok(r.largestFinite <= 65504 && r.largestFinite > 1000, String(r.largestFinite));
    assert.equal(r.previous?.module, 'h.1.mlp.c_fc');
    assert.match(describeNonFinite(r), /h\.1\.mlp\.c_proj forward output \[2, 16, 32\] float16/);
  });

  it('names the gradient when only the backward pass overflows, in backward order', async () => {
    // Token embeddings of about 2e4 (tied to the output projection) with a tiny final layer-norm gain:
    // every forward output stays finite, but the gradient coming back through the float16 output
    // projection into ln_f's output does not. ln_f is the last module, so its gradient is checked first.
    const r = await culpritOf([['ln_f.weight', 1e-3], ['wte.weight', 1e6]]);
    assert.equal(r.tensor, 'gradient');
    assert.equal(r.module, 'ln_f');
    assert.equal(r.previous?.tensor, 'forward output', 'the forward pass was finite throughout');
  });

  it('finds nothing in a healthy step, and once detached leaves no hook and no tensor behind', async () => {
    const { backend, model, step } = setup();
    const finder = new NonFiniteFinder(model);
    assert.ok(Object.hasOwn(model.h, 'forward') || model.namedModules().some(([, m]) => Object.hasOwn(m, 'forward')));
    step();
    assert.equal(await finder.firstNonFinite(), null);
    const before = memory(backend).tensors;
    step();
    finder.dispose();
    assert.equal(memory(backend).tensors, before);
    assert.ok(model.namedModules().every(([, m]) => !Object.hasOwn(m, 'forward')));
  });
});
