// The magnitude counts behind the tensor statistics, one pass per tensor on each
// backend, against the composition of primitives (the CPU backend with its
// fusions hidden) and, for WebGPU, against the CPU backend: the same counts,
// maximum and minimum, exactly, for float32, float16 and bfloat16 tensors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Backend, View } from '../../src/backend/backend.js';
import { fusions } from '../../src/tensor/fusions.js';
import { float32Bits, fromFloat32Bits } from '../../src/dtype/codec.js';
import { primitivesOnly } from '../backend/primitives-only.js';
import { FLOATS, cpu, empty, mixed, skip, specials, upload, webgpu } from '../backend/webgpu/helpers.js';

const next = (x: number, d: number) => fromFloat32Bits(float32Bits(x) + d);
/** Ascending float32 thresholds: zero, the smallest subnormal, float16's boundaries, powers of two, infinity. */
const THRESHOLDS = [0, 2 ** -149, 2 ** -25 * (1 + 2 ** -23), 2 ** -20, 2 ** -14 - 2 ** -25, 2 ** -3, 1, 2, 65520, 2 ** 40, Infinity];

/** Every threshold and its float32 neighbours, both signs, among random values of many magnitudes (and NaN, inf, zeros). */
function values(n: number, seed: number, dtype: (typeof FLOATS)[number]): number[] {
  const v = mixed(n, seed, dtype, -4, 4).map((x, i) => x * 2 ** ((i * 7919) % 60 - 40));
  const edges = THRESHOLDS.filter(Number.isFinite).flatMap((t) => [next(t, -1), t, next(t, 1)].filter((x) => x >= 0));
  edges.forEach((e, i) => { v[(i * 131) % n] = i % 2 ? -e : e; });
  return [...v, ...specials(dtype)];
}

/** Counts of several tensors (one with an offset, one spanning many workgroups) into one output, read back. */
async function counts(b: Backend, dtype: (typeof FLOATS)[number]): Promise<number[]> {
  const views: View[] = [upload(b, dtype, values(300, 1, dtype), 3), upload(b, dtype, values(70_001, 2, dtype)), upload(b, dtype, [NaN, -0, 0])];
  const width = THRESHOLDS.length + 2;
  const out = empty(b, 'float32', views.length * width, 5);
  fusions(b).magnitudeCounts(views, THRESHOLDS, out);
  return [...(await b.read(out))];
}

describe('magnitudeCounts', () => {
  for (const dtype of FLOATS) {
    it(`${dtype}: the CPU kernel gives the composition's counts, maximum and minimum`, async () => {
      const expected = await counts(primitivesOnly(), dtype);
      const width = THRESHOLDS.length + 2;
      assert.deepEqual(expected.slice(2 * width), [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Infinity], 'NaN counts nowhere and zeros only at threshold 0; the maximum of NaN and zeros is 0, no nonzero minimum');
      assert.ok(expected[width - 3]! > 0 && expected[1]! < expected[0]!, 'the probe has infinities and zeros');
      assert.deepEqual(await counts(cpu, dtype), expected);
    });

    it(`${dtype}: the WebGPU kernel gives the CPU kernel's`, { skip }, async () => {
      assert.deepEqual(await counts(webgpu(), dtype), await counts(cpu, dtype));
    });
  }
});
