import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenizerError } from '../../src/data/errors.js';
import { ByteTokenizer, GPT2Tokenizer, loadTokenizer, type Tokenizer } from '../../src/data/tokenizer.js';

test('byte tokenizer: ids are the UTF-8 bytes, and decoding round-trips multi-byte text', () => {
  const tokenizer: Tokenizer = new ByteTokenizer();
  assert.equal(tokenizer.vocabSize, 256);
  assert.equal(tokenizer.eotToken, undefined);
  assert.deepEqual(Array.from(tokenizer.encode('Aé€😀')), [0x41, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]);
  const text = 'naïve café — 日本語 🎉\nline two';
  const ids = tokenizer.encode(text);
  assert.ok(ids instanceof Int32Array);
  assert.equal(ids.length, new TextEncoder().encode(text).length);
  assert.equal(tokenizer.decode(ids), text);
});

test('byte tokenizer: invalid UTF-8 decodes with replacement characters instead of failing', () => {
  const tokenizer = new ByteTokenizer();
  // A lone continuation byte, then a truncated 3-byte sequence.
  assert.equal(tokenizer.decode([0x61, 0x80, 0x62, 0xe2, 0x82]), 'a\ufffdb\ufffd');
});

test('byte tokenizer: ids outside the vocabulary are an error naming the id and position', () => {
  assert.throws(() => new ByteTokenizer().decode([65, 256]), (e: Error) => e instanceof TokenizerError && /256/.test(e.message) && /position 1/.test(e.message));
});

test('gpt2 tokenizer: the GPT-2 encoding, vocabulary 50257 and end-of-text 50256', async () => {
  const tokenizer = await loadTokenizer('gpt2');
  assert.ok(tokenizer instanceof GPT2Tokenizer);
  assert.equal(tokenizer.name, 'gpt2');
  assert.equal(tokenizer.vocabSize, 50257);
  assert.equal(tokenizer.eotToken, 50256);
  assert.deepEqual(Array.from(tokenizer.encode('Hello world')), [15496, 995]);
  assert.equal(tokenizer.decode([15496, 995, 50256]), 'Hello world<|endoftext|>');
  const text = 'The jury said, "considering the widespread interest" — naïve 日本';
  assert.equal(tokenizer.decode(tokenizer.encode(text)), text);
  // The encoding is loaded once and shared.
  assert.equal(await loadTokenizer('gpt2'), tokenizer);
});

test('gpt2 tokenizer: a literal end-of-text marker in the data is plain text, not the special token', async () => {
  const tokenizer = await loadTokenizer('gpt2');
  const ids = Array.from(tokenizer.encode('a <|endoftext|> b'));
  assert.ok(!ids.includes(50256));
  assert.equal(tokenizer.decode(ids), 'a <|endoftext|> b');
  assert.throws(() => tokenizer.decode([50257]), TokenizerError);
});

test('loadTokenizer: the byte tokenizer, and an unknown name is an error listing the valid names', async () => {
  assert.equal((await loadTokenizer('byte')).name, 'byte');
  await assert.rejects(loadTokenizer('bpe'), (e: Error) => e.name === 'TokenizerError' && /'bpe'/.test(e.message) && /'byte', 'gpt2'/.test(e.message));
});
