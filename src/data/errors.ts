// Errors of the data layer. Each message names the file, option or value at
// fault, so that a person can act on it without reading the code.

/** Data that cannot be found, read, split or batched. */
export class DataError extends Error {
  override name = 'DataError';
}

/** An unknown tokenizer, or token ids a tokenizer cannot decode. */
export class TokenizerError extends Error {
  override name = 'TokenizerError';
}
