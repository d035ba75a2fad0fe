// Weights stored weight-only quantized (dtype/quant.ts) on a backend, and the
// dense layer over them. Quantized weights are for inference: they record no
// gradient, and an input that requires one is refused.

import type { Backend } from '../backend/backend.js';
import { promote } from '../dtype/dtype.js';
import { groupsPerRow, quantizeMatrix, quantLayout, wordsPerRow, type QuantFormat, type QuantLayout } from '../dtype/quant.js';
import { activeAutocast, lowerPrecision } from './dispatch.js';
import { ShapeError, TensorError, fmtShape } from './errors.js';
import { fusions } from './fusions.js';
import { Tensor, keep, op } from './tensor.js';

/** A quantized [n outputs, k inputs] matrix: packed int32 words [n, k / perWord] and float32 scales [n, k / groupSize]. */
export class QuantizedWeight {
  constructor(readonly layout: QuantLayout, readonly words: Tensor, readonly scales: Tensor) {
    if (words.dtype !== 'int32' || words.size !== layout.n * wordsPerRow(layout)) {
      throw new TensorError(`QuantizedWeight: words ${words.describe()} do not hold ${layout.format} [${layout.n}, ${layout.k}]`);
    }
    if (scales.dtype !== 'float32' || scales.size !== layout.n * groupsPerRow(layout)) {
      throw new TensorError(`QuantizedWeight: scales ${scales.describe()} do not fit [${layout.n}, ${layout.k}] in groups of ${layout.groupSize}`);
    }
  }

  /** Quantizes w, given as [n, k] row-major values, onto `backend`. */
  static fromRows(w: ArrayLike<number>, format: QuantFormat, n: number, k: number, backend: Backend, opts: { groupSize?: number; what?: string } = {}): QuantizedWeight {
    const layout = quantLayout(format, n, k, opts.groupSize, opts.what ?? `[${n}, ${k}] weight`);
    const { words, scales } = quantizeMatrix(w, layout);
    return QuantizedWeight.fromBits(layout, words, scales, backend);
  }

  /** Packed words and scales as stored (bit for bit). */
  static fromBits(layout: QuantLayout, words: Int32Array, scales: Float32Array, backend: Backend): QuantizedWeight {
    const wt = keep(Tensor.empty([layout.n, wordsPerRow(layout)], 'int32', backend));
    const st = keep(Tensor.empty([layout.n, groupsPerRow(layout)], 'float32', backend));
    backend.writeRaw(wt.storageView, words);
    backend.writeRaw(st.storageView, scales);
    return new QuantizedWeight(layout, wt, st);
  }

  get format(): QuantFormat { return this.layout.format; }

  /** Bytes on the device: words and scales. */
  get bytes(): number { return 4 * (this.words.size + this.scales.size); }

  dispose(): void {
    this.words.dispose();
    this.scales.dispose();
  }
}

/**
 * y = x @ W^T + bias (then tanh-GELU with `gelu`) over the last dimension of x,
 * for a quantized W [out, in]: one kernel that dequantizes as it multiplies.
 * Outside autocast the result is float32 (float64 for float64 x); inside, x is
 * cast to the autocast dtype and the result has it, as a float matmul's does.
 */
export const quantizedLinear = op((x0: Tensor, w: QuantizedWeight, bias0?: Tensor | null, opts: { gelu?: boolean } = {}): Tensor => {
  if (x0.requiresGrad) throw new TensorError(`quantizedLinear: ${x0.describe()} requires a gradient, but quantized weights are for inference (use noGrad or a float model)`);
  const [x, bias] = lowerPrecision(x0, bias0 ?? null);
  const { n, k } = w.layout;
  if (x.shape[x.ndim - 1] !== k) throw new ShapeError(`quantizedLinear: input ${fmtShape(x0.shape)} does not fit the ${w.format} weight [${n} out, ${k} in]`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== n)) throw new ShapeError(`quantizedLinear: bias ${fmtShape(bias.shape)} does not fit ${n} outputs`);
  const dtype = activeAutocast() && x.dtype !== 'float64' ? x.dtype : promote(x.dtype, 'float32');
  const y = Tensor.empty([...x.shape.slice(0, -1), n], dtype, x.backend);
  fusions(x.backend).quantizedMatmul(x.storageView, w.words.storageView, w.scales.storageView, y.storageView, { ...w.layout, m: x.size / k, bias: bias?.storageView, gelu: opts.gelu });
  return y;
});
