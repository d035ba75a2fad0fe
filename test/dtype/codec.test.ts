import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  FLOAT16_TABLE, decode16, decodeBFloat16, decodeFloat16, encode16, encodeBFloat16, encodeFloat16, finfo, isHalf,
  float32Bits, float32BitsToBFloat16Bits, float32BitsToFloat16Bits, fromBFloat16Bits, fromFloat16Bits,
  fromFloat32Bits, roundTo, toBFloat16Bits, toFloat16Bits,
} from '../../src/dtype/codec.js';

// ---- an independent reference: rounding done on values (in float64), not on bits ----

interface Format {
  /** Explicit mantissa bits. */
  mant: number;
  /** Smallest normal exponent. */
  emin: number;
  /** Largest finite value. */
  max: number;
  /** Exponent bias and exponent field width. */
  bias: number;
  expBits: number;
  nan: number;
}

const F16: Format = { mant: 10, emin: -14, max: 65504, bias: 15, expBits: 5, nan: 0x7e00 };
const BF16: Format = { mant: 7, emin: -126, max: (2 - 2 ** -7) * 2 ** 127, bias: 127, expBits: 8, nan: 0x7fc0 };

/** floor(log2(a)) for a > 0, exact. */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/** Bits of the 16-bit value nearest to the float32 value `x` (ties to even), computed from values. */
function referenceBits(x: number, f: Format): number {
  if (Number.isNaN(x)) return f.nan;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const inf = sign | (((1 << f.expBits) - 1) << f.mant);
  if (a === Infinity) return inf;
  if (a === 0) return sign;
  // The spacing of representable values around a (fixed below the normal range: subnormals).
  const e = Math.max(exponentOf(a), f.emin);
  const quantum = 2 ** (e - f.mant);
  const m = a / quantum; // exact: a has at most 24 significant bits
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const v = r * quantum;
  if (v > f.max) return inf;
  // Encode the (exactly representable) value v.
  if (v < 2 ** f.emin) return sign | (v / 2 ** (f.emin - f.mant));
  const ve = exponentOf(v);
  return sign | ((ve + f.bias) << f.mant) | (v / 2 ** (ve - f.mant) - 2 ** f.mant);
}

/** Float32 bit patterns that probe every rounding position: ties, ties +- 1 ulp, both parities, edges. */
function sweepPatterns(): Uint32Array {
  const out: number[] = [];
  let seed = 12345;
  const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; };
  for (let sign = 0; sign < 2; sign++) {
    for (let e = 0; e < 256; e++) {
      const hi = ((sign << 31) | (e << 23)) >>> 0;
      for (const m of [0, 1, 2, 0x7fffff, 0x7ffffe, 0x400000, 0x3fffff]) out.push((hi | m) >>> 0);
      // A rounding position k (the k low mantissa bits are dropped): tie, tie-1, tie+1, with the kept bit 0 and 1.
      for (let k = 1; k <= 23; k++) {
        const tie = 1 << (k - 1);
        for (let r = 0; r < 3; r++) {
          const upper = k < 23 ? (rnd() & ((0x7fffff >>> k) << k)) & ~(1 << k) : 0;
          for (const kept of [0, k < 23 ? 1 << k : 0]) {
            for (const low of [tie, tie - 1, tie + 1]) out.push((hi | upper | kept | (low & ((1 << k) - 1))) >>> 0);
          }
        }
      }
    }
  }
  // A strided walk over all 2^32 patterns.
  for (let b = 0; b < 2 ** 32; b += 4099) out.push(b >>> 0);
  return Uint32Array.from(out);
}

