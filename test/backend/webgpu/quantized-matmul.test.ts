// The WebGPU product with a quantized matrix against the CPU reference, for
// int8 (a scale per row, and in groups) and int4 (groups of 32 and 64), every
// input dtype, 16-bit outputs, offsets, bias and GELU. The GPU accumulates in
// float32 and the CPU in float64, so results agree to float32 rounding of the
// sums (rtolFor), not bit for bit.
import { describe, test } from 'node:test';
import { view } from '../../../src/backend/backend.js';
import { quantizeMatrix, quantLayout, type QuantFormat } from '../../../src/dtype/quant.js';
import { FLOATS, both, bothEmpty, collect, compare, cpu, normal, rtolFor, skip, webgpu } from './helpers.js';

const CASES: [QuantFormat, number | undefined][] = [['int8', undefined], ['int8', 32], ['int4', 32], ['int4', 64]];

describe('webgpu quantizedMatmul', { skip }, () => {
  test('matches the CPU reference', async () => {
    await collect(async (check) => {
      for (const [format, groupSize] of CASES) {
        for (const [m, n, k] of [[1, 7, 64], [6, 10, 128]] as const) {
          const l = quantLayout(format, n, k, groupSize, 'w');
          const { words, scales } = quantizeMatrix(normal(n * k, m + n), l);
          const upload = (b: typeof cpu | ReturnType<typeof webgpu>) => {
            const q = view(b.alloc('int32', words.length + 3), 3, words.length);
            b.writeRaw(q, words);
            const s = view(b.alloc('float32', scales.length + 1), 1, scales.length);
            b.writeRaw(s, scales);
            return { q, s };
          };
          const gq = upload(webgpu()), cq = upload(cpu);
          for (const xd of FLOATS) {
            for (const [outDtype, epilogue] of [['float32', false], ['float32', true], [xd, true]] as const) {
              await check(async () => {
                const what = `${format}/${groupSize ?? 'row'} ${m}x${n}x${k} x ${xd} -> ${outDtype}${epilogue ? ' +bias gelu' : ''}`;
                const [gx, cx] = both(xd, normal(m * k, 7), 1);
                const [gb, cb] = both('float32', normal(n, 8));
                const [go, co] = bothEmpty(outDtype, m * n, 1);
                const spec = (bias: typeof gb) => ({ ...l, m, bias: epilogue ? bias : undefined, gelu: epilogue });
                webgpu().quantizedMatmul(gx, gq.q, gq.s, go, spec(gb));
                cpu.quantizedMatmul(cx, cq.q, cq.s, co, spec(cb));
                await compare(go, co, { rtol: rtolFor(outDtype, 1e-5), atol: 1e-5 }, what);
              });
            }
          }
        }
      }
    });
  });
});
