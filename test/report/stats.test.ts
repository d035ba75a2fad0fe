// Tensor statistics agree with what a cast to float16 / bfloat16 does, value by value.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tensor, memory, CpuBackend, StatsError } from '../../src/index.js';
import { roundTo, float32Bits, fromFloat32Bits } from '../../src/dtype/codec.js';
import { HISTOGRAM_LOW, tensorStats } from '../../src/report/stats.js';

/** The class a value falls in after rounding to a 16-bit format, by the codec (the oracle). */
function classify(x: number, dtype: 'float16' | 'bfloat16'): 'zero' | 'nonFinite' | 'overflow' | 'normal' | 'subnormal' | 'underflow' {
  if (!Number.isFinite(x)) return 'nonFinite';
  if (x === 0) return 'zero';
  const r = Math.abs(roundTo(x, dtype));
  if (r === Infinity) return 'overflow';
  if (r === 0) return 'underflow';
  return r < (dtype === 'float16' ? 2 ** -14 : 2 ** -126) ? 'subnormal' : 'normal';
}

/** Values around every boundary: each boundary and its float32 neighbours, plus random magnitudes. */
function probeValues(): number[] {
  const next = (x: number, d: number) => fromFloat32Bits(float32Bits(x) + d);
  const edges = [65504, 65520, 2 ** -14, 2 ** -14 - 2 ** -25, 2 ** -24, 2 ** -25, 3 * 2 ** -26,
    2 ** 128 - 2 ** 119, 2 ** -126, 2 ** -126 - 2 ** -134, 2 ** -133, 2 ** -134, 2 ** -149, 3.4e38];
  const out: number[] = [0, -0, NaN, Infinity, -Infinity];
  for (const e of edges) for (const d of [-1, 0, 1]) out.push(next(e, d), -next(e, d));
  let s = 12345;
  for (let i = 0; i < 3000; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out.push(Math.fround((s / 2 ** 32 - 0.5) * 2 ** (((s >>> 7) % 300) - 150)));
  }
  return out;
}

describe('tensorStats', () => {
  it('classifies every value as a cast to float16 and to bfloat16 would, with zeros and non-finite apart', async () => {
    const values = probeValues();
    const [s] = await tensorStats([{ name: 'probe', kind: 'weight-grad', tensor: tensor(values, { shape: [values.length] }) }]);
    const n = values.length;
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const counts = { zero: 0, nonFinite: 0, overflow: 0, normal: 0, subnormal: 0, underflow: 0 };
      for (const v of values) counts[classify(v, dtype)]++;
      const got = s![dtype];
      assert.equal(Math.round(got.overflow * n), counts.overflow, `${dtype} overflow`);
      assert.equal(Math.round(got.normal * n), counts.normal, `${dtype} normal`);
      assert.equal(Math.round(got.subnormal * n), counts.subnormal, `${dtype} subnormal`);
      assert.equal(Math.round(got.underflow * n), counts.underflow, `${dtype} underflow`);
      assert.equal(Math.round(s!.zeros * n), counts.zero);
      assert.equal(Math.round(s!.nonFinite * n), counts.nonFinite);
      assert.ok(counts.underflow > 0 && counts.subnormal > 0 && counts.overflow > 0, `${dtype}: the probe covers every class`);
    }
    assert.equal(s!.maxAbs, Infinity);
    assert.equal(s!.minNonzeroAbs, 2 ** -149);
  });

  it('builds a log2 histogram of the nonzero finite magnitudes, max and min from the values', async () => {
    const values = [0, 1, 1.5, -2, 3, 2 ** -30, 2 ** -70, 2 ** 25, 0.75];
    const [s] = await tensorStats([{ name: 'h', kind: 'activation-grad', tensor: tensor(values, { shape: [3, 3] }) }]);
    const bin = (x: number) => Math.floor(Math.log2(x)) - HISTOGRAM_LOW;
    const expected = new Array(s!.histogram.bins.length).fill(0);
    for (const v of [1, 1.5, 2, 3, 2 ** -30, 0.75]) expected[bin(v)]++;
    assert.deepEqual(s!.histogram.bins, expected);
    assert.equal(s!.histogram.below, 1);
    assert.equal(s!.histogram.above, 1);
    assert.equal(s!.maxAbs, 2 ** 25);
    assert.equal(s!.minNonzeroAbs, 2 ** -70);
    assert.equal(s!.zeros, 1 / 9);
  });

  it('reads float16 tensors and large tensors in chunks, leaving memory as it was', async () => {
    const b = new CpuBackend();
    const n = 70_001;
    const values = Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 0 : (i % 13) * 2 ** -20));
    const t = tensor(values, { shape: [n], dtype: 'float16', backend: b });
    const { tensors, bytes } = memory(b);
    const [s] = await tensorStats([{ name: 'big', kind: 'activation', tensor: t }]);
    assert.deepEqual([memory(b).tensors, memory(b).bytes], [tensors, bytes]);
    const zeros = values.filter((v) => v === 0).length;
    assert.equal(s!.zeros, zeros / n);
    assert.equal(s!.dtype, 'float16');
    assert.equal(s!.float16.normal + s!.float16.subnormal, 1 - zeros / n);
  });

  it('names the entry at fault for an integer or disposed tensor', async () => {
    const ids = tensor([1, 2], { shape: [2], dtype: 'int32' });
    await assert.rejects(tensorStats([{ name: 'ids', kind: 'activation', tensor: ids }]), (e: Error) => e instanceof StatsError && /'ids'.*int32/.test(e.message));
    const t = tensor([1], { shape: [1] });
    t.dispose();
    await assert.rejects(tensorStats([{ name: 'gone', kind: 'weight-grad', tensor: t }]), /'gone'.*disposed/);
  });
});
