// A backend that implements only the required primitives of the Backend
// contract: the CPU backend with every fusion hidden, so the tensor layer runs
// its compositions of primitives instead.
import { FUSION_GROUPS, type Backend, type MatmulShape, type View } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';

const FUSIONS: readonly string[] = FUSION_GROUPS.flat();

export interface PrimitivesOnlyOptions {
  /** Keep the synchronous read (a capability, not a fusion) for tests that read with toArraySync. */
  readSync?: boolean;
}

export function primitivesOnly(opts: PrimitivesOnlyOptions = {}, inner = new CpuBackend()): Backend {
  const hidden = new Set([...FUSIONS, ...(opts.readSync ? [] : ['readSync'])]);
  const names = new Set([...Object.keys(inner), ...Object.getOwnPropertyNames(CpuBackend.prototype)]);
  const b: Record<string, unknown> = { name: 'cpu-primitives', description: 'the CPU backend with its fusions hidden' };
  for (const name of names) {
    const f = (inner as unknown as Record<string, unknown>)[name];
    if (name === 'constructor' || hidden.has(name) || typeof f !== 'function') continue;
    b[name] = f.bind(inner);
  }
  // The required matmul is a plain product: an epilogue reaching it would be a contract violation.
  b.matmul = (a: View, m: View, out: View, spec: MatmulShape & Record<string, unknown>) => {
    for (const key of ['bias', 'gelu', 'preGelu', 'accumulate']) {
      if (spec[key] !== undefined) throw new Error(`matmul given the epilogue field '${key}'`);
    }
    inner.matmul(a, m, out, spec);
  };
  return b as unknown as Backend;
}
