import { readFileSync, writeFileSync } from 'node:fs';
import { renderReport } from '../src/report/html.js';
const dir = process.argv[2]!;
const results = JSON.parse(readFileSync(`${dir}/results.json`, 'utf8'));
writeFileSync(`${dir}/report.html`, renderReport(results, { title: 'mixprec compare', subtitle: 'mixprec compare --backend webgpu --max-steps 150 --eval-interval 50 --out runs/compare' }));
