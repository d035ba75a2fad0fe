// Every error mixprec throws on purpose is a MixprecError with a stable code.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as mixprec from '../src/index.js';
import * as core from '../src/core.js';
import { ERROR_CODES, MixprecError, type ErrorCode } from '../src/index.js';
import { MatmulError } from '../src/backend/webgpu/kernels/matmul.js';
import { OperandLayoutError } from '../src/backend/webgpu/kernels/vector-io.js';
import { UsageError } from '../src/cli/args.js';

// Every error constructor takes strings first (a message, or a file, option or reason).
type ErrorClass = new (...args: never[]) => Error;
const make = (cls: ErrorClass, ...args: string[]): Error => new (cls as new (...a: string[]) => Error)(...args);

/** The exported values that are error classes. */
function errorClasses(exports: Record<string, unknown>): Map<string, ErrorClass> {
  const found = new Map<string, ErrorClass>();
  for (const [name, value] of Object.entries(exports)) {
    if (typeof value === 'function' && value.prototype instanceof Error) found.set(name, value as ErrorClass);
  }
  return found;
}

/** The thrown error, for assertions on its fields. */
async function caught(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return e as Error;
  }
  assert.fail('expected a throw');
}

describe('MixprecError', () => {
  const exported = errorClasses(mixprec);
  const internal = new Map<string, ErrorClass>([['MatmulError', MatmulError], ['OperandLayoutError', OperandLayoutError], ['UsageError', UsageError]]);
  const all = new Map([...exported, ...internal]);

  it('is the base of every exported error class, each with its own name and a listed code', () => {
    assert.ok(exported.size >= 20, `only ${exported.size} error classes exported`);
    for (const [name, cls] of all) {
      if (name === 'MixprecError') continue;
      const e = make(cls, 'first', 'second', 'third');
      assert.ok(e instanceof MixprecError, `${name} is not a MixprecError`);
      assert.ok(e instanceof cls && e instanceof Error, name);
      assert.equal(e.name, name);
      const code = (e as MixprecError).code;
      assert.ok(typeof code === 'string' && code.length > 0, `${name} has no code`);
      assert.ok(Object.hasOwn(ERROR_CODES, code), `${name}'s code ${code} is not in ERROR_CODES`);
      assert.equal(ERROR_CODES[code].error, name, `ERROR_CODES.${code} names another class`);
      assert.ok(ERROR_CODES[code].meaning.length > 0);
      assert.ok(e.stack!.startsWith(`${name}: `), e.stack);
    }
  });

  it('has one code per error class and no code without a class', () => {
    const codes = [...all].filter(([n]) => n !== 'MixprecError').map(([, cls]) => (make(cls, 'm', 'm', 'm') as MixprecError).code);
    assert.equal(new Set(codes).size, codes.length, 'two classes share a code');
    assert.deepEqual([...codes].sort(), Object.keys(ERROR_CODES).sort());
  });

  it('is exported from the browser-safe core with its codes', () => {
    assert.equal(core.MixprecError, MixprecError);
    assert.equal(core.ERROR_CODES, ERROR_CODES);
    for (const name of errorClasses(core).keys()) assert.ok(exported.has(name), `${name} is in core but not in the Node entry point`);
  });

  it('keeps subclass relations: a ShapeError is a TensorError, a DeviceLostError a BackendError', () => {
    const shape = new mixprec.ShapeError('x');
    assert.ok(shape instanceof mixprec.TensorError && shape instanceof MixprecError);
    assert.equal(shape.code, 'SHAPE_MISMATCH');
    assert.equal(new mixprec.TensorError('x').code, 'TENSOR_INVALID');
    const lost = new mixprec.DeviceLostError('destroyed', '');
    assert.ok(lost instanceof mixprec.BackendError);
    assert.equal(lost.code, 'DEVICE_LOST');
  });
});

describe('error codes thrown in practice', () => {
  const expectCode = async (code: ErrorCode, cls: ErrorClass, fn: () => unknown) => {
    const e = await caught(fn);
    assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
    assert.equal((e as MixprecError).code, code, e.message);
  };

  it('a reshape to the wrong size: SHAPE_MISMATCH', async () => {
    const x = mixprec.tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] });
    await expectCode('SHAPE_MISMATCH', mixprec.ShapeError, () => mixprec.reshape(x, [4, 2]));
    x.dispose();
  });

  it('a disposed tensor read: TENSOR_DISPOSED', async () => {
    const x = mixprec.tensor([1, 2]);
    x.dispose();
    await expectCode('TENSOR_DISPOSED', mixprec.DisposedError, () => mixprec.add(x, x));
  });

  it('an unknown dtype: DTYPE_INVALID', async () => {
    await expectCode('DTYPE_INVALID', mixprec.DTypeError, () => mixprec.dtypes.parseDType('float8'));
  });

  it('GradScaler.unscale twice before update: GRAD_SCALER_MISUSE', async () => {
    const p = mixprec.tensor([1, 2], { requiresGrad: true });
    const opt = new mixprec.SGD([p], { lr: 0.1 });
    const scaler = new mixprec.GradScaler();
    mixprec.backward(mixprec.sum(mixprec.mul(p, p)));
    scaler.unscale(opt);
    await expectCode('GRAD_SCALER_MISUSE', mixprec.GradScalerError, () => scaler.unscale(opt));
  });

  it('a truncated safetensors file and an empty checkpoint directory: SAFETENSORS_INVALID, CHECKPOINT_INVALID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mixprec-errors-'));
    try {
      const file = join(dir, 'model.safetensors');
      await writeFile(file, new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 123]));
      await expectCode('SAFETENSORS_INVALID', mixprec.SafetensorsError, () => mixprec.readSafetensorsHeader(file));
      await expectCode('CHECKPOINT_INVALID', mixprec.CheckpointError, () => mixprec.readCheckpoint(dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
