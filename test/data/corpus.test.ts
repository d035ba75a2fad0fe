import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  brownCorpusDir,
  concatenateTexts,
  globToRegExp,
  loadBrownCorpus,
  loadTextData,
  resolveDataFiles,
  splitText,
  stripBrownTags,
  type BrownCorpus,
} from '../../src/data/corpus.js';
import { DataError } from '../../src/data/errors.js';

test('stripBrownTags: words without tags, punctuation attached, quotes straightened, one paragraph per line', () => {
  const tagged = [
    '',
    '',
    "\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc Allen/np Jr./np ./.",
    'It/pps cost/vbd $5/nns (/( 1/2/cd of/in it/ppo )/) ;/; and/or/cc ?/.',
    '',
    '',
    "\tHe/pps said/vbd ,/, '/' Don't/do* worry/vb '/' ./.",
    '',
    '',
    'Merger/nn-hl proposed/vbn-hl',
    'However/wrb ,/, the/at jury/nn agreed/vbd ./.',
    '',
  ].join('\n');
  assert.equal(
    stripBrownTags(tagged),
    'The jury said "no evidence", and Allen Jr. It cost $5 (1/2 of it); and/or?\n' +
      "He said, 'Don't worry'.\n" +
      'Merger proposed\n' +
      'However, the jury agreed.\n',
  );
});

let corpus: BrownCorpus;
before(async () => {
  corpus = await loadBrownCorpus();
});

test('Brown corpus: no part-of-speech tags remain in the plain text', async () => {
  // Every tag that occurs in the tagged files, e.g. 'nn', 'np$', 'vbn-tl', 'ppss+md'.
  const tags = new Set<string>();
  const dir = brownCorpusDir();
  for (const document of corpus.documents.slice(0, 40)) {
    for (const token of (await fs.readFile(path.join(dir, document.id), 'utf8')).split(/\s+/)) {
      if (token.includes('/')) tags.add(token.slice(token.lastIndexOf('/') + 1));
    }
  }
  assert.ok(tags.has('nn') && tags.has('at') && tags.has('vbd'));
  // One word of the corpus itself, a unit written 'material/hr./*0F./in.', ends like a tag.
  const genuine = new Set(['material/hr./*0F./in.']);
  for (const text of [corpus.train, corpus.validation]) {
    const remnants = text.split(/\s+/).filter((word) => {
      if (genuine.has(word)) return false;
      const slash = word.lastIndexOf('/');
      return slash >= 0 && tags.has(word.slice(slash + 1).replace(/[.,;:?!)"']+$/, ''));
    });
    assert.deepEqual(remnants.slice(0, 5), []);
  }
  // Quote tokens became straight quotes; '' survives only in inch marks such as 1/2''.
  assert.ok(!corpus.train.includes('``'));
  assert.deepEqual(corpus.train.match(/(^|[^0-9])''/g), null);
});

test('Brown corpus: a fixed split, every 10th document in index order is validation', () => {
  const ids = corpus.documents.map((d) => d.id);
  assert.equal(ids.length, 500);
  assert.equal(ids[0], 'ca01');
  assert.equal(ids[499], 'cr09');
  const validation = corpus.documents.filter((d) => d.split === 'validation');
  const train = corpus.documents.filter((d) => d.split === 'train');
  assert.equal(validation.length, 50);
  assert.equal(train.length, 450);
  assert.deepEqual(validation.map((d) => d.id).slice(0, 3), ['ca10', 'ca20', 'ca30']);
  assert.ok(validation.every((d) => corpus.documents.indexOf(d) % 10 === 9));
  // Disjoint and complete: each split is exactly its documents' text.
  assert.equal(corpus.train, train.map((d) => d.text).join('\n'));
  assert.equal(corpus.validation, validation.map((d) => d.text).join('\n'));
  assert.ok(!corpus.train.includes(validation[0].text.slice(0, 200)));
  // Roughly 90/10 by size, and every genre letter (a-r, no i, o, q) on both sides.
  const fraction = corpus.validation.length / (corpus.train.length + corpus.validation.length);
  assert.ok(fraction > 0.08 && fraction < 0.12, `validation fraction ${fraction}`);
  const genres = (docs: typeof train) => new Set(docs.map((d) => d.id[1]));
  assert.equal(genres(validation).size, 15);
  assert.equal(genres(train).size, 15);
});

test('Brown corpus: loading twice gives the same text', async () => {
  const again = await loadBrownCorpus();
  assert.equal(again.train, corpus.train);
  assert.equal(again.validation, corpus.validation);
});

test('Brown corpus: byte statistics of the plain text are those of English prose', () => {
  // Unigram entropy and H(next byte | previous byte), in nats per byte. Leftover
  // tags or mangled spacing would move them well outside these bounds.
  const bytes = new TextEncoder().encode(corpus.train);
  const unigram = new Float64Array(256);
  const bigram = new Float64Array(65536);
  for (let i = 0; i < bytes.length; i++) {
    unigram[bytes[i]]++;
    if (i > 0) bigram[bytes[i - 1] * 256 + bytes[i]]++;
  }
  const entropy = (counts: Float64Array, total: number) => {
    let h = 0;
    for (const n of counts) if (n > 0) h -= (n / total) * Math.log(n / total);
    return h;
  };
  const previous = new Float64Array(256);
  for (let i = 0; i < 65536; i++) previous[i >> 8] += bigram[i];
  const h1 = entropy(unigram, bytes.length);
  const h2 = entropy(bigram, bytes.length - 1) - entropy(previous, bytes.length - 1);
  assert.ok(h1 > 3.0 && h1 < 3.15, `unigram entropy ${h1}`);
  assert.ok(h2 > 2.35 && h2 < 2.5, `bigram entropy ${h2}`);
  assert.ok(bytes.length > 5_000_000 && bytes.length < 6_000_000, `${bytes.length} bytes`);
});

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-corpus-'));
  const files: Record<string, string | Uint8Array> = {
    'a.txt': 'alpha\n',
    'b.md': 'beta',
    'sub/c.txt': 'gamma\n',
    'sub/deep/d.txt': 'delta\n',
    'sub/e1.txt': 'epsilon\n',
    '.hidden/x.txt': 'hidden\n',
    '.secret.txt': 'secret\n',
    'image.bin': new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 1]),
    'empty/zero.txt': '',
  };
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const relative = (files: string[]) => files.map((f) => path.relative(dir, f).split(path.sep).join('/'));