const isNaNBits = (b: number) => (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0;

describe('float16 codec', () => {
  it('round-trips all 65,536 bit patterns through float32 exactly (NaNs become 0x7E00)', () => {
    for (let h = 0; h < 65536; h++) {
      const x = fromFloat16Bits(h);
      assert.equal(Math.fround(x), x, `0x${h.toString(16)} decodes to a float32`);
      const back = toFloat16Bits(x);
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN16) {
        assert.ok(Number.isNaN(x));
        assert.equal(back, 0x7e00);
      } else if (back !== h) {
        assert.fail(`0x${h.toString(16)} -> ${x} -> 0x${back.toString(16)}`);
      }
    }
  });

  it('decodes each pattern to the value its fields describe', () => {
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
      const x = fromFloat16Bits(h);
      if (e === 0x1f) { assert.equal(m ? Number.isNaN(x) : x === s * Infinity, true); continue; }
      // Normals through float32 bits (an independent path); subnormals as m * 2^-24.
      const want = e === 0 ? s * m * 2 ** -24 : fromFloat32Bits(((h & 0x8000) << 16) | ((e - 15 + 127) << 23) | (m << 13));
      assert.ok(Object.is(x, want), `0x${h.toString(16)}: ${x} vs ${want}`);
    }
  });

  it('rounds a sweep of float32 inputs to the same bits as a value-domain reference', () => {
    const pats = sweepPatterns();
    let bad = 0;
    let first = '';
    for (const b of pats) {
      const x = fromFloat32Bits(b);
      const want = referenceBits(x, F16);
      const got = float32BitsToFloat16Bits(b);
      if (got !== want || toFloat16Bits(x) !== want) {
        if (!bad++) first = `0x${b.toString(16)} (${x}): got 0x${got.toString(16)}, want 0x${want.toString(16)}`;
      }
    }
    assert.equal(bad, 0, `${bad} of ${pats.length} mismatches, first: ${first}`);
    assert.ok(pats.length > 1_000_000);
  });

  it('gets the documented edge values right', () => {
    assert.equal(toFloat16Bits(65520), 0x7c00, '65520 is the tie to infinity');
    assert.equal(toFloat16Bits(-65520), 0xfc00);
    assert.equal(roundTo(65519, 'float16'), 65504);
    assert.equal(roundTo(65504, 'float16'), 65504);
    assert.equal(roundTo(1e6, 'float16'), Infinity);
    assert.equal(toFloat16Bits(2 ** -24), 0x0001, '2^-24 is the smallest subnormal');
    assert.equal(roundTo(2 ** -24, 'float16'), 2 ** -24);
    assert.equal(toFloat16Bits(2 ** -25), 0x0000, '2^-25 ties to even: zero');
    assert.equal(toFloat16Bits(-(2 ** -25)), 0x8000);
    assert.equal(toFloat16Bits(Math.fround(2 ** -25 * (1 + 2 ** -23))), 0x0001, 'just above 2^-25 rounds up');
    assert.equal(roundTo(1.5 * 2 ** -25, 'float16'), 2 ** -24);
    assert.equal(toFloat16Bits(2 ** -14), 0x0400, 'smallest normal');
    assert.equal(toFloat16Bits(1), 0x3c00);
    assert.equal(toFloat16Bits(1 + 2 ** -11), 0x3c00, 'tie between 1 and 1+2^-10 goes to even');
    assert.equal(toFloat16Bits(1 + 3 * 2 ** -11), 0x3c02);
    assert.equal(toFloat16Bits(0), 0x0000);
    assert.equal(toFloat16Bits(-0), 0x8000);
    assert.ok(Object.is(fromFloat16Bits(0x8000), -0));
    assert.ok(Object.is(roundTo(-0, 'float16'), -0));
    assert.ok(Object.is(roundTo(-1e-10, 'float16'), -0), 'underflow keeps the sign');
    assert.equal(toFloat16Bits(NaN), 0x7e00);
    assert.equal(float32BitsToFloat16Bits(0xffc00001), 0x7e00, 'negative NaN with payload is canonical too');
    assert.equal(float32BitsToFloat16Bits(0x7f800001), 0x7e00, 'signalling NaN is canonical');
    assert.equal(toFloat16Bits(Infinity), 0x7c00);
    assert.equal(toFloat16Bits(-Infinity), 0xfc00);
    // A float64 input is rounded to float32 first (as a GPU storing an f32 result would).
    assert.equal(toFloat16Bits(1 + 2 ** -11 + 2 ** -40), 0x3c00);
  });
});

