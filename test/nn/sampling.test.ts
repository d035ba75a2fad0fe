// Generation that stays on the device: the sampled ids are the only values read
// back per step; the same seed gives the same tokens on the CPU and WebGPU
// backends (float and int8 weights); top-k 1 is greedy; EOS, onStep and stop
// strings end generation; several samples are drawn at once and streamed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { View } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { ByteTokenizer } from '../../src/data/tokenizer.js';
import { GPT, GenerationError, type GPTConfig } from '../../src/nn/gpt.js';
import { quantize } from '../../src/nn/quantize.js';
import { tensor } from '../../src/tensor/creation.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { sampleTexts } from '../../src/train/sample.js';
import { skip, webgpu } from '../backend/webgpu/helpers.js';
import { primitivesOnly } from '../backend/primitives-only.js';

const cfg: GPTConfig = { vocabSize: 256, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 32, dropout: 0, bias: true };
const prompt = (backend: CpuBackend | ReturnType<typeof webgpu>) => tensor(Int32Array.from([10, 20, 30, 40, 50, 60]), { shape: [2, 3], dtype: 'int32', backend });
const host = async (t: Tensor) => Array.from(await t.toArray());

/** A CPU backend that records the size of every read. */
class CountingCpu extends CpuBackend {
  readonly reads: number[] = [];
  override read(src: View) {
    this.reads.push(src.size);
    return super.read(src);
  }
}

describe('GPT.generate on the device', () => {
  it('reads back only the prompt, then the sampled ids of each step', async () => {
    const backend = new CountingCpu();
    const m = new GPT(cfg, { backend, seed: 1 });
    await m.generate(prompt(backend), { maxNewTokens: 5, topK: 10, topP: 0.9, seed: 2 });
    assert.deepEqual(backend.reads, [6, 2, 2, 2, 2, 2]);
  });

  it('sizes the key/value cache to the prompt and the new tokens, not the whole context', async () => {
    const backend = new CpuBackend();
    const m = new GPT(cfg, { backend, seed: 1 });
    const before = backend.memory().bytes;
    await m.generate(prompt(backend), { maxNewTokens: 2, seed: 2 });
    const wholeContextCache = 2 * cfg.nLayer * 2 * cfg.blockSize * cfg.nEmbd * 4; // keys and values, batch 2, float32
    assert.ok(backend.memory().peakBytes - before < wholeContextCache, `${backend.memory().peakBytes - before} bytes at the peak`);
  });

  it('top-k 1 and top-p near 0 are greedy argmax', async () => {
    const m = new GPT(cfg, { seed: 3 });
    const greedy = await host(await m.generate(prompt(new CpuBackend()), { maxNewTokens: 8, temperature: 0 }));
    assert.deepEqual(await host(await m.generate(prompt(new CpuBackend()), { maxNewTokens: 8, topK: 1, seed: 9 })), greedy);
    assert.deepEqual(await host(await m.generate(prompt(new CpuBackend()), { maxNewTokens: 8, topP: 1e-6, seed: 9 })), greedy);
  });

  it('ends a row at EOS (filling it with EOS), and everything when onStep says so or all rows ended', async () => {
    const m = new GPT(cfg, { seed: 4 });
    const free = await host(await m.generate(prompt(new CpuBackend()), { maxNewTokens: 6, seed: 5 }));
    const eos = free[3 + 1]!; // row 0's second new token
    const out = await host(await m.generate(prompt(new CpuBackend()), { maxNewTokens: 6, seed: 5, eosTokenId: eos }));
    const row0 = out.slice(0, out.length / 2);
    const firstEos = row0.indexOf(eos, 3);
    assert.ok(firstEos >= 3 && firstEos <= 4 && row0.slice(firstEos).every((t) => t === eos), `row 0: ${row0}`);
    const steps: number[][] = [];
    const stopped = await m.generate(prompt(new CpuBackend()), { maxNewTokens: 6, seed: 5, onStep: (ids, step) => { steps.push([...ids]); return step === 2; } });
    assert.deepEqual(stopped.shape, [2, 6]);
    assert.deepEqual(steps, [0, 1, 2].map((s) => [free[3 + s]!, free[9 + 3 + s]!]));
    await assert.rejects(m.generate(prompt(new CpuBackend()), { maxNewTokens: 1, topP: 0 }), GenerationError);
  });

  it('several samples with a stop string: each cut at its first stop, streamed piece by piece', async () => {
    const m = new GPT(cfg, { seed: 6 });
    const tok = new ByteTokenizer();
    const free = await sampleTexts(m, tok, 'ab', { maxNewTokens: 12, seed: 7, numSamples: 3, temperature: 1.5 });
    assert.equal(free.length, 3);
    assert.ok(new Set(free).size > 1, 'samples differ');
    const stop = free[0]!.slice(3, 5);
    const streamed = ['', '', ''];
    const cut = await sampleTexts(m, tok, 'ab', { maxNewTokens: 12, seed: 7, numSamples: 3, temperature: 1.5, stop: [stop], onText: (i, t) => { streamed[i] += t; } });
    assert.equal(cut[0], free[0]!.slice(0, free[0]!.indexOf(stop)));
    cut.forEach((text, i) => {
      assert.ok(!text.includes(stop) && free[i]!.startsWith(text), `sample ${i}`);
      assert.equal(streamed[i], text, `sample ${i} streamed`);
    });
    // Several stop strings: each sample ends at the first of them to appear in it.
    const other = free[1]!.slice(2, 4);
    const both = await sampleTexts(m, tok, 'ab', { maxNewTokens: 12, seed: 7, numSamples: 3, temperature: 1.5, stop: [stop, other] });
    both.forEach((text, i) => {
      const ends = [stop, other].map((s) => free[i]!.indexOf(s)).filter((at) => at >= 0);
      assert.equal(text, free[i]!.slice(0, ends.length ? Math.min(...ends) : undefined), `sample ${i}`);
    });
    const cutByOther = (t: string) => t.includes(other) && (!t.includes(stop) || t.indexOf(other) < t.indexOf(stop));
    assert.ok(free.some(cutByOther), 'the second stop string ends a sample before the first would');
    await assert.rejects(sampleTexts(m, tok, 'ab', { maxNewTokens: 1, stop: [''] }), (e: Error) => e instanceof GenerationError && /stop string 0 is empty/.test(e.message));
  });
});

