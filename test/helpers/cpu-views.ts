// Views on one CPU backend, for tests that call backend kernels directly.
import { view, type View } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/backend.js';
import type { DType } from '../../src/dtype/dtype.js';

export const cpu = new CpuBackend();

/** A new buffer of `dtype` holding `data` (rounded to the dtype). */
export function buf(dtype: DType, data: ArrayLike<number>): View {
  const v = view(cpu.alloc(dtype, data.length));
  cpu.write(v, data);
  return v;
}

/** The values of a view, as numbers. */
export const read = (v: View): number[] => [...cpu.readSync(v)];