describe('bfloat16 codec', () => {
  it('round-trips all 65,536 bit patterns through float32 exactly (NaNs become 0x7FC0)', () => {
    for (let h = 0; h < 65536; h++) {
      const x = fromBFloat16Bits(h);
      const back = toBFloat16Bits(x);
      const isNaN16 = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (isNaN16) {
        assert.ok(Number.isNaN(x));
        assert.equal(back, 0x7fc0);
      } else {
        assert.ok(Object.is(x, fromFloat32Bits(h << 16)), `0x${h.toString(16)} decodes as the top half of a float32`);
        if (back !== h) assert.fail(`0x${h.toString(16)} -> ${x} -> 0x${back.toString(16)}`);
      }
    }
  });

  it('rounds a sweep of float32 inputs to the same bits as a value-domain reference', () => {
    const pats = sweepPatterns();
    let bad = 0;
    let first = '';
    for (const b of pats) {
      const x = fromFloat32Bits(b);
      const want = referenceBits(x, BF16);
      const got = float32BitsToBFloat16Bits(b);
      if (got !== want || toBFloat16Bits(x) !== want) {
        if (!bad++) first = `0x${b.toString(16)} (${x}): got 0x${got.toString(16)}, want 0x${want.toString(16)}`;
      }
    }
    assert.equal(bad, 0, `${bad} of ${pats.length} mismatches, first: ${first}`);
  });

  it('gets the documented edge values right', () => {
    const max = finfo('bfloat16').max;
    assert.equal(toBFloat16Bits(max), 0x7f7f);
    assert.equal(float32BitsToBFloat16Bits(0x7f7f7fff), 0x7f7f, 'just below the halfway point to infinity');
    assert.equal(float32BitsToBFloat16Bits(0x7f7f8000), 0x7f80, 'the halfway point ties to infinity');
    assert.equal(float32BitsToBFloat16Bits(0x3f808000), 0x3f80, 'tie, kept bit even: down');
    assert.equal(float32BitsToBFloat16Bits(0x3f818000), 0x3f82, 'tie, kept bit odd: up');
    assert.equal(float32BitsToBFloat16Bits(0x00000001), 0x0000, 'float32 subnormals underflow to zero');
    assert.equal(float32BitsToBFloat16Bits(0x00008000), 0x0000, 'tie at the bottom goes to even');
    assert.equal(float32BitsToBFloat16Bits(0x00018000), 0x0002);
    assert.equal(toBFloat16Bits(2 ** -133), 0x0001, 'smallest subnormal');
    assert.equal(toBFloat16Bits(-0), 0x8000);
    assert.equal(toBFloat16Bits(NaN), 0x7fc0);
    assert.equal(float32BitsToBFloat16Bits(0xff800001), 0x7fc0, 'negative signalling NaN is canonical');
    assert.equal(float32BitsToBFloat16Bits(0x7fffffff), 0x7fc0, 'a NaN must not carry into the sign');
    assert.equal(toBFloat16Bits(-Infinity), 0xff80);
    assert.equal(roundTo(1 + 2 ** -8, 'bfloat16'), 1);
    assert.equal(roundTo(1 + 3 * 2 ** -8, 'bfloat16'), 1 + 2 ** -6);
  });
});

