// Token ids and targets out of range raise a typed error on every backend (the
// CPU at the op, WebGPU at the next read), and GPT.forward skips targets equal
// to ignoreIndex as PyTorch's ignore_index does.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IndexOutOfRangeError, type Backend } from '../../src/backend/backend.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { tensor } from '../../src/tensor/creation.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { cpu, skip, webgpu } from '../backend/webgpu/helpers.js';

const config: GPTConfig = { vocabSize: 16, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true };
const B = 2, T = 4;

function outOfRange(what: string, position: number, value: number) {
  return (e: unknown) => e instanceof IndexOutOfRangeError && e.what === what && e.position === position && e.value === value
    && e.message.includes(`${what} ${value} at position ${position}`);
}

/** The mean over rows whose target is not `ignore` of logsumexp(row) - row[target], in float64 on the host. */
function handMeanLoss(logits: Float32Array | Float64Array, targets: number[], V: number, ignore: number): number {
  let total = 0, counted = 0;
  targets.forEach((t, r) => {
    if (t === ignore) return;
    const row = Array.from(logits.subarray(r * V, (r + 1) * V));
    const max = Math.max(...row);
    total += max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) - row[t]!;
    counted++;
  });
  return total / counted;
}

for (const [name, backend] of [['cpu', () => cpu], ['webgpu', webgpu]] as [string, () => Backend][]) {
  describe(`GPT token ids and targets (${name})`, { skip: name === 'webgpu' ? skip : false }, () => {
    const ints = (data: number[]): Tensor => tensor(Int32Array.from(data), { shape: [B, T], dtype: 'int32', backend: backend() });
    const valid = [1, 2, 3, 4, 5, 6, 7, 8];
    const loss = async (m: GPT, ids: number[], targets: number[], ignoreIndex?: number) => {
      const out = m.forward(ints(ids), ints(targets), { ignoreIndex });
      return { logits: await out.logits.toArray(), loss: await out.loss!.item() };
    };

    it('an id past the vocabulary or negative raises IndexOutOfRangeError naming position and value', async () => {
      const m = new GPT(config, { backend: backend(), seed: 1 });
      await assert.rejects(loss(m, [1, 2, 3, 4, 5, 99, 7, 8], valid), outOfRange('token id', 5, 99));
      await assert.rejects(loss(m, [1, 2, -3, 4, 5, 6, 7, 16], valid), outOfRange('token id', 2, -3));
      // The error is reported once: the backend works normally afterwards.
      assert.ok(Number.isFinite((await loss(m, valid, valid)).loss));
    });

    it('a target past the vocabulary raises; the first bad position is named', async () => {
      const m = new GPT(config, { backend: backend(), seed: 1 });
      await assert.rejects(loss(m, valid, [0, 1, 2, 3, 4, 400, 16, 7]), outOfRange('target', 5, 400));
      await assert.rejects(loss(m, valid, [0, -1, 2, 3, 4, 5, 6, 7]), outOfRange('target', 1, -1));
      // -100 is the default ignore index, so it is not out of range; with another ignore index it is.
      await assert.rejects(loss(m, valid, [0, 1, 2, -100, 4, 5, 6, 7], 0), outOfRange('target', 3, -100));
    });

    it('targets equal to ignoreIndex are left out of the mean (default -100, as PyTorch)', async () => {
      const m = new GPT(config, { backend: backend(), seed: 2 });
      const padded = [3, 1, -100, -100, 7, -100, 2, 9];
      const a = await loss(m, valid, padded);
      assert.ok(Math.abs(a.loss - handMeanLoss(a.logits as Float32Array, padded, 16, -100)) < 1e-5 * Math.abs(a.loss));
      const withZero = [3, 0, 0, 5, 7, 0, 2, 9];
      const b = await loss(m, valid, withZero, 0);
      const expected = handMeanLoss(b.logits as Float32Array, withZero, 16, 0);
      assert.ok(Math.abs(b.loss - expected) < 1e-5 * Math.abs(expected), `loss ${b.loss}, expected ${expected}`);
      assert.ok(Math.abs(b.loss - handMeanLoss(b.logits as Float32Array, withZero, 16, -100)) > 1e-3, 'the zeros were not counted');
    });
  });
}
