import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicy, PolicyError, withPolicy } from '../../src/amp/policy.js';
import { autocastDtype } from '../../src/amp/autocast.js';

test('presets', () => {
  const p = (s: string) => { const x = parsePolicy(s); return [x.params, x.compute, x.output, x.lossScaling]; };
  assert.deepEqual(p('fp32'), ['float32', 'float32', 'float32', 'none']);
  assert.deepEqual(p('fp16'), ['float32', 'float16', 'float32', 'dynamic']);
  assert.deepEqual(p('fp16-master'), ['float16', 'float16', 'float32', 'dynamic']);
  assert.deepEqual(p('bf16'), ['float32', 'bfloat16', 'float32', 'none']);
  assert.deepEqual(p('bf16-master'), ['bfloat16', 'bfloat16', 'float32', 'none']);
});

test('policy strings, long and short forms', () => {
  const a = parsePolicy('params=float32,compute=float16,output=float32');
  assert.deepEqual([a.params, a.compute, a.output, a.lossScaling], ['float32', 'float16', 'float32', 'dynamic']);
  const b = parsePolicy('p=f32, c=bf16');
  assert.deepEqual([b.params, b.compute, b.output, b.lossScaling], ['float32', 'bfloat16', 'float32', 'none']);
  assert.equal(parsePolicy('fp16', 1024).lossScaling, 1024);
});

test('parse errors name the bad key or value', () => {
  const fails = (s: string, re: RegExp) => assert.throws(() => parsePolicy(s), (e: Error) => e instanceof PolicyError && re.test(e.message));
  fails('fp8', /unknown preset 'fp8'/);
  fails('params=float32,compte=float16', /unknown key 'compte'/);
  fails('p=f32,c=f8', /bad value 'f8' for compute/);
  fails('p=int32', /params must be float32, float16 or bfloat16/);
  fails('p=f32,p=f16', /'params' given twice/);
  fails('p=f32,c', /cannot parse 'c'/);
  fails('p=f16,c=f32', /float16 parameters with float32 compute/);
});

test('withPolicy runs the forward pass under the policy\'s autocast', () => {
  assert.equal(withPolicy(parsePolicy('fp32'), () => autocastDtype()), null);
  assert.equal(withPolicy(parsePolicy('fp16'), () => autocastDtype()), 'float16');
  assert.equal(withPolicy(parsePolicy('bf16-master'), () => autocastDtype()), 'bfloat16');
});
