// Builds the demo page into web/dist: the page and its worker bundled with
// esbuild from mixprec/core (no Node built-ins), the HTML, and a slice of the
// Brown corpus as plain text, so that the page needs nothing from the network.
// The output is plain static files, servable from any static host.
import { build, type Plugin } from 'esbuild';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBrownCorpus } from '../src/data/corpus.js';

const WEB = dirname(fileURLToPath(import.meta.url));
export const DIST = join(WEB, 'dist');

/** The bundled corpus slice: whole documents, in the corpus's order, up to these many characters. */
export const BROWN_SLICE = { train: 300_000, validation: 40_000 } as const;

export interface BrownSlice {
  source: string;
  train: string;
  validation: string;
}

/** Whole Brown documents of each split until the slice's size is reached. */
export async function brownSlice(): Promise<BrownSlice> {
  const corpus = await loadBrownCorpus();
  const take = (split: 'train' | 'validation') => {
    let text = '';
    for (const d of corpus.documents.filter((doc) => doc.split === split)) {
      if (text.length + d.text.length > BROWN_SLICE[split]) break;
      text += (text ? '\n' : '') + d.text;
    }
    return text;
  };
  const train = take('train'), validation = take('validation');
  return { source: `${corpus.source}, first ${train.length.toLocaleString('en')} + ${validation.length.toLocaleString('en')} characters`, train, validation };
}

/**
 * Node built-ins in the page's bundles. The core's Node-only WebGPU loader imports
 * them dynamically and never runs where navigator.gpu exists: left external. The
 * GPT-2 config parser shares its module with the Node file reader, whose static
 * imports get an empty module: the page calls only the parser.
 */
const nodeBuiltins: Plugin = {
  name: 'node-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.kind === 'dynamic-import' ? { path: args.path, external: true } : { path: args.path, namespace: 'node-builtin-stub' });
    b.onLoad({ filter: /.*/, namespace: 'node-builtin-stub' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

interface Size { raw: number; gzip: number }

export interface BuildResult {
  /** Bytes of the page's HTML and JavaScript that every visit loads, raw and gzip-compressed. */
  code: Size;
  /** The GPT-2 tokenizer's chunk, loaded only when a GPT-2 model is fine-tuned. */
  gpt2Tokenizer: Size;
  corpus: Size;
}

/** The chunk esbuild splits off for gpt-tokenizer's r50k_base encoding (a dynamic import). */
const TOKENIZER_CHUNK = /^r50k_base-.*\.js$/;

export async function buildDemo(): Promise<BuildResult> {
  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });
  await build({
    entryPoints: { main: join(WEB, 'src/main.ts'), worker: join(WEB, 'src/worker.ts') },
    outdir: DIST, bundle: true, splitting: true, format: 'esm', platform: 'browser', target: 'es2022', minify: true,
    plugins: [nodeBuiltins],
    logLevel: 'warning',
  });
  await copyFile(join(WEB, 'index.html'), join(DIST, 'index.html'));
  await writeFile(join(DIST, 'brown.json'), JSON.stringify(await brownSlice()));
  const sizes = async (names: string[]): Promise<Size> => {
    let raw = 0, gzip = 0;
    for (const name of names) {
      const bytes = await readFile(join(DIST, name));
      raw += bytes.length;
      gzip += gzipSync(bytes, { level: 9 }).length;
    }
    return { raw, gzip };
  };
  const files = await readdir(DIST);
  return {
    code: await sizes(files.filter((f) => f !== 'brown.json' && !TOKENIZER_CHUNK.test(f))),
    gpt2Tokenizer: await sizes(files.filter((f) => TOKENIZER_CHUNK.test(f))),
    corpus: await sizes(['brown.json']),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await buildDemo();
  const kb = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  const line = (what: string, size: Size) => `  ${what}: ${kb(size.raw)} (${kb(size.gzip)} gzip)`;
  console.log(['web/dist:', line('page and worker', r.code), line('GPT-2 tokenizer, on demand', r.gpt2Tokenizer), line('Brown slice', r.corpus)].join('\n'));
}
