// The proof that the Backend contract is what it says: a backend with only the
// required primitives (the CPU backend with every fusion hidden) trains the GPT
// under every precision policy and follows the full CPU backend's loss curve.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { lossCurve } from '../helpers/training-curve.js';
import { primitivesOnly } from './primitives-only.js';

/**
 * Tolerances in nats at every step. The compositions keep every intermediate in
 * float32 where the CPU's fused kernels keep float64, and sum in another order:
 * with float32 compute the curves differ by rounding alone (about 5e-7 over 40
 * steps here), so 1e-4 leaves two hundred-fold room and still catches any real
 * difference. With 16-bit compute a value near a rounding boundary may round
 * the other way (2^-11 relative in float16, 2^-8 in bfloat16), and later steps
 * carry it: about 1e-4 (float16) and 1e-3 (bfloat16) here. These are the
 * tolerances by which the WebGPU backend follows the CPU backend, for the same
 * reason (float32 kernels against the float64 reference).
 */
const TOLERANCE: Record<string, number> = { fp32: 1e-4, fp16: 1e-2, 'fp16-master': 1e-2, bf16: 2e-2, 'bf16-master': 2e-2 };
const STEPS = 30;

describe('a backend with only the required primitives', () => {
  for (const [precision, tolerance] of Object.entries(TOLERANCE)) {
    test(`${precision}: ${STEPS} GPT training steps follow the full CPU backend's loss curve within ${tolerance}`, async () => {
      const full = await lossCurve(new mp.CpuBackend(), precision, STEPS);
      const backend = primitivesOnly();
      const composed = await lossCurve(backend, precision, STEPS);
      assert.ok(full[STEPS - 1]! < full[0]! - 1, `the model learns (${full[0]} -> ${full[STEPS - 1]})`);
      full.forEach((f, k) => assert.ok(Math.abs(composed[k]! - f) <= tolerance, `step ${k}: primitives only ${composed[k]} vs full ${f}`));
      assert.deepEqual({ ...mp.memory(backend), peakBytes: 0 }, { backend: backend.name, tensors: 0, buffers: 0, bytes: 0, peakBytes: 0 },
        'the compositions leave no buffer behind');
    });
  }
});
