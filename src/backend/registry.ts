// Which backend new tensors go to when none is named, and backends by name.
//
// The CPU backend is built in: naming it ('cpu') makes it on first use. The
// WebGPU backend needs an adapter and a device, which arrive asynchronously, so
// it is created with `await createWebGPUBackend()`, which registers it as
// 'webgpu'; naming it before then is a BackendNotCreatedError that says so.

import type { ErrorCode } from '../errors.js';
import { BackendError, type Backend } from './backend.js';
import { CpuBackend } from './cpu/backend.js';

const backends = new Map<string, Backend>();
let current: Backend | null = null;

/** Built-in backends that can be made synchronously, by name. */
const builtIn: Record<string, () => Backend> = { cpu: () => new CpuBackend() };

/** Backends that exist only once created asynchronously: what to call first. */
const createdAsync: Record<string, string> = {
  webgpu: "await createWebGPUBackend() first (it registers itself as 'webgpu'), or let selectBackend('auto') choose",
};

/** A backend was named that must be created (asynchronously) before it can be used by name. */
export class BackendNotCreatedError extends BackendError {
  override readonly code: ErrorCode = 'BACKEND_NOT_CREATED';
}

export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

function byName(name: string): Backend {
  const registered = backends.get(name);
  if (registered) return registered;
  const make = builtIn[name];
  if (make) {
    const b = make();
    registerBackend(b);
    return b;
  }
  if (createdAsync[name]) throw new BackendNotCreatedError(`backend '${name}' has not been created yet: ${createdAsync[name]}`);
  const known = [...new Set([...Object.keys(builtIn), ...Object.keys(createdAsync), ...backends.keys()])];
  throw new BackendError(`unknown backend '${name}' (known: ${known.join(', ')})`);
}

export function setBackend(backend: Backend | string): Backend {
  const b = typeof backend === 'string' ? byName(backend) : backend;
  registerBackend(b);
  current = b;
  return b;
}

/** The backend called `name`, or the current one (the CPU backend until another is set). */
export function getBackend(name?: string): Backend {
  if (name !== undefined) return byName(name);
  current ??= byName('cpu');
  return current;
}

/** A backend given as an object, a name, or not at all (the current one). */
export function resolveBackend(b: Backend | string | undefined): Backend {
  return typeof b === 'object' ? b : getBackend(b);
}
