// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD).

import type { OptimizerGroup } from '../backend/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, OptimizerError, type BaseOptions, type OptimizerOptions, type ParamGroupSpec } from './optimizer.js';

export interface SGDOptions extends BaseOptions {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

export const SGD_DEFAULTS: SGDOptions = { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 };

export class SGD extends Optimizer<SGDOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<SGDOptions>[], options: Partial<SGDOptions> & OptimizerOptions = {}) {
    const { masterWeights, stochasticRounding, ...rest } = options;
    const defaults = { ...SGD_DEFAULTS, ...rest };
    // The momentum buffer exists only when some group uses momentum.
    const usesMomentum = defaults.momentum !== 0 || (params as ParamGroupSpec<SGDOptions>[]).some((g) => (g as { momentum?: number }).momentum);
    super('SGD', params, defaults, usesMomentum ? ['momentum_buffer'] : [], { masterWeights, stochasticRounding });
  }

  protected validate(o: SGDOptions): void {
    if (!(o.lr >= 0)) throw new OptimizerError(`SGD: invalid learning rate ${o.lr}`);
    if (!(o.momentum >= 0)) throw new OptimizerError(`SGD: invalid momentum ${o.momentum}`);
    if (!(o.weightDecay >= 0)) throw new OptimizerError(`SGD: invalid weightDecay ${o.weightDecay}`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new OptimizerError('SGD: Nesterov momentum requires a momentum and zero dampening');
  }

  protected update(group: OptimizerGroup, o: SGDOptions): void {
    const backend = this.paramGroups[0]!.params[0]!.backend;
    backend.sgd(group, {
      lr: o.lr, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov,
      weightDecay: group.params.map(() => o.weightDecay),
    });
  }
}
