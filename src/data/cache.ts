// Tokenise once, then reuse: the token ids of a (tokenizer, source, split) are
// stored as one flat file, keyed by a hash of that identity, and read back on
// later runs. A file that is truncated or altered fails its header or checksum
// check and is rebuilt, never trusted.
//
// File layout (little-endian, as typed arrays are on every supported host):
//   bytes  0..7   magic "MXPTOK01"
//   bytes  8..11  bytes per token (2: Uint16, 4: Int32)
//   bytes 12..15  vocabulary size
//   bytes 16..19  number of training tokens
//   bytes 20..23  number of validation tokens
//   bytes 24..27  FNV-1a (32-bit) checksum of the payload
//   bytes 28..31  zero
//   bytes 32..    payload: training tokens, then validation tokens

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  BROWN_SPLIT,
  BROWN_TEXT_VERSION,
  CUSTOM_SPLIT,
  brownCorpusVersion,
  brownSource,
  filesSource,
  loadBrownCorpus,
  loadTextData,
  resolveDataFiles,
  type TextSplits,
} from './corpus.js';
import { writeFileAtomic } from '../io/atomic.js';
import { DataError } from './errors.js';
import type { Tokenizer } from './tokenizer.js';

/** Token ids as stored: Uint16 when the vocabulary fits in 16 bits, else Int32. */
export type TokenArray = Uint16Array | Int32Array;

export interface TokenizedSplits {
  train: TokenArray;
  validation: TokenArray;
  /** What the text came from, for logs and reports. */
  source: string;
  /** How the split was made, in words. */
  split: string;
  /** True when the tokens were read from the cache rather than tokenised now. */
  cached: boolean;
  cachePath: string;
  /** Why an existing cache file was rejected and rebuilt, where one was. */
  rebuiltBecause?: string;
}

export interface LoadTokenizedSplitsOptions {
  /** A text file, a directory of text files or a glob pattern; the Brown corpus when absent. */
  data?: string;
  tokenizer: Tokenizer;
  /** Where cache files live; `.cache/mixprec` under the current directory by default. */
  cacheDir?: string;
}

export const DEFAULT_CACHE_DIR = path.join('.cache', 'mixprec');
const MAGIC = 'MXPTOK01';
const HEADER_BYTES = 32;
/** Bumped whenever the file layout or the key changes. */
const CACHE_FORMAT = 1;

/** 32-bit FNV-1a of the bytes. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

/** Token ids in the narrowest storage type for `vocabSize`; every id must lie in [0, vocabSize). */
export function toTokenArray(ids: ArrayLike<number>, vocabSize: number): TokenArray {
  const out = vocabSize <= 65536 ? new Uint16Array(ids.length) : new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < vocabSize)) throw new DataError(`token id ${id} at position ${i} is outside the vocabulary [0, ${vocabSize})`);
    out[i] = id;
  }
  return out;
}

/** Serialises both splits into the cache file layout. */
export function encodeTokenFile(train: TokenArray, validation: TokenArray, vocabSize: number): Uint8Array {
  const width = train.BYTES_PER_ELEMENT;
  if (validation.BYTES_PER_ELEMENT !== width) throw new DataError('training and validation tokens must share one storage type');
  const file = new Uint8Array(HEADER_BYTES + (train.length + validation.length) * width);
  const payload = file.subarray(HEADER_BYTES);
  payload.set(new Uint8Array(train.buffer, train.byteOffset, train.byteLength));
  payload.set(new Uint8Array(validation.buffer, validation.byteOffset, validation.byteLength), train.byteLength);
  const header = new DataView(file.buffer);
  for (let i = 0; i < MAGIC.length; i++) file[i] = MAGIC.charCodeAt(i);
  header.setUint32(8, width, true);
  header.setUint32(12, vocabSize, true);
  header.setUint32(16, train.length, true);
  header.setUint32(20, validation.length, true);
  header.setUint32(24, fnv1a(payload), true);
  return file;
}

