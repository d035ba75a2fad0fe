// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD).

import { add, eq, mul, select, sub, type Expr, type UpdateRule } from '../backend/update-rule.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, OptimizerError, type BaseOptions, type OptimizerOptions, type OptimizerStateDict, type ParamGroupSpec } from './optimizer.js';

export interface SGDOptions extends BaseOptions {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

export const SGD_DEFAULTS: SGDOptions = { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 };

/**
 * One SGD step: d = g + wd p; with momentum, buf = d on the parameter's first
 * step (PyTorch's momentum_buffer is None until then) and
 * buf = momentum buf + (1 - dampening) d afterwards, d = buf (Nesterov:
 * d + momentum buf); p = p - lr d. `momentum_step`, per parameter, is the step
 * at which its buffer was first filled (0: not yet).
 */
export function sgdRule(momentum: boolean, nesterov: boolean): UpdateRule {
  const key = `${momentum}:${nesterov}`;
  let rule = rules.get(key);
  if (rule) return rule;
  const d = add('grad', mul('weightDecay', 'param'));
  const common = { hypers: ['lr', 'momentum', 'dampening', 'weightDecay'], scalars: ['step', 'foundInf'], skipIf: 'foundInf', scalarUpdates: [['step', add('step', 1)]] } as const;
  if (!momentum) {
    rule = { name: 'sgd', ...common, slots: ['param', 'grad'], updates: [['param', sub('param', mul('lr', d))]] };
  } else {
    const first = eq('momentum_step', 'step');
    const step: Expr = nesterov ? add(d, mul('momentum', 'momentum_buffer')) : 'momentum_buffer';
    rule = {
      name: nesterov ? 'sgd-nesterov' : 'sgd-momentum',
      ...common,
      slots: ['param', 'grad', 'momentum_buffer'],
      tensorScalars: ['momentum_step'],
      tensorScalarUpdates: [['momentum_step', select(eq('momentum_step', 0), 'step', 'momentum_step')]],
      updates: [
        ['momentum_buffer', select(first, d, add(mul('momentum', 'momentum_buffer'), mul(sub(1, 'dampening'), d)))],
        ['param', sub('param', mul('lr', step))],
      ],
    };
  }
  rules.set(key, rule);
  return rule;
}

const rules = new Map<string, UpdateRule>();

export class SGD extends Optimizer<SGDOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<SGDOptions>[], options: Partial<SGDOptions> & OptimizerOptions = {}) {
    const { masterWeights, stochasticRounding, ...rest } = options;
    const defaults = { ...SGD_DEFAULTS, ...rest };
    // The momentum buffer exists only when some group uses momentum.
    const usesMomentum = defaults.momentum !== 0 || (params as ParamGroupSpec<SGDOptions>[]).some((g) => (g as { momentum?: number }).momentum);
    super('SGD', params, defaults, usesMomentum ? { element: ['momentum_buffer'], scalar: ['momentum_step'] } : { element: [] }, { masterWeights, stochasticRounding });
  }

  protected validate(o: SGDOptions): void {
    if (!(o.lr >= 0)) throw new OptimizerError(`SGD: invalid learning rate ${o.lr}`);
    if (!(o.momentum >= 0)) throw new OptimizerError(`SGD: invalid momentum ${o.momentum}`);
    if (!(o.weightDecay >= 0)) throw new OptimizerError(`SGD: invalid weightDecay ${o.weightDecay}`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new OptimizerError('SGD: Nesterov momentum requires a momentum and zero dampening');
  }

  protected rule(o: SGDOptions): UpdateRule {
    return sgdRule(o.momentum !== 0, o.nesterov);
  }

  protected hypers(o: SGDOptions): Record<string, number> {
    return { lr: o.lr, momentum: o.momentum, dampening: o.dampening, weightDecay: o.weightDecay };
  }

  /** State dicts written before momentum_step existed: a buffer was filled once its group had taken a step. */
  override loadStateDict(sd: OptimizerStateDict<SGDOptions>): void {
    let index = 0;
    const state = { ...sd.state };
    sd.groups.forEach((g, k) => {
      for (let i = 0; i < g.params.length; i++, index++) {
        const entry = state[index];
        if (entry?.momentum_buffer && !entry.momentum_step) state[index] = { ...entry, momentum_step: Float32Array.of((sd.steps[k] ?? 0) > 0 ? 1 : 0) };
      }
    });
    super.loadStateDict({ ...sd, state });
  }
}
