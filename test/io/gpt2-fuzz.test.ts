// loadGPT2 against hostile input: a seeded generator mutates the fixtures'
// config.json and model.safetensors (truncations, bit flips, huge and negative
// sizes, odd dtypes, duplicate and missing names, broken JSON), and every pair
// must end in a typed error that names the file, or in a model that matches its
// config. The cases run in a worker whose heap is capped, one at a time, each
// under a time limit, so an allocation or a loop driven by an untrusted number
// fails the test instead of the machine.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { test } from 'node:test';
import { GPT2CheckpointError, parseGPT2Config } from '../../src/io/gpt2.js';
import type { FuzzJob, FuzzMessage } from './gpt2-fuzz-cases.js';

const CASES = 1200;
const SEED = 20261201;
const HEAP_LIMIT_MB = 256;
const CASE_LIMIT_MS = 10_000;
const HEAP_GROWTH_LIMIT = 32 * 2 ** 20;

/** Runs the cases in a heap-capped worker (through tsx, as the tests run) and collects its reports. */
async function runCases(job: FuzzJob): Promise<FuzzMessage[]> {
  const cases = import.meta.resolve('./gpt2-fuzz-cases.ts');
  const source = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(cases)}); });`;
  const worker = new Worker(source, { eval: true, workerData: job, resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB } });
  const messages: FuzzMessage[] = [];
  let current: FuzzMessage | undefined;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void worker.terminate();
        reject(new Error(`a case ran over ${CASE_LIMIT_MS} ms: ${JSON.stringify(current)}`));
      }, CASE_LIMIT_MS);
    };
    watch();
    worker.on('message', (m: FuzzMessage) => { messages.push(m); current = m; watch(); });
    worker.on('error', (err) => { clearTimeout(timer); reject(new Error(`the worker failed (${err.message}) during ${JSON.stringify(current)}`, { cause: err })); });
    worker.on('exit', () => { clearTimeout(timer); resolve(messages); });
  });
}

test(`${CASES} mutated config.json and model.safetensors pairs each load a matching model or fail with a typed error naming the file`, { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mixprec-gpt2-fuzz-'));
  try {
    const fixtures = fileURLToPath(new URL('../fixtures/gpt2/', import.meta.url));
    const messages = await runCases({ seed: SEED, cases: CASES, fixtures, dir });
    const ends = messages.filter((m) => m.type === 'end');
    assert.equal(ends.length, CASES);
    const bad = ends.filter((m) => !['loaded', 'GPT2CheckpointError', 'SafetensorsError'].includes(m.outcome));
    assert.deepEqual(bad.map((m) => `case ${m.index} (${m.detail}): ${m.outcome}`), []);

    // The generator reaches every kind of damage, and both outcomes.
    const kinds = new Map<string, number>();
    for (const m of ends) for (const k of m.kind.split(' and ')) kinds.set(k, (kinds.get(k) ?? 0) + 1);
    for (const k of ['config', 'truncation', 'bit flips', 'size', 'dtype', 'missing tensor', 'duplicate name', 'unchanged']) {
      assert.ok((kinds.get(k) ?? 0) >= 20, `only ${kinds.get(k) ?? 0} cases of kind '${k}'`);
    }
    const outcomes = new Set(ends.map((m) => m.outcome));
    for (const o of ['loaded', 'GPT2CheckpointError', 'SafetensorsError']) assert.ok(outcomes.has(o), `no case ended in ${o}`);

    const heap = messages.find((m) => m.type === 'heap');
    assert.ok(heap && heap.type === 'heap');
    assert.ok(heap.after - heap.before < HEAP_GROWTH_LIMIT, `the heap grew by ${((heap.after - heap.before) / 2 ** 20).toFixed(1)} MiB over the cases`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a config with a hostile layer count is refused before the parameter list is built', () => {
  const config = { vocab_size: 96, n_positions: 32, n_embd: 48, n_head: 4, n_layer: 2 ** 31 - 1 };
  assert.throws(() => parseGPT2Config(config, 'dir/config.json'), (e: Error) => e instanceof GPT2CheckpointError && /dir\/config\.json: 'n_layer': 2147483647 is absurdly large/.test(e.message));
});
