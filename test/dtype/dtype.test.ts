import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DTYPES, DTypeError, isFloat, itemSize, parseDType, promote, promoteAll } from '../../src/dtype/dtype.js';

describe('dtype', () => {
  it('parses names and aliases, case-insensitively', () => {
    assert.equal(parseDType('f16'), 'float16');
    assert.equal(parseDType('HALF'), 'float16');
    assert.equal(parseDType('bf16'), 'bfloat16');
    assert.equal(parseDType('fp32'), 'float32');
    assert.equal(parseDType('double'), 'float64');
    assert.equal(parseDType('i32'), 'int32');
    for (const d of DTYPES) assert.equal(parseDType(d), d);
  });

  it('rejects an unknown dtype with a DTypeError naming it and the valid ones', () => {
    assert.throws(() => parseDType('float8'), (e: Error) => e instanceof DTypeError && /'float8'/.test(e.message) && /float16/.test(e.message));
    assert.throws(() => parseDType('bogus', 'compute dtype'), /unknown compute dtype 'bogus'/);
  });

  it('knows the storage size of each dtype', () => {
    assert.deepEqual(DTYPES.map(itemSize), [4, 2, 2, 4, 8]);
  });

  it('promotes as PyTorch does', () => {
    assert.equal(promote('float16', 'float16'), 'float16');
    assert.equal(promote('float16', 'bfloat16'), 'float32');
    assert.equal(promote('bfloat16', 'float16'), 'float32');
    assert.equal(promote('float16', 'float32'), 'float32');
    assert.equal(promote('bfloat16', 'float64'), 'float64');
    assert.equal(promote('int32', 'float16'), 'float16');
    assert.equal(promote('int32', 'int32'), 'int32');
    assert.equal(promoteAll(['float16', 'float16', 'bfloat16']), 'float32');
    assert.equal(promoteAll(['int32', 'bfloat16']), 'bfloat16');
  });

  it('tells floats from integers', () => {
    assert.deepEqual(DTYPES.filter(isFloat), ['float32', 'float16', 'bfloat16', 'float64']);
  });
});