describe('parity with PyTorch (test/fixtures/dtype/torch_casts.json)', () => {
  const fx = JSON.parse(readFileSync(new URL('../fixtures/dtype/torch_casts.json', import.meta.url), 'utf8')) as {
    count: number; f32_bits: number[]; f16_bits: number[]; bf16_bits: number[];
  };

  it('holds the documented number of cases', () => {
    assert.equal(fx.f32_bits.length, fx.count);
    assert.ok(fx.count > 20000);
  });

  it('float32 -> float16 matches torch on every case (NaN-ness only for NaN inputs)', () => {
    let mismatches = 0;
    for (let i = 0; i < fx.count; i++) {
      const b = fx.f32_bits[i]!, want = fx.f16_bits[i]!;
      const got = float32BitsToFloat16Bits(b), viaNumber = toFloat16Bits(fromFloat32Bits(b));
      if (isNaNBits(b)) {
        // torch keeps a NaN's sign (0xFE00); mixprec is canonical (0x7E00).
        assert.equal(want & 0x7fff, 0x7e00);
        assert.equal(got, 0x7e00);
        assert.equal(viaNumber, 0x7e00);
      } else if (got !== want || viaNumber !== want) {
        mismatches++;
      }
    }
    assert.equal(mismatches, 0);
  });

  it('float32 -> bfloat16 matches torch bit for bit', () => {
    for (let i = 0; i < fx.count; i++) {
      const b = fx.f32_bits[i]!;
      const got = float32BitsToBFloat16Bits(b);
      if (got !== fx.bf16_bits[i]) assert.fail(`0x${b.toString(16)}: got 0x${got.toString(16)}, torch 0x${fx.bf16_bits[i]!.toString(16)}`);
      if (!isNaNBits(b)) assert.equal(toBFloat16Bits(fromFloat32Bits(b)), got);
    }
  });
});

describe('finfo', () => {
  it('gives PyTorch torch.finfo values for every float dtype', () => {
    const f16 = finfo('float16');
    assert.deepEqual([f16.bits, f16.max, f16.min, f16.smallestNormal, f16.smallestSubnormal, f16.eps], [16, 65504, -65504, 2 ** -14, 2 ** -24, 2 ** -10]);
    const bf = finfo('bfloat16');
    assert.deepEqual([bf.bits, bf.max, bf.min, bf.smallestNormal, bf.smallestSubnormal, bf.eps],
      [16, 3.3895313892515355e38, -3.3895313892515355e38, 2 ** -126, 2 ** -133, 2 ** -7]);
    const f32 = finfo('float32');
    assert.deepEqual([f32.bits, f32.max, f32.smallestNormal, f32.smallestSubnormal, f32.eps],
      [32, 3.4028234663852886e38, 1.1754943508222875e-38, 2 ** -149, 1.1920928955078125e-7]);
    const f64 = finfo('float64');
    assert.deepEqual([f64.bits, f64.max, f64.smallestNormal, f64.smallestSubnormal, f64.eps],
      [64, Number.MAX_VALUE, 2.2250738585072014e-308, 5e-324, Number.EPSILON]);
  });

  it('is consistent with the codecs: max is the largest finite, eps the gap above 1', () => {
    assert.equal(fromFloat16Bits(0x7bff), finfo('float16').max);
    assert.equal(fromFloat16Bits(0x3c01) - 1, finfo('float16').eps);
    assert.equal(fromBFloat16Bits(0x3f81) - 1, finfo('bfloat16').eps);
    assert.equal(fromFloat16Bits(0x0001), finfo('float16').smallestSubnormal);
    assert.equal(fromBFloat16Bits(0x0080), finfo('bfloat16').smallestNormal);
    assert.equal(Math.fround(finfo('float32').max * (1 + 2 ** -25)), finfo('float32').max);
  });

  it('refuses int32, naming it', () => {
    assert.throws(() => finfo('int32'), /int32/);
  });
});

describe('roundTo', () => {
  it('rounds to each dtype', () => {
    assert.equal(roundTo(0.1, 'float64'), 0.1);
    assert.equal(roundTo(0.1, 'float32'), Math.fround(0.1));
    assert.equal(roundTo(0.1, 'float16'), fromFloat16Bits(0x2e66));
    assert.equal(roundTo(0.1, 'bfloat16'), fromBFloat16Bits(0x3dcd));
    assert.equal(roundTo(2.9, 'int32'), 2);
    assert.equal(roundTo(-2.9, 'int32'), -2, 'truncates toward zero');
    assert.equal(roundTo(NaN, 'int32'), 0);
  });

  it('is idempotent and agrees with encode-then-decode on the sweep', () => {
    const pats = sweepPatterns().subarray(0, 50000);
    for (const b of pats) {
      const x = fromFloat32Bits(b);
      const h = roundTo(x, 'float16'), bf = roundTo(x, 'bfloat16');
      assert.ok(Object.is(h, fromFloat16Bits(toFloat16Bits(x))));
      assert.ok(Object.is(bf, fromBFloat16Bits(toBFloat16Bits(x))));
      assert.ok(Object.is(roundTo(h, 'float16'), h));
      assert.ok(Object.is(roundTo(bf, 'bfloat16'), bf));
    }
  });
});

