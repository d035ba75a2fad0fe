// The chart module: browser-safe (no imports), escaped text, one element per datum.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { heatMap, histogramChart, lineChart, niceTicks, stackedBar } from '../../src/report/svg.js';

const count = (svg: string, re: RegExp) => (svg.match(re) ?? []).length;

describe('svg charts', () => {
  it('imports nothing, so a web page can load it as it is', () => {
    const source = readFileSync(new URL('../../src/report/svg.ts', import.meta.url), 'utf8');
    assert.equal(count(source, /^\s*import\b/gm), 0);
  });

  it('draws one line per series and one marker per marked point, escaping names', () => {
    const svg = lineChart({
      title: 'loss <fp16 & fp32>', xLabel: 'step', yLabel: 'scale', logY: true, markerLabel: 'skipped',
      series: [
        { name: 'a"b', points: [{ x: 1, y: 2 ** 16 }, { x: 2, y: 2 ** 15 }, { x: 3, y: 2 ** 15 }], markers: [{ x: 2, y: 2 ** 15 }] },
        { name: 'c', points: [{ x: 1, y: 4 }, { x: 3, y: 8 }] },
      ],
    });
    assert.equal(count(svg, /class="series"/g), 2);
    assert.equal(count(svg, /class="marker"/g), 1);
    assert.match(svg, /loss &lt;fp16 &amp; fp32&gt;/);
    assert.match(svg, /a&quot;b/);
    assert.match(svg, /2\^15/);
    assert.doesNotMatch(svg, /NaN/);
  });

  it('shades the ranges of a histogram that fall inside its axis, and normalises each series', () => {
    const svg = histogramChart({
      title: 'h', low: -30, series: [{ name: 's', counts: [0, 2, 2, 0] }],
      ranges: [{ from: -29, to: -28, label: 'subnormal', color: '#abc' }, { from: 0, to: 5, label: 'outside', color: '#def' }],
    });
    assert.equal(count(svg, /class="range"/g), 1);
    assert.equal(count(svg, /class="series"/g), 1);
    assert.match(svg, /0\.5/);
  });

  it('draws a heat-map cell per value and a bar part per component, heights in proportion', () => {
    const hm = heatMap({ title: 't', rowLabels: ['h.0', 'h.1'], colLabels: ['10', '20', '30'], values: [[0, 0.5, 1], [null, 0.1, 0.2]], valueLabel: 'lost' });
    assert.equal(count(hm, /class="cell"/g), 5);
    const bar = stackedBar({ title: 'm', unit: 'MB', bars: [{ label: 'fp32', parts: [{ name: 'params', value: 3 }, { name: 'grads', value: 1 }] }] });
    const heights = [...bar.matchAll(/class="part"[^>]*height="([\d.]+)"/g)].map((m) => Number(m[1]));
    assert.equal(heights.length, 2);
    assert.ok(Math.abs(heights[0]! / heights[1]! - 3) < 0.05, String(heights));
  });

  it('picks ticks that cover the range', () => {
    assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(-64, 20, 8), [-60, -40, -20, 0, 20]);
  });
});
