// Loading a GPT-2 directory in pieces: each tensor is read, converted and
// written a piece at a time (never whole on the host), into parameters that on
// WebGPU may be larger than one binding. A directory with GPT-2's structure
// scaled down (its 50,257-token vocabulary, width 16) loads on a WebGPU backend
// that binds at most 1 MiB, gives the CPU backend's logits, and fine-tunes from
// the command line as on the CPU.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { createWebGPUBackend, type WebGPUBackend } from '../../src/backend/webgpu/backend.js';
import { main } from '../../src/cli/main.js';
import { GPT2CheckpointError, WEIGHTS_FILE, loadGPT2, saveGPT2 } from '../../src/io/gpt2.js';
import { SafetensorsError, SafetensorsReader, writeSafetensors } from '../../src/io/safetensors.js';
import { GPT } from '../../src/nn/gpt.js';
import { tensor } from '../../src/tensor/creation.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import type { TrainRecord } from '../../src/train/metrics.js';
import { CURVE_TOLERANCE } from '../helpers/training-curve.js';
import { tempRunRoot } from '../train/tiny-run.js';
import { assertClose, skip } from '../backend/webgpu/helpers.js';

const TINY = new URL('../fixtures/gpt2/tiny/', import.meta.url).pathname;
const MiB = 1 << 20;

let root: string;
let dataFile: string;
/** GPT-2's structure scaled down: its vocabulary (the table is 3.2 MB in float32), 2 layers of width 16. */
let scaled: string;

