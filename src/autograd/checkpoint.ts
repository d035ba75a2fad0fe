// Activation recomputation (torch.utils.checkpoint): trade compute for memory.
//
// checkpoint(fn, x) runs fn(x) without recording a graph, so none of fn's
// intermediates outlive it, and records one node that saves only x. In
// backward that node re-runs fn on a detached copy of x, with recording on and
// with the autocast region and random-number state of the first run (so
// dropout draws the same masks), then backpropagates the output gradient
// through the re-run: the parameters fn reads get their gradients from that
// pass, and x's gradient flows on. The gradients are those of the plain run,
// bit for bit.

import type { Generator } from '../backend/random.js';
import { activeAutocast, setAutocast, type AutocastRegion } from '../tensor/dispatch.js';
import { withGradMode } from '../tensor/graph.js';
import { GradError } from '../tensor/errors.js';
import { Tensor, needsGrad, record } from '../tensor/tensor.js';
import { to } from '../tensor/ops.js';
import { backward } from './backward.js';

export interface CheckpointOptions {
  /** The tensors fn reads besides x (its parameters), so that they get gradients even when x needs none. */
  params?: readonly Tensor[];
  /** The generator fn draws from (dropout): its state is replayed when fn is re-run. */
  generator?: Generator;
}

/** fn(x), keeping only x for backward and recomputing fn's intermediates there. fn must be deterministic given x and the generator. */
export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor, opts: CheckpointOptions = {}): Tensor {
  const inputs = [x, ...(opts.params ?? [])];
  if (!needsGrad(inputs)) return fn(x);
  const region = activeAutocast();
  const random = opts.generator?.state();
  // The first run casts without the region's cache: a cast cached there without a graph would be
  // handed to the re-run, when backward runs inside the region, and cut the weights off from their gradients.
  const uncached: AutocastRegion | null = region && { dtype: region.dtype, castLower: (t) => to(t, region.dtype) };
  const outerRegion = setAutocast(uncached);
  let y: Tensor;
  try {
    y = withGradMode(false, () => fn(x));
  } finally {
    setAutocast(outerRegion);
  }
  if (y.node || y === x) throw new GradError('checkpoint: the function must compute a new tensor from its input');
  return record(y, 'checkpoint', inputs, [x], (gy, [sx]) => {
    const input = sx!.detach();
    if (x.requiresGrad) input.requiresGrad_();
    const generator = opts.generator;
    const now = generator?.state();
    const outer = setAutocast(region);
    try {
      if (random) generator!.setState(random);
      const again = withGradMode(true, () => fn(input));
      if (again.requiresGrad) backward(again, gy);
    } finally {
      setAutocast(outer);
      if (now) generator!.setState(now);
    }
    // The parameters' gradients went straight to them; only x's flows on, as a handle of this
    // step's scope (the engine exempted the leaf gradient from every scope).
    const g = input.grad;
    input.grad = null;
    const gx = g ? g.detach() : null;
    g?.dispose();
    return [gx, ...inputs.slice(1).map(() => null)];
  });
}
