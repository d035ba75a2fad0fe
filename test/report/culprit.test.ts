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
  p.backend.write(p.view, Float32Array.from(values, (v) => v * factor));
}

describe('NonFiniteFinder', () => {
  it('names the layer whose float16 forward output overflowed, with the largest finite value before it', async () => {
    const { model, step } = setup();
    // Weights that still fit float16 (their largest is about 3e4), inputs large enough that some outputs do not.
    scaleParameter(model, 'h.1.mlp.c_proj.weight', 1e6);
    scaleParameter(model, 'h.1.ln_2.weight', 6);
    const finder = new NonFiniteFinder(model);
    step();
    const r = await finder.firstNonFinite();
    finder.dispose();
    assert.ok(r, 'an overflow was found');
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
    const { model, step } = setup();
    // A huge output gain makes the logits' gradient finite but the gradients below ln_f overflow float16.
    scaleParameter(model, 'ln_f.weight', 1e-3);
    scaleParameter(model, 'wte.weight', 1e6);
    const finder = new NonFiniteFinder(model);
    step();
    const r = await finder.firstNonFinite();
    finder.dispose();
    assert.ok(r, 'an overflow was found');
    assert.equal(r.tensor, 'gradient');
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
