// mixprec train with --stats-interval and --find-nonfinite: statistics in metrics.jsonl and report.html in the run directory.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { readMetrics } from '../../src/index.js';
import type { StatsRecord } from '../../src/report/observer.js';
import { tempRunRoot, tinyArgs } from '../train/tiny-run.js';

test('train --stats-interval samples gradient statistics into metrics.jsonl and draws them in report.html', async () => {
  const { root, dataFile } = await tempRunRoot('mixprec-numerics-');
  const out = join(root, 'run');
  let stderr = '';
  const status = await main(['train', ...tinyArgs(dataFile, { maxSteps: 6 }), '--stats-interval', '3', '--find-nonfinite', '--out', out],
    { write: () => true }, { write: (s: string) => (stderr += s) });
  assert.equal(status, 0, stderr);
  const stats = (await readMetrics(join(out, 'metrics.jsonl'))).filter((r) => r.type === 'stats') as unknown as StatsRecord[];
  assert.deepEqual(stats.map((s) => s.step), [1, 3, 6]);
  const kinds = new Set(stats[0]!.tensors.map((t) => t.kind));
  assert.deepEqual([...kinds].sort(), ['activation-grad', 'weight-grad']);
  assert.deepEqual(stats[0]!.tensors.filter((t) => t.kind === 'activation-grad').map((t) => t.name), ['h.1', 'h.0'], 'block gradients, in backward order');
  const html = await readFile(join(out, 'report.html'), 'utf8');
  assert.equal((html.match(/data-chart="histogram"/g) ?? []).length, 2);
  assert.match(html, /id="summary"/);
});
