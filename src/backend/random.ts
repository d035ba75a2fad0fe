// Counter-based random numbers: value i of a stream is a pure function of
// (seed, i), computed with 32-bit integer arithmetic only, so that every backend
// (TypeScript here, WGSL on the GPU) produces the same numbers for the same seed
// and a generator's whole state is two integers.

/** A 32-bit integer finaliser with good avalanche (Chris Wellons' "lowbias32"). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The stream key of a seed; element i of the stream is `randomBits(key, i)`. */
export function streamKey(seed: number): number {
  return mix32((mix32(seed >>> 0) + 0x9e3779b9) >>> 0);
}

/** 32 random bits for counter `i` (0 <= i < 2^32) of the stream with key `key`. */
export function randomBits(key: number, i: number): number {
  return mix32((mix32((i ^ key) >>> 0) + key) >>> 0);
}

/** Uniform in (0, 1), never 0 or 1: 23 random bits plus a half, so every value is exact in float32 (GPU and CPU agree). */
export function bitsToUniform(h: number): number {
  return ((h >>> 9) + 0.5) / 8388608;
}

/**
 * Dropout keeps element i when the top 24 bits of its random word reach this
 * threshold: keep <=> ((bits >>> 8) + 0.5) / 2^24 >= p, decided on integers so
 * that every backend draws the same mask for every p.
 */
export function dropoutThreshold(p: number): number {
  return Math.max(0, Math.ceil(p * 16777216 - 0.5));
}

/** The WGSL twin of `randomBits` and `bitsToUniform`, for kernels that draw numbers (dropout). */
export const WGSL_RANDOM = /* wgsl */ `
fn mix32(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u); x = x * 0x7feb352du;
  x = x ^ (x >> 15u); x = x * 0x846ca68bu;
  return x ^ (x >> 16u);
}
fn random_bits(key: u32, i: u32) -> u32 { return mix32(mix32(i ^ key) + key); }
fn bits_to_uniform(h: u32) -> f32 { return (f32(h >> 9u) + 0.5) / 8388608.0; }
`;

/** Counters per key (32-bit counters). */
const EPOCH = 2 ** 32;

export interface GeneratorState {
  seed: number;
  /** Position in the stream: values drawn so far, plus any skipped to start a reservation at a new epoch. */
  offset: number;
}

/**
 * A seeded stream of random numbers. Drawing n values consumes n counters, so
 * the state after any sequence of draws is `{ seed, offset }`, and restoring it
 * continues the stream exactly.
 */
export class Generator {
  private key: number;
  constructor(public seed = 0, public offset = 0) {
    this.key = streamKey(seed);
  }

  state(): GeneratorState {
    return { seed: this.seed, offset: this.offset };
  }

  setState(s: GeneratorState): void {
    this.seed = s.seed;
    this.offset = s.offset;
    this.key = streamKey(s.seed);
  }

  /**
   * Reserves `n` counters and returns the key and first counter, for kernels that
   * draw on the device: the counters are `start` to `start + n - 1`, all below 2^32.
   */
  reserve(n: number): { key: number; start: number } {
    if (!Number.isSafeInteger(n) || n < 0 || n > EPOCH) throw new RangeError(`Generator.reserve: cannot reserve ${n} counters (0 to 2^32 at a time)`);
    // Counters are 32-bit, so the stream is cut into epochs of 2^32 values, each
    // with its own key. A reservation that would cross into the next epoch starts
    // at that epoch instead: wrapping to counter 0 would repeat this epoch's values.
    let start = this.offset;
    if (n > 0 && Math.floor(start / EPOCH) !== Math.floor((start + n - 1) / EPOCH)) start = Math.ceil(start / EPOCH) * EPOCH;
    this.offset = start + n;
    const epoch = Math.floor(start / EPOCH);
    const key = epoch === 0 ? this.key : streamKey((this.seed + Math.imul(epoch, 0x632be5ab)) >>> 0);
    return { key, start: start % EPOCH };
  }

  /** `n` uniform values in (0, 1). */
  uniform(n: number, out: Float32Array | Float64Array = new Float64Array(n)): Float32Array | Float64Array {
    const { key, start } = this.reserve(n);
    for (let i = 0; i < n; i++) out[i] = bitsToUniform(randomBits(key, (start + i) >>> 0));
    return out;
  }

  /** `n` standard normal values (Box-Muller on pairs of counters). */
  normal(n: number, out: Float32Array | Float64Array = new Float64Array(n)): Float32Array | Float64Array {
    const { key, start } = this.reserve(2 * Math.ceil(n / 2));
    for (let i = 0; i < n; i += 2) {
      const u1 = bitsToUniform(randomBits(key, (start + i) >>> 0));
      const u2 = bitsToUniform(randomBits(key, (start + i + 1) >>> 0));
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    const { key, start } = this.reserve(2);
    // 53 bits from two draws, so that large n has no visible bias.
    const hi = randomBits(key, start >>> 0) >>> 5;
    const lo = randomBits(key, (start + 1) >>> 0) >>> 6;
    return Math.floor(((hi * 67108864 + lo) / 9007199254740992) * n);
  }
}
