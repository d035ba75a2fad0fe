// Backends by name: the built-in CPU backend resolves in a fresh process; the
// WebGPU backend, created asynchronously, gives a typed error saying what to do.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `body` (an async function body with `mp` = src/index.ts) in a fresh Node process; returns its stdout. */
function fresh(body: string): string {
  const code = `import('./src/index.ts').then(async (mp) => { ${body} }).catch((e) => { console.log('ERROR ' + e.name + ': ' + e.message); });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

describe('backends by name in a fresh process', () => {
  test("tensor(x, { backend: 'cpu' }) makes the CPU backend, and later tensors without a name share it", () => {
    const out = fresh(`
      const a = mp.tensor([1, 2], { backend: 'cpu' });
      const b = mp.tensor([3]);
      console.log(a.backend.name, a.backend === b.backend, a.backend === mp.getBackend('cpu'), [...a.toArraySync()].join(','));`);
    assert.equal(out, 'cpu true true 1,2');
  });

  test("a module's parameters on { backend: 'cpu' } resolve the same way", () => {
    const out = fresh(`
      const l = new mp.Linear(2, 3, { backend: 'cpu' });
      console.log(l.parameters()[0].backend === mp.getBackend('cpu'));`);
    assert.equal(out, 'true');
  });

  test("'webgpu' before createWebGPUBackend is a BackendNotCreatedError that says what to call", () => {
    const out = fresh(`
      try { mp.tensor([1], { backend: 'webgpu' }); console.log('no error'); }
      catch (e) { console.log(e instanceof mp.BackendNotCreatedError, e instanceof mp.BackendError, e.message); }`);
    assert.match(out, /^true true backend 'webgpu' has not been created yet: await createWebGPUBackend\(\)/);
  });

  test('an unknown name lists the known ones', () => {
    const out = fresh(`
      try { mp.getBackend('tpu'); } catch (e) { console.log(e.name, e.message); }`);
    assert.equal(out, "BackendError unknown backend 'tpu' (known: cpu, webgpu)");
  });
});
