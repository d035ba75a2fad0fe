// AdamW with decoupled weight decay and bias correction (torch.optim.AdamW).

import type { OptimizerGroup } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, OptimizerError, type BaseOptions, type OptimizerOptions, type ParamGroupSpec } from './optimizer.js';

export interface AdamWOptions extends BaseOptions {
  betas: [number, number];
  eps: number;
}

/** PyTorch's defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };

export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<AdamWOptions>[], options: Partial<AdamWOptions> & OptimizerOptions = {}) {
    const { masterWeights, stochasticRounding, ...rest } = options;
    super('AdamW', params, { ...ADAMW_DEFAULTS, ...rest }, ['exp_avg', 'exp_avg_sq'], { masterWeights, stochasticRounding });
  }

  protected validate(o: AdamWOptions): void {
    if (!(o.lr >= 0)) throw new OptimizerError(`AdamW: invalid learning rate ${o.lr}`);
    if (!(o.eps >= 0)) throw new OptimizerError(`AdamW: invalid eps ${o.eps}`);
    o.betas.forEach((b, i) => {
      if (!(b >= 0 && b < 1)) throw new OptimizerError(`AdamW: invalid beta parameter at index ${i}: ${b}`);
    });
    if (!(o.weightDecay >= 0)) throw new OptimizerError(`AdamW: invalid weightDecay ${o.weightDecay}`);
  }

  protected update(group: OptimizerGroup, o: AdamWOptions): void {
    const backend = this.paramGroups[0]!.params[0]!.backend;
    backend.adamw(group, {
      lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps,
      weightDecay: group.params.map(() => o.weightDecay),
    });
  }
}
