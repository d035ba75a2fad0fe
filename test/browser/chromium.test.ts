// The browser path: the core bundle (no Node built-ins) in headless Chromium,
// WebGPU through navigator.gpu (SwiftShader there: no shader-f16, so float16 is
// stored packed), casts and training curves checked against the CPU backend in
// the same page, and a step with GPT-2's vocabulary under a lowered binding limit. Skipped with one line where no Chromium is installed
// (MIXPREC_REQUIRE_BROWSER=1 makes that a failure).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bundlePage, findChromium, runPage } from './chromium.js';

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
  splitCurves?: Record<string, { gpu: number[]; cpu: number[]; tolerance: number }>;
  splitMemory?: { tensors: number };
  splitError?: string;
}

/** One browser run of page.ts, shared by the tests below. */
let pageRun: Promise<PageResult> | undefined;
const pageResult = () => (pageRun ??= bundlePage(new URL('./page.ts', import.meta.url).pathname).then((b) => runPage<PageResult>(chromium!, b)));

test('in headless Chromium, WebGPU rounds like the CPU backend and trains along its loss curve', { skip, timeout: 300_000 }, async () => {
  const r = await pageResult();
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

test('in headless Chromium, a GPT with GPT-2\'s vocabulary trains a step in parts under a 1 MiB binding limit, as on the CPU backend', { skip, timeout: 300_000 }, async () => {
  // The token table, its gradient and moments, and the logits are each split into parts.
  const r = await pageResult();
  assert.equal(r.error, undefined, r.error);
  assert.equal(r.splitError, undefined, r.splitError);
  for (const [precision, c] of Object.entries(r.splitCurves!)) {
    assert.ok(c.cpu[1]! < c.cpu[0]!, `${precision}: the loss falls after the step (${c.cpu[0]} -> ${c.cpu[1]})`);
    c.cpu.forEach((x, k) => assert.ok(Math.abs(c.gpu[k]! - x) <= c.tolerance, `${precision} split step ${k}: webgpu ${c.gpu[k]} vs cpu ${x}`));
  }
  assert.equal(r.splitMemory!.tensors, 0, 'every tensor of the split run was released');
});
