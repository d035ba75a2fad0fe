// Runs in a browser page (bundled by chromium.test.ts): WebGPU through
// navigator.gpu, checked against the CPU backend in the same page, and the
// results posted back to the test.
import { errorText, postResult } from './post-result.js';
import * as mp from '../../src/core.js';
import { CURVE_TOLERANCE, lossCurve } from '../helpers/training-curve.js';

/** float32 values whose 16-bit roundings are the awkward cases: ties, subnormals, overflow, NaN, -0. */
const SPECIALS = [
  0, -0, Infinity, -Infinity, NaN, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519, 65520, -65520,
  2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 2 ** -14, 2 ** -149, 3.4e38, -3.4e38, 0.1, -2.5e-6, 1e-8,
];
export const CURVE_STEPS = 10;
/** GPT-2's vocabulary on a narrow model: the token table (50257 x 16, 3.1 MiB in float32), its gradient and
 * moments, and the tied head's logits are each larger than the lowered 1 MiB binding limit, so they run in parts. */
export const SPLIT_SHAPE = { config: mp.gptConfig('tiny', { vocabSize: 50257, nLayer: 1, nEmbd: 16, nHead: 2, blockSize: 16 }), B: 1, T: 16 };
export const SPLIT_BINDING_BYTES = 2 ** 20;
export const SPLIT_STEPS = 2;

async function castBits(backend: mp.Backend, dtype: 'float16' | 'bfloat16'): Promise<number[]> {
  const t = mp.tensor(SPECIALS, { dtype: 'float32', backend });
  const h = t.to(dtype);
  const values = await h.toArray();
  t.dispose();
  h.dispose();
  const bits = dtype === 'float16' ? mp.dtypes.toFloat16Bits : mp.dtypes.toBFloat16Bits;
  return Array.from(values, (v) => bits(v));
}

/** One step with GPT-2's vocabulary under the lowered binding limit, on WebGPU and on the CPU backend. */
async function splitRun(cpu: mp.Backend): Promise<Record<string, unknown>> {
  const split = await mp.createWebGPUBackend({ register: false, maxBindingBytes: SPLIT_BINDING_BYTES });
  const splitCurves: Record<string, { gpu: number[]; cpu: number[]; tolerance: number }> = {};
  try {
    for (const precision of ['fp32', 'fp16']) {
      splitCurves[precision] = {
        gpu: await lossCurve(split, precision, SPLIT_STEPS, SPLIT_SHAPE),
        cpu: await lossCurve(cpu, precision, SPLIT_STEPS, SPLIT_SHAPE),
        tolerance: CURVE_TOLERANCE[precision]!,
      };
    }
    return { splitCurves, splitMemory: mp.memory(split) };
  } finally {
    split.destroy();
  }
}

async function run(): Promise<Record<string, unknown>> {
  if (!('gpu' in navigator)) return { error: 'navigator.gpu is missing' };
  const gpu = await mp.createWebGPUBackend({ register: false });
  const cpu = new mp.CpuBackend();
  const out: Record<string, unknown> = { adapter: gpu.adapterInfo };
  const casts: Record<string, { gpu: number[]; cpu: number[] }> = {};
  for (const dtype of ['float16', 'bfloat16'] as const) casts[dtype] = { gpu: await castBits(gpu, dtype), cpu: await castBits(cpu, dtype) };
  out.casts = casts;
  const curves: Record<string, { gpu: number[]; cpu: number[]; tolerance: number }> = {};
  for (const precision of ['fp32', 'fp16', 'bf16-master']) {
    curves[precision] = {
      gpu: await lossCurve(gpu, precision, CURVE_STEPS),
      cpu: await lossCurve(cpu, precision, CURVE_STEPS),
      tolerance: CURVE_TOLERANCE[precision]!,
    };
  }
  out.curves = curves;
  out.memory = mp.memory(gpu);
  gpu.destroy();
  const start = performance.now();
  try {
    Object.assign(out, await splitRun(cpu), { splitSeconds: (performance.now() - start) / 1000 });
  } catch (e) {
    out.splitError = errorText(e);
  }
  return out;
}

await postResult(run);
