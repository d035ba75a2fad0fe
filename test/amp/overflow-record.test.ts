import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverflowRecord } from '../../src/amp/overflow-record.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { full } from '../../src/tensor/creation.js';
import { keep } from '../../src/tensor/tensor.js';

test('recording the gradients of an unscale holds one gradient-sized temporary at a time, not one per gradient', async () => {
  const backend = new CpuBackend();
  const count = 8;
  const size = 4096;
  const grads = Array.from({ length: count }, (_, i) => keep(full([size], i === 5 ? Infinity : 1, { backend })));
  grads.forEach((g, i) => (g.name = `w${i}`));
  const foundInf = keep(full([1], 1, { backend }));
  const before = backend.memory().bytes;
  const record = new OverflowRecord();
  record.record(grads, foundInf);
  const extra = backend.memory().peakBytes - before;
  const gradBytes = size * 4;
  assert.ok(extra < 2 * gradBytes, `recording took ${extra} bytes above the gradients; one gradient is ${gradBytes}`);
  assert.deepEqual(await record.latest(), { unscale: 1, tensors: ['w5'] });
  record.dispose();
});
