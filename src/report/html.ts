// The run report: one self-contained HTML file (inline SVG and CSS, no script,
// nothing fetched) with the summary in words, the loss curves, the loss scale
// with skipped steps, gradient histograms against float16's and bfloat16's
// ranges, underflow per layer over time, memory, throughput and final loss.

import { escapeXml, heatMap, histogramChart, lineChart, stackedBar, type ShadedRange } from './svg.js';
import { summarize } from './summary.js';
import type { SetupResult } from './results.js';
import type { StatsKind, TensorStats } from './stats.js';

export interface ReportOptions {
  title?: string;
  /** What produced the report (the command line), shown under the title. */
  subtitle?: string;
}

/** float16's ranges on a log2 axis, and bfloat16's as a strip under the plot. */
export const RANGES: readonly ShadedRange[] = [
  { from: -80, to: -24, label: 'float16 lost (to 0)', color: '#d62728' },
  { from: -24, to: -14, label: 'float16 subnormal', color: '#ffbf00' },
  { from: -14, to: 16, label: 'float16 normal', color: '#2ca02c' },
  { from: 16, to: 40, label: 'float16 overflow', color: '#7f3fbf' },
  { from: -133, to: -126, label: 'bfloat16 subnormal', color: '#ffbf00', strip: true },
  { from: -126, to: 128, label: 'bfloat16 normal (strip)', color: '#17becf', strip: true },
];

/** The summed histogram of one kind of tensor in a set-up's last finite sample. */
function lastHistogram(r: SetupResult, kind: StatsKind): { low: number; counts: number[] } | null {
  const sample = [...r.stats].reverse().find((s) => s.tensors.some((t) => t.kind === kind) && s.tensors.every((t) => t.nonFinite === 0));
  const ts = sample?.tensors.filter((t) => t.kind === kind) ?? [];
  if (ts.length === 0) return null;
  const counts = ts[0]!.histogram.bins.map((_, i) => ts.reduce((a, t) => a + t.histogram.bins[i]!, 0));
  return { low: ts[0]!.histogram.low, counts };
}

/** Per tensor, at each sampled step: values that are zero or would underflow float16. */
function underflowHeatMap(r: SetupResult): string {
  const names = [...new Set(r.stats.flatMap((s) => s.tensors.filter((t) => t.kind.endsWith('grad')).map((t) => t.name)))];
  const lost = (t: TensorStats | undefined) => (t && t.nonFinite === 0 ? t.zeros + t.float16.underflow : null);
  return heatMap({
    title: `${r.setup.name}: gradient values zero or lost in float16`,
    rowLabels: names,
    colLabels: r.stats.map((s) => String(s.step)),
    values: names.map((n) => r.stats.map((s) => lost(s.tensors.find((t) => t.name === n)))),
    valueLabel: 'lost',
  });
}

function memoryChart(results: readonly SetupResult[]): string {
  const bars = results.filter((r) => r.memory).flatMap((r) => (['computed', 'measured'] as const).filter((k) => r.memory![k]).map((k) => {
    const m = r.memory![k]!;
    const parts = [
      { name: 'parameters', value: m.parameters }, { name: 'master weights', value: m.masterWeights },
      { name: 'gradients', value: m.gradients }, { name: 'optimizer moments', value: m.optimizerStates },
      { name: 'activations', value: m.activations ?? 0 },
    ];
    return { label: `${r.setup.name}, ${k}`, parts: parts.map((p) => ({ ...p, value: p.value / 2 ** 20 })) };
  }));
  return stackedBar({ title: 'Memory: computed from the tensors and measured on the backend', unit: 'MiB', bars });
}

