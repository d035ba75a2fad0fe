// Weight-only quantization of a matrix, stored as rows of output channels.
//
// A quantized matrix W [n outputs, k inputs] keeps, per row, integers q in
// [-qmax, qmax] packed into 32-bit words (element i of a row in bits
// bits*(i % perWord) of word i / perWord, two's complement, little end first, so
// the words' bytes are the row's bytes in order), and one float32 scale per group
// of `groupSize` consecutive inputs: W[n, i] ~ q[n, i] * scale[n, i / groupSize].
// Scales are symmetric absmax: scale = max |W| over the group / qmax.
// int8 has one group per row (a scale per output channel) unless told otherwise;
// int4 has groups of 32 or 64.

import { MixprecError, type ErrorCode } from '../errors.js';

export type QuantFormat = 'int8' | 'int4';

export class QuantizeError extends MixprecError {
  override readonly code: ErrorCode = 'QUANTIZE_INVALID';
}

/** Where the bits of a quantized [n, k] matrix are. */
export interface QuantLayout {
  format: QuantFormat;
  /** Output channels (rows). */
  n: number;
  /** Inputs per row. */
  k: number;
  /** Inputs sharing one scale; a divisor of k. */
  groupSize: number;
}

export const BITS: Record<QuantFormat, 8 | 4> = { int8: 8, int4: 4 };
/** Largest magnitude stored: symmetric, so -qmax..qmax. */
export const QMAX: Record<QuantFormat, number> = { int8: 127, int4: 7 };
/** Group sizes int4 takes. */
export const INT4_GROUP_SIZES = [32, 64] as const;

export function perWord(format: QuantFormat): number {
  return 32 / BITS[format];
}

/** Words per row. */
export function wordsPerRow(l: QuantLayout): number {
  return l.k / perWord(l.format);
}

export function groupsPerRow(l: QuantLayout): number {
  return l.k / l.groupSize;
}

/** Checks a layout, naming `what` (the weight) and the fault. */
export function quantLayout(format: string, n: number, k: number, groupSize: number | undefined, what: string): QuantLayout {
  if (format !== 'int8' && format !== 'int4') throw new QuantizeError(`${what}: unknown quantized format '${format}' (expected int8 or int4)`);
  const g = groupSize ?? (format === 'int8' ? k : 64);
  if (format === 'int4' && !(INT4_GROUP_SIZES as readonly number[]).includes(g)) {
    throw new QuantizeError(`${what}: int4 group size must be ${INT4_GROUP_SIZES.join(' or ')}, got ${g}`);
  }
  if (!Number.isSafeInteger(g) || g <= 0 || k % g !== 0 || g % perWord(format) !== 0) {
    throw new QuantizeError(`${what}: group size ${g} must divide the ${k} inputs and be a multiple of ${perWord(format)}`);
  }
  return { format, n, k, groupSize: g };
}

/** Quantizes w [n, k] (row-major) into packed words [n, wordsPerRow] and scales [n, groupsPerRow]. */
export function quantizeMatrix(w: ArrayLike<number>, l: QuantLayout): { words: Int32Array; scales: Float32Array } {
  const bits = BITS[l.format], qmax = QMAX[l.format], per = perWord(l.format), mask = (1 << bits) - 1;
  const groups = groupsPerRow(l), wpr = wordsPerRow(l);
  const words = new Int32Array(l.n * wpr);
  const scales = new Float32Array(l.n * groups);
  for (let r = 0; r < l.n; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * l.k + g * l.groupSize;
      let absmax = 0;
      for (let i = 0; i < l.groupSize; i++) {
        const v = w[start + i]!;
        if (!Number.isFinite(v)) throw new QuantizeError(`cannot quantize ${v} at row ${r}, input ${g * l.groupSize + i}`);
        absmax = Math.max(absmax, Math.abs(v));
      }
      const scale = Math.fround(absmax / qmax);
      scales[r * groups + g] = scale;
      for (let i = 0; i < l.groupSize; i++) {
        const q = scale === 0 ? 0 : Math.max(-qmax, Math.min(qmax, Math.round(w[start + i]! / scale)));
        const col = g * l.groupSize + i;
        words[r * wpr + Math.floor(col / per)]! |= (q & mask) << (bits * (col % per));
      }
    }
  }
  return { words, scales };
}

/** The signed integer at (row, col) of packed words. */
export function quantAt(words: ArrayLike<number>, l: QuantLayout, row: number, col: number): number {
  const bits = BITS[l.format], per = perWord(l.format);
  const word = words[row * wordsPerRow(l) + Math.floor(col / per)]!;
  return (word << (32 - bits * (col % per + 1))) >> (32 - bits);
}

/** The float32 values a quantized matrix stands for, [n, k] row-major. */
export function dequantizeMatrix(words: ArrayLike<number>, scales: ArrayLike<number>, l: QuantLayout): Float32Array {
  const out = new Float32Array(l.n * l.k);
  const groups = groupsPerRow(l);
  for (let r = 0; r < l.n; r++) {
    for (let c = 0; c < l.k; c++) out[r * l.k + c] = quantAt(words, l, r, c) * scales[r * groups + Math.floor(c / l.groupSize)]!;
  }
  return out;
}
