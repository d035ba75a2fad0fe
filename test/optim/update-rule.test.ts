// Update rules on the CPU backend: a rule written as data runs as written, and
// a call that does not fit its rule is refused with an error naming the rule,
// the tensor and the slot.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import type { View } from '../../src/backend/backend.js';
import { UpdateRuleError, add, eq, ge, mul, select, sub, type UpdateRule } from '../../src/backend/update-rule.js';

const b = new CpuBackend();
const upload = (data: number[], dtype: 'float32' | 'bfloat16' = 'float32'): View => {
  const buf = b.alloc(dtype, data.length);
  const v: View = { buf, offset: 0, size: data.length, dtype };
  b.write(v, data);
  return v;
};

/** Plain SGD with a step counter, a count of the tensors' first updates, and a flag for negative gradients. */
const RULE: UpdateRule = {
  name: 'test-sgd',
  hypers: ['lr'],
  scalars: ['step', 'negative'],
  tensorScalars: ['started'],
  slots: ['param', 'grad'],
  scalarUpdates: [['step', add('step', 1)]],
  tensorScalarUpdates: [['started', select(eq('started', 0), 'step', 'started')]],
  // Raised by a gradient that is not >= 0 (negative or NaN).
  raise: [['negative', eq(ge('grad', 0), 0)]],
  updates: [['param', sub('param', mul('lr', 'grad'))]],
};

test('a rule runs as written: scalars once per call, tensor scalars once per tensor, elements in order, stored in their dtypes', async () => {
  const step = upload([4]), negative = upload([0]);
  const p0 = upload([1, 2, 3]), g0 = upload([0.5, -1, 0]);
  const p1 = upload([1, 1], 'bfloat16'), g1 = upload([2 ** -9, 0]);
  const s0 = upload([0]), s1 = upload([2]);
  b.update(RULE, { hypers: { lr: 0.5 }, scalars: { step, negative }, tensors: [{ param: p0, grad: g0, started: s0 }, { param: p1, grad: g1, started: s1 }] });
  assert.deepEqual([...b.readSync(step)], [5]);
  assert.deepEqual([...b.readSync(p0)], [0.75, 2.5, 3]);
  // 1 - 2^-10 rounds back to 1 in bfloat16.
  assert.deepEqual([...b.readSync(p1)], [1, 1]);
  assert.deepEqual([...b.readSync(s0), ...b.readSync(s1)], [5, 2], 'a tensor scalar keeps its first value');
  assert.deepEqual([...b.readSync(negative)], [1]);
  // Without a negative gradient the flag stays down.
  const clear = upload([0]);
  b.update(RULE, { hypers: { lr: 0.5 }, scalars: { step, negative: clear }, tensors: [{ param: p0, grad: upload([1, 0, 2]), started: s0 }] });
  assert.deepEqual([...b.readSync(clear)], [0]);
});

test('a call that does not fit its rule is refused, naming the rule, the tensor and the slot', () => {
  const step = upload([0]), negative = upload([0]);
  const call = { hypers: { lr: 1 }, scalars: { step, negative }, tensors: [{ param: upload([1, 2]), grad: upload([1, 2]), started: upload([0]) }] };
  assert.throws(() => b.update(RULE, { ...call, hypers: {} }), (e: Error) => e instanceof UpdateRuleError && /'test-sgd': hyperparameter 'lr' is missing/.test(e.message));
  assert.throws(() => b.update(RULE, { ...call, tensors: [{ ...call.tensors[0]!, grad: upload([1]) }] }), /'test-sgd': tensor 0: slot 'grad' has 1 elements, 'param' 2/);
  assert.throws(() => b.update(RULE, { ...call, tensors: [{ param: upload([1]), grad: upload([1]) } as never] }), /tensor 0: tensor scalar 'started' must be a 1-element view/);
  assert.throws(() => b.update(RULE, { ...call, scalars: { step } as never }), /scalar 'negative' is missing/);
  assert.throws(() => b.update(RULE, { ...call, master: [upload([1, 2], 'bfloat16')] }), /tensor 0: the master copy must be float32 with 2 elements, got bfloat16/);
});
