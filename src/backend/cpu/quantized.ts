// The reference product with a weight-only quantized matrix (dtype/quant.ts):
// each group's integer dot product is accumulated in float64 and scaled once,
// as the WebGPU kernel does in float32.

import type { QuantizedMatmulSpec, View } from '../backend.js';
import { groupsPerRow, quantAt } from '../../dtype/quant.js';
import { output, raw, values } from './arrays.js';
import { gelu } from './elementwise.js';

export function quantizedMatmul(x: View, words: View, scales: View, out: View, spec: QuantizedMatmulSpec): void {
  const { m, n, k, groupSize } = spec;
  const groups = groupsPerRow(spec);
  const xv = values(x), w = raw(words) as Int32Array, s = values(scales);
  const bias = spec.bias ? values(spec.bias) : null;
  const o = output(out);
  // One row of q as numbers, unpacked once per output channel.
  const q = new Float64Array(k);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < k; i++) q[i] = quantAt(w, spec, j, i);
    for (let r = 0; r < m; r++) {
      let v = 0;
      for (let g = 0; g < groups; g++) {
        let acc = 0;
        for (let i = g * groupSize; i < (g + 1) * groupSize; i++) acc += xv[r * k + i]! * q[i]!;
        v += acc * s[j * groups + g]!;
      }
      if (bias) v += bias[j]!;
      o.arr[r * n + j] = spec.gelu ? gelu(v) : v;
    }
  }
  o.commit();
}
