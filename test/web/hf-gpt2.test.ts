// The page's GPT-2 directory reader and writer (web/src/hf-gpt2.ts) against
// the library's file-based loadGPT2/saveGPT2, on the PyTorch-written fixtures.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { GPT2CheckpointError, loadGPT2 } from '../../src/io/gpt2.js';
import { GPT } from '../../src/nn/gpt.js';
import { loadGPT2Files, saveGPT2Files } from '../../web/src/hf-gpt2.js';

const FIXTURES = new URL('../fixtures/gpt2/', import.meta.url).pathname;
const backend = new CpuBackend();

async function files(dir: string): Promise<{ config: string; weights: ArrayBuffer }> {
  const weights = await readFile(join(dir, 'model.safetensors'));
  return { config: await readFile(join(dir, 'config.json'), 'utf8'), weights: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) };
}

function sameParameters(a: GPT, b: GPT): void {
  const bs = new Map(b.namedParameters());
  for (const [name, p] of a.namedParameters()) assert.deepEqual(p.toArraySync(), bs.get(name)!.toArraySync(), name);
}

describe('GPT-2 directories in the page', () => {
  for (const name of ['tiny', 'tiny-hf-prefixed', 'tiny-fp16', 'tiny-bf16']) {
    it(`reads ${name} as loadGPT2 does`, async () => {
      const f = await files(join(FIXTURES, name));
      const page = loadGPT2Files(f.config, f.weights, backend);
      const node = await loadGPT2(join(FIXTURES, name), { backend });
      sameParameters(page, node);
      page.dispose();
      node.dispose();
    });
  }

  it('writes a directory that loadGPT2 reads back to the same parameters', async () => {
    const model = new GPT({ vocabSize: 40, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true }, { backend, seed: 5 });
    const dir = await mkdtemp(join(tmpdir(), 'mixprec-web-gpt2-'));
    try {
      for (const f of await saveGPT2Files(model)) await writeFile(join(dir, f.name), new Uint8Array(f.bytes));
      const back = await loadGPT2(dir, { backend });
      sameParameters(model, back);
      back.dispose();
    } finally {
      model.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the file and the fault for bad input', async () => {
    const f = await files(join(FIXTURES, 'tiny'));
    assert.throws(() => loadGPT2Files('{', f.weights, backend), (e) => e instanceof GPT2CheckpointError && /^config\.json: is not valid JSON/.test(e.message));
    assert.throws(() => loadGPT2Files(f.config, f.weights.slice(0, 100), backend), (e) => e instanceof GPT2CheckpointError && /^model\.safetensors: /.test(e.message));
    const deeper = JSON.stringify({ ...JSON.parse(f.config), n_layer: 3 });
    assert.throws(() => loadGPT2Files(deeper, f.weights, backend), (e) => e instanceof GPT2CheckpointError && /'h\.2\.ln_1\.weight': missing tensor/.test(e.message));
  });
});
