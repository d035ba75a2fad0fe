// The product with a weight-only quantized matrix (dtype/quant.ts): each
// invocation owns one output channel j and ROWS rows of x, unpacks q[j, :] a word
// at a time with extractBits (sign-extending), accumulates each group's dot
// product in f32 and scales it once. The matrix is read packed: no float copy.

import type { QuantizedMatmulSpec, View } from '../../backend.js';
import { BITS, groupsPerRow, perWord, wordsPerRow } from '../../../dtype/quant.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit } from '../storage.js';
import { WGSL_MATH } from './elementwise.js';

const ROWS = 4;
const WORKGROUP = 64;

function source(bits: number, bias: boolean, gelu: boolean): KernelSource {
  const per = 32 / bits;
  return {
    key: `quantizedMatmul:${bits}:${bias}:${gelu}`,
    params: [['m', 'u32'], ['n', 'u32'], ['k', 'u32'], ['wpr', 'u32'], ['groups', 'u32'], ['wpg', 'u32'],
      ['o_x', 'u32'], ['o_q', 'u32'], ['o_s', 'u32'], ['o_bias', 'u32'], ['o_out', 'u32']],
    body: () => `${WGSL_MATH}
@compute @workgroup_size(${WORKGROUP}) fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= P.n) { return; }
  let r0 = gid.y * ${ROWS}u;
  var total: array<f32, ${ROWS}>;
  for (var r = 0u; r < ${ROWS}u; r = r + 1u) { total[r] = 0.0; }
  for (var g = 0u; g < P.groups; g = g + 1u) {
    var acc: array<f32, ${ROWS}>;
    for (var r = 0u; r < ${ROWS}u; r = r + 1u) { acc[r] = 0.0; }
    for (var w = 0u; w < P.wpg; w = w + 1u) {
      let word = loadi_q(P.o_q + j * P.wpr + g * P.wpg + w);
      let i0 = (g * P.wpg + w) * ${per}u;
      for (var e = 0u; e < ${per}u; e = e + 1u) {
        let q = f32(extractBits(word, e * ${bits}u, ${bits}u));
        for (var r = 0u; r < ${ROWS}u; r = r + 1u) {
          let row = r0 + r;
          if (row < P.m) { acc[r] = acc[r] + load_x(P.o_x + row * P.k + i0 + e) * q; }
        }
      }
    }
    let s = load_s(P.o_s + j * P.groups + g);
    for (var r = 0u; r < ${ROWS}u; r = r + 1u) { total[r] = total[r] + acc[r] * s; }
  }
  for (var r = 0u; r < ${ROWS}u; r = r + 1u) {
    let row = r0 + r;
    if (row >= P.m) { break; }
    var v = total[r];
    ${bias ? 'v = v + load_bias(P.o_bias + j);' : ''}
    ${gelu ? 'v = gelu_f(v);' : ''}
    put_out(P.o_out + row * P.n + j, v);
  }
}`,
  };
}

export function quantizedMatmul(rt: Runtime, x: View, words: View, scales: View, out: View, spec: QuantizedMatmulSpec): void {
  const { m, n } = spec;
  if (m * n === 0) return;
  const args: Arg[] = [
    { name: 'x', buf: x.buf, access: 'read' },
    { name: 'q', buf: words.buf, access: 'read' },
    { name: 's', buf: scales.buf, access: 'read' },
    // Neighbouring invocations write the two halves of a 16-bit word.
    { name: 'out', buf: out.buf, access: 'read_write', mode: is16Bit(out.dtype) ? 'atomic' : 'owned' },
  ];
  if (spec.bias) args.push({ name: 'bias', buf: spec.bias.buf, access: 'read' });
  const groups = groupsPerRow(spec);
  const bits = BITS[spec.format];
  rt.dispatch(source(bits, !!spec.bias, !!spec.gelu), args,
    [m, n, spec.k, wordsPerRow(spec), groups, spec.groupSize / perWord(spec.format), x.offset, words.offset, scales.offset, spec.bias?.offset ?? 0, out.offset],
    [Math.ceil(n / WORKGROUP), Math.ceil(m / ROWS), 1]);
}
