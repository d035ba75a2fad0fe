// Weight formats for inference: a quantized GPT computes what a float GPT with
// the dequantized weights computes; saved and loaded it is bit-identical; and
// int8 costs a trained model less than 1% of its validation loss.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { autocast } from '../../src/amp/autocast.js';
import { noGrad } from '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { dequantizeMatrix, QuantizeError } from '../../src/dtype/quant.js';
import { GPT2CheckpointError, loadGPT2, saveGPT2 } from '../../src/io/gpt2.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { ModuleError } from '../../src/nn/module.js';
import { emptyQuantizedGPT, linearLayers, quantize, toWeightFormat, weightBytes, weightFormat } from '../../src/nn/quantize.js';
import { AdamW } from '../../src/optim/adamw.js';
import { tensor } from '../../src/tensor/creation.js';
import { TensorError } from '../../src/tensor/errors.js';
import { quantizedLinear } from '../../src/tensor/quantized.js';
import { tidy, type Tensor } from '../../src/tensor/tensor.js';
import { tinyText } from '../train/tiny-run.js';

const cpu = new CpuBackend();
const cfg: GPTConfig = { vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0, bias: true };
const ids = (data: number[], shape: [number, number]) => tensor(Int32Array.from(data), { shape, dtype: 'int32', backend: cpu });
const prompt = () => ids(Array.from({ length: 2 * 16 }, (_, i) => (i * 37 + 5) % 64), [2, 16]);
const logits = (m: GPT) => Float64Array.from(noGrad(() => tidy(() => m.forward(prompt()).logits)).toArraySync());

/** Same quantized words, scales and layouts (if any), and the same parameter bits. */
function assertSameModel(r: GPT, q: GPT): void {
  const bits = (t: Tensor) => Array.from(new Uint8Array(cpu.readSync(t.storageView).buffer));
  for (const [[name, a], [, b]] of linearLayers(q).map((e, i) => [e, linearLayers(r)[i]!] as const)) {
    assert.equal(!b.quantized, !a.quantized, `${name} quantized in both or neither`);
    if (!a.quantized) continue;
    assert.deepEqual(bits(b.quantized!.words), bits(a.quantized!.words), `${name} words`);
    assert.deepEqual(bits(b.quantized!.scales), bits(a.quantized!.scales), `${name} scales`);
    assert.deepEqual(b.quantized!.layout, a.quantized!.layout);
  }
  const pr = new Map(r.namedParameters());
  assert.deepEqual([...pr.keys()], q.namedParameters().map(([n]) => n));
  for (const [name, p] of q.namedParameters()) assert.deepEqual(bits(pr.get(name)!), bits(p), name);
}

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
const tempDir = async () => { const d = await mkdtemp(join(tmpdir(), 'mixprec-quant-')); dirs.push(d); return d; };

