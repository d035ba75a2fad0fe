// GPT-2 124M in headless Chromium (WebGPU on SwiftShader): for each precision
// policy, a fresh browser runs bench/chromium-gpt2.page.ts (build, one
// forward + backward + AdamW step through ampStep, the loss again on the same
// batch) and the results go to bench/results/chromium-gpt2.md and .json,
// rewritten after every policy so a run cut short keeps what it finished.
//
//   node --import tsx bench/chromium-gpt2.ts [--policies fp32,fp16,bf16] [--block 64] [--bindings adapter,134217728] [--timeout SECONDS] [--out DIR] [--name NAME]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { bundlePage, findChromium, runPage } from '../test/browser/chromium.js';

interface Attempt { loss: number; scale: number; applied: boolean; seconds: number }
interface PageResult {
  error?: string;
  precision?: string;
  adapter?: { description: string; hasF16: boolean };
  limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number };
  bindingBytes?: number;
  tensorsLeft?: number;
  parameters?: number;
  buildSeconds?: number;
  attempts?: Attempt[];
  firstLoss?: number;
  lossAfterStep?: number;
  evalSeconds?: number;
  memory?: { peakBytes: number; bytes: number };
}
interface Case { policy: string; binding: string; wallSeconds: number; result: PageResult }

const { values } = parseArgs({
  options: {
    policies: { type: 'string', default: 'fp32,fp16,bf16' },
    block: { type: 'string', default: '64' },
    timeout: { type: 'string', default: '1200' },
    bindings: { type: 'string', default: 'adapter' },
    name: { type: 'string', default: 'chromium-gpt2' },
    out: { type: 'string', default: 'bench/results' },
  },
});
const chromium = findChromium();
if (!chromium) throw new Error('no chromium on the PATH (set MIXPREC_CHROMIUM)');
const policies = values.policies.split(',');
const block = Number(values.block);
/** Binding limits to run under: 'adapter' (the adapter's own) or a lower limit in bytes, as many browsers and phones have. */
const bindings = values.bindings.split(',');
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const started = new Date();
const loadAtStart = load();
const bundle = await bundlePage(new URL('./chromium-gpt2.page.ts', import.meta.url).pathname);
const cases: Case[] = [];

const MiB = 2 ** 20;
const f = (x: number | undefined, digits: number) => (x === undefined ? '-' : x.toFixed(digits));

function write(): void {
  mkdirSync(values.out, { recursive: true });
  const base = join(values.out, values.name);
  const first = cases.find((c) => c.result.adapter)?.result;
  writeFileSync(`${base}.json`, JSON.stringify({ started: started.toISOString(), block, loadAtStart, loadAtEnd: load(), cases }, null, 2) + '\n');
  const rows = cases.map(({ policy, binding, wallSeconds, result: r }) => {
    const bound = r.bindingBytes ? `${f(r.bindingBytes / MiB, 0)}${binding === 'adapter' ? ' (adapter)' : ''}` : binding;
    if (r.error) return `| ${policy} | ${bound} | - | - | - | - | - | - | - | ${wallSeconds.toFixed(0)} | failed: ${r.error.split('\n')[0]} |`;
    const applied = r.attempts!.findIndex((a) => a.applied);
    const steps = r.attempts!.map((a) => a.seconds.toFixed(1)).join(', ');
    const status = applied < 0 ? `no step applied in ${r.attempts!.length} attempts` : applied > 0 ? `ok (${applied} skipped by the loss scale)` : 'ok';
    return `| ${policy} | ${bound} | ${f(r.firstLoss, 3)} | ${f(r.lossAfterStep, 3)} | ${f(r.buildSeconds, 1)} | ${steps} | ${f(r.evalSeconds, 1)} | ${f(r.memory!.peakBytes / MiB, 0)} | ${r.tensorsLeft} | ${wallSeconds.toFixed(0)} | ${status} |`;
  });
  writeFileSync(`${base}.md`, [
    '# GPT-2 124M in headless Chromium',
    '',
    `\`node --import tsx bench/chromium-gpt2.ts --policies ${policies.join(',')} --block ${block} --bindings ${bindings.join(',')}\`, started ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC on 2 CPU cores.`,
    `Chromium (\`${chromium}\`, headless, \`--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader\`); adapter: ${first?.adapter?.description ?? '-'}${first?.adapter ? (first.adapter.hasF16 ? ', shader-f16' : ', no shader-f16 (float16 stored packed)') : ''}.`,
    `Adapter limits: maxStorageBufferBindingSize ${first?.limits?.maxStorageBufferBindingSize ?? '-'} bytes, maxBufferSize ${first?.limits?.maxBufferSize ?? '-'} bytes.`,
    'Binding MiB: the most the backend binds at once, the adapter\'s or one lowered by the `maxBindingBytes` option (as many browsers and phones'
      + ' have 128 MiB): tensors larger than that, such as the 154 MB token embedding under 128 MiB, run in parts.',
    `GPT-2 124M (\`gpt2\` preset, its position table cut to the block: ${first?.parameters ?? '-'} parameters), random init (seed 1), batch 1 × block ${block}, one fixed batch;`,
    'AdamW (lr 6e-4, betas 0.9/0.95, weight decay 0.1) through `ampStep` and a `GradScaler` (dynamic for fp16), gradient clipping at 1.',
    'Step s: each forward + backward + optimizer step (the first includes compiling the kernels); a step that the loss scale skips is retried.',
    'Loss after: the same batch, evaluated again under the policy after the step. Peak: `memory(backend).peakBytes`; live tensors after disposal.',
    `Load average (1, 5, 15 min) at start: ${loadAtStart}; at the last update: ${load()}.`,
    '',
    '| policy | binding MiB | first loss | loss after | build s | step s | eval s | peak MiB | tensors left | browser s | status |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
    '',
  ].join('\n'));
}

for (const binding of bindings) {
  for (const policy of policies) {
    const t = performance.now();
    let result: PageResult;
    try {
      const limit = binding === 'adapter' ? '' : `&maxBinding=${binding}`;
      result = await runPage<PageResult>(chromium, bundle, `?precision=${policy}&block=${block}${limit}`, Number(values.timeout) * 1000);
    } catch (e) {
      result = { error: e instanceof Error ? e.message : String(e) };
    }
    cases.push({ policy, binding, wallSeconds: (performance.now() - t) / 1000, result });
    console.log(policy, binding, JSON.stringify(result));
    write();
  }
}
