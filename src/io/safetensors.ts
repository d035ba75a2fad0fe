// The safetensors format (Hugging Face), read and written without holding a file twice.
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
//     "__metadata__": { "<key>": "<string>" } }
// then the data buffer. Offsets are relative to the start of the data buffer; tensors
// are row-major, little-endian. A file is accepted under the rules the reference
// implementation enforces: header at most 100 MB and starting with '{', every
// tensor's byte length equal to its element count times its item size, and the
// tensors covering the data buffer exactly, without gap, overlap or trailing bytes.
// A name given twice in the header is refused too (JSON.parse would keep one silently).
// Every check runs at open, so a bad file fails before any tensor is used.

import { open, type FileHandle } from 'node:fs/promises';
import { decode16 } from '../dtype/codec.js';
import { sizeOf } from '../dtype/shape.js';
import type { DType } from '../dtype/dtype.js';
import { writeAll, writeFileAtomic } from './atomic.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'U8' | 'BOOL';

const ITEM_SIZE: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8, U8: 1, BOOL: 1 };

export const SAFETENSORS_DTYPES = Object.keys(ITEM_SIZE) as SafetensorsDType[];

/** Largest header accepted, as in the reference implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(ITEM_SIZE, s);
}

export function safetensorsItemSize(dtype: SafetensorsDType): number {
  return ITEM_SIZE[dtype];
}

const TO_MIXPREC: Partial<Record<SafetensorsDType, DType>> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64', I32: 'int32',
};

/** The mixprec dtype for a safetensors dtype; undefined for I64, U8 and BOOL, which have none. */
export function toMixprecDType(dtype: SafetensorsDType): DType | undefined {
  return TO_MIXPREC[dtype];
}

export function toSafetensorsDType(dtype: DType): SafetensorsDType {
  switch (dtype) {
    case 'float32': return 'F32';
    case 'float16': return 'F16';
    case 'bfloat16': return 'BF16';
    case 'float64': return 'F64';
    case 'int32': return 'I32';
  }
}

/** Tensor data as stored: F16 and BF16 as raw Uint16Array bits, BOOL and U8 as Uint8Array. */
export type TensorData = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

type ArrayType = { name: string; is: (d: unknown) => boolean; make: (buffer: ArrayBuffer) => TensorData };

/** The typed array each dtype is read into and must be written from. */
const ARRAY_TYPE: Record<SafetensorsDType, ArrayType> = {
  F32: { name: 'Float32Array', is: (d) => d instanceof Float32Array, make: (b) => new Float32Array(b) },
  F16: { name: 'Uint16Array', is: (d) => d instanceof Uint16Array, make: (b) => new Uint16Array(b) },
  BF16: { name: 'Uint16Array', is: (d) => d instanceof Uint16Array, make: (b) => new Uint16Array(b) },
  F64: { name: 'Float64Array', is: (d) => d instanceof Float64Array, make: (b) => new Float64Array(b) },
  I32: { name: 'Int32Array', is: (d) => d instanceof Int32Array, make: (b) => new Int32Array(b) },
  I64: { name: 'BigInt64Array', is: (d) => d instanceof BigInt64Array, make: (b) => new BigInt64Array(b) },
  U8: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array, make: (b) => new Uint8Array(b) },
  BOOL: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array, make: (b) => new Uint8Array(b) },
};

export class SafetensorsError extends MixprecError {
  override readonly code: ErrorCode = 'SAFETENSORS_INVALID';
  /**
   * @param file the file read or written
   * @param fault what is wrong, in words
   * @param tensor the tensor at fault, when there is one
   */
  constructor(readonly file: string, fault: string, readonly tensor?: string, options?: { cause?: unknown }) {
    super(`${file}: ${tensor === undefined ? '' : `tensor '${tensor}': `}${fault}`, options);
  }
}

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Position of the first byte in the file (data buffer start + data_offsets[0]). */
  byteOffset: number;
  byteLength: number;
}

export interface RawTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorData;
}

export interface SafetensorsHeader {
  file: string;
  /** N, the JSON header's length in bytes (padding included). */
  headerLength: number;
  /** Position of the data buffer in the file: 8 + N. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In data order (ascending byteOffset). */
  tensors: TensorInfo[];
}

// Typed arrays use the host byte order; the format is little-endian.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndianHost(file: string): void {
  if (!HOST_IS_LITTLE_ENDIAN) throw new SafetensorsError(file, 'safetensors needs a little-endian host');
}

