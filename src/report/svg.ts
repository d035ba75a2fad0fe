// Charts as SVG strings: line charts with markers, histograms with shaded
// ranges, a heat map and stacked bars. Plain string building with no imports,
// so the same charts render in the Node-written report and in a web page.
// Every chart is one <svg> element with role="img", a <title> and a
// data-chart attribute naming its kind.

export interface Point { x: number; y: number }

export interface LineSeries {
  name: string;
  points: readonly Point[];
  /** Points drawn as markers on the line (skipped steps, for instance). */
  markers?: readonly Point[];
  /** Index into PALETTE (default: the series' position), so related series can share a colour. */
  colorIndex?: number;
  dashed?: boolean;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Plot y on a log2 axis (for loss scales). */
  logY?: boolean;
  /** What a marker means, for the legend. */
  markerLabel?: string;
}

export interface ShadedRange {
  from: number;
  to: number;
  label: string;
  color: string;
  /** Drawn as a strip under the plot instead of across it (a second format's ranges). */
  strip?: boolean;
}

export interface HistogramSpec {
  title: string;
  /** Bin i covers [2^(low+i), 2^(low+i+1)). */
  low: number;
  series: readonly { name: string; counts: readonly number[] }[];
  /** Ranges of log2 magnitude to shade (float16's normal, subnormal and lost ranges). */
  ranges: readonly ShadedRange[];
}

export interface HeatMapSpec {
  title: string;
  rowLabels: readonly string[];
  colLabels: readonly string[];
  /** values[row][col] in [0, 1]; null for no value. */
  values: readonly (readonly (number | null)[])[];
  valueLabel: string;
}

export interface StackedBarSpec {
  title: string;
  unit: string;
  bars: readonly { label: string; parts: readonly { name: string; value: number }[] }[];
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const W = 640, H = 300, M = { left: 64, right: 150, top: 30, bottom: 42 };
const PW = W - M.left - M.right, PH = H - M.top - M.bottom;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A short form of a number for axis ticks. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

function frame(kind: string, title: string, body: string, height = H): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${kind}" role="img" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" font-family="sans-serif" font-size="11">`
    + `<title>${escapeXml(title)}</title><text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(title)}</text>${body}</svg>`;
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(s)}</text>`;
}

