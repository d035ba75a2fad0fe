// mixprec's WebGPU matmul beside PyTorch's CPU float32 matmul, at GPT-2 124M's
// shapes and their backward forms, in one run; plus the pipeline compile times.
//
//   XDG_RUNTIME_DIR=/tmp node --import tsx bench/matmul-vs-torch.ts [--m 512,2048] [--head-m 512]
//       [--dtypes float32,float16,bfloat16] [--reps 3] [--variants JSON] [--out DIR] [--name NAME]
//       [--python /usr/bin/python3] [--openblas DIR] [--openblas-core NAME|none] [--no-torch]
//   node --import tsx bench/matmul-vs-torch.ts --report-only RESULTS.json   (rewrites RESULTS.md from it)
//
// Shapes (K x N of the weight, as Linear stores it, [in, out]): 768x768 (attention
// output), 768x3072 (MLP up), 3072x768 (MLP down), each as Y = X W (NN), dX = dY W^T
// (NT) and dW = X^T dY (TN), with M = batch x context rows; and the tied LM head
// 768x50257: logits = X wte^T (NT), dX = dLogits wte (NN), dWte = dLogits^T X (TN),
// at --head-m rows (it is 65x larger than the 768x768 product).
//
// For each shape and M: PyTorch first (bench/matmul-torch.py in a subprocess, float32,
// 2 threads; with OpenBLAS when --openblas or the peer harness's vendored copy in
// /tmp/mixprec-peers is found, otherwise whatever BLAS torch loads, which the report
// names), then mixprec through backend.matmul (what training calls: A, B and C stored
// in the dtype, float32 accumulation, split where a tensor exceeds the binding limit)
// for every dtype and every kernel variant, alternating. Time = median of --reps
// products each ended by a sync, after a first call whose time (compile + run) gives
// the compile time as first - median. The JSON also has each product's CPU time (all
// threads), which a busy machine disturbs less than the wall time.
//
// --variants '{"old":{},"cols8":{"cols":8}}' compares kernel options (MatmulKernelsOptions)
// side by side, one backend each; the default is the backend's own choice.
// Writes <out>/<name>.json and .md (default bench/results/matmul-vs-torch).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { View } from '../src/backend/backend.js';
import { createWebGPUBackend, type WebGPUBackend } from '../src/backend/webgpu/backend.js';
import { measureCeiling, type CeilingResult } from './adapter-ceiling.js';
import type { MatmulKernelsOptions } from '../src/backend/webgpu/kernels/matmul.js';
import type { FloatDType } from '../src/dtype/dtype.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const PEERS_OPENBLAS = `${process.env.TMPDIR ?? '/tmp'}/mixprec-peers/vendor/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread`;

interface Options {
  m: number[]; headM: number[]; dtypes: FloatDType[]; reps: number; variants: Record<string, MatmulKernelsOptions>;
  out: string; name: string; python: string; openblas?: string; openblasCore?: string; torch: boolean; reportOnly?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    m: [512, 2048], headM: [512], dtypes: ['float32', 'float16', 'bfloat16'], reps: 3, variants: { default: {} },
    out: join(ROOT, 'bench', 'results'), name: 'matmul-vs-torch', python: '/usr/bin/python3',
    openblas: existsSync(`${PEERS_OPENBLAS}/libblas.so.3`) ? PEERS_OPENBLAS : undefined, torch: true,
    openblasCore: spawnSync('bash', [join(HERE, 'openblas-core.sh')], { encoding: 'utf8' }).stdout.trim() || undefined,
  };
  const ints = (v: string) => v.split(',').map(Number);
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => { const v = argv[++i]; if (v === undefined) throw new Error(`matmul-vs-torch: ${flag} needs a value`); return v; };
    if (flag === '--m') o.m = ints(value());
    else if (flag === '--head-m') { const v = value(); o.headM = v === '' || v === 'none' ? [] : ints(v); }
    else if (flag === '--dtypes') o.dtypes = value().split(',') as FloatDType[];
    else if (flag === '--reps') o.reps = Number(value());
    else if (flag === '--variants') o.variants = JSON.parse(value());
    else if (flag === '--out') o.out = resolve(value());
    else if (flag === '--name') o.name = value();
    else if (flag === '--python') o.python = value();
    else if (flag === '--openblas') o.openblas = value();
    else if (flag === '--openblas-core') { const v = value(); o.openblasCore = v === 'none' ? undefined : v; }
    else if (flag === '--no-torch') o.torch = false;
    else if (flag === '--report-only') o.reportOnly = resolve(value());
    else throw new Error(`matmul-vs-torch: unknown option ${flag}`);
  }
  return o;
}

