import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import { getBackend } from '../../src/backend/registry.js';
import { BackendUnavailableError, selectBackend } from '../../src/train/select-backend.js';

const unavailable = () => Promise.reject(new Error('WebGPU is unavailable (no-adapter): no WebGPU adapter was found'));

/** Stands in for a WebGPU backend: a CPU backend with the adapterInfo a WebGPU backend carries. */
function fakeWebGPU(hasF16: boolean): () => Promise<Backend> {
  const b = new CpuBackend() as CpuBackend & { adapterInfo: unknown };
  Object.defineProperty(b, 'name', { value: 'webgpu' });
  b.adapterInfo = { description: 'llvmpipe (LLVM 15.0.7, 256 bits) (mesa/llvm), software', hasF16 };
  return () => Promise.resolve(b);
}

test('cpu: the CPU backend, made the default for new tensors', async () => {
  const s = await selectBackend('cpu', { createWebGPU: () => assert.fail('WebGPU must not be tried') });
  assert.equal(s.kind, 'cpu');
  assert.ok(s.backend instanceof CpuBackend);
  assert.equal(getBackend(), s.backend);
  assert.equal(s.fallbackReason, undefined);
});

test('auto without WebGPU: the CPU backend, saying why', async () => {
  const s = await selectBackend('auto', { createWebGPU: unavailable });
  assert.equal(s.kind, 'cpu');
  assert.match(s.fallbackReason!, /no WebGPU adapter was found/);
});

test('auto with WebGPU: the adapter it picked and whether it has shader-f16', async () => {
  const yes = await selectBackend('auto', { createWebGPU: fakeWebGPU(true) });
  assert.equal(yes.kind, 'webgpu');
  assert.equal(yes.description, 'webgpu (llvmpipe (LLVM 15.0.7, 256 bits) (mesa/llvm), software, shader-f16: yes)');
  const no = await selectBackend('auto', { createWebGPU: fakeWebGPU(false) });
  assert.match(no.description, /shader-f16: no/);
  await selectBackend('cpu');
});

test('webgpu when it is unavailable: an error naming why', async () => {
  await assert.rejects(selectBackend('webgpu', { createWebGPU: unavailable }),
    (e: Error) => e instanceof BackendUnavailableError && /^--backend webgpu: WebGPU is unavailable \(no-adapter\)/.test(e.message));
});
