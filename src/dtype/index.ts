// The dtype namespace: `dtypes.toFloat16Bits(x)`, `dtypes.roundTo(x, 'bfloat16')`, ...

export * from './dtype.js';
export {
  toFloat16Bits, fromFloat16Bits, toBFloat16Bits, fromBFloat16Bits, roundTo, finfo,
  encodeFloat16, decodeFloat16, encodeBFloat16, decodeBFloat16, encode16, decode16, isHalf, type HalfDType, type FInfo,
} from './codec.js';
