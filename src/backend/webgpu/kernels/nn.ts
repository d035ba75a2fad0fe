// Row kernels of the transformer, each forward and backward: softmax and
// log-softmax, layer norm, cross-entropy. Short rows get one invocation each
// (vectorised when aligned), long rows a workgroup with reductions in
// workgroup memory (row-kernel.ts).

export { softmax, softmaxBackward } from './softmax.js';
export { layerNorm, layerNormBackward } from './layer-norm.js';
export { crossEntropy, crossEntropyBackwardRows } from './cross-entropy.js';
