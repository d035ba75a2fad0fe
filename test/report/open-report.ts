// Opens a report in headless Chromium (playwright-core with Debian's chromium),
// records every request the page makes, and saves a full-page screenshot.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.MIXPREC_CHROMIUM ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);

export interface OpenedReport {
  /** Every URL the page requested, the report's own file included. */
  requests: string[];
  charts: { kind: string; title: string; marks: number }[];
  summary: string[];
  tableRows: number;
}

export async function openReport(file: string, screenshot: string): Promise<OpenedReport> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    const charts = await page.$$eval('svg[data-chart]', (svgs) => svgs.map((s) => ({
      kind: s.getAttribute('data-chart') ?? '',
      title: s.querySelector('title')?.textContent ?? '',
      // What a chart draws for its data: series, markers, bars, cells, shaded ranges.
      marks: s.querySelectorAll('.series, .marker, .part, .cell, .range').length,
    })));
    const summary = await page.$$eval('#summary li', (lis) => lis.map((l) => l.textContent ?? ''));
    const tableRows = await page.$$eval('#results tbody tr', (rows) => rows.length);
    await page.screenshot({ path: screenshot, fullPage: true });
    return { requests, charts, summary, tableRows };
  } finally {
    await browser.close();
  }
}
