// Tokenizers: text to token ids and back. This module runs in browsers as well
// as in Node (no file system), and loads the 50k-entry GPT-2 encoding only when
// a GPT-2 tokenizer is asked for.

import { TokenizerError } from './errors.js';

export type TokenizerName = 'byte' | 'gpt2';

export const TOKENIZER_NAMES: readonly TokenizerName[] = ['byte', 'gpt2'];

export interface Tokenizer {
  readonly name: TokenizerName;
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  /** The id that separates documents, where the tokenizer has one. */
  readonly eotToken?: number;
}

function checkIds(tokenizer: Tokenizer, ids: ArrayLike<number>): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= tokenizer.vocabSize) {
      throw new TokenizerError(
        `${tokenizer.name} tokenizer cannot decode id ${id} at position ${i}: ids must be integers in [0, ${tokenizer.vocabSize})`,
      );
    }
  }
}

/** UTF-8 bytes as tokens: vocabulary 256, the default for small models. */
export class ByteTokenizer implements Tokenizer {
  readonly name = 'byte' as const;
  readonly vocabSize = 256;
  private readonly encoder = new TextEncoder();
  // Sampled byte sequences may be invalid UTF-8; they decode to U+FFFD instead of failing.
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  encode(text: string): Int32Array {
    return Int32Array.from(this.encoder.encode(text));
  }

  decode(ids: ArrayLike<number>): string {
    checkIds(this, ids);
    return this.decoder.decode(Uint8Array.from(ids));
  }
}

/** The part of gpt-tokenizer's encoding API used here. */
interface BpeEncoding {
  encode(text: string, options?: { disallowedSpecial?: Set<string> }): number[];
  decode(ids: Iterable<number>): string;
}

/** GPT-2's byte-level BPE (the r50k_base encoding): vocabulary 50257, end-of-text 50256. */
export class GPT2Tokenizer implements Tokenizer {
  readonly name = 'gpt2' as const;
  readonly vocabSize = 50257;
  readonly eotToken = 50256;
  private static loading: Promise<GPT2Tokenizer> | undefined;

  private constructor(private readonly encoding: BpeEncoding) {}

  /** Loads the encoding on first use (about half a megabyte of merge ranks); later calls share it. */
  static load(): Promise<GPT2Tokenizer> {
    GPT2Tokenizer.loading ??= import('gpt-tokenizer/encoding/r50k_base').then(
      (module) => new GPT2Tokenizer(module as BpeEncoding),
    );
    return GPT2Tokenizer.loading;
  }

  /** Text is encoded as plain text: a literal "<|endoftext|>" in the data is not the special token. */
  encode(text: string): Int32Array {
    return Int32Array.from(this.encoding.encode(text, { disallowedSpecial: new Set() }));
  }

  decode(ids: ArrayLike<number>): string {
    checkIds(this, ids);
    return this.encoding.decode(Array.from(ids));
  }
}

/** The tokenizer called `name` ('byte' or 'gpt2'). */
export async function loadTokenizer(name: string): Promise<Tokenizer> {
  switch (name) {
    case 'byte':
      return new ByteTokenizer();
    case 'gpt2':
      return GPT2Tokenizer.load();
    default:
      throw new TokenizerError(`unknown tokenizer '${name}': valid names are ${TOKENIZER_NAMES.map((n) => `'${n}'`).join(', ')}`);
  }
}
