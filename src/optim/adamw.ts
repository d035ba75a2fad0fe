// AdamW with decoupled weight decay and bias correction (torch.optim.AdamW).

import { add, div, mul, oneMinusPow, sqrt, sub, type UpdateRule } from '../backend/update-rule.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, OptimizerError, type BaseOptions, type OptimizerOptions, type ParamGroupSpec } from './optimizer.js';

export interface AdamWOptions extends BaseOptions {
  betas: [number, number];
  eps: number;
}

/** PyTorch's defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };

/**
 * One AdamW step, t being the step counter after it is advanced:
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   p = p (1 - lr wd) - lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 */
export const ADAMW_RULE: UpdateRule = {
  name: 'adamw',
  hypers: ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'],
  scalars: ['step', 'foundInf'],
  slots: ['param', 'grad', 'exp_avg', 'exp_avg_sq'],
  skipIf: 'foundInf',
  scalarUpdates: [['step', add('step', 1)]],
  updates: [
    ['exp_avg', add(mul('beta1', 'exp_avg'), mul(sub(1, 'beta1'), 'grad'))],
    ['exp_avg_sq', add(mul('beta2', 'exp_avg_sq'), mul(mul(sub(1, 'beta2'), 'grad'), 'grad'))],
    ['param', sub(
      mul('param', sub(1, mul('lr', 'weightDecay'))),
      div(mul(div('lr', oneMinusPow('beta1', 'step')), 'exp_avg'), add(div(sqrt('exp_avg_sq'), sqrt(oneMinusPow('beta2', 'step'))), 'eps')),
    )],
  ],
};

export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<AdamWOptions>[], options: Partial<AdamWOptions> & OptimizerOptions = {}) {
    const { masterWeights, stochasticRounding, ...rest } = options;
    super('AdamW', params, { ...ADAMW_DEFAULTS, ...rest }, { element: ['exp_avg', 'exp_avg_sq'] }, { masterWeights, stochasticRounding });
  }

  protected validate(o: AdamWOptions): void {
    if (!(o.lr >= 0)) throw new OptimizerError(`AdamW: invalid learning rate ${o.lr}`);
    if (!(o.eps >= 0)) throw new OptimizerError(`AdamW: invalid eps ${o.eps}`);
    o.betas.forEach((b, i) => {
      if (!(b >= 0 && b < 1)) throw new OptimizerError(`AdamW: invalid beta parameter at index ${i}: ${b}`);
    });
    if (!(o.weightDecay >= 0)) throw new OptimizerError(`AdamW: invalid weightDecay ${o.weightDecay}`);
  }

  protected rule(): UpdateRule {
    return ADAMW_RULE;
  }

  protected hypers(o: AdamWOptions): Record<string, number> {
    return { lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weightDecay };
  }
}
