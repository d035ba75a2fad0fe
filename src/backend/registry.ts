// Which backend new tensors go to when none is named.

import { BackendError, type Backend } from './backend.js';

const backends = new Map<string, Backend>();
let current: Backend | null = null;
let defaultFactory: (() => Backend) | null = null;

export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

/** The factory used when a tensor is made before any backend was chosen (the CPU backend). */
export function setDefaultBackendFactory(factory: () => Backend): void {
  defaultFactory = factory;
}

export function setBackend(backend: Backend | string): Backend {
  const b = typeof backend === 'string' ? backends.get(backend) : backend;
  if (!b) throw new BackendError(`unknown backend '${String(backend)}' (registered: ${[...backends.keys()].join(', ') || 'none'})`);
  registerBackend(b);
  current = b;
  return b;
}

export function getBackend(name?: string): Backend {
  if (name !== undefined) {
    const b = backends.get(name);
    if (!b) throw new BackendError(`unknown backend '${name}' (registered: ${[...backends.keys()].join(', ') || 'none'})`);
    return b;
  }
  if (!current) {
    if (!defaultFactory) throw new BackendError('no backend is available');
    setBackend(defaultFactory());
  }
  return current!;
}