describe('quantize', () => {
  for (const [format, groupSize] of [['int8', undefined], ['int4', 32]] as const) {
    it(`${format}: the logits of a float model holding the dequantized weights and an fp16 embedding`, async () => {
      const q = await quantize(new GPT(cfg, { backend: cpu, seed: 1 }), format, { groupSize });
      assert.equal(weightFormat(q), format);
      assert.equal(q.wte.weight.dtype, 'float16', 'embedding and tied head in float16');
      const f = new GPT(cfg, { backend: cpu, seed: 1 });
      f.wte.to('float16');
      f.wte.to('float32');
      for (const [name, layer] of linearLayers(f)) {
        const qw = linearLayers(q).find(([n]) => n === name)![1].quantized!;
        const rows = dequantizeMatrix(qw.words.toArraySync(), qw.scales.toArraySync(), qw.layout);
        const { n, k } = qw.layout;
        const w = new Float32Array(n * k);
        for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) w[i * n + j] = rows[j * k + i]!;
        cpu.write(layer.weight.storageView, w);
      }
      const a = logits(q), b = logits(f);
      a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-5 * (1 + Math.abs(b[i]!)), `logit ${i}: ${v} vs ${b[i]}`));
    });
  }

  it('shrinks the weights: int8 under 40% and int4 under 30% of float32 on this model', async () => {
    const fp32 = weightBytes(new GPT(cfg, { backend: cpu }));
    const int8 = weightBytes(await quantize(new GPT(cfg, { backend: cpu }), 'int8'));
    const int4 = weightBytes(await quantize(new GPT(cfg, { backend: cpu }), 'int4', { groupSize: 32 }));
    assert.ok(int8 < 0.4 * fp32 && int4 < 0.3 * fp32, `${fp32} ${int8} ${int4}`);
  });

  it('quantizedLinear gives float32 outside autocast and the autocast dtype inside, as a float matmul does', async () => {
    const w = (await quantize(new GPT(cfg, { backend: cpu }), 'int8')).h[0]!.mlp.c_fc.quantized!;
    const x16 = tensor(new Float32Array(64).fill(0.5), { shape: [1, 64], dtype: 'float16', backend: cpu });
    assert.equal(quantizedLinear(x16, w).dtype, 'float32');
    for (const dtype of ['float16', 'bfloat16'] as const) {
      assert.equal(autocast({ dtype }, () => quantizedLinear(x16, w)).dtype, dtype);
    }
  });

  it('int4 groups 64 inputs by default, 32 where a layer has inputs that 64 does not divide (width 96), loaded or converted', async () => {
    const groupSizes = (m: GPT) => new Set(linearLayers(m).map(([, l]) => l.quantized!.layout.groupSize));
    assert.deepEqual(groupSizes(await quantize(new GPT(cfg, { backend: cpu }), 'int4')), new Set([64]));
    const narrow = { ...cfg, nEmbd: 96 };
    assert.deepEqual(groupSizes(await quantize(new GPT(narrow, { backend: cpu }), 'int4')), new Set([32]));
    const dir = await tempDir();
    await saveGPT2(new GPT(narrow, { backend: cpu }), dir);
    assert.deepEqual(groupSizes(await loadGPT2(dir, { backend: cpu, weights: 'int4' })), new Set([32]));
    await assert.rejects(quantize(new GPT(narrow, { backend: cpu }), 'int4', { groupSize: 64 }), (e: Error) => e instanceof QuantizeError && /group size 64 must divide the 96 inputs/.test(e.message));
  });

  it('refuses misuse with typed errors', async () => {
    const q = await quantize(new GPT(cfg, { backend: cpu }), 'int8');
    await assert.rejects(quantize(q, 'int4'), (e: Error) => e instanceof QuantizeError && /already int8/.test(e.message));
    assert.throws(() => q.h[0]!.mlp.c_fc.weight, (e: Error) => e instanceof ModuleError && /quantized to int8/.test(e.message));
    const unset = emptyQuantizedGPT(cfg, { backend: cpu });
    assert.throws(() => unset.forward(prompt()), (e: Error) => e instanceof ModuleError && /Linear\(64, 192\)\.weight was built for a quantized weight, and none has been set/.test(e.message));
    const x = tensor(new Float32Array(64), { shape: [1, 64], backend: cpu }).requiresGrad_(true);
    assert.throws(() => quantizedLinear(x, q.h[0]!.mlp.c_fc.quantized!), TensorError);
    await assert.rejects(quantize(new GPT(cfg, { backend: cpu }), 'int4', { groupSize: 48 }), /h\.0\.attn\.c_attn\.weight: int4 group size must be 32 or 64, got 48/);
  });
});

describe('quantized GPT-2 directories', () => {
  for (const [format, groupSize] of [['int8', undefined], ['int4', 64]] as const) {
    it(`${format}: saved and loaded bit for bit, with the format in the metadata`, async () => {
      const dir = await tempDir();
      const q = await quantize(new GPT(cfg, { backend: cpu, seed: 2 }), format, { groupSize });
      await saveGPT2(q, dir);
      const r = await loadGPT2(dir, { backend: cpu });
      assert.equal(weightFormat(r), format);
      assertSameModel(r, q);
      assert.deepEqual(logits(r), logits(q));
      await assert.rejects(loadGPT2(dir, { backend: cpu, weights: format === 'int8' ? 'int4' : 'int8' }), GPT2CheckpointError);
    });
  }

  it("loadGPT2(dir, { weights: 'int8' }) quantizes a float directory as it loads", async () => {
    const dir = await tempDir();
    await saveGPT2(new GPT(cfg, { backend: cpu, seed: 4 }), dir);
    const loaded = await loadGPT2(dir, { backend: cpu, weights: 'int8' });
    const direct = await quantize(new GPT(cfg, { backend: cpu, seed: 4 }), 'int8');
    assert.equal(weightFormat(loaded), 'int8');
    assertSameModel(loaded, direct);
    assert.deepEqual(logits(loaded), logits(direct));
    const fp16 = await loadGPT2(dir, { backend: cpu, weights: 'fp16' });
    assert.ok(fp16.parameters().every((p) => p.dtype === 'float16'), 'fp16: every parameter converted once');
    for (const format of ['fp16', 'bf16'] as const) {
      assertSameModel(await loadGPT2(dir, { backend: cpu, weights: format }), await toWeightFormat(await loadGPT2(dir, { backend: cpu }), format));
    }
    assert.ok((await toWeightFormat(fp16, 'fp32')).parameters().every((p) => p.dtype === 'float32'), 'back to fp32');
    await assert.rejects(toWeightFormat(loaded, 'fp16'), (e: Error) => e instanceof QuantizeError && /int8 model cannot be converted to fp16/.test(e.message));
  });
});

