// Device time of the matmuls of a gpt-mini training step (B=16, T=128, width 128),
// forward products with their epilogues and the two backward forms, per storage
// dtype, timed back to back in one process (best of several runs, timestamps).
//
//   XDG_RUNTIME_DIR=/tmp node --import tsx bench/webgpu-matmul-gpt.ts [--dtype=float16] [--only=gelu] [--runs=5] [--cols=16]

/// <reference types="@webgpu/types" />
import { acquireDevice } from '../src/backend/webgpu/device.js';
import { MatmulKernels, type MatmulCall, type MatmulDType } from '../src/backend/webgpu/kernels/matmul.js';
import { deviceWait } from '../src/backend/webgpu/device-wait.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string?][]);
const runs = +(args.runs ?? 5);
const reps = +(args.reps ?? 3);
const { device, info, gpu } = await acquireDevice();
// Dawn delivers callbacks only while the GPU object is referenced.
(globalThis as { keepGpu?: unknown }).keepGpu = gpu;
const kernelOpts = JSON.parse(args.opts ?? '{}');
const kernels = new MatmulKernels(device, info, { ...(args.cols ? { cols: +args.cols } : {}), ...kernelOpts });
const STORAGE = 0x80, COPY_DST = 0x8;
const QUERY_RESOLVE = 0x200, COPY_SRC = 0x4, MAP_READ = 0x1;

function buffer(dtype: MatmulDType, n: number): GPUBuffer {
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(n * (dtype === 'float32' ? 4 : 2) / 16) * 16), usage: STORAGE | COPY_DST, mappedAtCreation: true });
  const r = b.getMappedRange();
  if (dtype === 'float32') { const f = new Float32Array(r); for (let i = 0; i < f.length; i++) f[i] = Math.sin(i * 12.9898) * 0.5; }
  else { const h = new Uint16Array(r); const top = dtype === 'float16' ? 0x3400 : 0x3e80; for (let i = 0; i < h.length; i++) h[i] = (i & 1 ? 0x8000 : 0) | (top + ((i * 7919) & 0x3ff)); }
  b.unmap();
  return b;
}

const dtypes = (args.dtype ? [args.dtype] : ['float32', 'float16', 'bfloat16']) as MatmulDType[];
const N = 2048, C = 128;
const cases: { name: string; call: MatmulCall; flops: number }[] = [];
for (const dt of dtypes) {
  const x = buffer(dt, N * 4 * C), y = buffer(dt, N * 4 * C), w = buffer(dt, 4 * C * C), bias = buffer(dt, 4 * C), pre = buffer(dt, N * 4 * C);
  const op = (b: GPUBuffer) => ({ buffer: b, dtype: dt });
  const add = (name: string, call: MatmulCall) => cases.push({ name: `${dt} ${name}`, call, flops: 2 * call.m * call.n * call.k });
  for (const [k, n] of [[128, 384], [128, 512], [512, 128]] as const) {
    add(`fwd ${N}x${n}x${k} NN`, { m: N, n, k, a: op(x), b: op(w), c: op(y) });
    add(`fwd ${N}x${n}x${k} NN +bias`, { m: N, n, k, a: op(x), b: op(w), c: op(y), bias: op(bias) });
    if (n === 512) add(`fwd ${N}x${n}x${k} NN +bias+gelu+pre`, { m: N, n, k, a: op(x), b: op(w), c: op(y), bias: op(bias), gelu: true, preGelu: op(pre) });
    add(`dX  ${N}x${k}x${n} NT`, { m: N, n: k, k: n, transB: true, a: op(x), b: op(w), c: op(y) });
    add(`dW  ${k}x${n}x${N} TN`, { m: k, n, k: N, transA: true, a: op(x), b: op(y), c: op(w) });
  }
}

const querySet = device.createQuerySet({ type: 'timestamp', count: 2 });
const resolve = device.createBuffer({ size: 16, usage: QUERY_RESOLVE | COPY_SRC });
const read = device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST });
async function time(call: MatmulCall): Promise<number> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  for (let i = 0; i < reps; i++) kernels.encode(pass, call);
  pass.end();
  enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await deviceWait(read.mapAsync(MAP_READ));
  const t = new BigUint64Array(read.getMappedRange());
  const ms = Number(t[1]! - t[0]!) / 1e6 / reps;
  read.unmap();
  return ms;
}

const best = new Map<string, number>();
const cpuMs = new Map<string, number>();
for (const c of cases) if (!args.only || c.name.includes(args.only)) await time(c.call);
for (let r = 0; r < runs; r++) {
  for (const c of cases) {
    if (args.only && !c.name.includes(args.only)) continue;
    const cpu0 = process.cpuUsage();
    const ms = await time(c.call);
    const cpu = process.cpuUsage(cpu0);
    best.set(c.name, Math.min(best.get(c.name) ?? Infinity, ms));
    cpuMs.set(c.name, (cpuMs.get(c.name) ?? 0) + (cpu.user + cpu.system) / 1000 / reps / runs);
  }
}
// Device time (best run) and CPU time of the process per product (mean): on a CPU adapter the
// CPU time is the kernel's work, and it hardly changes when other processes take the cores.
let total = 0, totalCpu = 0;
for (const c of cases) {
  const ms = best.get(c.name);
  if (ms === undefined) continue;
  total += ms;
  totalCpu += cpuMs.get(c.name)!;
  console.log(`${c.name.padEnd(40)} ${ms.toFixed(2).padStart(7)} ms ${(c.flops / ms / 1e6).toFixed(1).padStart(6)} GFLOP/s  cpu ${cpuMs.get(c.name)!.toFixed(2).padStart(7)} ms`);
}
console.log(`sum ${total.toFixed(1)} ms, cpu ${totalCpu.toFixed(1)} ms`);
device.destroy();
process.exit(0);
