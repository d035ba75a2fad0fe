import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16 } from '../../src/dtype/codec.js';
import {
  CONFIG_FILE, GPT2CheckpointError, WEIGHTS_FILE, gpt2ConfigJson, loadGPT2, parseGPT2Config, saveGPT2,
} from '../../src/io/gpt2.js';
import { SafetensorsError, SafetensorsReader, writeSafetensors, type RawTensor, type WritableTensor } from '../../src/io/safetensors.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/adamw.js';
import { tensor } from '../../src/tensor/creation.js';
import { memory, type Tensor } from '../../src/tensor/tensor.js';

const FIXTURES = new URL('../fixtures/gpt2/', import.meta.url).pathname;
const expected = JSON.parse(await readFile(join(FIXTURES, 'expected.json'), 'utf8'));
const fixture = (name: string) => join(FIXTURES, name);

let tmp: string;
let counter = 0;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'mixprec-gpt2-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });
const nextDir = () => join(tmp, `d${counter++}`);

function host(t: Tensor): Float64Array {
  return Float64Array.from(t.toArraySync());
}

async function bits(t: Tensor): Promise<Uint8Array> {
  const r = await t.backend.readRaw(t.storageView);
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

function batch(): [Tensor, Tensor] {
  const i = expected.input_ids, t = expected.targets;
  return [tensor(Int32Array.from(i.data), { shape: i.shape, dtype: 'int32' }), tensor(Int32Array.from(t.data), { shape: t.shape, dtype: 'int32' })];
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

async function readAll(file: string): Promise<Map<string, RawTensor>> {
  const r = await SafetensorsReader.open(file);
  try {
    const out = new Map<string, RawTensor>();
    for (const n of r.names()) out.set(n, await r.read(n));
    return out;
  } finally {
    await r.close();
  }
}

describe('loadGPT2: parity with PyTorch on the fixtures', () => {
  // fp32 files must match the fp32 reference; the 16-bit files hold rounded weights, so their loss is
  // compared with PyTorch's loss on the same rounded weights and their gradients (not in the fixture)
  // with the fp32 gradients, within what the rounding moves them.
  const cases = [
    { dir: 'tiny', loss: expected.loss, logitsTol: 1e-4, gradTol: 1e-3 },
    { dir: 'tiny-hf-prefixed', loss: expected.loss, logitsTol: 1e-4, gradTol: 1e-3 },
    { dir: 'tiny-fp16', loss: expected.loss_fp16_weights, logitsTol: 1e-3, gradTol: 1e-3 },
    { dir: 'tiny-bf16', loss: expected.loss_bf16_weights, logitsTol: 1e-2, gradTol: 1e-2 },
  ];
  for (const c of cases) {
    it(`${c.dir}: loss to 1e-4, logits and every gradient norm agree`, async () => {
      const model = await loadGPT2(fixture(c.dir));
      assert.deepEqual(
        { V: model.config.vocabSize, P: model.config.blockSize, C: model.config.nEmbd, L: model.config.nLayer, H: model.config.nHead },
        { V: 96, P: 32, C: 48, L: 2, H: 4 },
      );
      const [x, y] = batch();
      const { logits, loss } = model.forward(x, y);
      const l = host(loss!)[0]!;
      assert.ok(rel(l, c.loss) < 1e-4, `loss ${l} vs ${c.loss}`);
      const got = host(logits), want = expected.logits.data as number[];
      assert.deepEqual(logits.shape, expected.logits.shape);
      const worst = want.reduce((m: number, w: number, i: number) => Math.max(m, Math.abs(got[i]! - w)), 0);
      assert.ok(worst < c.logitsTol, `largest logit difference ${worst}`);
      loss!.backward();
      for (const [name, p] of model.namedParameters()) {
        const norm = Math.sqrt(host(p.grad!).reduce((a, g) => a + g * g, 0));
        assert.ok(rel(norm, expected.grad_norms[name]) < c.gradTol, `${name}: gradient norm ${norm} vs ${expected.grad_norms[name]}`);
      }
    });
  }

  it('16-bit files load to exactly the values their bits encode', async () => {
    for (const [dir, decode] of [['tiny-fp16', decodeFloat16], ['tiny-bf16', decodeBFloat16]] as const) {
      const stored = await readAll(join(fixture(dir), WEIGHTS_FILE));
      const model = await loadGPT2(fixture(dir));
      for (const [name, p] of model.namedParameters()) {
        const want = new Float32Array(p.size);
        decode(stored.get(name)!.data as Uint16Array, want);
        assert.deepEqual(p.toArraySync(), want, `${dir} ${name}`);
      }
      // Loaded in their own dtype they keep the very bits.
      const same = await loadGPT2(fixture(dir), { dtype: dir === 'tiny-fp16' ? 'float16' : 'bfloat16' });
      for (const [name, p] of same.namedParameters()) {
        const s = stored.get(name)!.data as Uint16Array;
        assert.deepEqual(await bits(p), new Uint8Array(s.buffer, s.byteOffset, s.byteLength), `${dir} ${name} bits`);
      }
    }
  });

  it('narrowing on load rounds to nearest even', async () => {
    const stored = await readAll(join(fixture('tiny'), WEIGHTS_FILE));
    for (const [dtype, encode] of [['float16', encodeFloat16], ['bfloat16', encodeBFloat16]] as const) {
      const model = await loadGPT2(fixture('tiny'), { dtype });
      for (const [name, p] of model.namedParameters()) {
        const want = new Uint16Array(p.size);
        encode(stored.get(name)!.data as Float32Array, want);
        assert.deepEqual(await bits(p), new Uint8Array(want.buffer), `${dtype} ${name}`);
      }
    }
  });

  it('loads onto the given backend; dispose frees the model', async () => {
    const backend = new CpuBackend();
    const model = await loadGPT2(fixture('tiny'), { backend });
    assert.equal(model.backend, backend);
    model.dispose();
    assert.equal(memory(backend).bytes, 0);
  });
});

describe('saveGPT2', () => {
  it('writes config.json and model.safetensors in the Hugging Face layout', async () => {
    const model = await loadGPT2(fixture('tiny'));
    const dir = nextDir();
    await saveGPT2(model, dir);
    assert.deepEqual((await readdir(dir)).sort(), [CONFIG_FILE, WEIGHTS_FILE]);
    const json = JSON.parse(await readFile(join(dir, CONFIG_FILE), 'utf8'));
    assert.equal(json.model_type, 'gpt2');
    assert.equal(json.n_inner, null);
    assert.equal(json.activation_function, 'gelu_new');
    assert.equal(json.torch_dtype, 'float32');
    assert.deepEqual(parseGPT2Config(json), { ...model.config });
    const r = await SafetensorsReader.open(join(dir, WEIGHTS_FILE));
    assert.deepEqual(r.metadata, { format: 'pt' });
    assert.deepEqual(r.names().sort(), model.namedParameters().map(([n]) => n).sort());
    assert.ok(r.tensors().every((t) => t.dtype === 'F32'));
    await r.close();
    // The saved file holds the same bytes as PyTorch's for the same weights.
    const ours = await readAll(join(dir, WEIGHTS_FILE)), theirs = await readAll(join(fixture('tiny'), WEIGHTS_FILE));
    for (const [n, t] of theirs) assert.deepEqual(ours.get(n)!.data, t.data, n);
  });

  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    it(`round trip in ${dtype} is bit-identical`, async () => {
      const model = new GPT({ vocabSize: 40, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true }, { seed: 3, dtype });
      const dir = nextDir();
      await saveGPT2(model, dir);
      const back = await loadGPT2(dir, { dtype });
      const names = model.namedParameters().map(([n]) => n);
      assert.deepEqual(back.namedParameters().map(([n]) => n), names);
      const params = new Map(back.namedParameters());
      for (const [n, p] of model.namedParameters()) assert.deepEqual(await bits(params.get(n)!), await bits(p), n);
      // And a second save writes the same bytes.
      const dir2 = nextDir();
      await saveGPT2(back, dir2);
      assert.deepEqual(await readFile(join(dir2, WEIGHTS_FILE)), await readFile(join(dir, WEIGHTS_FILE)));
    });
  }

  it('narrows a float32 model to fp16 / bf16 files with round-to-nearest-even', async () => {
    const model = await loadGPT2(fixture('tiny'));
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const dir = nextDir();
      await saveGPT2(model, dir, { dtype });
      const saved = await readAll(join(dir, WEIGHTS_FILE));
      const encode = dtype === 'float16' ? encodeFloat16 : encodeBFloat16;
      for (const [n, p] of model.namedParameters()) {
        const want = new Uint16Array(p.size);
        encode(p.toArraySync(), want);
        assert.deepEqual(saved.get(n)!.data, want, `${dtype} ${n}`);
      }
      // PyTorch rounded the fixture's 16-bit files from the same float32 weights: identical bytes.
      const ref = await readAll(join(fixture(dtype === 'float16' ? 'tiny-fp16' : 'tiny-bf16'), WEIGHTS_FILE));
      for (const [n, t] of ref) assert.deepEqual(saved.get(n)!.data, t.data, n);
      assert.equal(JSON.parse(await readFile(join(dir, CONFIG_FILE), 'utf8')).torch_dtype, dtype);
    }
  });

  it('writes zero biases for a model without biases, which computes the same function', async () => {
    const cfg: GPTConfig = { vocabSize: 96, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: false };
    const model = new GPT(cfg, { seed: 1 });
    const dir = nextDir();
    await saveGPT2(model, dir);
    const back = await loadGPT2(dir);
    assert.equal(back.config.bias, true);
    const [x, y] = batch();
    assert.equal(host(back.forward(x, y).loss!)[0], host(model.forward(x, y).loss!)[0]);
  });

  it('keeps other files in the directory and replaces its own', async () => {
    const dir = nextDir();
    await mkdir(dir);
    await writeFile(join(dir, 'tokenizer.json'), '{}');
    await writeFile(join(dir, CONFIG_FILE), 'old');
    await saveGPT2(new GPT({ vocabSize: 16, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 4, dropout: 0, bias: true }), dir);
    assert.deepEqual((await readdir(dir)).sort(), [CONFIG_FILE, WEIGHTS_FILE, 'tokenizer.json']);
    await loadGPT2(dir);
  });
});

