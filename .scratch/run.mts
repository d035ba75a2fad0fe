import { compare } from '/work/wt/numerics-report/src/index.js';
import { tempRunRoot, tinyConfig } from '/work/wt/numerics-report/test/train/tiny-run.js';
const { root, dataFile } = await tempRunRoot('cmp-');
const t0 = Date.now();
const { results, reportFile } = await compare({ config: { ...tinyConfig(dataFile), maxSteps: 30, dropout: 0, evalInterval: 10, logInterval: 1 }, out: root + '/out', statsInterval: 5, log: console.log });
for (const r of results) console.log(r.setup.name, r.finalValLoss, r.skipped.length, r.stats.length, JSON.stringify(r.memory?.computed), r.tokensPerSec);
console.log(reportFile, (Date.now() - t0) / 1000);