/** One product: C[m, n] = op(A) op(B), operands stored as a Linear layer's forward or backward stores them. */
interface Case { id: string; shape: string; form: string; m: number; n: number; k: number; transA: boolean; transB: boolean }

function cases(o: Options): Case[][] {
  const groups: Case[][] = [];
  const linear = (M: number, K: number, N: number, head: boolean): Case[] => {
    const shape = `${K}x${N}`;
    const c = (form: string, m: number, n: number, k: number, transA: boolean, transB: boolean): Case =>
      ({ id: `${shape} ${form} M=${M}`, shape, form, m, n, k, transA, transB });
    // The tied head multiplies by wte [V, D] = [N, K]: its forward is NT and its dX is NN.
    return head
      ? [c('Y = X W^T', M, N, K, false, true), c('dX = dY W', M, K, N, false, false), c('dW = dY^T X', N, K, M, true, false)]
      : [c('Y = X W', M, N, K, false, false), c('dX = dY W^T', M, K, N, false, true), c('dW = X^T dY', K, N, M, true, false)];
  };
  for (const M of o.m) for (const [K, N] of [[768, 768], [768, 3072], [3072, 768]] as const) groups.push(linear(M, K, N, false));
  for (const M of o.headM) groups.push(linear(M, 768, 50257, true));
  return groups;
}

type Result = Record<string, number | string | boolean | undefined>;
const load = () => loadavg().map((x) => +x.toFixed(2));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]!; };

function torchTimes(o: Options, group: Case[]): Result[] {
  const env = {
    ...process.env, OPENBLAS_NUM_THREADS: '2', OMP_WAIT_POLICY: 'PASSIVE',
    ...(o.openblas ? { LD_LIBRARY_PATH: o.openblas } : {}), ...(o.openblasCore ? { OPENBLAS_CORETYPE: o.openblasCore } : {}),
  };
  const list = group.map((c) => ({ ...c, reps: o.reps }));
  const r = spawnSync(o.python, [join(HERE, 'matmul-torch.py'), JSON.stringify(list)], { env, encoding: 'utf8', timeout: 600_000 });
  const results = r.stdout.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => JSON.parse(l.slice(7)) as Result);
  if (results.length !== group.length) throw new Error(`matmul-vs-torch: PyTorch failed (${o.python}): ${r.stderr.trim().split('\n').at(-1) ?? r.error?.message}`);
  return results;
}

