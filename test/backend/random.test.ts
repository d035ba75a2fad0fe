import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Generator, bitsToUniform, mix32, randomBits, streamKey } from '../../src/backend/random.js';

describe('counter-based Generator', () => {
  it('same seed, same numbers; different seeds, different numbers', () => {
    assert.deepEqual([...new Generator(7).uniform(100)], [...new Generator(7).uniform(100)]);
    assert.deepEqual([...new Generator(7).normal(101)], [...new Generator(7).normal(101)]);
    assert.notDeepEqual([...new Generator(7).uniform(10)], [...new Generator(8).uniform(10)]);
  });

  it('value i of a stream depends only on (seed, i): drawing in pieces equals drawing at once', () => {
    const g = new Generator(3);
    const pieces = [...g.uniform(5), ...g.uniform(7)];
    assert.deepEqual(pieces, [...new Generator(3).uniform(12)]);
    const key = streamKey(3);
    pieces.forEach((u, i) => assert.equal(u, bitsToUniform(randomBits(key, i))));
  });

  it('state() and setState() round-trip: restoring continues the stream exactly', () => {
    const g = new Generator(11);
    g.uniform(13);
    g.normal(3); // odd: reserves 4 counters
    const s = g.state();
    assert.deepEqual(s, { seed: 11, offset: 17 });
    const next = [...g.uniform(20)];
    const h = new Generator(0);
    h.setState(s);
    assert.deepEqual([...h.uniform(20)], next);
    assert.deepEqual([...new Generator(11, 17).uniform(20)], next);
  });

  it('past 2^32 counters the stream continues with a fresh key instead of repeating', () => {
    const g = new Generator(5, 2 ** 32 - 2);
    const a = g.reserve(2), b = g.reserve(2);
    assert.equal(a.start, 2 ** 32 - 2);
    assert.equal(b.start, 0);
    assert.notEqual(a.key, b.key);
    assert.equal(a.key, streamKey(5));
  });

  it('a reservation that would cross 2^32 counters starts the next epoch, so no value of the stream repeats', () => {
    const g = new Generator(5, 2 ** 32 - 3);
    const across = [...g.uniform(8)];
    assert.equal(g.state().offset, 2 ** 32 + 8);
    const epochStart = [...new Generator(5, 0).uniform(8)];
    assert.deepEqual(across.filter((x) => epochStart.includes(x)), [], 'values of counters 0.. of the first epoch drawn again');
    assert.deepEqual(across, [...new Generator(5, 2 ** 32).uniform(8)]);
    const r = new Generator(9, 3 * 2 ** 32 - 1).reserve(2);
    assert.equal(r.start, 0, 'the reservation fits below 2^32');
    assert.throws(() => new Generator(0).reserve(2 ** 32 + 1), RangeError);
  });

  it('uniform values lie strictly inside (0, 1), with the extremes of bitsToUniform too', () => {
    const u = Array.from(new Generator(1).uniform(100000));
    assert.ok(u.every((x) => x > 0 && x < 1));
    assert.ok(bitsToUniform(0) > 0 && bitsToUniform(0xffffffff) < 1);
    const mean = u.reduce((a, b) => a + b) / u.length;
    assert.ok(Math.abs(mean - 0.5) < 0.005, `mean ${mean}`);
    // Ten equal bins each get about a tenth.
    const bins = new Array(10).fill(0);
    for (const x of u) bins[Math.floor(x * 10)]++;
    assert.ok(bins.every((c) => Math.abs(c - 10000) < 500), `bins ${bins}`);
  });

  // In float32 (rand's default dtype, and the WGSL twin) every value must be exact, or CPU and GPU streams could differ.
  it('uniform values are exact in float32, so float32 draws stay in (0, 1)', () => {
    for (const h of [0, 1, 0x1ff, 0x200, 0x7fffffff, 0x80000000, 0xfffffe00, 0xffffffff]) {
      assert.equal(Math.fround(bitsToUniform(h)), bitsToUniform(h), `h = ${h.toString(16)}`);
    }
    assert.ok(bitsToUniform(0xffffffff) < 1 && bitsToUniform(0) > 0);
  });

  it('normal: mean about 0 and variance about 1 on 100k draws, symmetric tails', () => {
    const z = Array.from(new Generator(2).normal(100000));
    const n = z.length;
    const mean = z.reduce((a, b) => a + b) / n;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
    const beyond2 = z.filter((x) => Math.abs(x) > 2).length / n;
    assert.ok(Math.abs(beyond2 - 0.0455) < 0.005, `P(|z| > 2) = ${beyond2}`);
  });

  it('int(n) is uniform on [0, n)', () => {
    const g = new Generator(4);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60000; i++) {
      const k = g.int(6);
      assert.ok(Number.isInteger(k) && k >= 0 && k < 6);
      counts[k]++;
    }
    assert.ok(counts.every((c) => Math.abs(c - 10000) < 400), `counts ${counts}`);
  });

  it('mix32 and randomBits are 32-bit functions with avalanche', () => {
    for (const x of [0, 1, 0xffffffff, 12345]) {
      const h = mix32(x);
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    }
    // Flipping one input bit flips about half of the output bits.
    let flipped = 0;
    for (let i = 0; i < 1000; i++) flipped += popcount(randomBits(9, i) ^ randomBits(9, i ^ 1));
    assert.ok(Math.abs(flipped / 1000 - 16) < 1, `mean flipped bits ${flipped / 1000}`);
  });
});

function popcount(x: number): number {
  let c = 0;
  for (let v = x >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}
