// One sampled token id per row of logits, on the logits' backend (Fusions.sample).

import type { SampleSpec } from '../backend/backend.js';
import { ShapeError } from './errors.js';
import { fusions } from './fusions.js';
import { Tensor, op } from './tensor.js';

/** int32 [rows] ids sampled from logits [rows, vocab] with one uniform in [0, 1) per row; -1 marks a row with a non-finite logit. */
export const sampleTokens = op((logits: Tensor, uniforms: Tensor, spec: Omit<SampleSpec, 'rows' | 'cols'>): Tensor => {
  if (logits.ndim !== 2) throw new ShapeError(`sampleTokens: logits must be [rows, vocab], got ${logits.describe()}`);
  const [rows, cols] = logits.shape as [number, number];
  if (uniforms.dtype !== 'float32' || uniforms.size !== rows) throw new ShapeError(`sampleTokens: uniforms must be float32 [${rows}], got ${uniforms.describe()}`);
  const ids = Tensor.empty([rows], 'int32', logits.backend);
  fusions(logits.backend).sample(logits.storageView, uniforms.storageView, ids.storageView, { ...spec, rows, cols });
  return ids;
});
