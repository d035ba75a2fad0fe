// A simple, correct tiled matrix product: 32 x 32 tiles of C per workgroup of
// 8 x 8 invocations, each computing a 4 x 4 block from 16-deep slices of A and
// B staged in workgroup memory. Handles every MatmulSpec option (batch and
// batch strides, transposed operands, bias, GELU with its pre-activation,
// accumulation, row strides) and every storage dtype; accumulates in f32. It
// takes the calls of the tuned kernels (matmul-plan.ts), so a product too
// large for one binding runs as the same parts (split-ops.ts), each binding
// the windows of its operands' buffers that it reads and writes.

import type { Buf, View } from '../../backend.js';
import type { Arg, GpuBuf, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, type WriteMode } from '../storage.js';
import { windowViews } from '../split.js';
import { WGSL_MATH } from './elementwise.js';
import { matmulSpans, resolveMatmul, type MatmulCall } from './matmul-plan.js';

const TILE = 32;
const KT = 16;

function source(transA: boolean, transB: boolean, bias: boolean, gelu: boolean, pre: boolean, accumulate: boolean): KernelSource {
  const aIdx = transA ? 'kk * P.lda + row' : 'row * P.lda + kk';
  const bIdx = transB ? 'col * P.ldb + kk' : 'kk * P.ldb + col';
  return {
    key: `matmulSimple:${transA}:${transB}:${bias}:${gelu}:${pre}:${accumulate}`,
    params: [['m', 'u32'], ['n', 'u32'], ['k', 'u32'], ['lda', 'u32'], ['ldb', 'u32'], ['ldc', 'u32'], ['ldp', 'u32'],
      ['sa', 'u32'], ['sb', 'u32'], ['sc', 'u32'], ['sp', 'u32'],
      ['o_a', 'u32'], ['o_b', 'u32'], ['o_c', 'u32'], ['o_bias', 'u32'], ['o_pre', 'u32']],
    body: () => `${WGSL_MATH}
var<workgroup> As: array<f32, ${KT * TILE}>;
var<workgroup> Bs: array<f32, ${KT * TILE}>;
fn epilogue(v0: f32, j: u32) -> f32 {
  var v = v0;
  ${bias ? 'v = v + load_bias(P.o_bias + j);' : ''}
  return v;
}
@compute @workgroup_size(8, 8) fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let batch = wid.z;
  let r0 = wid.y * ${TILE}u;
  let c0 = wid.x * ${TILE}u;
  let t = lid.y * 8u + lid.x;
  let abase = P.o_a + batch * P.sa;
  let bbase = P.o_b + batch * P.sb;
  var acc: array<array<f32, 4>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) { for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = 0.0; } }
  for (var k0 = 0u; k0 < P.k; k0 = k0 + ${KT}u) {
    for (var e = t; e < ${KT * TILE}u; e = e + 64u) {
      let kk = k0 + e / ${TILE}u;
      let x = e % ${TILE}u;
      let row = r0 + x;
      let col = c0 + x;
      var av = 0.0;
      var bv = 0.0;
      if (kk < P.k && row < P.m) { av = load_a(abase + ${aIdx}); }
      if (kk < P.k && col < P.n) { bv = load_b(bbase + ${bIdx}); }
      As[e] = av;
      Bs[e] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${KT}u; kk = kk + 1u) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i = i + 1u) {
        a[i] = As[kk * ${TILE}u + lid.y * 4u + i];
        b[i] = Bs[kk * ${TILE}u + lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i = i + 1u) { for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = acc[i][j] + a[i] * b[j]; } }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    let row = r0 + lid.y * 4u + i;
    if (row >= P.m) { break; }
    for (var j = 0u; j < 4u; j = j + 2u) {
      let col = c0 + lid.x * 4u + j;
      if (col >= P.n) { break; }
      let two = col + 1u < P.n;
      let e0 = P.o_c + batch * P.sc + row * P.ldc + col;
      var v0 = epilogue(acc[i][j], col);
      var v1 = 0.0;
      if (two) { v1 = epilogue(acc[i][j + 1u], col + 1u); }
      let msk = select(1u, 3u, two);
      ${pre ? 'put2_pre(P.o_pre + batch * P.sp + row * P.ldp + col, v0, v1, msk);' : ''}
      ${gelu ? 'v0 = gelu_f(v0); v1 = gelu_f(v1);' : ''}
      ${accumulate ? 'v0 = v0 + load_c(e0); if (two) { v1 = v1 + load_c(e0 + 1u); }' : ''}
      put2_c(e0, v0, v1, msk);
    }
  }
}`,
  };
}

/** 16-bit rows start on words only where the offset, the row stride and the batch stride are even. */
function outMode(v: View, ld: number, batchStride: number): WriteMode {
  return !is16Bit(v.dtype) || [v.offset, ld, batchStride].every((x) => x % 2 === 0) ? 'owned' : 'atomic';
}

/** The buffers of a call's operands (the call's offsets are elements of these). */
export interface SimpleOperands {
  a: Buf; b: Buf; c: Buf; bias?: Buf; preGelu?: Buf;
}

/** One matmul call (a whole product or one part of a split one) through the simple kernel. */
export function matmulSimple(rt: Runtime, call: MatmulCall, bufs: SimpleOperands): void {
  const r = resolveMatmul(call);
  const { batch, m, n, k } = r;
  if (batch * m * n === 0) return;
  // Each operand is bound as the window of its buffer that the call touches, so a part of a split product fits one binding.
  const windows = windowViews(matmulSpans(call).map((s) => {
    const buf = bufs[s.name]!;
    return { view: { buf, offset: 0, size: (buf as GpuBuf).size, dtype: s.operand.dtype }, lo: s.first, hi: s.end };
  }));
  const [a, b, out, ...rest] = windows;
  const bias = call.bias ? rest[0] : undefined;
  const pre = call.preGelu ? rest[rest.length - 1] : undefined;
  const args: Arg[] = [
    { name: 'a', buf: a!.buf, access: 'read' },
    { name: 'b', buf: b!.buf, access: 'read' },
    { name: 'c', buf: out!.buf, access: 'read_write', mode: outMode(out!, r.ldc, batch > 1 ? r.strideC : 0) },
  ];
  if (bias) args.push({ name: 'bias', buf: bias.buf, access: 'read' });
  if (pre) args.push({ name: 'pre', buf: pre.buf, access: 'read_write', mode: outMode(pre, r.ldp, batch > 1 ? r.strideP : 0) });
  const src = source(r.transA, r.transB, !!bias, !!call.gelu, !!pre, !!call.accumulate);
  rt.dispatch(src, args, [
    m, n, k, r.lda, r.ldb, r.ldc, r.ldp, r.strideA, r.strideB, r.strideC, r.strideP,
    a!.offset, b!.offset, out!.offset, bias?.offset ?? 0, pre?.offset ?? 0,
  ], [Math.ceil(n / TILE), Math.ceil(m / TILE), batch]);
}