/** Evenly spaced "nice" ticks covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function legend(names: readonly string[], colors: readonly string[], extra = ''): string {
  const items = names.map((n, i) => `<rect x="${W - M.right + 10}" y="${M.top + i * 16}" width="10" height="10" fill="${colors[i]}"/>`
    + text(W - M.right + 24, M.top + i * 16 + 9, n, 'font-size="9"'));
  return items.join('') + extra;
}

function axes(xLabel: string, yLabel: string): string {
  return `<rect x="${M.left}" y="${M.top}" width="${PW}" height="${PH}" fill="none" stroke="#888"/>`
    + text(M.left + PW / 2, H - 6, xLabel, 'text-anchor="middle"')
    + text(14, M.top + PH / 2, yLabel, `text-anchor="middle" transform="rotate(-90 14 ${M.top + PH / 2})"`);
}

export function lineChart(spec: LineChartSpec): string {
  const fy = spec.logY ? (y: number) => Math.log2(y) : (y: number) => y;
  const all = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(fy(p.y)));
  if (all.length === 0) return frame('line', spec.title, text(W / 2, H / 2, 'no data', 'text-anchor="middle"'));
  const xs = all.map((p) => p.x), ys = all.map((p) => fy(p.y));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * PW;
  const sy = (y: number) => M.top + PH - ((fy(y) - y0) / (y1 - y0)) * PH;
  let body = axes(spec.xLabel, spec.yLabel);
  for (const t of niceTicks(x0, x1)) body += text(sx(t), M.top + PH + 14, formatTick(t), 'text-anchor="middle"');
  for (const t of niceTicks(y0, y1)) {
    const py = M.top + PH - ((t - y0) / (y1 - y0)) * PH;
    body += `<line x1="${M.left}" x2="${M.left + PW}" y1="${py.toFixed(1)}" y2="${py.toFixed(1)}" stroke="#eee"/>`
      + text(M.left - 4, py + 4, spec.logY ? `2^${formatTick(t)}` : formatTick(t), 'text-anchor="end"');
  }
  const colors = spec.series.map((s, i) => PALETTE[(s.colorIndex ?? i) % PALETTE.length]!);
  spec.series.forEach((s, i) => {
    const color = colors[i]!;
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(fy(p.y)));
    if (pts.length) body += `<polyline class="series" fill="none" stroke="${color}" stroke-width="1.5"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`;
    for (const m of s.markers ?? []) {
      if (Number.isFinite(fy(m.y))) body += `<circle class="marker" cx="${sx(m.x).toFixed(1)}" cy="${sy(m.y).toFixed(1)}" r="3.5" fill="none" stroke="${color}" stroke-width="1.5"/>`;
    }
  });
  const markerNote = spec.markerLabel ? `<circle cx="${W - M.right + 15}" cy="${M.top + spec.series.length * 16 + 5}" r="3.5" fill="none" stroke="#333"/>`
    + text(W - M.right + 24, M.top + spec.series.length * 16 + 9, spec.markerLabel) : '';
  return frame('line', spec.title, body + legend(spec.series.map((s) => s.name), colors, markerNote));
}

export function histogramChart(spec: HistogramSpec): string {
  const n = Math.max(0, ...spec.series.map((s) => s.counts.length));
  const lo = spec.low, hi = spec.low + n;
  const sx = (k: number) => M.left + ((k - lo) / (hi - lo || 1)) * PW;
  const fractions = spec.series.map((s) => {
    const total = s.counts.reduce((a, b) => a + b, 0) || 1;
    return s.counts.map((c) => c / total);
  });
  const ymax = Math.max(1e-9, ...fractions.flat());
  const sy = (f: number) => M.top + PH - (f / ymax) * PH;
  let body = '';
  for (const r of spec.ranges) {
    const a = Math.max(lo, r.from), b = Math.min(hi, r.to);
    const [y, h] = r.strip ? [M.top + PH + 18, 8] : [M.top, PH];
    if (b > a) body += `<rect class="range" x="${sx(a).toFixed(1)}" y="${y}" width="${(sx(b) - sx(a)).toFixed(1)}" height="${h}" fill="${r.color}" fill-opacity="0.35"><title>${escapeXml(r.label)}</title></rect>`;
  }
  body += axes('', 'fraction of nonzero values') + text(M.left + PW / 2, H - 2, 'log2 |value|', 'text-anchor="middle"');
  for (const t of niceTicks(lo, hi, 8)) body += text(sx(t), M.top + PH + 14, formatTick(t), 'text-anchor="middle"');
  for (const t of niceTicks(0, ymax, 4)) body += text(M.left - 4, sy(t) + 4, formatTick(t), 'text-anchor="end"');
  fractions.forEach((fs, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    // A step outline per series, so several set-ups overlay legibly.
    let d = `M${sx(lo).toFixed(1)},${sy(0).toFixed(1)}`;
    fs.forEach((f, k) => { d += ` L${sx(lo + k).toFixed(1)},${sy(f).toFixed(1)} L${sx(lo + k + 1).toFixed(1)},${sy(f).toFixed(1)}`; });
    body += `<path class="series" d="${d} L${sx(hi).toFixed(1)},${sy(0).toFixed(1)}" fill="none" stroke="${color}" stroke-width="1.5"/>`;
  });
  const rangeLegend = spec.ranges.map((r, i) => `<rect x="${W - M.right + 10}" y="${M.top + (spec.series.length + i) * 16}" width="10" height="10" fill="${r.color}" fill-opacity="0.35"/>`
    + text(W - M.right + 24, M.top + (spec.series.length + i) * 16 + 9, r.label)).join('');
  return frame('histogram', spec.title, body + legend(spec.series.map((s) => s.name), spec.series.map((_, i) => PALETTE[i % PALETTE.length]!), rangeLegend));
}

/** White (0) to dark red (1). */
function heat(v: number): string {
  const t = Math.min(1, Math.max(0, v));
  const c = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${c(255, 165)},${c(255, 15)},${c(255, 21)})`;
}

export function heatMap(spec: HeatMapSpec): string {
  const rows = spec.rowLabels.length, cols = Math.max(1, spec.colLabels.length);
  const left = 130, cellH = Math.max(10, Math.min(22, 220 / Math.max(1, rows)));
  const height = M.top + rows * cellH + M.bottom + 10;
  const cellW = (W - left - M.right) / cols;
  let body = '';
  spec.values.forEach((row, r) => {
    body += text(left - 4, M.top + r * cellH + cellH * 0.7, spec.rowLabels[r] ?? '', 'text-anchor="end" font-size="10"');
    row.forEach((v, c) => {
      if (v === null) return;
      body += `<rect class="cell" x="${(left + c * cellW).toFixed(1)}" y="${(M.top + r * cellH).toFixed(1)}" width="${cellW.toFixed(1)}" height="${cellH.toFixed(1)}" fill="${heat(v)}"><title>${escapeXml(`${spec.rowLabels[r]} at ${spec.colLabels[c]}: ${(v * 100).toFixed(2)}%`)}</title></rect>`;
    });
  });
  const every = Math.max(1, Math.ceil(cols / 8));
  spec.colLabels.forEach((l, c) => { if (c % every === 0) body += text(left + (c + 0.5) * cellW, M.top + rows * cellH + 14, l, 'text-anchor="middle"'); });
  body += text(left + (W - left - M.right) / 2, M.top + rows * cellH + 30, 'step', 'text-anchor="middle"');
  for (let i = 0; i <= 4; i++) body += `<rect x="${W - M.right + 10}" y="${M.top + i * 16}" width="10" height="10" fill="${heat(i / 4)}" stroke="#ccc"/>` + text(W - M.right + 24, M.top + i * 16 + 9, `${i * 25}%`);
  body += text(W - M.right + 10, M.top + 5 * 16 + 9, spec.valueLabel);
  return frame('heatmap', spec.title, body, height);
}

export function stackedBar(spec: StackedBarSpec): string {
  const names = [...new Set(spec.bars.flatMap((b) => b.parts.map((p) => p.name)))];
  const totals = spec.bars.map((b) => b.parts.reduce((a, p) => a + p.value, 0));
  const ymax = Math.max(1e-9, ...totals);
  const slot = PW / Math.max(1, spec.bars.length);
  const barW = Math.min(60, slot * 0.6);
  let body = axes('', spec.unit);
  for (const t of niceTicks(0, ymax, 4)) body += text(M.left - 4, M.top + PH - (t / ymax) * PH + 4, formatTick(t), 'text-anchor="end"');
  spec.bars.forEach((b, i) => {
    let y = M.top + PH;
    const x = M.left + slot * (i + 0.5) - barW / 2;
    for (const p of b.parts) {
      const h = (p.value / ymax) * PH;
      y -= h;
      const color = PALETTE[names.indexOf(p.name) % PALETTE.length]!;
      body += `<rect class="part" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${escapeXml(`${b.label}: ${p.name} ${formatTick(p.value)} ${spec.unit}`)}</title></rect>`;
    }
    const lx = x + barW / 2, ly = M.top + PH + 10;
    body += text(lx, ly, b.label, `text-anchor="end" font-size="9" transform="rotate(-35 ${lx.toFixed(1)} ${ly})"`);
  });
  return frame('stacked-bar', spec.title, body + legend(names, names.map((_, i) => PALETTE[i % PALETTE.length]!)), H + 90);
}
