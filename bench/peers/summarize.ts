// Turns one run of the peer harness (with mixprec's runs added by run.sh) into
// bench/results/peers-<date>.md and .json: mixprec's tokens/s against every
// peer's, as ratios measured in the same run, then the harness's own summary.
//
//   node --import tsx bench/peers/summarize.ts RUN_DIR OUT_BASE [MODE]

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';

type Result = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const [runDir, outBase, mode = 'quick'] = process.argv.slice(2);
if (!runDir || !outBase) throw new Error('usage: summarize.ts RUN_DIR OUT_BASE [MODE]');

interface Log { name: string; rc: string; start: string; loadStart: string; loadEnd: string; results: Result[] }

const logs: Log[] = readdirSync(runDir).filter((f) => f.endsWith('.log')).sort().map((f) => {
  const text = readFileSync(join(runDir, f), 'utf8');
  const rcFile = join(runDir, f.replace(/\.log$/, '.rc'));
  return {
    name: f.replace(/\.log$/, ''),
    rc: existsSync(rcFile) ? readFileSync(rcFile, 'utf8').trim() : '?',
    start: /^# (\S+) loadavg:/m.exec(text)?.[1] ?? '',
    // The 1, 5 and 15 minute load averages (the rest of /proc/loadavg left out).
    loadStart: /^# \S+ loadavg: (\S+ \S+ \S+)/m.exec(text)?.[1] ?? '',
    loadEnd: /^# end loadavg: (\S+ \S+ \S+)/m.exec(text)?.[1] ?? '',
    results: text.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => JSON.parse(l.slice(7)) as Result),
  };
}).sort((a, b) => a.start.localeCompare(b.start)); // in the order they ran

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2; };
const fmt = (x: number, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

/** Training configurations: median tokens/s over repeats, per framework, backend, info, precision and workload. */
interface Config { label: string; mixprec: boolean; workload: string; tokensPerSec: number; reps: number; lossFinal: number }
const groups = new Map<string, Result[]>();
for (const log of logs) {
  for (const r of log.results) {
    if (r.kind !== 'train') continue;
    const key = [r.framework, r.backend, r.backend_info ?? '', r.precision, r.workload].join('|');
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
}
const configs: Config[] = [...groups.values()].map((rs) => {
  const r = rs[0]!;
  const info = String(r.backend_info ?? '')
    .replace(/ jit attn=sdpa| embed=onehot-matmul|, shader-f16|^pure TypeScript$/g, '').replace(/mesa software .*?\[shader-f16\]/, 'lavapipe')
    .replace('single-thread (no global Worker in Node)', '1 thread').replace(/worker_threads shim x(\d+)/, '$1 workers via shim')
    .replace('threads=1 simd=true', '1 thread, SIMD');
  return {
    label: `${r.framework} ${r.backend}${info ? ` (${info})` : ''} ${r.precision}`,
    mixprec: String(r.framework).startsWith('mixprec'), workload: r.workload,
    tokensPerSec: median(rs.map((x) => x.tokens_per_s)), reps: rs.length, lossFinal: median(rs.map((x) => x.loss_final)),
  };
});

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const host = existsSync(join(runDir, 'host.txt')) ? readFileSync(join(runDir, 'host.txt'), 'utf8').split('\n')[0]!.replace(/^host: /, '') : '';
const out: string[] = [];
out.push(`# mixprec and the peer frameworks, side by side (${runDir.split('/').pop()})`, '');
const lavapipe = logs.some((l) => l.results.some((r) => /lavapipe/.test(String(r.backend_info))));
out.push(`- **Machine:** ${cpus()[0]?.model.trim()}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB${lavapipe ? '; no GPU: WebGPU runs on Mesa lavapipe, Vulkan in software on the same cores' : ''}; ${host.replace(/^\d+ cpus, [^,]*, /, '')}`);
out.push(`- **Run:** the peer harness's \`run-all.sh\` (MODE=${mode}) with mixprec's runs added next to the peers' by \`bench/peers/run.sh\`; mixprec ${commit()}`);
// The 1-minute load average at the start and end of every run (each run itself adds about 1 to 2 on 2 cores).
const loads = logs.flatMap((l) => [l.loadStart, l.loadEnd]).map((x) => parseFloat(x)).filter((x) => Number.isFinite(x));
out.push(`- **Load average** (1 min) at the start and end of each run: median ${fmt(median(loads), 2)}, range ${fmt(Math.min(...loads), 2)} to ${fmt(Math.max(...loads), 2)}; `
  + `${logs[0]?.start ?? '?'} to ${logs.at(-1)?.start ?? '?'} (start of the first and of the last run)`);
// run.sh names the OpenBLAS kernels for this CPU in the harness copy's run-all.sh (see bench/openblas-core.sh).
const runAll = join(runDir, '..', '..', 'run-all.sh');
const openblasCore = existsSync(runAll) ? /OPENBLAS_CORETYPE=(\w+)/.exec(readFileSync(runAll, 'utf8'))?.[1] : undefined;
if (openblasCore) out.push(`- **PyTorch's OpenBLAS runs** use OpenBLAS's ${openblasCore} kernels (\`OPENBLAS_CORETYPE\`, chosen from the CPU's vector units by \`bench/openblas-core.sh\`).`);
out.push('- Workloads, data, initialisation and protocol: the harness\'s `WORKLOAD.md` (gpt-mini: 3 warm-up + 10 timed steps, loss read back each step; tokens/s = B·T / median step time, median over repeats).', '');

for (const workload of ['gpt-mini', 'gpt-small', 'gpt2']) {
  const mine = configs.filter((c) => c.mixprec && c.workload === workload);
  const peers = configs.filter((c) => !c.mixprec && c.workload === workload).sort((a, b) => b.tokensPerSec - a.tokensPerSec);
  if (!mine.length || !peers.length) continue;
  out.push(`## ${workload}: mixprec ÷ peer (tokens/s ratio; above 1: mixprec is faster)`, '');
  out.push(`| peer | reps | tokens/s | ${mine.map((m) => m.label.replace(/^mixprec-\S+ /, 'mixprec ').replace(/ \(lavapipe\)/, '')).join(' | ')} |`);
  out.push(`|---|---:|---:|${mine.map(() => '---:').join('|')}|`);
  out.push(`| **mixprec tokens/s** | | | ${mine.map((m) => `**${fmt(m.tokensPerSec)}** (${m.reps}×)`).join(' | ')} |`);
  for (const p of peers) out.push(`| ${p.label} | ${p.reps} | ${fmt(p.tokensPerSec)} | ${mine.map((m) => fmt(m.tokensPerSec / p.tokensPerSec, 2)).join(' | ')} |`);
  out.push('');
}

out.push('## The harness\'s summary', '');
out.push(readFileSync(join(runDir, 'summary.md'), 'utf8').replace(/^# .*\n/, '').replace(/^## /gm, '### ').trim(), '');
writeFileSync(`${outBase}.md`, out.join('\n'));
writeFileSync(`${outBase}.json`, `${JSON.stringify({ run: runDir.split("/").pop(), mode, commit: commit(), host, logs }, null, 2)}\n`);