describe('bulk encode/decode', () => {
  const pats = sweepPatterns();
  const xs = new Float32Array(pats.buffer.slice(0));

  it('encodeFloat16 / encodeBFloat16 agree with the scalar functions on the sweep', () => {
    const h = new Uint16Array(xs.length), bf = new Uint16Array(xs.length);
    encodeFloat16(xs, h);
    encodeBFloat16(xs, bf);
    for (let i = 0; i < xs.length; i++) {
      if (h[i] !== toFloat16Bits(xs[i]!)) assert.fail(`float16 at ${i}`);
      if (bf[i] !== toBFloat16Bits(xs[i]!)) assert.fail(`bfloat16 at ${i}`);
    }
  });

  it('encode takes float64 sources (rounding through float32) and honours n', () => {
    const src = new Float64Array([1 + 2 ** -11 + 2 ** -40, 3, 5]);
    const dst = new Uint16Array([0xaaaa, 0xaaaa, 0xaaaa]);
    encodeFloat16(src, dst, 2);
    assert.deepEqual([...dst], [0x3c00, toFloat16Bits(3), 0xaaaa]);
  });

  it('decodeFloat16 / decodeBFloat16 agree with the scalar functions on every pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f32 = new Float32Array(65536), f64 = new Float64Array(65536), b32 = new Float32Array(65536);
    decodeFloat16(all, f32);
    decodeFloat16(all, f64);
    decodeBFloat16(all, b32);
    for (let i = 0; i < 65536; i++) {
      assert.ok(Object.is(f32[i], fromFloat16Bits(i)) || (Number.isNaN(f32[i]) && Number.isNaN(fromFloat16Bits(i))));
      assert.ok(Object.is(f64[i], FLOAT16_TABLE[i]) || Number.isNaN(f64[i]));
      assert.ok(Object.is(b32[i], fromBFloat16Bits(i)) || (Number.isNaN(b32[i]) && Number.isNaN(fromBFloat16Bits(i))));
    }
  });

  it('encode16 / decode16 pick the codec of the dtype they are given, into a new array or `out`', () => {
    for (const [dtype, toBits, fromBits] of [['float16', toFloat16Bits, fromFloat16Bits], ['bfloat16', toBFloat16Bits, fromBFloat16Bits]] as const) {
      const bits = encode16(dtype, xs);
      assert.equal(bits.length, xs.length);
      for (let i = 0; i < xs.length; i++) if (bits[i] !== toBits(xs[i]!)) assert.fail(`${dtype} encode at ${i}`);
      const back = decode16(dtype, bits);
      for (let i = 0; i < xs.length; i++) {
        if (!Object.is(back[i], fromBits(bits[i]!)) && !Number.isNaN(back[i])) assert.fail(`${dtype} decode at ${i}`);
      }
      const out = new Uint16Array([0xaaaa, 0xaaaa, 0xaaaa]);
      assert.equal(encode16(dtype, [1.5, -2, 7], out, 2), out);
      assert.deepEqual([...out], [toBits(1.5), toBits(-2), 0xaaaa]);
    }
    assert.deepEqual(['float16', 'bfloat16', 'float32', 'int32', 'float64'].map((d) => isHalf(d as never)), [true, true, false, false, false]);
  });

  it('float32Bits / fromFloat32Bits are inverse on non-NaN patterns', () => {
    for (const b of pats) if (!isNaNBits(b)) assert.equal(float32Bits(fromFloat32Bits(b)), b);
  });
});
