// The page's charts, drawn with the run report's SVG charts (src/report/svg.ts)
// from what the training workers reported: one series per run.
import { histogramChart, lineChart, type Point } from '../../src/report/svg.js';
import { RANGES } from '../../src/report/html.js';

/** What the page has heard from one run's worker. */
export interface RunSeries {
  label: string;
  train: Point[];
  validation: Point[];
  scale: Point[];
  skipped: Point[];
  tokensPerSec: Point[];
  memoryKiB: Point[];
  /** The latest gradient histogram (log2 |g| bins from `low`). */
  histogram: { step: number; low: number; counts: number[] } | null;
}

export function emptySeries(label: string): RunSeries {
  return { label, train: [], validation: [], scale: [], skipped: [], tokensPerSec: [], memoryKiB: [], histogram: null };
}

/** Every chart of the page, keyed by the data-testid of its container. */
export function renderCharts(runs: readonly RunSeries[]): Record<string, string> {
  const per = (f: (r: RunSeries) => Point[], suffix = '') => runs.map((r) => ({ name: r.label + suffix, points: f(r) }));
  const histograms = runs.filter((r) => r.histogram);
  return {
    'chart-loss': lineChart({
      title: 'Loss', xLabel: 'step', yLabel: 'nats per token',
      series: runs.flatMap((r) => [{ name: `${r.label} train`, points: r.train }, { name: `${r.label} val.`, points: r.validation }]),
    }),
    'chart-scale': lineChart({
      title: 'Loss scale (skipped steps marked)', xLabel: 'step', yLabel: 'scale', logY: true, markerLabel: 'skipped step',
      series: runs.map((r) => ({ name: r.label, points: r.scale, markers: r.skipped })),
    }),
    'chart-histogram': histogramChart({
      title: `Gradient magnitudes (scaled, as stored), step ${histograms.map((r) => r.histogram!.step).join(' / ') || '–'}`,
      low: histograms[0]?.histogram!.low ?? -64,
      series: histograms.map((r) => ({ name: r.label, counts: r.histogram!.counts })),
      ranges: RANGES,
    }),
    'chart-throughput': lineChart({ title: 'Tokens per second', xLabel: 'step', yLabel: 'tokens/s', series: per((r) => r.tokensPerSec) }),
    'chart-memory': lineChart({ title: 'Device memory in use', xLabel: 'step', yLabel: 'KiB', series: per((r) => r.memoryKiB) }),
  };
}
