// Device time of single WebGPU kernels at the gpt-mini shapes (B=16, T=128,
// width 128, 4 heads, vocab 256), best of several runs (timestamp queries), and
// the embedding gradient of a 64k-token batch.
//
//   XDG_RUNTIME_DIR=/tmp node --import tsx bench/webgpu-kernels.ts [--only=attention] [--runs=5]
//
// Each line: device time (best run) and CPU time of the process per call (mean).

import { createWebGPUBackend } from '../src/backend/webgpu/backend.js';
import type { HeadLayout, View } from '../src/backend/backend.js';
import type { DType } from '../src/dtype/dtype.js';
import { ADAMW_RULE } from '../src/optim/adamw.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string?][]);
const runs = +(args.runs ?? 5);
const g = await createWebGPUBackend({ profile: true, register: false });
const B = 16, T = 128, C = 128, H = 4, d = C / H, V = 256, N = B * T;

function buf(dtype: DType, n: number, scale = 1): View {
  const v: View = { buf: g.alloc(dtype, n), offset: 0, size: n, dtype };
  g.write(v, Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * scale));
  return v;
}

const cases: Record<string, () => void> = {};
{
  const qkv = buf('float16', N * 3 * C), o = buf('float16', N * C), lse = buf('float32', B * H * T), go = buf('float16', N * C), gqkv = buf('float16', N * 3 * C);
  const inL = (p: number): HeadLayout => ({ offset: p * C, sB: T * 3 * C, sH: d, sT: 3 * C });
  const oL: HeadLayout = { offset: 0, sB: T * C, sH: d, sT: C };
  const spec = { batch: B, heads: H, tq: T, tk: T, headDim: d, scale: 1 / Math.sqrt(d), causal: true };
  cases.attention = () => g.attention(qkv, inL(0), qkv, inL(1), qkv, inL(2), o, oL, lse, spec);
  cases.attentionBackward = () => g.attentionBackward(qkv, inL(0), qkv, inL(1), qkv, inL(2), o, oL, lse, go, oL, gqkv, inL(0), gqkv, inL(1), gqkv, inL(2), spec);
}
{
  const x = buf('float32', N * C), w = buf('float32', C), bb = buf('float32', C), y = buf('float32', N * C), m = buf('float32', N), r = buf('float32', N, 0.1);
  const gy = buf('float32', N * C), gx = buf('float32', N * C), gw = buf('float32', C), gb = buf('float32', C);
  cases.layerNorm = () => g.layerNorm(x, w, bb, y, m, r, N, C, 1e-5);
  cases.layerNormBackward = () => g.layerNormBackward(x, w, m, r, gy, gx, gw, gb, N, C);
  const h = buf('float16', N * C), s4 = buf('float32', N * 4 * C), h4 = buf('float16', N * 4 * C);
  cases['cast f32->f16 [2048x128]'] = () => g.cast(x, h);
  cases['add f32 [2048x128]'] = () => g.binary('add', { view: x, offset: 0, strides: [1] }, { view: gy, offset: 0, strides: [1] }, y, [N * C]);
  cases['gelu_grad f16 [2048x512]'] = () => g.binary('gelu_grad', { view: h4, offset: 0, strides: [1] }, { view: h4, offset: 0, strides: [1] }, h4, [N * 4 * C]);
  cases['sum rows f32 [2048x512]'] = () => g.reduce('sum', s4, { ...s4, size: 4 * C }, 1, N, 4 * C);
  cases['fill f32 [128]'] = () => g.fill(w, 0);
  const logits = buf('float16', N * V), t = { buf: g.alloc('int32', N), offset: 0, size: N, dtype: 'int32' as const };
  g.write(t, Array.from({ length: N }, (_, i) => i % V));
  const loss = buf('float32', 1), lse = buf('float32', N), count = buf('float32', 1), gl = buf('float16', N * V);
  cases.crossEntropy = () => g.crossEntropy(logits, t, loss, lse, count, N, V, -100);
  cases.crossEntropyBackward = () => g.crossEntropyBackward(logits, t, lse, count, loss, gl, N, V, -100);
  const wte = buf('float32', V * C), emb = buf('float32', N * C), gwte = buf('float32', V * C);
  cases.gather = () => g.gather(wte, t, emb, N, C);
  cases.scatterAdd = () => g.scatterAdd(emb, t, gwte, N, C);
  // The embedding gradient of a 64k-token batch against GPT-2's vocabulary: the cost of finding each id's positions.
  const N64 = 65536, V2 = 50257, C64 = 64;
  const ids64 = { buf: g.alloc('int32', N64), offset: 0, size: N64, dtype: 'int32' as const };
  g.write(ids64, Array.from({ length: N64 }, (_, i) => ((i * 2654435761) >>> 7) % (i % 4 ? V2 : 64)));
  const g64 = buf('float32', N64 * C64), gwte2 = buf('float32', V2 * C64);
  cases['scatterAdd 64k tokens [65536x64, vocab 50257]'] = () => g.scatterAdd(g64, ids64, gwte2, N64, C64);
  const p = buf('float32', C * 4 * C), pg = buf('float32', C * 4 * C), pm = buf('float32', C * 4 * C), pv = buf('float32', C * 4 * C, 0.01);
  const step = buf('float32', 1), found = buf('float32', 1);
  g.write(step, [0]); g.write(found, [0]);
  cases['adamw [128x512]'] = () => g.update(ADAMW_RULE, {
    hypers: { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 },
    scalars: { step, foundInf: found }, tensors: [{ param: p, grad: pg, exp_avg: pm, exp_avg_sq: pv }],
  });
}

for (const [name, f] of Object.entries(cases)) {
  if (args.only && !name.includes(args.only)) continue;
  f();
  await g.sync();
  const before = new Map([...(await g.profile()).entries()].map(([k, v]) => [k, { ...v }]));
  const best = new Map<string, number>();
  // CPU time of the process per call: on a CPU adapter (lavapipe) it is the kernels' work, and unlike
  // the device timestamps it does not grow when other processes take the cores.
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < runs; r++) {
    const snap = new Map([...(await g.profile()).entries()].map(([k, v]) => [k, v.ms]));
    f();
    await g.sync();
    for (const [k, v] of await g.profile()) {
      const dt = v.ms - (snap.get(k) ?? 0);
      if (dt > 0) best.set(k, Math.min(best.get(k) ?? Infinity, dt));
    }
  }
  void before;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000 / runs;
  const total = [...best.values()].reduce((a, b) => a + b, 0);
  console.log(`${name.padEnd(28)} ${total.toFixed(2).padStart(8)} ms  cpu ${cpuMs.toFixed(2).padStart(7)} ms   (${[...best.entries()].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')})`);
}
g.destroy();
