// Gradient clipping by total norm (torch.nn.utils.clip_grad_norm_), computed
// and applied on the backend without reading anything back.

import { noGrad } from '../autograd/backward.js';
import { fusions } from '../tensor/fusions.js';
import * as expr from '../backend/update-rule.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { add, minimum, reciprocal, sqrt, mul } from '../tensor/ops.js';
import { Optimizer, OptimizerError, appliedGradient } from './optimizer.js';

/** grad *= coef, coef a 1-element tensor on the device. */
export const SCALE_RULE: expr.UpdateRule = { name: 'scale', hypers: [], scalars: ['coef'], slots: ['grad'], updates: [['grad', expr.mul('grad', 'coef')]] };

/**
 * Scales the gradients in place so their total L2 norm is at most maxNorm and
 * returns the norm before clipping (a 1-element tensor; inf or NaN when a
 * gradient is). Either form clips the gradients the optimizer will apply: with
 * master weights, once GradScaler.unscale has prepared them, those are the
 * float32 master gradients, not the parameters' own (still scaled) ones.
 */
export function clipGradNorm(target: readonly Tensor[] | Optimizer<never> | { prepareGradients(): Tensor[] }, maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new OptimizerError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  const grads = Array.isArray(target)
    ? (target as Tensor[]).map(appliedGradient).filter((g): g is Tensor => g !== null)
    : (target as { prepareGradients(): Tensor[] }).prepareGradients();
  if (grads.length === 0) throw new OptimizerError('clipGradNorm: no gradients to clip');
  const b = grads[0]!.backend;
  return noGrad(() => tidy(() => {
    const sumSq = Tensor.empty([], 'float32', b);
    fusions(b).sumOfSquares(grads.map((g) => g.storageView), sumSq.storageView);
    const norm = sqrt(sumSq);
    // coef = min(maxNorm / (norm + 1e-6), 1), applied unconditionally as PyTorch does.
    const coef = minimum(mul(reciprocal(add(norm, 1e-6)), maxNorm), 1);
    b.update(SCALE_RULE, { hypers: {}, scalars: { coef: coef.storageView }, tensors: grads.map((g) => ({ grad: g.storageView })) });
    return norm;
  }));
}