function table(results: readonly SetupResult[]): string {
  const base = results.find((r) => r.setup.precision === 'fp32')?.finalValLoss ?? null;
  const rows = results.map((r) => {
    const rel = base !== null && r.finalValLoss !== null ? `${((r.finalValLoss / base - 1) * 100).toFixed(2)}%` : '';
    const cells = [r.setup.name, r.setup.precision, String(r.setup.lossScale), r.status === 'completed' ? 'completed' : `stopped: ${r.stopReason ?? ''}`,
      String(r.steps), String(r.skipped.length), r.finalValLoss?.toFixed(4) ?? '', rel, Math.round(r.tokensPerSec).toLocaleString('en-US')];
    return `<tr>${cells.map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`;
  });
  const head = ['set-up', 'precision', 'loss scale', 'status', 'steps', 'skipped', 'final val loss', 'vs fp32', 'tokens/s'];
  return `<table id="results"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** The report as one HTML document. */
export function renderReport(results: readonly SetupResult[], opts: ReportOptions = {}): string {
  const title = opts.title ?? 'mixprec numerics report';
  const summary = summarize(results);
  const losses = results.flatMap((r) => [...r.train.map((p) => p.loss), ...r.eval.map((p) => p.valLoss)]).filter((x) => x > 0 && Number.isFinite(x));
  // A loss that falls by orders of magnitude is read on a log axis.
  const logLoss = losses.length > 0 && Math.max(...losses) / Math.min(...losses) > 16;
  const loss = lineChart({
    title: `Training and validation loss${logLoss ? ' (log scale)' : ''}`, xLabel: 'step', yLabel: 'loss (nats/token)', logY: logLoss,
    series: results.flatMap((r, i) => [
      { name: `${r.setup.name} train`, colorIndex: i, points: r.train.map((p) => ({ x: p.step, y: p.loss })) },
      { name: `${r.setup.name} val`, colorIndex: i, dashed: true, points: r.eval.map((p) => ({ x: p.step, y: p.valLoss })) },
    ]),
  });
  const scaled = results.filter((r) => r.train.some((p) => p.scale !== 1));
  const scale = lineChart({
    title: 'Loss scale (skipped steps marked)', xLabel: 'step', yLabel: 'scale', logY: true, markerLabel: 'skipped step',
    series: scaled.map((r) => ({
      name: r.setup.name, colorIndex: results.indexOf(r), points: r.train.map((p) => ({ x: p.step, y: p.scale })),
      markers: r.skipped.map((s) => ({ x: s.step, y: r.train.find((p) => p.step >= s.step)?.scale ?? r.train.at(-1)?.scale ?? 1 })),
    })),
  });
  const histogram = (kind: StatsKind, what: string) => {
    const series = results.flatMap((r) => { const h = lastHistogram(r, kind); return h ? [{ name: r.setup.name, counts: h.counts, low: h.low }] : []; });
    return histogramChart({ title: `${what}, last sample (scaled)`, low: series[0]?.low ?? -64, series, ranges: RANGES });
  };
  const charts = [
    ['loss', loss], ['loss-scale', scale],
    ['activation-gradients', histogram('activation-grad', 'Activation gradients into each block')],
    ['weight-gradients', histogram('weight-grad', 'Weight gradients')],
    ...results.filter((r) => r.stats.length > 0).map((r, i) => [`underflow-${i}`, underflowHeatMap(r)]),
    ['memory', memoryChart(results)],
  ];
  const figures = charts.map(([id, svg]) => `<figure id="${id}">${svg}</figure>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title>
<style>body{font-family:sans-serif;max-width:1320px;margin:1em auto;padding:0 1em;color:#222}
figure{display:inline-block;margin:.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}#summary li{margin:.3em 0}</style></head>
<body><h1>${escapeXml(title)}</h1>${opts.subtitle ? `<p><code>${escapeXml(opts.subtitle)}</code></p>` : ''}
<section id="summary"><h2>Summary</h2><ul>${summary.sentences.map((s) => `<li>${escapeXml(s)}</li>`).join('')}</ul></section>
<section><h2>Results</h2>${table(results)}</section>
<section id="charts"><h2>Charts</h2>
${figures}
</section></body></html>
`;
}
