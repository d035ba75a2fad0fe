// The recorded graph that reverse mode walks.
//
// Each op that needs a gradient records a Node: its input edges, the tensors
// its backward formula needs (held as aliases, so that the user disposing a
// tensor, or a `tidy` scope ending, does not pull them away from under the
// graph), and the formula. Nodes are reference counted: by the tensors whose
// `node` they are and by downstream nodes; when the count drops to zero the
// node releases what it saved. So memory is freed deterministically, never by
// the garbage collector.

import type { DType } from '../dtype/dtype.js';
import { GradError } from './errors.js';
import type { Tensor } from './tensor.js';

/** Where a gradient goes: into an upstream node, or into a leaf tensor's `.grad`. */
export interface Edge {
  node: Node | null;
  leaf: Tensor | null;
  dtype: DType;
  shape: readonly number[];
}

export type BackwardFn = (gy: Tensor, saved: Tensor[]) => (Tensor | null)[];

export class Node {
  refs = 1;
  private saved: Tensor[] | null;
  constructor(
    readonly op: string,
    readonly edges: (Edge | null)[],
    saved: Tensor[],
    private readonly fn: BackwardFn,
  ) {
    this.saved = saved;
    for (const e of edges) if (e?.node) e.node.refs++;
  }

  /** Runs the backward formula once; afterwards the saved tensors are gone. */
  apply(gy: Tensor): (Tensor | null)[] {
    if (!this.saved) {
      throw new GradError(`${this.op}: backward through a graph that was already freed (backward called twice, or an input was released)`);
    }
    const grads = this.fn(gy, this.saved);
    this.freeSaved();
    return grads;
  }

  freeSaved(): void {
    if (!this.saved) return;
    for (const t of this.saved) t.dispose();
    this.saved = null;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const e of this.edges) e?.node?.release();
  }
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording switched on or off, restoring the previous mode afterwards. */
export function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}