before(async () => {
  ({ root, dataFile } = await tempRunRoot('mixprec-gpt2-streamed-'));
  scaled = path.join(root, 'gpt2-scaled');
  const model = new GPT({ vocabSize: 50257, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true }, { seed: 11 });
  await saveGPT2(model, scaled);
  model.dispose();
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function bits(t: Tensor): Promise<Uint8Array> {
  const r = await t.backend.readRaw(t.storageView);
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

async function sameParameters(a: GPT, b: GPT, what: string): Promise<void> {
  const bs = new Map(b.namedParameters());
  for (const [name, p] of a.namedParameters()) assert.deepEqual(await bits(p), await bits(bs.get(name)!), `${what}: ${name}`);
}

describe('safetensors pieces', () => {
  test('readElements reads any range of a tensor and refuses one outside it', async () => {
    const reader = await SafetensorsReader.open(path.join(TINY, WEIGHTS_FILE));
    try {
      const whole = (await reader.read('wte.weight')).data as Float32Array;
      assert.deepEqual(await reader.readElements('wte.weight', 7, 100), whole.subarray(7, 107));
      assert.deepEqual(await reader.readElements('wte.weight', whole.length - 3, 3), whole.subarray(whole.length - 3));
      await assert.rejects(reader.readElements('wte.weight', whole.length - 3, 4),
        (e: Error) => e instanceof SafetensorsError && /'wte\.weight'.*elements \[4605, 4609\) are not within its 4608 elements/.test(e.message));
    } finally {
      await reader.close();
    }
  });

  test('loadGPT2 reads no more than a piece at a time, and gives the very parameters of a whole read, in every dtype', async () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
      const whole = await loadGPT2(TINY, { dtype, pieceElements: 1e9 });
      const proto = SafetensorsReader.prototype;
      const { read, readElements } = proto;
      const reads: number[] = [];
      proto.read = function (name) { reads.push(Infinity); return read.call(this, name); };
      proto.readElements = function (name, first, count) { reads.push(count); return readElements.call(this, name, first, count); };
      let pieces: GPT;
      try {
        pieces = await loadGPT2(TINY, { dtype, pieceElements: 7 });
      } finally {
        proto.read = read;
        proto.readElements = readElements;
      }
      assert.equal(Math.max(...reads), 6, `${dtype}: the largest read is one piece (7 elements, rounded down to even)`);
      await sameParameters(pieces, whole, dtype);
    }
    await assert.rejects(loadGPT2(TINY, { pieceElements: 0 }), (e: Error) => e instanceof GPT2CheckpointError && /'pieceElements': must be a positive integer, got 0/.test(e.message));
  });

  test('a tied lm_head is compared piece by piece: a difference in its last piece is found', async () => {
    const reader = await SafetensorsReader.open(path.join(TINY, WEIGHTS_FILE));
    const tensors = [];
    try {
      for (const info of reader.tensors()) tensors.push({ name: info.name, dtype: info.dtype, shape: info.shape, data: (await reader.read(info.name)).data });
    } finally {
      await reader.close();
    }
    const wte = tensors.find((t) => t.name === 'wte.weight')!;
    const head = Float32Array.from(wte.data as Float32Array);
    head[head.length - 1]! += 1;
    const dir = path.join(root, 'untied');
    await fs.mkdir(dir);
    await fs.copyFile(path.join(TINY, 'config.json'), path.join(dir, 'config.json'));
    await writeSafetensors(path.join(dir, WEIGHTS_FILE), [...tensors, { name: 'lm_head.weight', dtype: 'F32', shape: wte.shape, data: head }]);
    await assert.rejects(loadGPT2(dir, { pieceElements: 1000 }), (e: Error) => e instanceof GPT2CheckpointError && /'lm_head\.weight': differs from wte\.weight/.test(e.message));
  });
});

describe('a GPT-2 directory on WebGPU past the binding limit', { skip }, () => {
  let gpu: WebGPUBackend;
  before(async () => { gpu = await createWebGPUBackend({ register: false, maxBindingBytes: MiB }); });
  after(() => gpu?.destroy());

  test('loads in pieces into tables larger than a binding and gives the CPU backend logits', async () => {
    const cpu = new CpuBackend();
    const onCpu = await loadGPT2(scaled, { backend: cpu });
    const onGpu = await loadGPT2(scaled, { backend: gpu, pieceElements: 300_001 });
    const wte = new Map(onGpu.namedParameters()).get('wte.weight')!;
    assert.ok(wte.size * 4 > 3 * MiB, `the token table (${wte.size * 4} bytes) spans several bindings`);
    await sameParameters(onGpu, onCpu, 'webgpu');
    const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % 50257);
    const logits = (m: GPT) => m.forward(tensor(ids, { shape: [2, 8], dtype: 'int32', backend: m.backend })).logits.toArray();
    assertClose(await logits(onGpu), await logits(onCpu), { rtol: 1e-4, atol: 1e-5 }, 'logits');
    onGpu.dispose();
    onCpu.dispose();
  });

  test('mixprec train --init-from the directory on WebGPU follows the same run on the CPU backend', async () => {
    const train = async (backend: string) => {
      const out = path.join(root, `runs-${backend}`);
      const args = ['train', '--init-from', scaled, '--data', dataFile, '--backend', backend, '--max-steps', '3', '--batch-size', '2',
        '--block-size', '8', '--log-interval', '1', '--eval-steps', '1', '--out', out];
      let stderr = '';
      const status = await main(args, { write: () => true }, { write: (s: string) => { stderr += s; return true; } });
      assert.equal(status, 0, stderr);
      const lines = (await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
      return lines.filter((r): r is TrainRecord => r.type === 'train').map((r) => r.loss);
    };
    process.env.MIXPREC_WEBGPU_MAX_BINDING = String(MiB);
    let onGpu: number[];
    try {
      onGpu = await train('webgpu');
    } finally {
      delete process.env.MIXPREC_WEBGPU_MAX_BINDING;
    }
    const onCpu = await train('cpu');
    assert.equal(onGpu.length, 3);
    assert.ok(Math.abs(onCpu[0]! - Math.log(50257)) < 0.1, `first loss ${onCpu[0]} is near ln(50257)`);
    onCpu.forEach((c, k) => assert.ok(Math.abs(onGpu[k]! - c) <= CURVE_TOLERANCE.fp16!, `step ${k + 1}: webgpu ${onGpu[k]} vs cpu ${c}`));
  });
});
