// mixprec's 1024^3 matmul in the peer harness's format (see its WORKLOAD.md):
// C = A B through backend.matmul with A, B and C stored in each dtype (float32
// accumulation), median of up to 10 repeats after 2 warm-ups, each repeat one
// product followed by a sync (no read-back). Prints one RESULT line per dtype.
//
//   node --import tsx bench/peers/matmul-mixprec.ts --backend=webgpu [--n=1024] [--reps=10] [--dtypes=f32,f16,bf16]
import type { View } from '../../src/backend/backend.js';
import type { FloatDType } from '../../src/dtype/dtype.js';
import { selectBackend } from '../../src/train/select-backend.js';
import { MIXPREC_VERSION, backendInfo } from './common.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string][]);
const n = +(args.n ?? 1024), maxReps = +(args.reps ?? 10);
const DTYPES: Record<string, FloatDType> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };
const { backend } = await selectBackend((args.backend ?? 'auto') as 'auto' | 'cpu' | 'webgpu');

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length; return m % 2 ? s[(m - 1) / 2]! : (s[m / 2 - 1]! + s[m / 2]!) / 2; };

for (const name of (args.dtypes ?? 'f32,f16,bf16').split(',')) {
  const dtype = DTYPES[name];
  if (!dtype) throw new Error(`matmul-mixprec: unknown dtype '${name}' (f32, f16, bf16)`);
  const alloc = (seed: number | null): View => {
    const v: View = { buf: backend.alloc(dtype, n * n), offset: 0, size: n * n, dtype };
    if (seed !== null) {
      const f = new Float32Array(n * n);
      let s = seed;
      for (let i = 0; i < f.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; f[i] = s / 2 ** 31 - 1; }
      backend.write(v, f);
    }
    return v;
  };
  const a = alloc(1), b = alloc(2), c = alloc(null);
  const spec = { batch: 1, m: n, n, k: n, transA: false, transB: false, strideA: 0, strideB: 0 };
  const run = async () => { const t0 = performance.now(); backend.matmul(a, b, c, spec); await backend.sync(); return performance.now() - t0; };
  const once = await run(); await run();
  const reps = Math.max(2, Math.min(maxReps, Math.floor(20000 / once)));
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await run());
  const ms = median(times);
  console.log('RESULT ' + JSON.stringify({
    framework: `mixprec-${MIXPREC_VERSION}`, backend: backend.name, backend_info: backendInfo(backend), kind: 'matmul', n, dtype: name,
    ms, gflops: (2 * n ** 3) / ms / 1e6, reps, note: 'sync, no readback', peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }));
  for (const v of [a, b, c]) backend.free(v.buf);
}
process.exit(0);
