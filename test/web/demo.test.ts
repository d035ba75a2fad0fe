// The demo page (web/) in headless Chromium: built and served on localhost,
// trained with fp16 on WebGPU (SwiftShader: no shader-f16, so packed 16-bit
// storage) for at least 30 steps; the loss falls, every chart and the adapter
// line are there, text is generated, and no request leaves localhost.
// Skipped with one line where no Chromium is installed (MIXPREC_REQUIRE_BROWSER=1
// makes that a failure).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { buildDemo, DIST } from '../../web/build.js';
import { serveStatic } from '../../web/serve.js';
import { NO_WEBGPU } from '../../web/src/protocol.js';
import { loadGPT2, saveGPT2 } from '../../src/io/gpt2.js';
import { GPT } from '../../src/nn/gpt.js';
import { DEFAULT_TRAIN_CONFIG } from '../../src/train/config.js';
import '../../src/autograd/backward.js';

const executable = process.env.MIXPREC_CHROMIUM
  ?? ['chromium', 'chromium-browser', 'google-chrome'].map((n) => spawnSync('which', [n]).stdout?.toString().trim()).find(Boolean);
let skip: string | false = false;
if (!executable) {
  if (process.env.MIXPREC_REQUIRE_BROWSER) throw new Error('MIXPREC_REQUIRE_BROWSER is set but no Chromium was found (set MIXPREC_CHROMIUM)');
  skip = 'demo page test skipped: no chromium on the PATH (set MIXPREC_CHROMIUM)';
  console.log(skip);
}

const STEPS = 30;
const CHARTS = ['chart-loss', 'chart-scale', 'chart-histogram', 'chart-throughput', 'chart-memory'];
const FIXTURES = new URL('../fixtures/gpt2/', import.meta.url).pathname;
export const SCREENSHOT = process.env.MIXPREC_DEMO_SCREENSHOT ?? join(tmpdir(), 'mixprec-demo.png');

