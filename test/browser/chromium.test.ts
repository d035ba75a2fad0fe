// The browser path: the core bundle (no Node built-ins) in headless Chromium,
// WebGPU through navigator.gpu (SwiftShader there: no shader-f16, so float16 is
// stored packed), casts and training curves checked against the CPU backend in
// the same page. Skipped with one line where no Chromium is installed
// (MIXPREC_REQUIRE_BROWSER=1 makes that a failure).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { build } from 'esbuild';

function findChromium(): string | null {
  if (process.env.MIXPREC_CHROMIUM) return process.env.MIXPREC_CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    if (spawnSync('which', [name]).status === 0) return name;
  }
  return null;
}

const chromium = findChromium();
let skip: string | false = false;
if (!chromium) {
  if (process.env.MIXPREC_REQUIRE_BROWSER) throw new Error('MIXPREC_REQUIRE_BROWSER is set but no Chromium was found (set MIXPREC_CHROMIUM)');
  skip = 'browser test skipped: no chromium on the PATH (set MIXPREC_CHROMIUM)';
  console.log(skip);
}

interface PageResult {
  error?: string;
  adapter?: { description: string; hasF16: boolean };
  casts?: Record<string, { gpu: number[]; cpu: number[] }>;
  curves?: Record<string, { gpu: number[]; cpu: number[]; tolerance: number }>;
  memory?: { tensors: number };
}

/** Serves the page and its bundle on localhost (a secure context, as WebGPU needs) until it posts its result. */
async function runPage(bundle: string): Promise<PageResult> {
  let resolve!: (r: PageResult) => void;
  const posted = new Promise<PageResult>((r) => (resolve = r));
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/result') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => { res.end('ok'); resolve(JSON.parse(body) as PageResult); });
    } else if (req.url === '/page.js') {
      res.setHeader('content-type', 'text/javascript');
      res.end(bundle);
    } else {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><script type="module" src="/page.js"></script>');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const profile = mkdtempSync(join(tmpdir(), 'mixprec-chromium-'));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = spawn(chromium!, [
    '--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
    '--enable-features=Vulkan', `--user-data-dir=${profile}`, '--no-first-run', url,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  browser.stderr.on('data', (c) => (stderr += c));
  const exit = new Promise<number | null>((r) => browser.on('exit', r));
  const died = exit.then((code): never => { throw new Error(`chromium exited (${code}) before the page posted its result:\n${stderr.slice(-2000)}`); });
  try {
    return await Promise.race([posted, died]);
  } finally {
    browser.kill('SIGKILL');
    await exit;
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

test('in headless Chromium, WebGPU rounds like the CPU backend and trains along its loss curve', { skip, timeout: 300_000 }, async () => {
  const built = await build({
    entryPoints: [new URL('./page.ts', import.meta.url).pathname],
    bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false,
    // The Node-only WebGPU loader is imported dynamically and never runs where navigator.gpu exists.
    external: ['node:*'],
    logLevel: 'silent',
  });
  const r = await runPage(built.outputFiles[0]!.text);
  if (process.env.MIXPREC_BROWSER_VERBOSE) console.log(JSON.stringify(r));
  assert.equal(r.error, undefined, r.error);
  assert.ok(r.adapter, 'the page found a WebGPU adapter');
  for (const [dtype, c] of Object.entries(r.casts!)) assert.deepEqual(c.gpu, c.cpu, `${dtype} casts on ${r.adapter.description}`);
  for (const [precision, c] of Object.entries(r.curves!)) {
    assert.ok(c.cpu.at(-1)! < c.cpu[0]!, `${precision}: the model learns`);
    c.cpu.forEach((x, k) => assert.ok(Math.abs(c.gpu[k]! - x) <= c.tolerance, `${precision} step ${k}: webgpu ${c.gpu[k]} vs cpu ${x}`));
  }
  assert.equal(r.memory!.tensors, 0, 'every tensor of the page was released');
});