describe('loading straight into a weight format', () => {
  // Linear weights dominate this model (4 x 12 x 128^2 of its parameters), as they do GPT-2.
  const wide: GPTConfig = { vocabSize: 64, blockSize: 16, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true };
  const floatLinearBytes = 4 * wide.nLayer * 12 * wide.nEmbd ** 2;
  for (const [source, weights] of [['a float directory', 'int8'], ['an int8 directory', 'int8'], ['a float directory', 'fp16']] as const) {
    it(`${weights} from ${source} never holds the float32 weights: peak bytes of load and generation stay under its weights + 1/4 of the float32 matrices`, async () => {
      const dir = await tempDir();
      const f = new GPT(wide, { backend: cpu, seed: 6 });
      await saveGPT2(source === 'an int8 directory' ? await quantize(f, 'int8') : f, dir);
      const fresh = new CpuBackend();
      const model = await loadGPT2(dir, { backend: fresh, weights });
      const out = await model.generate(tensor(Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), { shape: [1, 8], dtype: 'int32', backend: fresh }), { maxNewTokens: 4, seed: 1 });
      assert.equal(out.shape[1], 12);
      const bound = weightBytes(model) + floatLinearBytes / 4;
      const { peakBytes } = fresh.memory();
      assert.ok(peakBytes < bound, `peak ${peakBytes} bytes, bound ${bound} (${weights} weights ${weightBytes(model)}, float32 Linear weights ${floatLinearBytes})`);
    });
  }
});

describe('int8 on a trained model', () => {
  it('validation loss within 1% of float32 (int4 reported)', async () => {
    const text = Array.from(new TextEncoder().encode(tinyText()), (b) => b % 64);
    const split = Math.floor(text.length * 0.9);
    const batch = (from: number, count: number, seed: number) => {
      const x: number[] = [], y: number[] = [];
      for (let b = 0; b < count; b++) {
        const s = from + ((seed * 7919 + b * 104729) % (count === 4 ? split - 17 : text.length - split - 17));
        x.push(...text.slice(s, s + 16));
        y.push(...text.slice(s + 1, s + 17));
      }
      return { x: ids(x, [count, 16]), y: ids(y, [count, 16]) };
    };
    const model = new GPT(cfg, { backend: cpu, seed: 5 });
    const opt = new AdamW(model.parameters(), { lr: 3e-3 });
    for (let step = 0; step < 150; step++) {
      tidy(() => {
        const { x, y } = batch(0, 4, step);
        model.forward(x, y).loss!.backward();
      });
      opt.step();
      model.zeroGrad();
    }
    const val = (m: GPT) => {
      let sum = 0;
      for (let i = 0; i < 8; i++) sum += noGrad(() => tidy(() => { const { x, y } = batch(split, 8, i); return m.forward(x, y).loss!; })).toArraySync()[0]!;
      return sum / 8;
    };
    const dir = await tempDir();
    await saveGPT2(model, dir);
    const f32 = val(model);
    const int8 = val(await toWeightFormat(await loadGPT2(dir, { backend: cpu }), 'int8'));
    const int4 = val(await loadGPT2(dir, { backend: cpu, weights: 'int4', groupSize: 32 }));
    console.log(`# trained tiny model: val loss fp32 ${f32.toFixed(4)}, int8 ${int8.toFixed(4)}, int4/32 ${int4.toFixed(4)}`);
    assert.ok(f32 < 2.5, `the model learned something (val loss ${f32})`);
    assert.ok(Math.abs(int8 - f32) <= 0.01 * f32, `int8 ${int8} vs fp32 ${f32}`);
  });
});
