// A small GPT trained the same way on any backend, for comparing loss curves
// across backends (in Node and in a browser page: browser-safe imports only).
import * as mp from '../../src/core.js';
import type { Backend } from '../../src/backend/backend.js';
import type { Tensor } from '../../src/tensor/tensor.js';

/** The model and batch shape trained (`setupTraining` takes others). */
export interface CurveShape {
  config: mp.GPTConfig;
  B: number;
  T: number;
}
const SHAPE: CurveShape = { config: mp.gptConfig('tiny', { nLayer: 2, nEmbd: 32, nHead: 4, blockSize: 32 }), B: 4, T: 32 };
const stream = Int32Array.from({ length: 4096 }, (_, i) => (i * 37 + (i >> 3) * 11) % 97);

/** Tolerances, in nats, at every step: float32 differs only in summation order; 16-bit compute
 * may round an intermediate the other way, and the difference is carried by later steps. */
export const CURVE_TOLERANCE: Record<string, number> = { fp32: 1e-4, fp16: 1e-2, 'fp16-master': 1e-2, bf16: 2e-2, 'bf16-master': 2e-2 };

function batch(step: number, backend: Backend, { B, T }: CurveShape): [Tensor, Tensor] {
  const start = (step * 97) % (stream.length - 8 * B - T - 1);
  const rows = (shift: number) => Int32Array.from({ length: B * T }, (_, i) => stream[start + Math.floor(i / T) * 8 + (i % T) + shift]!);
  return [mp.tensor(rows(0), { shape: [B, T], backend }), mp.tensor(rows(1), { shape: [B, T], backend })];
}

/** A model, AdamW and GradScaler under a precision policy; `step(k)` trains on batch k and returns the loss. */
export function setupTraining(backend: Backend, precision: string, shape = SHAPE) {
  const policy = mp.parsePolicy(precision);
  const model = new mp.GPT(shape.config, { backend, seed: 3 });
  if (policy.params !== 'float32') model.to(policy.params as mp.FloatDType);
  const opt = new mp.AdamW(model.parameters(), { lr: 3e-3, betas: [0.9, 0.95] });
  const scaler = new mp.GradScaler({ enabled: policy.lossScaling === 'dynamic', backend });
  const step = (k: number): Tensor => mp.tidy(() => {
    const [x, y] = batch(k, backend, shape);
    const loss = mp.withPolicy(policy, () => model.forward(x, y).loss!);
    scaler.scale(loss).backward();
    scaler.unscale(opt);
    mp.clipGradNorm(opt, 1);
    scaler.step(opt);
    scaler.update();
    opt.zeroGrad();
    return loss;
  });
  const dispose = () => { opt.dispose(); scaler.dispose(); model.dispose(); };
  return { model, opt, scaler, step, dispose };
}

/** The losses of `steps` training steps. */
export async function lossCurve(backend: Backend, precision: string, steps: number, shape = SHAPE): Promise<number[]> {
  const run = setupTraining(backend, precision, shape);
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    const loss = run.step(k);
    losses.push(await loss.item());
    loss.dispose();
  }
  run.dispose();
  return losses;
}
