// Counters with chosen random words, to test decisions at their edges (dropout's keep threshold).

import assert from 'node:assert/strict';
import { randomBits } from '../../src/backend/random.js';

/** The inverse of a multiplication by odd c modulo 2^32 (Newton's iteration). */
function inverseOdd(c: number): number {
  let x = c;
  for (let k = 0; k < 5; k++) x = Math.imul(x, 2 - Math.imul(c, x));
  return x >>> 0;
}

/** The inverse of mix32 (each of its steps is a bijection of 32-bit words). */
function unmix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, inverseOdd(0x846ca68b)) >>> 0;
  x = (x ^ (x >>> 15) ^ (x >>> 30)) >>> 0;
  x = Math.imul(x, inverseOdd(0x7feb352d)) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The counter i with randomBits(key, i) === bits. */
export function counterOf(key: number, bits: number): number {
  const i = (unmix32((unmix32(bits) - key) >>> 0) ^ key) >>> 0;
  assert.equal(randomBits(key, i), bits);
  return i;
}
