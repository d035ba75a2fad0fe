// mixprec compare on a task where gradients become small: float16 without loss
// scaling loses gradient values to underflow and lags float32; dynamic loss
// scaling follows float32. The summary says so from the numbers, and the report
// renders in headless Chromium with every chart, requesting nothing.
import assert from 'node:assert/strict';
import { writeFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { compare, DEFAULT_SETUPS, summarize, FOLLOW_TOLERANCE, type SetupResult } from '../../src/index.js';
import { tempRunRoot, tinyConfig } from '../train/tiny-run.js';
import { hasChromium, openReport } from './open-report.js';

// A memorisation task: the loss falls towards zero, so (softmax - target) / tokens
// and every gradient behind it shrink until many fall below float16's 2^-24.
const TEXT = 'abcdefgh'.repeat(2000);
const SETUPS = DEFAULT_SETUPS.filter((s) => ['fp32', 'fp16 no scaling', 'fp16 dynamic'].includes(s.name));

let results: SetupResult[];
let out: string;
let reportFile: string;

before(async () => {
  const { root, dataFile } = await tempRunRoot('mixprec-compare-');
  await writeFile(dataFile, TEXT);
  out = join(root, 'out');
  // Constant learning rate (lr = minLr), so the trajectory does not depend on maxSteps.
  const config = { ...tinyConfig(dataFile), batchSize: 4, blockSize: 32, nLayer: 1, nEmbd: 32, nHead: 2, maxSteps: 60, dropout: 0, lr: 0.01, minLr: 0.01, warmup: 5, evalInterval: 30, logInterval: 1 };
  ({ results, reportFile } = await compare({ config, out, setups: SETUPS, statsInterval: 10 }));
});

const byName = (name: string) => results.find((r) => r.setup.name === name)!;

describe('mixprec compare', () => {
  it('shows float16 without loss scaling losing gradient values to underflow and lagging float32, and dynamic scaling following it', () => {
    const { verdicts, sentences } = summarize(results);
    const v = (name: string) => verdicts.find((x) => x.name === name)!;
    const fp32 = byName('fp32'), unscaled = byName('fp16 no scaling'), dynamic = byName('fp16 dynamic');
    const rel = (r: SetupResult) => r.finalValLoss! / fp32.finalValLoss! - 1;
    // Measured underflow: more than 1% of the gradient values are exact zeros without scaling, none in float32.
    assert.equal(v('fp32').zeroFraction, 0);
    assert.ok(v('fp16 no scaling').lostToUnderflow! > 0.01, `lost ${v('fp16 no scaling').lostToUnderflow}`);
    assert.ok(v('fp16 dynamic').lostToUnderflow! < 0.001, `lost ${v('fp16 dynamic').lostToUnderflow}`);
    // The stated tolerance: FOLLOW_TOLERANCE (2%) of float32's final validation loss.
    assert.equal(FOLLOW_TOLERANCE, 0.02);
    assert.ok(rel(unscaled) > FOLLOW_TOLERANCE, `unscaled float16 ends ${rel(unscaled)} relative to float32`);
    assert.ok(Math.abs(rel(dynamic)) <= FOLLOW_TOLERANCE, `dynamic scaling ends ${rel(dynamic)} relative to float32`);
    assert.equal(v('fp16 no scaling').lags, true);
    assert.equal(v('fp16 dynamic').follows, true);
    // The summary says it in words, with the numbers.
    const line = (name: string) => sentences.find((s) => s.startsWith(`${name}:`))!;
    assert.match(line('fp16 no scaling'), /lags float32 by \d+\.\d\d% in final validation loss/);
    assert.match(line('fp16 no scaling'), /lost \d+\.\d{3}% of its gradient values to underflow/);
    assert.match(line('fp16 dynamic'), /follows float32 within 2%/);
    assert.ok(sentences.some((s) => /^Static loss scale: .* 2\^\d+ = \d+ is the largest power of two/.test(s)));
  });

  it('writes results.json, one run directory per set-up and a report holding the summary', async () => {
    const saved = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as SetupResult[];
    assert.deepEqual(saved.map((r) => r.setup.name), SETUPS.map((s) => s.name));
    for (const dir of ['fp32', 'fp16-no-scaling', 'fp16-dynamic']) assert.ok((await stat(join(out, dir, 'metrics.jsonl'))).isFile());
    const html = await readFile(reportFile, 'utf8');
    for (const s of summarize(results).sentences) assert.ok(html.includes(s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/'/g, '&#39;').replace(/</g, '&lt;')), s);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no script and no address but the SVG namespace');
  });

  it('renders in headless Chromium with every chart and the summary, requesting nothing from the network', { skip: hasChromium ? false : 'no chromium (set MIXPREC_CHROMIUM)' }, async () => {
    const shot = join(out, 'report.png');
    const page = await openReport(reportFile, shot);
    assert.deepEqual(page.requests, [`file://${reportFile}`], 'the page requested only itself');
    const kinds = page.charts.map((c) => c.kind);
    assert.deepEqual(kinds, ['line', 'line', 'histogram', 'histogram', 'heatmap', 'heatmap', 'heatmap', 'stacked-bar']);
    for (const c of page.charts) assert.ok(c.marks > 0, `chart '${c.title}' draws nothing`);
    assert.equal(page.summary.length, summarize(results).sentences.length);
    assert.equal(page.tableRows, SETUPS.length);
    assert.ok((await stat(shot)).size > 10_000, 'a screenshot was saved');
    console.log(`report screenshot: ${shot}`);
  });
});