/** Deterministic values in [-0.5, 0.5). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = s / 2 ** 32 - 0.5; }
  return out;
}

async function mixprecTimes(backend: WebGPUBackend, c: Case, dtype: FloatDType, reps: number): Promise<Result> {
  const view = (size: number, seed: number | null): View => {
    const v: View = { buf: backend.alloc(dtype, size), offset: 0, size, dtype };
    if (seed !== null) backend.write(v, values(size, seed));
    return v;
  };
  const a = view(c.m * c.k, 1), b = view(c.k * c.n, 2), out = view(c.m * c.n, null);
  const spec = { batch: 1, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, strideA: 0, strideB: 0 };
  const cpuTimes: number[] = [];
  const once = async () => {
    const t0 = performance.now(), c0 = process.cpuUsage();
    backend.matmul(a, b, out, spec);
    await backend.sync();
    const c = process.cpuUsage(c0);
    cpuTimes.push((c.user + c.system) / 1000);
    return performance.now() - t0;
  };
  const firstMs = await once(); // compiles the pipelines this form needs
  cpuTimes.length = 0;
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await once());
  const finite = Number.isFinite((await backend.read({ ...out, size: 1 }))[0]!);
  for (const v of [a, b, out]) backend.free(v.buf);
  const ms = median(times);
  // CPU time of the whole process (lavapipe's threads included): on a shared machine it moves less than the wall time.
  const cpuMs = median(cpuTimes);
  return { ms, firstMs, compileMs: Math.max(0, firstMs - ms), gflops: (2 * c.m * c.n * c.k) / (ms * 1e6), cpuMs, gflopsPerCpuSecond: (2 * c.m * c.n * c.k) / (cpuMs * 1e6), finite };
}

const fmt = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

interface Report {
  adapter: string; cpu?: string; date: string; loadStart: number[]; loadEnd: number[]; seconds: number; blas: string; torch: string;
  ceiling?: CeilingResult; variants: string[]; dtypes: string[]; rows: Result[];
}

function markdown(report: Report): string {
  const out: string[] = [`# Matmul: mixprec WebGPU beside PyTorch CPU float32, GPT-2 124M shapes`, ''];
  out.push(`- **Adapter:** ${report.adapter}${report.cpu ? ` on ${report.cpu}` : ''}; **PyTorch:** ${report.torch} (float32, 2 threads, ${report.blas})`);
  out.push(`- ${report.date}; ${fmt(report.seconds / 60)} min; load average ${report.loadStart.join(' / ')} at the start, ${report.loadEnd.join(' / ')} at the end`, '');
  out.push('GFLOP/s = 2MNK / median time of a product (ended by a sync); mixprec through `backend.matmul`, operands stored in the dtype,',
    'float32 accumulation; **× torch** = mixprec / PyTorch, measured side by side. **compile ms** = first call − median (pipeline creation).', '');
  const cols = report.variants.flatMap((v) => report.dtypes.map((d) => ({ v, d, label: `${report.variants.length > 1 ? `${v} ` : ''}${d}` })));
  out.push(`| weight | form | M×N×K | torch | ${cols.map((c) => `${c.label} (× torch)`).join(' | ')} | compile ms |`,
    `|---|---|---|---:|${cols.map(() => '---:').join('|')}|---|`);
  const ids = [...new Set(report.rows.map((r) => r.id as string))];
  for (const id of ids) {
    const rows = report.rows.filter((r) => r.id === id);
    const t = rows.find((r) => r.impl === 'torch');
    const first = rows[0]!;
    const cells = cols.map(({ v, d }) => {
      const r = rows.find((x) => x.impl === v && x.dtype === d);
      return r?.error ? 'failed' : `${fmt(r?.gflops as number)}${t && r ? ` (${fmt((r.gflops as number) / (t.gflops as number), 2)})` : ''}`;
    });
    const compile = cols.map(({ v, d }) => fmt(rows.find((x) => x.impl === v && x.dtype === d)?.compileMs as number, 0)).join(' / ');
    out.push(`| ${first.shape} | ${first.form} | ${first.m}×${first.n}×${first.k} | ${fmt(t?.gflops as number)} | ${cells.join(' | ')} | ${compile} |`);
  }
  out.push('', '**Geometric means over the products** (ratios of GFLOP/s; "per CPU-second" divides the work by the CPU time of all the',
    'process\'s threads instead of the wall time, which a busy machine disturbs less):', '');
  for (const v of report.variants) {
    const per = (d: string) => ids.map((id) => report.rows.find((r) => r.id === id && r.impl === v && r.dtype === d)).filter((r) => r && !r.error) as Result[];
    const torchOf = (id: string) => report.rows.find((r) => r.id === id && r.impl === 'torch')?.gflops as number | undefined;
    const torchRow = (id: string) => report.rows.find((r) => r.id === id && r.impl === 'torch');
    const parts = report.dtypes.map((d) => {
      const rs = per(d);
      const vsTorch = rs.filter((r) => torchOf(r.id as string)).map((r) => (r.gflops as number) / torchOf(r.id as string)!);
      const perCpu = rs.filter((r) => torchRow(r.id as string)).map((r) => (r.gflopsPerCpuSecond as number) / (torchRow(r.id as string)!.gflopsPerCpuSecond as number));
      return `${d} ${fmt(geomean(rs.map((r) => r.gflops as number)))} GFLOP/s${vsTorch.length ? ` (${fmt(geomean(vsTorch), 2)} × torch; per CPU-second ${fmt(geomean(perCpu), 2)} × torch)` : ''}`;
    });
    const f32 = new Map(per('float32').map((r) => [r.id, r.gflops as number]));
    const vs32 = (d: string) => { const xs = per(d).filter((r) => f32.has(r.id)).map((r) => (r.gflops as number) / f32.get(r.id)!); return xs.length ? fmt(geomean(xs), 2) : '–'; };
    out.push(`- ${report.variants.length > 1 ? `**${v}**: ` : ''}${parts.join('; ')}; float16 / float32 = **${vs32('float16')}**, bfloat16 / float32 = **${vs32('bfloat16')}**`);
  }
  if (report.ceiling) {
    const torch = report.rows.filter((r) => r.impl === 'torch' && !r.error).map((r) => r.gflops as number);
    out.push('', `**The adapter's float32 ceiling** (bench/adapter-ceiling.ts: multiply-adds on registers only, no memory traffic, the fastest of 5 runs of each of`,
      `${report.ceiling.shapes.map((s) => `${s.chains}x${s.unroll}: ${fmt(s.gflops)}`).join(', ')} chains x unrolling): **${fmt(report.ceiling.gflops)} GFLOP/s**.`,
      torch.length ? `Half of PyTorch's geometric mean is ${fmt(geomean(torch) / 2)} GFLOP/s (${fmt(geomean(torch) / 2 / report.ceiling.gflops, 2)} × the ceiling).` : '');
  }
  return `${out.join('\n')}\n`;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (o.reportOnly) {
    writeFileSync(o.reportOnly.replace(/\.json$/, '.md'), markdown(JSON.parse(readFileSync(o.reportOnly, 'utf8')) as Report));
    return;
  }
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const t0 = performance.now(), loadStart = load();
  const backends = new Map<string, WebGPUBackend>();
  for (const [name, matmul] of Object.entries(o.variants)) backends.set(name, await createWebGPUBackend({ register: false, matmul }));
  const adapter = backends.values().next().value!.adapterInfo.description;
  console.log(`matmul-vs-torch: ${adapter}; variants ${[...backends.keys()].join(', ')}; load ${loadStart.join(' ')}`);
  const ceiling = await measureCeiling(backends.values().next().value!.rt.device);
  console.log(`  adapter's float32 ceiling (register-only multiply-adds): ${fmt(ceiling.gflops)} GFLOP/s`);
  const rows: Result[] = [];
  let blas = 'not run', torchVersion = 'not run';
  const report = () => ({ adapter, cpu: `${cpus()[0]?.model.trim()}, ${cpus().length} cores`, date: new Date().toISOString(), loadStart, loadEnd: load(), seconds: (performance.now() - t0) / 1000, blas, torch: torchVersion, ceiling, variants: [...backends.keys()], dtypes: o.dtypes, rows });
  const write = () => {
    mkdirSync(o.out, { recursive: true });
    const r = report();
    writeFileSync(join(o.out, `${o.name}.json`), `${JSON.stringify(r, null, 2)}\n`);
    writeFileSync(join(o.out, `${o.name}.md`), markdown(r));
  };
  for (const group of cases(o)) {
    if (o.torch) {
      const ts = torchTimes(o, group);
      blas = ts[0]!.blas as string; torchVersion = ts[0]!.torch as string;
      for (const [i, c] of group.entries()) {
        rows.push({ ...c, impl: 'torch', dtype: 'float32', ...ts[i], id: c.id, load: loadavg()[0] });
        console.log(`  ${c.id.padEnd(36)} torch            ${fmt(ts[i]!.gflops as number).padStart(7)} GFLOP/s`);
      }
    }
    for (const c of group) {
      for (const dtype of o.dtypes) {
        for (const [name, backend] of backends) {
          let r: Result;
          try {
            r = await mixprecTimes(backend, c, dtype, o.reps);
          } catch (err) {
            r = { error: (err as Error).message.slice(0, 300) };
          }
          rows.push({ ...c, impl: name, dtype, ...r, load: loadavg()[0] });
          console.log(`  ${c.id.padEnd(36)} ${`${name} ${dtype}`.padEnd(16)} ${r.error ? `FAILED ${r.error}` : `${fmt(r.gflops as number).padStart(7)} GFLOP/s, compile ${fmt(r.compileMs as number, 0)} ms`}`);
        }
      }
    }
    write();
  }
  write();
  console.log(`wrote ${join(o.out, `${o.name}.md`)} (${fmt((performance.now() - t0) / 60000)} min, load ${load().join(' ')})`);
  for (const b of backends.values()) b.destroy();
  process.exit(0);
}

await main();