describe('generation on a backend without the sample and quantizedMatmul kernels', () => {
  it('composes them (over synchronous reads) into the same tokens, or says what it lacks', async () => {
    const run = async (backend: ReturnType<typeof primitivesOnly>) => {
      const m = await quantize(new GPT(cfg, { backend, seed: 8 }), 'int4', { groupSize: 32 });
      return host(await m.generate(tensor(Int32Array.from([1, 2, 3]), { shape: [1, 3], dtype: 'int32', backend }), { maxNewTokens: 6, topP: 0.9, seed: 1 }));
    };
    assert.deepEqual(await run(primitivesOnly({ readSync: true })), await run(new CpuBackend()));
    await assert.rejects(run(primitivesOnly()), /needs the quantizedMatmul kernel or synchronous reads/);
  });
});

describe('generation on WebGPU', { skip }, () => {
  for (const weights of ['fp32', 'int8'] as const) {
    it(`gives the CPU's tokens for a seed (${weights} weights, temperature, top-k, top-p)`, async () => {
      const run = async (backend: CpuBackend | ReturnType<typeof webgpu>) => {
        const m = new GPT(cfg, { backend, seed: 8, init: 'gpt-mini' });
        if (weights === 'int8') await quantize(m, 'int8');
        const out = [];
        for (const opts of [{ temperature: 0 }, { topK: 1 }, { temperature: 0.9, topK: 20, seed: 3 }, { topP: 0.8, seed: 4 }]) {
          out.push(await host(await m.generate(prompt(backend), { maxNewTokens: 10, ...opts })));
        }
        m.dispose();
        return out;
      };
      assert.deepEqual(await run(webgpu()), await run(new CpuBackend()));
    });
  }
});