/** Reads exactly `length` bytes at `position` into `into`, or fails naming the shortfall. */
async function readExactly(handle: FileHandle, file: string, into: Uint8Array, position: number, what: string, tensor?: string): Promise<void> {
  const CHUNK = 1 << 30; // a single read is limited to under 2 GiB
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, Math.min(CHUNK, into.byteLength - done), position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(file, `file ended after ${position + done} bytes while reading ${what} (was it truncated?)`, tensor);
    }
    done += bytesRead;
  }
}

function describeValue(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Checks one header entry; returns its dtype, shape and offsets relative to the data buffer. */
function parseTensorEntry(file: string, name: string, entry: unknown, dataLength: number): { dtype: SafetensorsDType; shape: number[]; begin: number; end: number } {
  const fail = (fault: string): never => { throw new SafetensorsError(file, fault, name); };
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`header entry is ${describeValue(entry)}, not an object with dtype, shape and data_offsets`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;

  if (!isSafetensorsDType(dtype)) fail(`unknown dtype ${describeValue(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
  const dt = dtype as SafetensorsDType;

  if (!Array.isArray(shape)) fail(`shape ${describeValue(shape)} is not an array`);
  for (const d of shape as unknown[]) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) fail(`shape ${describeValue(shape)} has entry ${describeValue(d)}, not a non-negative integer`);
  }
  const dims = shape as number[];

  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    fail(`data_offsets ${describeValue(offsets)} is not a pair of non-negative integers [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(`data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataLength) fail(`data_offsets [${begin}, ${end}] are out of range: the data buffer holds ${dataLength} bytes`);

  // A product beyond 2^53 is inexact but then far above any in-range length, so the comparison stays exact.
  const expected = sizeOf(dims) * ITEM_SIZE[dt];
  if (expected !== end - begin) {
    fail(`byte length ${end - begin} (data_offsets [${begin}, ${end}]) does not match dtype ${dt} x shape [${dims.join(', ')}] = ${expected} bytes`);
  }
  return { dtype: dt, shape: dims, begin, end };
}

/** Reads and validates the header of an open file. */
async function readHeader(handle: FileHandle, file: string): Promise<SafetensorsHeader> {
  const fileSize = (await handle.stat()).size;
  if (fileSize < 8) throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);

  const lengthBytes = new Uint8Array(8);
  await readExactly(handle, file, lengthBytes, 0, 'the header length');
  const declared = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  // Bounded before any allocation: the length comes from an untrusted file.
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, `header length ${declared} exceeds the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  }
  const headerLength = Number(declared);
  if (8 + headerLength > fileSize) {
    throw new SafetensorsError(file, `header length ${headerLength} goes beyond the end of the file (${fileSize} bytes)`);
  }

  const headerBytes = new Uint8Array(headerLength);
  await readExactly(handle, file, headerBytes, 8, 'the header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (err) {
    throw new SafetensorsError(file, 'header is not valid UTF-8', undefined, { cause: err });
  }
  // As the reference implementation requires; it also rules out JSON that is not an object.
  if (!text.startsWith('{')) throw new SafetensorsError(file, `header is not a JSON object: it starts with ${describeValue(text.slice(0, 16))}, not '{'`);
  let json: object;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(file, `header is not valid JSON: ${(err as Error).message}`, undefined, { cause: err });
  }

  const duplicate = duplicateKey(text, Object.keys(json).length);
  if (duplicate !== undefined) throw new SafetensorsError(file, 'appears twice in the header (which entry is meant is ambiguous)', duplicate);

  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const entries: (TensorInfo & { begin: number; end: number })[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(file, entry);
      continue;
    }
    const { dtype, shape, begin, end } = parseTensorEntry(file, name, entry, dataLength);
    entries.push({ name, dtype, shape, byteOffset: dataStart + begin, byteLength: end - begin, begin, end });
  }

  // The tensors, in data order, must tile the data buffer exactly.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: string | undefined;
  for (const t of entries) {
    if (t.begin < covered) {
      throw new SafetensorsError(file, `data_offsets [${t.begin}, ${t.end}] overlap tensor '${previous}', which ends at ${covered}`, t.name);
    }
    if (t.begin > covered) {
      const after = previous === undefined ? 'at the start of the data buffer' : `after tensor '${previous}'`;
      throw new SafetensorsError(file, `data_offsets [${t.begin}, ${t.end}] leave a gap of ${t.begin - covered} bytes ${after} (offsets must cover the data buffer contiguously)`, t.name);
    }
    covered = t.end;
    previous = t.name;
  }
  if (covered !== dataLength) {
    throw new SafetensorsError(file, `${dataLength - covered} trailing bytes after offset ${covered} of the data buffer are not covered by any tensor`);
  }

  const tensors = entries.map(({ name, dtype, shape, byteOffset, byteLength }) => ({ name, dtype, shape, byteOffset, byteLength }));
  return { file, headerLength, dataStart, metadata, tensors };
}

/**
 * The first key that the valid JSON object `text` holds twice, if any: JSON.parse
 * keeps only the last of the two, silently. `distinct` is the parsed object's key
 * count; when the text has as many keys, there is no duplicate to look for.
 */
function duplicateKey(text: string, distinct: number): string | undefined {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      let next = end + 1;
      while (' \t\n\r'.includes(text[next]!)) next++;
      if (depth === 1 && text[next] === ':') keys.push(JSON.parse(text.slice(i, end + 1)) as string);
      i = end;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  if (keys.length === distinct) return undefined;
  const seen = new Set<string>();
  return keys.find((k) => seen.has(k) || !seen.add(k));
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError(file, `${METADATA_KEY} is ${describeValue(value)}, not an object of strings`);
  }
  for (const [key, v] of Object.entries(value as object)) {
    if (typeof v !== 'string') throw new SafetensorsError(file, `${METADATA_KEY} entry '${key}' is ${describeValue(v)}, not a string`);
  }
  return Object.fromEntries(Object.entries(value as Record<string, string>));
}

