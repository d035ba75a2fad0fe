import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchSampler, evalBatches } from '../../src/data/batches.js';
import { DataError } from '../../src/data/errors.js';

// Token i has value i % 50000, so a window's position can be read off its first token.
const tokens = Uint16Array.from({ length: 10_000 }, (_, i) => i % 50000);
const shape = { batchSize: 4, blockSize: 16 };

test('sampler: rows are windows of the tokens, and y is x shifted by one', () => {
  const sampler = new BatchSampler(tokens, { ...shape, seed: 1 });
  const { x, y } = sampler.next();
  assert.equal(x.length, 64);
  assert.ok(x instanceof Int32Array && y instanceof Int32Array);
  for (let row = 0; row < 4; row++) {
    const start = x[row * 16];
    assert.ok(start >= 0 && start <= tokens.length - 17);
    for (let t = 0; t < 16; t++) {
      assert.equal(x[row * 16 + t], tokens[start + t]);
      assert.equal(y[row * 16 + t], tokens[start + t + 1]);
    }
  }
});

test('sampler: the seed determines the batches; another seed gives others', () => {
  const draw = (seed: number) => {
    const sampler = new BatchSampler(tokens, { ...shape, seed });
    return [sampler.next(), sampler.next(), sampler.next()];
  };
  assert.deepEqual(draw(7), draw(7));
  assert.notDeepEqual(draw(7), draw(8));
  const batches = draw(7);
  assert.notDeepEqual(batches[0].x, batches[1].x);
});

test('sampler: windows cover the whole split, first and last positions included', () => {
  const short = Int32Array.from({ length: 12 }, (_, i) => i);
  const sampler = new BatchSampler(short, { batchSize: 64, blockSize: 8, seed: 3 });
  const starts = new Set<number>();
  for (let i = 0; i < 5; i++) {
    const { x } = sampler.next();
    for (let row = 0; row < 64; row++) starts.add(x[row * 8]);
  }
  assert.deepEqual([...starts].sort((a, b) => a - b), [0, 1, 2, 3]);
});

test('sampler: a state saved after k batches, restored into a fresh sampler, continues identically', () => {
  const original = new BatchSampler(tokens, { ...shape, seed: 42 });
  for (let i = 0; i < 5; i++) original.next();
  const saved = JSON.parse(JSON.stringify(original.state()));
  assert.equal(saved.batchesDrawn, 5);
  const continued = [original.next(), original.next(), original.next()];

  const restored = new BatchSampler(tokens, { ...shape, seed: 0 });
  restored.next();
  restored.setState(saved);
  assert.deepEqual([restored.next(), restored.next(), restored.next()], continued);
  assert.deepEqual(restored.state(), original.state());
});

test('sampler: a state from another shape or other data is refused, naming the field', () => {
  const state = new BatchSampler(tokens, { ...shape, seed: 1 }).state();
  const wider = new BatchSampler(tokens, { batchSize: 4, blockSize: 32, seed: 1 });
  assert.throws(() => wider.setState(state), (e: Error) => e instanceof DataError && /blockSize is 16/.test(e.message));
  const shorter = new BatchSampler(tokens.subarray(0, 5000), { ...shape, seed: 1 });
  assert.throws(() => shorter.setState(state), (e: Error) => e instanceof DataError && /tokens is 10000/.test(e.message));
});

test('sampler: a split shorter than blockSize + 1 is an error naming the split and both lengths', () => {
  assert.throws(
    () => new BatchSampler(new Uint16Array(16), { ...shape, seed: 0, split: 'validation' }),
    (e: Error) => e instanceof DataError && /validation/.test(e.message) && /16 tokens/.test(e.message) && /blockSize 16/.test(e.message) && /17/.test(e.message),
  );
  assert.doesNotThrow(() => new BatchSampler(new Uint16Array(17), { ...shape, seed: 0 }));
  assert.throws(() => new BatchSampler(tokens, { batchSize: 0, blockSize: 8, seed: 0 }), /batchSize must be a positive integer, got 0/);
});

test('evalBatches: fixed windows spread evenly from the first to the last, the same every call', () => {
  const batches = evalBatches(tokens, { ...shape, steps: 3 });
  assert.equal(batches.length, 3);
  assert.deepEqual(evalBatches(tokens, { ...shape, steps: 3 }), batches);
  const starts = batches.flatMap(({ x }) => [0, 1, 2, 3].map((row) => x[row * 16]));
  const lastStart = tokens.length - 17;
  assert.deepEqual(starts, Array.from({ length: 12 }, (_, i) => Math.floor((i * lastStart) / 11)));
  const last = batches[2];
  assert.equal(last.y[63], tokens[tokens.length - 1]);
  for (let t = 0; t < 16; t++) assert.equal(last.y[t], last.x[t] + 1);
  assert.throws(() => evalBatches(new Uint16Array(10), { ...shape, steps: 1 }), (e: Error) => e instanceof DataError && /validation split has 10 tokens/.test(e.message));
});