test('the demo page trains a GPT in fp16 on WebGPU in headless Chromium and generates text', { skip, timeout: 240_000 }, async () => {
  await buildDemo();
  const { server, url } = await serveStatic(DIST, 0);
  const browser = await chromium.launch({
    executablePath: executable!,
    args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1340, height: 1500 } });
    const requests: string[] = [];
    context.on('request', (r) => requests.push(r.url()));
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.selectOption('#precision', 'fp16');
    // SwiftShader runs on the CPU: a small batch keeps 30 steps within a minute or so.
    await page.fill('#batch', '4');
    await page.fill('#steps', '200');
    await page.fill('#eval', '10');
    await page.fill('#prompt', 'The ');
    await page.uncheck('#autogen');
    await page.click('[data-testid="train"]');

    const stepNow = async () => Number(await page.textContent('[data-testid="step"]'));
    const lossNow = async () => Number(await page.textContent('[data-testid="loss"]'));
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="step"]')!.textContent) >= 1, null, { timeout: 60_000 });
    const first = { step: await stepNow(), loss: await lossNow() };
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]')!.textContent) >= n, STEPS, { timeout: 120_000 });
    const later = { step: await stepNow(), loss: await lossNow() };
    assert.equal(errors.length, 0, errors.join('\n'));
    assert.ok(later.step >= STEPS);
    assert.ok(later.loss < first.loss, `the loss fell: step ${first.step} ${first.loss}, step ${later.step} ${later.loss}`);

    const adapter = await page.textContent('[data-testid="adapter"]');
    assert.match(adapter!, /^WebGPU adapter: .+; shader-f16: (yes|no, so float16 and bfloat16 are stored packed)/);
    for (const id of CHARTS) {
      const series = await page.locator(`[data-testid="${id}"] svg .series`).count();
      assert.ok(series > 0, `${id} has a drawn series`);
    }
    assert.ok(await page.locator('[data-testid="chart-histogram"] svg rect.range').count() >= 4, 'the histogram shades float16 and bfloat16 ranges');
    assert.notEqual(await page.textContent('#valloss'), '–', 'a validation loss was shown');

    await page.click('[data-testid="generate"]');
    await page.waitForFunction(() => document.querySelector('[data-testid="sample"]')!.textContent!.length > 'The '.length + 20, null, { timeout: 60_000 });
    const sample = await page.textContent('[data-testid="sample"]');
    assert.ok(sample!.startsWith('The '), `the sample continues the prompt: ${JSON.stringify(sample)}`);

    // Stop, resume past the step where it stopped, stop again.
    const resumeEnabled = () => page.waitForFunction(() => !(document.getElementById('resume') as HTMLButtonElement).disabled, null, { timeout: 60_000 });
    await page.click('#stop');
    await resumeEnabled();
    const stopped = await stepNow();
    await page.waitForTimeout(500);
    assert.equal(await stepNow(), stopped, 'no step after stop');
    await page.click('#resume');
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="step"]')!.textContent) > n, stopped, { timeout: 60_000 });
    await page.click('#stop');
    await resumeEnabled();
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // The trained model as a Hugging Face GPT-2 directory, loadable by the library.
    const dir = await mkdtemp(join(tmpdir(), 'mixprec-demo-download-'));
    try {
      const saved: Promise<void>[] = [];
      const both = new Promise<void>((resolve) => page.on('download', (d) => {
        saved.push(d.saveAs(join(dir, d.suggestedFilename())));
        if (saved.length === 2) resolve();
      }));
      await page.click('#download');
      await both;
      await Promise.all(saved);
      const model = await loadGPT2(dir);
      assert.equal(model.config.nLayer, DEFAULT_TRAIN_CONFIG.nLayer);
      model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    console.log(`demo page: step ${later.step}, loss ${first.loss} -> ${later.loss}; screenshot ${SCREENSHOT}`);
    const offsite = requests.filter((u) => !u.startsWith(url) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(offsite, [], 'every request stayed on the local server');
    assert.ok(requests.some((u) => u.endsWith('/worker.js')), 'the worker script was requested (requests are seen)');

    // A GPT-2 directory picked from disk is fine-tuned with the GPT-2 tokenizer; a too-small vocabulary is refused by name.
    const gpt2Dir = await mkdtemp(join(tmpdir(), 'mixprec-demo-gpt2-'));
    try {
      const gpt2 = await page.context().newPage();
      await gpt2.goto(url);
      await gpt2.setInputFiles('#hffiles', [join(FIXTURES, 'tiny/config.json'), join(FIXTURES, 'tiny/model.safetensors')]);
      await gpt2.click('[data-testid="train"]');
      await gpt2.waitForFunction(() => /vocab_size/.test(document.getElementById('log')!.textContent!), null, { timeout: 60_000 });
      assert.match((await gpt2.textContent('#log'))!, /config\.json: 'vocab_size': vocab_size 96 is smaller than the GPT-2 tokenizer's 50257/);
      const small = new GPT({ vocabSize: 50257, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0, bias: true }, { seed: 1 });
      await saveGPT2(small, gpt2Dir);
      small.dispose();
      await gpt2.setInputFiles('#hffiles', [join(gpt2Dir, 'config.json'), join(gpt2Dir, 'model.safetensors')]);
      await gpt2.fill('#batch', '2');
      await gpt2.fill('#steps', '2');
      await gpt2.click('[data-testid="train"]');
      await gpt2.waitForFunction(() => document.querySelector('[data-testid="step"]')!.textContent === '2', null, { timeout: 90_000 });
      assert.match((await gpt2.textContent('#log'))!, /^GPT-2 directory from disk: .* gpt2 tokenizer/);
      await gpt2.close();
    } finally {
      await rm(gpt2Dir, { recursive: true, force: true });
    }

    // Without WebGPU the page says so in one sentence.
    const bare = await context.newPage();
    await bare.addInitScript(() => { delete (Navigator.prototype as { gpu?: unknown }).gpu; });
    await bare.goto(url);
    assert.equal(await bare.textContent('[data-testid="adapter"]'), NO_WEBGPU);
  } finally {
    await browser.close();
    server.close();
  }
});
