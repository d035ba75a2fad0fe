// One mixed-precision training step, PyTorch's AMP recipe in one function:
//
//   for each micro-batch:  loss = autocast(forward) / n;  scaler.scale(loss).backward()
//   scaler.unscale(optimizer);  clipGradNorm(optimizer, maxGradNorm)   (optional)
//   scaler.step(optimizer);  scaler.update();  optimizer.zeroGrad()
//
// Nothing is read back: the found-inf flag, the skip and the scale update stay
// on the device, and the returned loss is a device tensor for the caller to
// read when it logs.

import { noGrad } from '../autograd/backward.js';
import { autocast, type AutocastDType } from '../amp/autocast.js';
import type { GradScaler, ScalableOptimizer } from '../amp/grad-scaler.js';
import { clipGradNorm } from '../optim/clip.js';
import { OptimizerError } from '../optim/optimizer.js';
import { add, div } from '../tensor/ops.js';
import { Tensor, tidy } from '../tensor/tensor.js';

/** What ampStep needs from an optimizer (mixprec's optimizers). */
export interface AmpOptimizer extends ScalableOptimizer {
  zeroGrad(): void;
}

export interface AmpStepOptions {
  optimizer: AmpOptimizer;
  scaler: GradScaler;
  /** The forward pass's autocast dtype (default 'float16', PyTorch's on CUDA); null runs it without autocast. */
  autocast?: AutocastDType | null;
  /** Clips the unscaled gradients the optimizer will apply to this total norm; 0 or absent: no clipping. */
  maxGradNorm?: number;
  /** Micro-batches per step (gradient accumulation, default 1): each micro-batch's loss is divided by their number. */
  accumulationSteps?: number;
  /** Called once the backward passes are done and before unscaling: the gradients are in place, still scaled. */
  afterBackward?: () => void;
}

export interface AmpStepResult {
  /** The step's loss (the mean over micro-batches), float32 on the device, detached. */
  loss: Tensor;
  /** The total gradient norm before clipping, when maxGradNorm is set. */
  gradNorm: Tensor | null;
}

/**
 * One optimizer step: `forward(micro)` returns the loss of micro-batch `micro`
 * (0 .. accumulationSteps-1) and runs under autocast. Every intermediate is
 * released; only the returned tensors outlive the call.
 */
export function ampStep(forward: (micro: number) => Tensor, opts: AmpStepOptions): AmpStepResult {
  const { optimizer, scaler, maxGradNorm = 0, accumulationSteps = 1 } = opts;
  const dtype = opts.autocast === undefined ? 'float16' : opts.autocast;
  if (!Number.isSafeInteger(accumulationSteps) || accumulationSteps < 1) {
    throw new OptimizerError(`ampStep: accumulationSteps must be a positive integer, got ${JSON.stringify(accumulationSteps)}`);
  }
  if (typeof maxGradNorm !== 'number' || !(maxGradNorm >= 0)) {
    throw new OptimizerError(`ampStep: maxGradNorm must be a number >= 0, got ${JSON.stringify(maxGradNorm)}`);
  }
  return tidy(() => {
    let loss: Tensor | null = null;
    for (let micro = 0; micro < accumulationSteps; micro++) {
      let l = dtype ? autocast({ dtype }, () => forward(micro)) : forward(micro);
      if (accumulationSteps > 1) l = div(l, accumulationSteps);
      scaler.scale(l).backward();
      loss = noGrad(() => (loss ? add(loss, l.detach()) : l.detach()));
    }
    opts.afterBackward?.();
    scaler.unscale(optimizer);
    const gradNorm = maxGradNorm > 0 ? clipGradNorm(optimizer, maxGradNorm) : null;
    scaler.step(optimizer);
    scaler.update();
    optimizer.zeroGrad();
    return { loss: loss!, gradNorm };
  });
}