/** Parses a cache file; returns the reason instead when it is not a complete, intact file for `vocabSize`. */
export function decodeTokenFile(
  file: Uint8Array,
  vocabSize: number,
): { train: TokenArray; validation: TokenArray } | { invalid: string } {
  if (file.length < HEADER_BYTES) return { invalid: `file is ${file.length} bytes, shorter than its header` };
  const magic = String.fromCharCode(...file.subarray(0, MAGIC.length));
  if (magic !== MAGIC) return { invalid: 'bad magic number' };
  const header = new DataView(file.buffer, file.byteOffset, HEADER_BYTES);
  const width = header.getUint32(8, true);
  const storedVocab = header.getUint32(12, true);
  const trainLength = header.getUint32(16, true);
  const validationLength = header.getUint32(20, true);
  const expectedWidth = vocabSize <= 65536 ? 2 : 4;
  if (width !== expectedWidth || storedVocab !== vocabSize) {
    return { invalid: `stored for vocabulary ${storedVocab} at ${width} bytes per token, expected ${vocabSize} at ${expectedWidth}` };
  }
  const expectedBytes = HEADER_BYTES + (trainLength + validationLength) * width;
  if (file.length !== expectedBytes) return { invalid: `file is ${file.length} bytes, its header says ${expectedBytes}` };
  const payload = file.subarray(HEADER_BYTES);
  if (fnv1a(payload) !== header.getUint32(24, true)) return { invalid: 'checksum mismatch' };
  // Copied into fresh buffers: the file's bytes need not be aligned for a typed-array view.
  const copy = new Uint8Array(payload);
  const all = width === 2 ? new Uint16Array(copy.buffer) : new Int32Array(copy.buffer);
  return { train: all.slice(0, trainLength), validation: all.slice(trainLength) };
}

/** Writes through `writeFileAtomic`, so a reader (or a later run after a crash) never sees a partial file. */
async function writeCacheFile(file: string, bytes: Uint8Array): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, bytes);
  } catch (e) {
    throw new DataError(`cannot write token cache '${file}': ${(e as Error).message}`);
  }
}

/**
 * What the cached tokens depend on. Custom data is identified by its files'
 * paths, sizes and modification times, so editing a file invalidates the cache
 * without the files being read again on a hit.
 */
async function sourceIdentity(data: string | undefined): Promise<{ identity: unknown; source: string; files?: string[] }> {
  if (data === undefined) {
    const version = await brownCorpusVersion();
    return { identity: { source: 'brown', version, text: BROWN_TEXT_VERSION, split: BROWN_SPLIT }, source: brownSource(version) };
  }
  const files = await resolveDataFiles(data);
  const stats = await Promise.all(
    files.map(async (file) => {
      const s = await fs.stat(file);
      return { file, size: s.size, mtimeMs: s.mtimeMs };
    }),
  );
  return { identity: { source: 'files', files: stats, split: CUSTOM_SPLIT }, source: filesSource(data, files), files };
}

/**
 * The training and validation tokens of `data` (the Brown corpus when absent)
 * under `tokenizer`: read from the cache when an intact file for the same
 * identity exists, else tokenised and cached.
 */
export async function loadTokenizedSplits(options: LoadTokenizedSplitsOptions): Promise<TokenizedSplits> {
  const { data, tokenizer } = options;
  const { identity, source, files } = await sourceIdentity(data);
  const key = createHash('sha256')
    .update(JSON.stringify({ format: CACHE_FORMAT, tokenizer: tokenizer.name, vocabSize: tokenizer.vocabSize, identity }))
    .digest('hex')
    .slice(0, 20);
  const cachePath = path.resolve(options.cacheDir ?? DEFAULT_CACHE_DIR, `${data === undefined ? 'brown' : 'data'}-${tokenizer.name}-${key}.tokens`);
  const split = data === undefined ? BROWN_SPLIT : CUSTOM_SPLIT;

  let rebuiltBecause: string | undefined;
  const existing = await fs.readFile(cachePath).catch(() => undefined);
  if (existing !== undefined) {
    const decoded = decodeTokenFile(existing, tokenizer.vocabSize);
    if (!('invalid' in decoded)) return { ...decoded, source, split, cached: true, cachePath };
    rebuiltBecause = decoded.invalid;
  }

  const text: TextSplits = data === undefined ? await loadBrownCorpus() : await loadTextData(data, files);
  const train = toTokenArray(tokenizer.encode(text.train), tokenizer.vocabSize);
  const validation = toTokenArray(tokenizer.encode(text.validation), tokenizer.vocabSize);
  await writeCacheFile(cachePath, encodeTokenFile(train, validation, tokenizer.vocabSize));
  return { train, validation, source, split, cached: false, cachePath, ...(rebuiltBecause ? { rebuiltBecause } : {}) };
}
