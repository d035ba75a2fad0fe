// The fallback rule of the Backend contract, in one place: the tensor layer
// calls every optional kernel through `fusions(backend)`, which hands back the
// backend's own kernels for each group it offers whole, and the composition of
// required primitives (src/tensor/composed/) for each group it does not.

import { FUSION_GROUPS, type Backend, type Fusions } from '../backend/backend.js';
import * as attention from './composed/attention.js';
import * as nn from './composed/nn.js';
import * as quantized from './composed/quantized.js';
import * as sampling from './composed/sample.js';
import * as stats from './composed/stats.js';

const chosen = new WeakMap<Backend, Fusions>();

function composed(b: Backend): Fusions {
  return {
    cast: (...a) => nn.cast(b, ...a),
    causalFill: (...a) => nn.causalFill(b, ...a),
    softmax: (...a) => nn.softmax(b, ...a),
    softmaxBackward: (...a) => nn.softmaxBackward(b, ...a),
    layerNorm: (...a) => nn.layerNorm(b, ...a),
    layerNormBackward: (...a) => nn.layerNormBackward(b, ...a),
    crossEntropy: (...a) => nn.crossEntropy(b, ...a),
    crossEntropyBackward: (...a) => nn.crossEntropyBackward(b, ...a),
    attention: (...a) => attention.attention(b, ...a),
    attentionBackward: (...a) => attention.attentionBackward(b, ...a),
    matmulEpilogue: (...a) => nn.matmulEpilogue(b, ...a),
    quantizedMatmul: (...a) => quantized.quantizedMatmul(b, ...a),
    sample: (...a) => sampling.sample(b, ...a),
    sumOfSquares: (...a) => nn.sumOfSquares(b, ...a),
    magnitudeCounts: (...a) => stats.magnitudeCounts(b, ...a),
  };
}

/** Every optional kernel for `b`: its own where it offers the whole group, composed otherwise. */
export function fusions(b: Backend): Fusions {
  let f = chosen.get(b);
  if (!f) {
    f = composed(b);
    const own = f as unknown as Record<string, unknown>;
    for (const group of FUSION_GROUPS) {
      if (!group.every((name) => typeof b[name] === 'function')) continue;
      for (const name of group) own[name] = (b[name] as (...a: unknown[]) => void).bind(b);
    }
    chosen.set(b, f);
  }
  return f;
}
