import { openReport } from '../test/report/open-report.js';
const r = await openReport(process.argv[2]!, '/tmp/nr/shot.png');
console.log(JSON.stringify({ ...r, summary: r.summary }, null, 1).slice(0, 3000));