/** Reads and validates only the header of a safetensors file (no tensor data is read). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const handle = await open(path, 'r');
  try {
    return await readHeader(handle, path);
  } finally {
    await handle.close();
  }
}

/**
 * A safetensors file open for reading. The whole header is validated by `open`;
 * each `read` then fetches exactly one tensor's bytes with a positioned read.
 */
export class SafetensorsReader {
  private handle: FileHandle | undefined;
  private readonly byName: Map<string, TensorInfo>;

  private constructor(handle: FileHandle, private readonly header: SafetensorsHeader) {
    this.handle = handle;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  static async open(path: string): Promise<SafetensorsReader> {
    requireLittleEndianHost(path);
    const handle = await open(path, 'r');
    try {
      return new SafetensorsReader(handle, await readHeader(handle, path));
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get file(): string {
    return this.header.file;
  }

  get metadata(): Record<string, string> {
    return { ...this.header.metadata };
  }

  /** Every tensor, in data order. */
  tensors(): TensorInfo[] {
    return this.header.tensors.map((t) => ({ ...t, shape: [...t.shape] }));
  }

  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (t === undefined) throw new SafetensorsError(this.file, `no such tensor in the file (it holds ${this.byName.size} tensors)`, name);
    return { ...t, shape: [...t.shape] };
  }

  /**
   * Checks that the file holds exactly the tensors `expected` (or at least them,
   * with `allowExtra`), naming every missing and unexpected tensor otherwise.
   */
  checkNames(expected: Iterable<string>, options: { allowExtra?: boolean } = {}): void {
    const want = new Set(expected);
    const missing = [...want].filter((n) => !this.byName.has(n));
    const extra = options.allowExtra ? [] : [...this.byName.keys()].filter((n) => !want.has(n));
    if (missing.length === 0 && extra.length === 0) return;
    const list = (names: string[]): string => names.slice(0, 10).map((n) => `'${n}'`).join(', ') + (names.length > 10 ? `, ... (${names.length} in all)` : '');
    const faults = [];
    if (missing.length > 0) faults.push(`missing tensors ${list(missing)}`);
    if (extra.length > 0) faults.push(`unexpected tensors ${list(extra)}`);
    throw new SafetensorsError(this.file, faults.join('; '));
  }

  /** One tensor's data in a fresh, aligned buffer of its own. */
  async read(name: string): Promise<RawTensor> {
    const t = this.info(name);
    return { dtype: t.dtype, shape: t.shape, data: await this.readElements(name, 0, t.byteLength / ITEM_SIZE[t.dtype]) };
  }

  /** Elements [first, first + count) of one tensor (flat) in a fresh, aligned buffer: a tensor read in pieces is never whole on the host. */
  async readElements(name: string, first: number, count: number): Promise<TensorData> {
    const t = this.info(name), item = ITEM_SIZE[t.dtype], size = t.byteLength / item;
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > size) {
      throw new SafetensorsError(this.file, `elements [${first}, ${first + count}) are not within its ${size} elements`, name);
    }
    const handle = this.handle;
    if (handle === undefined) throw new SafetensorsError(this.file, 'reader is closed', name);
    // A fresh ArrayBuffer is aligned for every element type, whatever the offset in the file.
    const buffer = new ArrayBuffer(count * item);
    await readExactly(handle, this.file, new Uint8Array(buffer), t.byteOffset + first * item, 'tensor data', name);
    return ARRAY_TYPE[t.dtype].make(buffer);
  }

  /** One tensor widened or narrowed to float32 (F64 rounds; I64 beyond 2^24 loses precision). */
  async readAsFloat32(name: string): Promise<Float32Array> {
    const { dtype, data } = await this.read(name);
    switch (dtype) {
      case 'F32': return data as Float32Array;
      case 'F16': return decode16('float16', data as Uint16Array);
      case 'BF16': return decode16('bfloat16', data as Uint16Array);
      case 'I64': return Float32Array.from(data as BigInt64Array, (v) => Number(v));
      default: return Float32Array.from(data as Float64Array | Int32Array | Uint8Array);
    }
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }
}

/** A tensor to write. `data` may be a function, called once when the tensor's turn comes. */
export interface WritableTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: TensorData | (() => Promise<TensorData>);
}

