// Flash-style attention of the WebGPU backend against the CPU backend:
// separate [B, H, T, d] tensors and the fused [B, T, 3C] projection layout,
// causal and not, query and key lengths that differ, head sizes that use each
// tile size, odd head sizes (16-bit rows off word boundaries).

import { describe, test } from 'node:test';
import type { AttentionSpec, HeadLayout, View } from '../../../src/backend/backend.js';
import type { DType } from '../../../src/dtype/dtype.js';
import { FLOATS, both, bothEmpty, collect, compare, cpu, normal, rtolFor, skip, webgpu, whole } from './helpers.js';

function tol(dtype: DType, f32: number) {
  return dtype === 'float32' ? { rtol: f32, atol: f32 } : { rtol: rtolFor(dtype), atol: 4 * rtolFor(dtype) * 0.05 };
}

interface Case {
  name: string;
  B: number; H: number; tq: number; tk: number; d: number; causal: boolean; fused: boolean;
  dtypes: readonly DType[];
  /** Rows start on multiples of 4 elements (vector loads), as in training; the other cases start at odd offsets. */
  aligned?: boolean;
}

// Every dtype on the layouts training uses; the rest in float32 (each head size and dtype is a
// pipeline to compile, and compiling is the slow part of these tests on a software adapter).
const CASES: Case[] = [
  { name: 'fused qkv, causal', B: 2, H: 3, tq: 37, tk: 37, d: 8, causal: true, fused: true, dtypes: FLOATS },
  { name: 'fused, odd head size', B: 1, H: 2, tq: 19, tk: 19, d: 5, causal: true, fused: true, dtypes: FLOATS },
  { name: 'separate, not causal, tq != tk', B: 1, H: 2, tq: 20, tk: 45, d: 8, causal: false, fused: false, dtypes: ['float32', 'float16'] },
  { name: 'separate, causal, tq < tk', B: 2, H: 1, tq: 9, tk: 70, d: 8, causal: true, fused: false, dtypes: ['float32'] },
  { name: 'separate, causal, tq > tk (rows with no keys)', B: 1, H: 1, tq: 12, tk: 5, d: 8, causal: true, fused: false, dtypes: ['float32'] },
  { name: 'head size 32, aligned', B: 2, H: 2, tq: 70, tk: 70, d: 32, causal: true, fused: true, dtypes: ['float32'], aligned: true },
  { name: 'head size 128 (smaller tiles)', B: 1, H: 1, tq: 33, tk: 33, d: 128, causal: true, fused: true, dtypes: ['float32'] },
];

describe('webgpu attention', { skip }, () => {
  test('forward (output and log-sum-exp) and backward (dq, dk, dv) match the CPU', () => collect(async (check) => {
    for (const c of CASES) {
      for (const dtype of c.dtypes) {
        const { B, H, tq, tk, d } = c;
        const spec: AttentionSpec = { batch: B, heads: H, tq, tk, headDim: d, scale: 1 / Math.sqrt(d), causal: c.causal };
        const what = `${c.name} ${dtype}`;
        let qL: HeadLayout, kL: HeadLayout, vL: HeadLayout, oL: HeadLayout;
        let gq: View, cq: View, gk: View, ck: View, gv: View, cv: View;
        const C = H * d;
        if (c.fused) {
          // q, k, v side by side in [B, T, 3C], at an odd offset into the buffer.
          [gq, cq] = both(dtype, normal(B * tq * 3 * C, 1 + d, 1.5), c.aligned ? 0 : 1);
          [gk, ck] = [gq, cq];
          [gv, cv] = [gq, cq];
          const inL = (part: number): HeadLayout => ({ offset: part * C, sB: tq * 3 * C, sH: d, sT: 3 * C });
          [qL, kL, vL] = [inL(0), inL(1), inL(2)];
          oL = { offset: 0, sB: tq * C, sH: d, sT: C };
        } else {
          const lay = (t: number): HeadLayout => ({ offset: 0, sB: H * t * d, sH: t * d, sT: d });
          [gq, cq] = both(dtype, normal(B * H * tq * d, 2, 1.5));
          [gk, ck] = both(dtype, normal(B * H * tk * d, 3, 1.5), 1);
          [gv, cv] = both(dtype, normal(B * H * tk * d, 4));
          [qL, kL, vL, oL] = [lay(tq), lay(tk), lay(tk), lay(tq)];
        }
        const [go, co] = bothEmpty(dtype, B * H * tq * d, 1);
        const [gl, cl] = bothEmpty('float32', B * H * tq);
        webgpu().attention(gq, qL, gk, kL, gv, vL, go, oL, gl, spec);
        cpu.attention(cq, qL, ck, kL, cv, vL, co, oL, cl, spec);
        await check(() => compare(whole(go), whole(co), tol(dtype, 2e-5), `attention o ${what}`));
        await check(() => compare(gl, cl, { rtol: 1e-5, atol: 1e-5 }, `attention lse ${what}`));

        // Backward from the CPU's o and lse.
        const [go2] = both(dtype, await cpu.read(co));
        const [gl2] = both('float32', await cpu.read(cl));
        const oL2 = oL;
        const [ggo, cgo] = both(dtype, normal(B * H * tq * d, 5));
        let dq: [View, View], dk: [View, View], dv: [View, View];
        if (c.fused) {
          const g = bothEmpty(dtype, B * tq * 3 * C);
          dq = dk = dv = g;
        } else {
          dq = bothEmpty(dtype, B * H * tq * d, 1);
          dk = bothEmpty(dtype, B * H * tk * d);
          dv = bothEmpty(dtype, B * H * tk * d, 1);
        }
        webgpu().attentionBackward(gq, qL, gk, kL, gv, vL, go2, oL2, gl2, ggo, oL, dq[0], qL, dk[0], kL, dv[0], vL, spec);
        cpu.attentionBackward(cq, qL, ck, kL, cv, vL, co, oL, cl, cgo, oL, dq[1], qL, dk[1], kL, dv[1], vL, spec);
        const gtol = tol(dtype, 5e-5);
        await check(() => compare(whole(dq[0]), whole(dq[1]), gtol, `attention dq ${what}`));
        if (!c.fused) {
          await check(() => compare(whole(dk[0]), whole(dk[1]), gtol, `attention dk ${what}`));
          await check(() => compare(whole(dv[0]), whole(dv[1]), gtol, `attention dv ${what}`));
        }
      }
    }
  }));
});
