// The ownership rule: every op runs in its own scope and hands back only its
// result, so an op called eagerly, outside any tidy, leaves nothing behind but
// what it returns (autocast's casts included).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { AUTOCAST_OPS } from '../../src/amp/autocast.js';
import type { Tensor } from '../../src/tensor/tensor.js';

type Inputs = Record<string, Tensor>;

/** Inputs made once, outside the loop: float32 for the lower-precision ops (so they cast), 16-bit for the float32 ops. */
function makeInputs(half: 'float16' | 'bfloat16', requiresGrad: boolean): Inputs {
  mp.manualSeed(7);
  const f32 = (shape: number[]) => mp.randn(shape, { requiresGrad });
  const low = (shape: number[]) => mp.randn(shape, { dtype: half, requiresGrad });
  return {
    x: f32([2, 4, 8]), w: f32([8, 3]), wt: f32([3, 8]), bias: f32([3]), rows: f32([4, 8]),
    q: f32([1, 2, 4, 8]), k: f32([1, 2, 4, 8]), v: f32([1, 2, 4, 8]), qkv: f32([2, 4, 12]),
    keys: mp.zeros([2, 2, 8, 2], { dtype: half }), values: mp.zeros([2, 2, 8, 2], { dtype: half }),
    h: low([2, 4, 8]), logits: low([2, 4, 5]), pos: mp.rand([3], { dtype: half }).requiresGrad_(requiresGrad),
    gain: mp.ones([8], { requiresGrad }), shift: mp.zeros([8], { requiresGrad }),
    ids: mp.tensor([[1, 2, 3, 0], [0, 1, 2, 3]], { dtype: 'int32' }),
  };
}

/** One call per op of the lower-precision and float32 categories of AUTOCAST_OPS. */
const calls: Record<string, (i: Inputs) => Tensor> = {
  matmul: (i) => mp.matmul(i.x!, i.w!),
  linear: (i) => mp.linear(i.x!, i.wt!, i.bias),
  addmm: (i) => mp.addmm(i.bias!, i.rows!, i.w!),
  scaledDotProductAttention: (i) => mp.scaledDotProductAttention(i.q!, i.k!, i.v!, { causal: true }),
  causalSelfAttention: (i) => mp.causalSelfAttention(i.qkv!, 2),
  cachedSelfAttention: (i) => mp.noGrad(() => mp.cachedSelfAttention(i.qkv!, 2, i.keys!, i.values!, 0)),
  softmax: (i) => mp.softmax(i.h!),
  logSoftmax: (i) => mp.logSoftmax(i.h!),
  layerNorm: (i) => mp.layerNorm(i.h!, i.gain, i.shift),
  crossEntropy: (i) => mp.crossEntropy(i.logits!, i.ids!),
  sum: (i) => mp.sum(i.h!),
  mean: (i) => mp.mean(i.h!, -1),
  exp: (i) => mp.exp(i.h!),
  log: (i) => mp.log(i.pos!),
  pow: (i) => mp.pow(i.h!, 2),
  sqrt: (i) => mp.sqrt(i.pos!),
  rsqrt: (i) => mp.rsqrt(i.pos!),
  reciprocal: (i) => mp.reciprocal(i.pos!),
  clipGradNorm: (i) => {
    for (const p of [i.gain!, i.shift!]) p.grad ??= mp.onesLike(p);
    return mp.clipGradNorm([i.gain!, i.shift!], 1);
  },
};

const opNames = [...AUTOCAST_OPS.lower, ...AUTOCAST_OPS.float32].map((n) => n.split(' ')[0]!);

function snapshot(): { tensors: number; buffers: number; bytes: number } {
  const { tensors, buffers, bytes } = mp.memory();
  return { tensors, buffers, bytes };
}

describe('ops own their temporaries', () => {
  test('every lower-precision and float32 autocast op has a call here', () => {
    assert.deepEqual(opNames.filter((n) => !calls[n]), []);
  });

  for (const half of ['float16', 'bfloat16'] as const) {
    for (const requiresGrad of [false, true]) {
      test(`200 eager calls of each autocast op under autocast(${half}), inputs ${requiresGrad ? '' : 'not '}requiring grad: memory() is flat`, () => {
        const inputs = makeInputs(half, requiresGrad);
        for (const name of opNames) {
          const once = () => mp.autocast({ dtype: half }, () => calls[name]!(inputs)).dispose();
          once(); // the first call may make lasting state (a clipped parameter's gradient)
          const before = snapshot();
          for (let k = 0; k < 200; k++) once();
          assert.deepEqual(snapshot(), before, `${name}: memory after 200 calls`);
        }
        for (const t of Object.values(inputs)) { t.grad?.dispose(); t.dispose(); }
      });
    }
  }

  test('an op that throws part-way releases what it made', () => {
    const a = mp.randn([4, 8]), b = mp.randn([5, 3]);
    const before = snapshot();
    assert.throws(() => mp.autocast({ dtype: 'float16' }, () => mp.matmul(a, b)), mp.ShapeError);
    assert.deepEqual(snapshot(), before);
    a.dispose();
    b.dispose();
  });
});