describe('loadGPT2: malformed directories', () => {
  /** A copy of the tiny fixture with the tensors and config.json edited. */
  async function variant(
    edit: (tensors: Map<string, RawTensor>) => void,
    editConfig: (json: Record<string, unknown>) => void = () => {},
  ): Promise<string> {
    const dir = nextDir();
    await mkdir(dir);
    const tensors = await readAll(join(fixture('tiny'), WEIGHTS_FILE));
    edit(tensors);
    const list: WritableTensor[] = [...tensors].map(([name, t]) => ({ name, ...t }));
    await writeSafetensors(join(dir, WEIGHTS_FILE), list, { format: 'pt' });
    const json = JSON.parse(await readFile(join(fixture('tiny'), CONFIG_FILE), 'utf8'));
    editConfig(json);
    await writeFile(join(dir, CONFIG_FILE), JSON.stringify(json));
    return dir;
  }

  async function assertFails(dir: string, file: string, fragments: (string | RegExp)[], type: Function = GPT2CheckpointError): Promise<void> {
    const backend = new CpuBackend();
    await assert.rejects(loadGPT2(dir, { backend }), (err: Error) => {
      assert.ok(err instanceof type, `expected a ${type.name}, got ${err}`);
      assert.ok(err.message.includes(join(dir, file)), `names the file: ${err.message}`);
      for (const f of fragments) {
        if (typeof f === 'string') assert.ok(err.message.includes(f), `mentions '${f}': ${err.message}`);
        else assert.match(err.message, f);
      }
      return true;
    });
    assert.equal(memory(backend).bytes, 0, 'nothing stays allocated');
  }

  it('a missing tensor', async () => {
    const dir = await variant((t) => t.delete('h.1.mlp.c_fc.bias'));
    await assertFails(dir, WEIGHTS_FILE, ["missing tensors 'h.1.mlp.c_fc.bias'"]);
  });

  it('an extra tensor, and missing and extra together', async () => {
    const extra = (t: Map<string, RawTensor>) => t.set('h.0.attn.rotary.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
    await assertFails(await variant(extra), WEIGHTS_FILE, ["unexpected tensors 'h.0.attn.rotary.weight'"]);
    const both = await variant((t) => { extra(t); t.delete('ln_f.bias'); });
    await assertFails(both, WEIGHTS_FILE, ["missing tensors 'ln_f.bias'", "unexpected tensors 'h.0.attn.rotary.weight'"]);
    // A third layer in the file that the config does not have.
    const layer = await variant((t) => t.set('h.2.ln_1.weight', { dtype: 'F32', shape: [48], data: new Float32Array(48) }));
    await assertFails(layer, WEIGHTS_FILE, ["unexpected tensors 'h.2.ln_1.weight'"]);
  });

  it('a shape that does not match the config (Linear layout [out, in] instead of Conv1D [in, out])', async () => {
    const dir = await variant((t) => { t.get('h.0.attn.c_attn.weight')!.shape = [144, 48]; });
    await assertFails(dir, WEIGHTS_FILE, ["'h.0.attn.c_attn.weight'", 'shape [144, 48] does not match the config: expected [48, 144]']);
  });

  it('a config whose sizes are absurd or disagree with the file, before allocating anything', async () => {
    await assertFails(await variant(() => {}, (j) => { j.vocab_size = 2 ** 40; }), CONFIG_FILE, ["'vocab_size'", 'absurdly large']);
    await assertFails(await variant(() => {}, (j) => { j.vocab_size = 1_000_000_000; }), WEIGHTS_FILE, ["'wte.weight'", 'expected [1000000000, 48]']);
    await assertFails(await variant(() => {}, (j) => { j.n_layer = 3; }), WEIGHTS_FILE, ["missing tensors 'h.2.ln_1.weight'"]);
  });

  it('a non-float tensor', async () => {
    const dir = await variant((t) => { t.set('ln_f.bias', { dtype: 'I32', shape: [48], data: new Int32Array(48) }); });
    await assertFails(dir, WEIGHTS_FILE, ["'ln_f.bias'", 'dtype I32 is not a floating-point type']);
  });

  it('a tensor stored twice, with and without the prefix', async () => {
    const dir = await variant((t) => { t.set('transformer.ln_f.bias', t.get('ln_f.bias')!); });
    await assertFails(dir, WEIGHTS_FILE, ["'ln_f.bias'", 'appears twice']);
  });

  it('bad config.json: missing key, wrong type, unsupported activation and options', async () => {
    await assertFails(await variant(() => {}, (j) => { delete j.n_embd; }), CONFIG_FILE, ["'n_embd'", 'missing required key']);
    await assertFails(await variant(() => {}, (j) => { j.n_head = '4'; }), CONFIG_FILE, ["'n_head'", 'must be a positive integer, got "4"']);
    await assertFails(await variant(() => {}, (j) => { j.n_layer = 1.5; }), CONFIG_FILE, ["'n_layer'"]);
    await assertFails(await variant(() => {}, (j) => { j.n_head = 5; }), CONFIG_FILE, ["'n_head'", 'not divisible']);
    await assertFails(await variant(() => {}, (j) => { j.activation_function = 'relu'; }), CONFIG_FILE, ["'activation_function'", '"relu" is not supported']);
    await assertFails(await variant(() => {}, (j) => { j.layer_norm_epsilon = 'small'; }), CONFIG_FILE, ["'layer_norm_epsilon'"]);
    await assertFails(await variant(() => {}, (j) => { j.resid_pdrop = 2; }), CONFIG_FILE, ["'resid_pdrop'"]);
    await assertFails(await variant(() => {}, (j) => { j.scale_attn_by_inverse_layer_idx = true; }), CONFIG_FILE, ["'scale_attn_by_inverse_layer_idx'"]);
    await assertFails(await variant(() => {}, (j) => { j.model_type = 'llama'; }), CONFIG_FILE, ["'model_type'"]);
    const dir = await variant(() => {});
    await writeFile(join(dir, CONFIG_FILE), '{"n_embd": 48,');
    await assertFails(dir, CONFIG_FILE, ['is not valid JSON']);
    await writeFile(join(dir, CONFIG_FILE), '[1, 2]');
    await assertFails(dir, CONFIG_FILE, ['is not a JSON object']);
    await rm(join(dir, CONFIG_FILE));
    await assertFails(dir, CONFIG_FILE, ['cannot be read']);
  });

  it('attn_pdrop is the attention-probability dropout: read into attnDropout, written back, overridden with the other dropouts', async () => {
    const dir = await variant(() => {}, (j) => { j.resid_pdrop = 0.1; j.attn_pdrop = 0.25; });
    const model = await loadGPT2(dir);
    assert.deepEqual([model.config.dropout, model.config.attnDropout], [0.1, 0.25]);
    assert.equal(gpt2ConfigJson(model.config).attn_pdrop, 0.25);
    const overridden = await loadGPT2(dir, { dropout: 0 });
    assert.deepEqual([overridden.config.dropout, overridden.config.attnDropout], [0, 0]);
    await assertFails(await variant(() => {}, (j) => { j.attn_pdrop = 1; }), CONFIG_FILE, ["'attn_pdrop'"]);
  });

  it('ignores unknown config keys and accepts n_inner = 4 n_embd and gelu_pytorch_tanh', async () => {
    const dir = await variant(() => {}, (j) => { j.some_future_key = { a: 1 }; j.n_inner = 192; j.activation_function = 'gelu_pytorch_tanh'; });
    const model = await loadGPT2(dir);
    assert.equal(model.config.nInner, 192);
  });

  it('an untied lm_head', async () => {
    const dir = await variant((t) => {
      const w = Float32Array.from(t.get('wte.weight')!.data as Float32Array);
      w[17] += 1e-3;
      t.set('lm_head.weight', { dtype: 'F32', shape: [96, 48], data: w });
    });
    await assertFails(dir, WEIGHTS_FILE, ["'lm_head.weight'", 'untied output heads are not supported']);
    await assertFails(await variant(() => {}, (j) => { j.tie_word_embeddings = false; }), CONFIG_FILE, ["'tie_word_embeddings'", 'untied']);
  });

  it('a truncated or missing safetensors file', async () => {
    const dir = await variant(() => {});
    await truncate(join(dir, WEIGHTS_FILE), 100_000);
    await assertFails(dir, WEIGHTS_FILE, ['out of range'], SafetensorsError);
    await truncate(join(dir, WEIGHTS_FILE), 4);
    await assertFails(dir, WEIGHTS_FILE, ['shorter than the 8-byte header length'], SafetensorsError);
    await rm(join(dir, WEIGHTS_FILE));
    await assertFails(dir, WEIGHTS_FILE, ['cannot be read', 'ENOENT']);
  });
});

describe('training a loaded checkpoint', () => {
  it('three AdamW steps follow PyTorch (losses 1e-4, parameter norms 1e-4), and the result saves and loads', async () => {
    const model = await loadGPT2(fixture('tiny'));
    const a = expected.adamw;
    const params = new Map(model.namedParameters());
    const opt = new AdamW([
      { params: a.decay_params.map((n: string) => params.get(n)!), weightDecay: a.weight_decay },
      { params: a.no_decay_params.map((n: string) => params.get(n)!), weightDecay: 0 },
    ], { lr: a.lr, betas: a.betas, eps: a.eps });
    const [x, y] = batch();
    for (let k = 0; k <= a.steps; k++) {
      opt.zeroGrad();
      const { loss } = model.forward(x, y);
      const l = host(loss!)[0]!;
      assert.ok(rel(l, a.losses[k]) < 1e-4, `step ${k}: loss ${l} vs ${a.losses[k]}`);
      if (k === a.steps) break;
      loss!.backward();
      opt.step();
    }
    for (const [n, p] of params) {
      const norm = Math.sqrt(host(p).reduce((s, v) => s + v * v, 0));
      assert.ok(rel(norm, a.param_norms_after[n]) < 1e-4, `${n}: norm ${norm} vs ${a.param_norms_after[n]}`);
    }
    const dir = nextDir();
    await saveGPT2(model, dir);
    const back = await loadGPT2(dir);
    assert.ok(rel(host(back.forward(x, y).loss!)[0]!, a.losses[a.steps]) < 1e-4);
  });
});