test('data: a single file, split so that the last 10% is validation', async () => {
  const file = path.join(dir, 'big.txt');
  const text = 'abcdefghij'.repeat(10);
  await fs.writeFile(file, text);
  const data = await loadTextData(file);
  assert.equal(data.train, text.slice(0, 90));
  assert.equal(data.validation, text.slice(90));
  assert.deepEqual(data.files, [path.resolve(file)]);
  await fs.rm(file);
});

test('data: a directory gives its text files, recursively and sorted, skipping hidden and binary files', async () => {
  await fs.rm(path.join(dir, 'empty'), { recursive: true });
  try {
    const files = await resolveDataFiles(dir);
    assert.deepEqual(relative(files), ['a.txt', 'b.md', 'sub/c.txt', 'sub/deep/d.txt', 'sub/e1.txt']);
    const data = await loadTextData(dir);
    assert.equal(data.train + data.validation, 'alpha\nbeta\ngamma\ndelta\nepsilon\n');
  } finally {
    await fs.mkdir(path.join(dir, 'empty'));
    await fs.writeFile(path.join(dir, 'empty/zero.txt'), '');
  }
});

test('data: glob patterns with *, ** and ?', async () => {
  assert.deepEqual(relative(await resolveDataFiles(path.join(dir, '*.txt'))), ['a.txt']);
  assert.deepEqual(relative(await resolveDataFiles(path.join(dir, 'sub', '*.txt'))), ['sub/c.txt', 'sub/e1.txt']);
  assert.deepEqual(relative(await resolveDataFiles(path.join(dir, '**', '?.txt'))), ['a.txt', 'sub/c.txt', 'sub/deep/d.txt']);
  assert.deepEqual(relative(await resolveDataFiles(path.join(dir, 'sub', '**'))), ['sub/c.txt', 'sub/deep/d.txt', 'sub/e1.txt']);
  assert.deepEqual(relative(await resolveDataFiles(path.join(dir, 's?b', 'e?.txt'))), ['sub/e1.txt']);
});

test('globToRegExp: segments never cross a slash except through **', () => {
  assert.ok(globToRegExp('*.txt').test('a.txt'));
  assert.ok(!globToRegExp('*.txt').test('sub/a.txt'));
  assert.ok(globToRegExp('**/*.txt').test('a.txt'));
  assert.ok(globToRegExp('**/*.txt').test('x/y/a.txt'));
  assert.ok(!globToRegExp('**/*.txt').test('x/a.md'));
  assert.ok(globToRegExp('a?c').test('abc'));
  assert.ok(!globToRegExp('a?c').test('a/c'));
  assert.ok(globToRegExp('v1.(x)+.txt').test('v1.(x)+.txt'));
  assert.ok(!globToRegExp('v1.txt').test('v12txt'));
});

test('data: errors name the missing path, the pattern without matches, and the empty file', async () => {
  const missing = path.join(dir, 'nope.txt');
  await assert.rejects(loadTextData(missing), (e: Error) => e instanceof DataError && e.message.includes(missing));
  const pattern = path.join(dir, '*.csv');
  await assert.rejects(loadTextData(pattern), (e: Error) => e instanceof DataError && e.message.includes(pattern) && /matched no files/.test(e.message));
  const empty = path.join(dir, 'empty', 'zero.txt');
  await assert.rejects(loadTextData(empty), (e: Error) => e instanceof DataError && e.message.includes(empty) && /empty/.test(e.message));
  const binaryOnly = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-binary-'));
  await fs.writeFile(path.join(binaryOnly, 'x.bin'), new Uint8Array([1, 0, 2]));
  await assert.rejects(loadTextData(binaryOnly), (e: Error) => e instanceof DataError && /no text files/.test(e.message));
  await fs.rm(binaryOnly, { recursive: true });
});

test('splitText and concatenateTexts: files joined by newlines, the cut never splits a surrogate pair', () => {
  assert.equal(concatenateTexts(['a', 'b\n', 'c']), 'a\nb\nc');
  const text = 'x'.repeat(8) + '😀' + 'y'; // 11 UTF-16 units; 90% falls inside the emoji
  const { train, validation } = splitText(text);
  assert.equal(train + validation, text);
  assert.equal(train, 'x'.repeat(8));
  assert.equal(validation, '😀y');
});
