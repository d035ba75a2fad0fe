// Matrix products: batched matmul with broadcasting, and the linear layer
// (matmul + bias, optionally + GELU) as one fused kernel. Both are in
// autocast's lower-precision category. Gradients reuse the same kernel with
// transposed operands, so no transpose is ever materialised.

import type { MatmulShape } from '../../backend/backend.js';
import { promote } from '../../dtype/dtype.js';
import { lowerPrecision } from '../dispatch.js';
import { fusions } from '../fusions.js';
import { ShapeError, fmtShape } from '../errors.js';
import { broadcastShapes, requireFloat, sameBackend } from '../helpers.js';
import { Tensor, op, record, sizeOf } from '../tensor.js';
import { expand, reshape } from './shape.js';
import { sumToShape } from './reduce.js';

interface MatmulCall {
  batch: number; m: number; n: number; k: number;
  transA?: boolean; transB?: boolean; strideA: number; strideB: number;
  bias?: Tensor | null; gelu?: boolean; preGelu?: Tensor;
}

function run(a: Tensor, b: Tensor, outShape: readonly number[], c: MatmulCall): Tensor {
  const dtype = promote(a.dtype, b.dtype);
  const y = Tensor.empty(outShape, dtype, a.backend);
  const shape: MatmulShape = {
    batch: c.batch, m: c.m, n: c.n, k: c.k,
    transA: !!c.transA, transB: !!c.transB, strideA: c.strideA, strideB: c.strideB,
  };
  if (c.bias || c.gelu) fusions(a.backend).matmulEpilogue(a.storageView, b.storageView, y.storageView, { ...shape, bias: c.bias?.storageView, gelu: c.gelu, preGelu: c.preGelu?.storageView });
  else a.backend.matmul(a.storageView, b.storageView, y.storageView, shape);
  return y;
}

/**
 * Matrix product with numpy/PyTorch semantics: 1-D operands are promoted to
 * matrices and the added dimension removed; batch dimensions broadcast.
 */
export const matmul = op((a0: Tensor, b0: Tensor): Tensor => {
  requireFloat('matmul', a0, b0);
  sameBackend('matmul', a0, b0);
  if (b0.ndim === 2 && a0.ndim > 2) {
    // A shared matrix: fold the batch into rows, so the weight gradient is one product, not a batch to sum.
    const y = matmul(reshape(a0, [-1, a0.shape[a0.ndim - 1]!]), b0);
    return reshape(y, [...a0.shape.slice(0, -1), b0.shape[1]!]);
  }
  const [a1, b1] = lowerPrecision(a0, b0);
  const a = a1.ndim === 1 ? reshape(a1, [1, a1.shape[0]!]) : a1;
  const b = b1.ndim === 1 ? reshape(b1, [b1.shape[0]!, 1]) : b1;
  if (a0.ndim === 0 || b0.ndim === 0) throw new ShapeError(`matmul: operands must have at least one dimension, got ${fmtShape(a0.shape)} and ${fmtShape(b0.shape)}`);
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2) throw new ShapeError(`matmul: shapes ${fmtShape(a0.shape)} and ${fmtShape(b0.shape)} do not fit (inner dimensions ${k} and ${k2})`);
  const batchShape = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = sizeOf(batchShape);
  // An operand whose batch is a proper broadcast (not all-shared, not full) is expanded first.
  const full = (t: Tensor, rows: number, cols: number) => {
    const tb = sizeOf(t.shape.slice(0, -2));
    if (tb === 1) return { t, stride: 0 };
    if (tb === batch && t.ndim - 2 === batchShape.length) return { t, stride: rows * cols };
    return { t: expand(t, [...batchShape, rows, cols]), stride: rows * cols };
  };
  const A = full(a, m, k), B = full(b, k, n);
  let outShape = [...batchShape, m, n];
  let y = run(A.t, B.t, outShape, { batch, m, n, k, strideA: A.stride, strideB: B.stride });
  if (a0.ndim === 1 || b0.ndim === 1) {
    outShape = [...batchShape, ...(a0.ndim === 1 ? [] : [m]), ...(b0.ndim === 1 ? [] : [n])];
    y = reshape(y, outShape);
  }
  const yShape = [...batchShape, m, n];
  return record(y, 'matmul', [A.t, B.t], [A.t, B.t], (gy0, [sa, sb]) => {
    const gy = reshape(gy0, yShape);
    // dA = dY @ B^T, dB = A^T @ dY, over the full batch; broadcast batches are summed afterwards.
    const ga = A.t.requiresGrad ? run(gy, sb!, [...batchShape, m, k], { batch, m, n: k, k: n, transB: true, strideA: m * n, strideB: B.stride }) : null;
    const gb = B.t.requiresGrad ? run(sa!, gy, [...batchShape, k, n], { batch, m: k, n, k: m, transA: true, strideA: A.stride, strideB: m * n }) : null;
    return [ga && sumToShape(ga, A.t.shape), gb && sumToShape(gb, B.t.shape)];
  });
});

