// Choosing where a run computes: WebGPU when an adapter is present (`auto`),
// else the CPU backend, saying which adapter was picked or why WebGPU was not.

import type { Backend } from '../backend/backend.js';
import { CpuBackend } from '../backend/cpu/backend.js';
import { getBackend, setBackend } from '../backend/registry.js';
import type { BackendChoice } from './config.js';
import type { WebGPUBackend } from '../backend/webgpu/backend.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export interface SelectedBackend {
  backend: Backend;
  kind: 'cpu' | 'webgpu';
  /** One line for the log: the adapter and its shader-f16 support, or the CPU backend. */
  description: string;
  /** With `auto` on the CPU backend: why WebGPU was not used. */
  fallbackReason?: string;
}

/** `--backend webgpu` was asked for and cannot be had. */
export class BackendUnavailableError extends MixprecError {
  override readonly code: ErrorCode = 'BACKEND_UNAVAILABLE';
}

const CPU_DESCRIPTION = 'cpu (the pure-TypeScript reference backend)';

type WebGPUModule = typeof import('../backend/webgpu/backend.js');

/** The adapter and its shader-f16 support, for the log. */
function describeWebGPU(backend: Backend): string {
  const i = (backend as Partial<WebGPUBackend>).adapterInfo;
  if (!i) return `webgpu (${backend.description})`;
  return `webgpu (${i.description}${i.hasF16 ? ', shader-f16: yes' : ', shader-f16: no (16-bit values stored packed)'})`;
}

async function createWebGPU(): Promise<WebGPUBackend> {
  // Loaded on demand: a CPU-only run never touches the WebGPU code or the `webgpu` package.
  let mod: WebGPUModule;
  try {
    mod = await import('../backend/webgpu/backend.js');
  } catch (err) {
    throw new BackendUnavailableError(`the WebGPU backend could not be loaded: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    return await mod.createWebGPUBackend();
  } catch (err) {
    // WebGPUUnavailableError says why (no adapter, package not loadable, ...).
    throw new BackendUnavailableError((err as Error).message);
  }
}

/** The CPU backend already registered, if any, so that tensors made before the choice stay usable. */
function cpuBackend(): Backend {
  try {
    const b = getBackend('cpu');
    if (b instanceof CpuBackend) return b;
  } catch {
    // none registered yet
  }
  return new CpuBackend();
}

export interface SelectBackendOptions {
  /** Creates the WebGPU backend (default: createWebGPUBackend of src/backend/webgpu). */
  createWebGPU?: () => Promise<Backend>;
}

/** Picks the backend for `choice`, makes it the default for new tensors and describes it. */
export async function selectBackend(choice: BackendChoice, opts: SelectBackendOptions = {}): Promise<SelectedBackend> {
  let selected: SelectedBackend;
  if (choice === 'cpu') {
    selected = { backend: cpuBackend(), kind: 'cpu', description: CPU_DESCRIPTION };
  } else {
    try {
      const backend = await (opts.createWebGPU ?? createWebGPU)();
      selected = { backend, kind: 'webgpu', description: describeWebGPU(backend) };
    } catch (err) {
      if (choice === 'webgpu') throw new BackendUnavailableError(`--backend webgpu: ${(err as Error).message}`);
      const reason = (err as Error).message;
      selected = { backend: cpuBackend(), kind: 'cpu', description: CPU_DESCRIPTION, fallbackReason: reason };
    }
  }
  setBackend(selected.backend);
  return selected;
}

/** One line for the log: the backend and, after a fallback, why WebGPU was not used. */
export function describeSelection(selected: SelectedBackend): string {
  return `backend: ${selected.description}${selected.fallbackReason ? `; WebGPU not used: ${selected.fallbackReason}` : ''}`;
}

/**
 * Undoes selectBackend: destroys the WebGPU backend it made (and with it the
 * device), and makes the CPU backend the default again if that one was the
 * default. The CPU backend is shared and stays.
 */
export function releaseBackend(selected: SelectedBackend): void {
  if (selected.kind !== 'webgpu') return;
  const wasDefault = getBackend() === selected.backend;
  (selected.backend as Partial<WebGPUBackend>).destroy?.();
  if (wasDefault) setBackend(cpuBackend());
}
