// Errors of the data layer. Each message names the file, option or value at
// fault, so that a person can act on it without reading the code.

import { MixprecError, type ErrorCode } from '../errors.js';

/** Data that cannot be found, read, split or batched. */
export class DataError extends MixprecError {
  override readonly code: ErrorCode = 'DATA_INVALID';
}

/** An unknown tokenizer, or token ids a tokenizer cannot decode. */
export class TokenizerError extends MixprecError {
  override readonly code: ErrorCode = 'TOKENIZER_INVALID';
}