function checkShape(file: string, t: WritableTensor): void {
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(file, `shape ${describeValue(t.shape)} must be an array of non-negative integers`, t.name);
  }
  if (!Number.isSafeInteger(sizeOf(t.shape) * ITEM_SIZE[t.dtype])) {
    throw new SafetensorsError(file, `shape [${t.shape.join(', ')}] is too large`, t.name);
  }
}

function checkData(file: string, t: WritableTensor, data: TensorData): void {
  const want = ARRAY_TYPE[t.dtype];
  if (!want.is(data)) {
    const got = (data as object | undefined)?.constructor?.name ?? describeValue(data);
    throw new SafetensorsError(file, `dtype ${t.dtype} needs its data as a ${want.name}${t.dtype === 'F16' || t.dtype === 'BF16' ? ' of raw bits' : ''}, got ${got}`, t.name);
  }
  const count = sizeOf(t.shape);
  if (data.length !== count) {
    throw new SafetensorsError(file, `data has ${data.length} elements but dtype ${t.dtype} x shape [${t.shape.join(', ')}] needs ${count}`, t.name);
  }
  if (t.dtype === 'BOOL') {
    const bad = (data as Uint8Array).findIndex((v) => v > 1);
    if (bad >= 0) throw new SafetensorsError(file, `BOOL data holds ${data[bad]} at index ${bad} (only 0 and 1 are booleans)`, t.name);
  }
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes a safetensors file that Hugging Face's libraries read: tensors in name
 * order, header padded with spaces to a multiple of 8 bytes. Tensors whose data is
 * a function are fetched one at a time while writing, so a caller can stream a model
 * from a device without copying all of it at once. Everything that can be checked
 * without the data is checked before writing starts; the file appears at `path`
 * only when complete and flushed (see writeFileAtomic), and a failure leaves any
 * previous file at `path` untouched.
 */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<WritableTensor> | AsyncIterable<WritableTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  requireLittleEndianHost(path);
  const list: WritableTensor[] = [];
  const seen = new Set<string>();
  for await (const t of tensors) {
    if (typeof t.name !== 'string' || t.name === '' || t.name === METADATA_KEY) {
      throw new SafetensorsError(path, `tensor name ${describeValue(t.name)} is not allowed (a non-empty string other than '${METADATA_KEY}')`);
    }
    if (seen.has(t.name)) throw new SafetensorsError(path, 'tensor name appears twice', t.name);
    seen.add(t.name);
    if (!isSafetensorsDType(t.dtype)) throw new SafetensorsError(path, `unknown dtype ${describeValue(t.dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`, t.name);
    checkShape(path, t);
    if (typeof t.data !== 'function') checkData(path, t, t.data);
    list.push(t);
  }
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (typeof value !== 'string') throw new SafetensorsError(path, `metadata entry '${key}' is ${describeValue(value)}, not a string`);
  }
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header[METADATA_KEY] = { ...metadata };
  let offset = 0;
  for (const t of list) {
    const byteLength = sizeOf(t.shape) * ITEM_SIZE[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  if (headerLength > MAX_HEADER_BYTES) throw new SafetensorsError(path, `header would be ${headerLength} bytes, over the limit of ${MAX_HEADER_BYTES}`);
  const prefix = new Uint8Array(8 + headerLength).fill(0x20); // padding is spaces, as Hugging Face writes it
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerLength), true);
  prefix.set(json, 8);

  await writeFileAtomic(path, async (handle) => {
    await writeAll(handle, prefix);
    for (const t of list) {
      let data: TensorData;
      if (typeof t.data === 'function') {
        try {
          data = await t.data();
        } catch (err) {
          throw new SafetensorsError(path, `fetching the data failed: ${(err as Error)?.message ?? err}`, t.name, { cause: err });
        }
        checkData(path, t, data);
      } else {
        data = t.data;
      }
      await writeAll(handle, bytesOf(data));
    }
  });
}
