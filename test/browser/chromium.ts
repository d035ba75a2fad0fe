// Headless Chromium for the browser test and the Chromium benchmark: finds the
// browser, bundles a page script (the core bundle, no Node built-ins), serves
// it on localhost (a secure context, as WebGPU needs) and waits for the JSON
// the page posts to /result. WebGPU runs on SwiftShader there.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

/** MIXPREC_CHROMIUM, else the first Chromium on the PATH, else null. */
export function findChromium(): string | null {
  if (process.env.MIXPREC_CHROMIUM) return process.env.MIXPREC_CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    if (spawnSync('which', [name]).status === 0) return name;
  }
  return null;
}

/** The page script and what it imports, bundled into one ES module for the browser. */
export async function bundlePage(entry: string): Promise<string> {
  const built = await build({
    entryPoints: [entry],
    bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false,
    // The Node-only WebGPU loader is imported dynamically and never runs where navigator.gpu exists.
    external: ['node:*'],
    logLevel: 'silent',
  });
  return built.outputFiles[0]!.text;
}

/**
 * Opens the bundle in a fresh headless Chromium (`query` is appended to the page's URL) and returns what it
 * posts; past `timeoutMs` the browser is killed and the promise rejects.
 */
export async function runPage<R>(chromium: string, bundle: string, query = '', timeoutMs = Infinity): Promise<R> {
  let resolve!: (r: R) => void;
  const posted = new Promise<R>((r) => (resolve = r));
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/result') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => { res.end('ok'); resolve(JSON.parse(body) as R); });
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
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${query}`;
  const browser = spawn(chromium, [
    '--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
    '--enable-features=Vulkan', `--user-data-dir=${profile}`, '--no-first-run', url,
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  browser.stderr.on('data', (c) => (stderr += c));
  const exit = new Promise<number | null>((r) => browser.on('exit', r));
  const died = exit.then((code): never => { throw new Error(`chromium exited (${code}) before the page posted its result:\n${stderr.slice(-2000)}`); });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    if (timeoutMs !== Infinity) timer = setTimeout(() => reject(new Error(`the page posted no result within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([posted, died, late]);
  } finally {
    clearTimeout(timer);
    // The whole process group: Chromium's GPU and renderer processes write to the profile until they end.
    try { process.kill(-browser.pid!, 'SIGKILL'); } catch { /* already gone */ }
    await exit;
    server.close();
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}
