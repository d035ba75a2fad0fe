import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import '../../src/autograd/backward.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { Generator } from '../../src/backend/random.js';
import { fromBFloat16Bits, toBFloat16Bits } from '../../src/dtype/codec.js';
import { Dropout, Embedding, LayerNorm, Linear, Module, ModuleError } from '../../src/nn/module.js';
import { tensor } from '../../src/tensor/creation.js';
import { sum } from '../../src/tensor/ops.js';
import { memory, tidy, type Tensor } from '../../src/tensor/tensor.js';

function host(t: Tensor): number[] {
  return Array.from(t.toArraySync());
}

function set(t: Tensor, values: number[]): void {
  t.backend.write(t.storageView, values);
}

class Pair extends Module {
  readonly a: Linear;
  readonly b: LayerNorm;
  readonly drop: Dropout;
  constructor(backend = new CpuBackend()) {
    super();
    this.a = this.addModule('a', new Linear(3, 2, { backend }));
    this.b = this.addModule('b', new LayerNorm(2, { backend }));
    this.drop = this.addModule('drop', new Dropout(0.5, new Generator(1)));
    this.nameParameters();
  }
}

describe('Linear', () => {
  it('computes x @ W + b with W stored [in, out] (Conv1D layout)', () => {
    const lin = new Linear(3, 2);
    assert.deepEqual(lin.weight.shape, [3, 2]);
    set(lin.weight, [1, 2, 3, 4, 5, 6]);
    set(lin.bias!, [0.5, -1]);
    const y = lin.forward(tensor([[1, 0, -1], [2, 1, 0]]));
    assert.deepEqual(y.shape, [2, 2]);
    // row 0: [1-5, 2-6] + b; row 1: [2+3, 4+4] + b
    assert.deepEqual(host(y), [-3.5, -5, 5.5, 7]);
  });

  it('fuses tanh-GELU when asked and can go without a bias', () => {
    const lin = new Linear(2, 2, { bias: false, gelu: true });
    assert.equal(lin.bias, null);
    assert.deepEqual(lin.namedParameters().map(([n]) => n), ['weight']);
    set(lin.weight, [1, 0, 0, 1]);
    const y = host(lin.forward(tensor([[1, -2]])));
    const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    assert.ok(Math.abs(y[0]! - gelu(1)) < 1e-6 && Math.abs(y[1]! - gelu(-2)) < 1e-6, `${y}`);
  });

  it('parameters are leaves that require grad and receive gradients', () => {
    const lin = new Linear(2, 3);
    sum(lin.forward(tensor([[1, 2], [3, 4]]))).backward();
    assert.ok(lin.weight.isLeaf && lin.weight.requiresGrad);
    assert.deepEqual(host(lin.weight.grad!), [4, 4, 4, 6, 6, 6]);
    assert.deepEqual(host(lin.bias!.grad!), [2, 2, 2]);
  });
});

describe('Embedding and LayerNorm', () => {
  it('Embedding picks rows', () => {
    const e = new Embedding(3, 2);
    set(e.weight, [0, 1, 10, 11, 20, 21]);
    assert.deepEqual(host(e.forward(tensor([2, 0, 2], { dtype: 'int32' }))), [20, 21, 0, 1, 20, 21]);
  });

  it('LayerNorm starts as gain 1, bias 0 and normalises the last dimension', () => {
    const ln = new LayerNorm(4, { eps: 0 });
    assert.deepEqual(host(ln.weight), [1, 1, 1, 1]);
    assert.deepEqual(host(ln.bias!), [0, 0, 0, 0]);
    const y = host(ln.forward(tensor([[1, 2, 3, 4]])));
    const s = Math.sqrt(1.25);
    y.forEach((v, i) => assert.ok(Math.abs(v - (i + 1 - 2.5) / s) < 1e-6));
    assert.equal(new LayerNorm(4, { bias: false }).bias, null);
  });
});

describe('Dropout', () => {
  it('drops and rescales only in training mode', () => {
    const d = new Dropout(0.5, new Generator(3));
    const x = tensor(new Float32Array(1000).fill(1));
    const y = host(d.forward(x));
    assert.ok(y.every((v) => v === 0 || v === 2));
    const kept = y.filter((v) => v === 2).length;
    assert.ok(kept > 400 && kept < 600, `kept ${kept}`);
    d.eval();
    assert.equal(d.forward(x), x);
  });

  it('rejects a probability outside [0, 1)', () => {
    assert.throws(() => new Dropout(1), ModuleError);
    assert.throws(() => new Dropout(-0.1), /\[0, 1\)/);
  });
});

describe('Module', () => {
  it('names parameters by their path, depth first in registration order', () => {
    const m = new Pair();
    const names = m.namedParameters().map(([n]) => n);
    assert.deepEqual(names, ['a.weight', 'a.bias', 'b.weight', 'b.bias']);
    assert.deepEqual(m.namedParameters().map(([, t]) => t.name), names);
    assert.equal(m.parameters().length, 4);
  });

  it('train() and eval() reach every submodule', () => {
    const m = new Pair();
    m.eval();
    assert.ok(m.namedModules().every(([, x]) => !x.training));
    m.train();
    assert.ok(m.drop.training && m.a.training);
  });

  it('to(dtype) replaces every parameter with a rounded copy that keeps its name', () => {
    const m = new Pair();
    set(m.a.weight, [0.1, 0.2, 0.3, 1 / 3, 1e-3, 12345.678]);
    const before = host(m.a.weight);
    const old = m.a.weight;
    m.to('bf16');
    assert.equal(m.dtype, 'bfloat16');
    assert.ok(old.isDisposed);
    const w = m.a.weight;
    assert.equal(w.dtype, 'bfloat16');
    assert.equal(w.name, 'a.weight');
    assert.ok(w.requiresGrad && w.isLeaf);
    assert.deepEqual(host(w), before.map((v) => fromBFloat16Bits(toBFloat16Bits(v))));
    assert.ok(m.parameters().every((p) => p.dtype === 'bfloat16'));
    assert.throws(() => m.to('int32'), ModuleError);
  });

  it('zeroGrad drops gradients and dispose frees every parameter', () => {
    const backend = new CpuBackend();
    const start = memory(backend).bytes;
    const m = new Pair(backend);
    tidy(() => sum(m.b.forward(m.a.forward(tensor([[1, 2, 3]], { backend })))).backward());
    assert.ok(m.a.weight.grad);
    m.zeroGrad();
    assert.ok(m.parameters().every((p) => p.grad === null));
    m.dispose();
    assert.equal(memory(backend).bytes, start);
  });
});
