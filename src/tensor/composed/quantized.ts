// The composed product with a quantized matrix, for backends without the
// `quantizedMatmul` kernel: dequantize the whole matrix into a float32 scratch
// (reading its words and scales on the host, which needs `readSync`), then one
// ordinary product with the epilogue. It costs the float copy the fused kernels
// avoid, so it is a fallback for correctness, not for memory.

import { BackendError, type Backend, type QuantizedMatmulSpec, type View } from '../../backend/backend.js';
import { dequantizeMatrix } from '../../dtype/quant.js';
import { matmulEpilogue } from './nn.js';
import { withScratch } from './scratch.js';

export function quantizedMatmul(b: Backend, x: View, words: View, scales: View, out: View, spec: QuantizedMatmulSpec): void {
  if (!b.readSync) {
    throw new BackendError(`${b.name}: a ${spec.format} product needs the quantizedMatmul kernel or synchronous reads (readSync) to dequantize`);
  }
  const { m, n, k, bias, gelu } = spec;
  withScratch(b, (sc) => {
    const w = sc.view('float32', n * k);
    b.write(w, dequantizeMatrix(b.readSync!(words), b.readSync!(scales), spec));
    matmulEpilogue(b, x, w, out, { batch: 1, m, n, k, transA: false, transB: true, strideA: 0, strideB: 0, bias, gelu });
  });
}
