import { readFileSync } from 'node:fs';
import { summarize } from '../src/report/summary.js';
const r = JSON.parse(readFileSync(process.argv[2]!, 'utf8'));
const s = summarize(r);
console.log(s.sentences.join('\n'));