export interface LinearOpOptions {
  /** How the weight is stored: [out, in] as PyTorch's nn.Linear (default), or [in, out] as GPT-2's Conv1D. */
  weightLayout?: 'out,in' | 'in,out';
  /** Apply tanh-GELU to the result in the same kernel. */
  gelu?: boolean;
}

/**
 * PyTorch's F.linear, y = x @ W^T + bias, as one kernel over the last
 * dimension of x (W is [out, in], or [in, out] with weightLayout 'in,out', and
 * then y = x @ W + bias). The leading dimensions of x are flattened into rows,
 * so the weight gradient is a single product, not a batch to sum. With `gelu`,
 * GELU is applied as the result is stored.
 */
export const linear = op((x0: Tensor, w0: Tensor, bias0?: Tensor | null, opts: LinearOpOptions = {}): Tensor => {
  requireFloat('linear', x0, w0);
  sameBackend('linear', x0, w0);
  const [x, w, bias] = lowerPrecision(x0, w0, bias0 ?? null);
  if (w.ndim !== 2) throw new ShapeError(`linear: weight must be 2-D, got ${w.describe()}`);
  const tr = (opts.weightLayout ?? 'out,in') === 'out,in';
  const [kIn, nOut] = tr ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
  const k = x.shape[x.ndim - 1]!;
  if (k !== kIn) throw new ShapeError(`linear: input ${fmtShape(x0.shape)} does not fit weight ${fmtShape(w0.shape)}${tr ? ' (stored [out, in])' : ' (stored [in, out])'}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== nOut)) throw new ShapeError(`linear: bias ${fmtShape(bias.shape)} does not fit ${nOut} outputs`);
  const rows = x.size / k;
  const outShape = [...x.shape.slice(0, -1), nOut];
  const pre = opts.gelu && needsPre(x, w, bias) ? Tensor.empty(outShape, promote(x.dtype, w.dtype), x.backend) : undefined;
  const y = run(x, w, outShape, { batch: 1, m: rows, n: nOut, k, transB: tr, strideA: 0, strideB: 0, bias, gelu: opts.gelu, preGelu: pre });
  const saved = pre ? [x, w, pre] : [x, w];
  return record(y, opts.gelu ? 'linear_gelu' : 'linear', [x, w, bias], saved, (gy0, [sx, sw, spre]) => {
    // Through the GELU first, then the same three products as a plain linear layer.
    const gy = spre ? geluBackward(spre, gy0) : gy0;
    const gx = x.requiresGrad
      ? run(gy, sw!, x.shape, { batch: 1, m: rows, n: k, k: nOut, transB: !tr, strideA: 0, strideB: 0 })
      : null;
    const gw = w.requiresGrad
      ? tr
        ? run(gy, sx!, w.shape, { batch: 1, m: nOut, n: k, k: rows, transA: true, strideA: 0, strideB: 0 })
        : run(sx!, gy, w.shape, { batch: 1, m: k, n: nOut, k: rows, transA: true, strideA: 0, strideB: 0 })
      : null;
    const gb = bias?.requiresGrad ? sumToShape(gy, [nOut]) : null;
    return [gx, gw, gb];
  });
});

function needsPre(...ts: (Tensor | null)[]): boolean {
  return ts.some((t) => t?.requiresGrad);
}

function geluBackward(pre: Tensor, gy: Tensor): Tensor {
  const g = Tensor.empty(gy.shape, gy.dtype, gy.backend);
  gy.backend.binary('gelu_grad', { view: pre.storageView, offset: 0, strides: [1] }, { view: gy.storageView, offset: 0, strides: [1] }, g.storageView, [gy.size]);
  return g;
}

/** bias + x @ w with w stored [in, out] (torch.addmm, GPT-2's Conv1D). */
export const addmm = op((bias: Tensor, x: Tensor, w: Tensor): Tensor => {
  return linear(x, w, bias, { weightLayout: 'in,out' });
});
