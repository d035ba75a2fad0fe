// Which gradients were inf or NaN, kept on the device until someone asks.
//
// At every unscale the record computes, per gradient, sum(g * 0): 0 for a
// finite gradient and NaN for one holding an inf or a NaN (inf * 0 is NaN).
// It keeps those flags for the latest unscale and, separately, for the latest
// one that found an overflow, all with device ops: nothing is read back
// until `latest()` or `lastOverflow()` is called.

import { Tensor, keep, tidy } from '../tensor/tensor.js';
import { full } from '../tensor/creation.js';
import { cat, mul, reshape, sum, where } from '../tensor/ops.js';
import { noGrad } from '../autograd/backward.js';

export interface OverflowInfo {
  /** Which unscale it was (counted from 1 for this optimizer). */
  unscale: number;
  /** The gradients that held inf or NaN, by parameter name, in parameter order. */
  tensors: string[];
}

interface Flags {
  names: string[];
  /** [gradients]: 0 finite, NaN non-finite. */
  values: Tensor;
  /** [1]: the unscale count. */
  unscale: Tensor;
}

function replace(old: Flags | null, next: Flags | null): Flags | null {
  if (old && old !== next) {
    old.values.dispose();
    old.unscale.dispose();
  }
  return next;
}

export class OverflowRecord {
  private count = 0;
  private latestFlags: Flags | null = null;
  private overflow: Flags | null = null;

  /** How many unscales have been recorded. */
  get unscales(): number {
    return this.count;
  }

  /** Records the gradients of one unscale; `foundInf` is that unscale's flag (1 element, nonzero on overflow). */
  record(grads: readonly Tensor[], foundInf: Tensor): void {
    if (grads.length === 0) return;
    this.count++;
    const names = grads.map((g, i) => g.name ?? `gradient ${i}`);
    // The previous flags go first, and the overflow flags exist from the first unscale on (none
    // found yet: unscale 0), so that every step allocates the same and its peak memory is the same.
    this.latestFlags = replace(this.latestFlags, null);
    const backend = foundInf.backend;
    if (this.overflow?.names.join('\n') !== names.join('\n')) {
      this.overflow = replace(this.overflow, { names, values: keep(full([names.length], 0, { backend })), unscale: keep(full([1], 0, { backend })) });
    }
    const prev = this.overflow!;
    const next = noGrad(() => tidy(() => {
      // Each product in its own scope: one gradient-sized temporary at a time, not one per gradient.
      const values = keep(cat(grads.map((g) => tidy(() => reshape(sum(mul(g, 0)), [1])))));
      const unscale = keep(full([1], this.count, { backend }));
      // The overflow record follows the latest flags only when this unscale found an overflow.
      const overflow: Flags = { names, values: keep(where(foundInf, values, prev.values)), unscale: keep(where(foundInf, unscale, prev.unscale)) };
      return { latest: { names, values, unscale }, overflow };
    }));
    this.latestFlags = next.latest;
    this.overflow = replace(this.overflow, next.overflow);
  }

  private static async read(f: Flags | null): Promise<OverflowInfo | null> {
    if (!f) return null;
    const [values, unscale] = await Promise.all([f.values.toArray(), f.unscale.item()]);
    const tensors = f.names.filter((_, i) => Number.isNaN(values[i]));
    return unscale > 0 && tensors.length > 0 ? { unscale, tensors } : null;
  }

  /** The non-finite gradients of the latest unscale (null when all were finite). Reads back. */
  latest(): Promise<OverflowInfo | null> {
    return OverflowRecord.read(this.latestFlags);
  }

  /** The latest unscale that found non-finite gradients, and which (null if none has). Reads back. */
  lastOverflow(): Promise<OverflowInfo | null> {
    return OverflowRecord.read(this.overflow);
  }

  dispose(): void {
    this.latestFlags = replace(this.latestFlags, null);
    this.overflow = replace(this.overflow, null);
  }
}
