// The WebGPU backend's costs: per dispatch and per submit on tiny kernels, and
// a gpt-mini training step (B=16, T=128, 4 layers, width 128, 4 heads, vocab
// 256) with its device time per kernel (timestamp queries).
//
//   XDG_RUNTIME_DIR=/tmp node --import tsx bench/webgpu-backend.ts [--steps=3] [--precision=fp16] [--no-profile]

import * as mp from '../src/index.js';
import { createWebGPUBackend, type WebGPUBackend } from '../src/backend/webgpu/backend.js';
import type { View } from '../src/backend/backend.js';
import { peerTraining } from './peers/common.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')) as [string, string?][]);
const steps = +(args.steps ?? 3);
const precision = args.precision ?? 'fp16';

async function dispatchCosts(): Promise<void> {
  for (const perSubmit of [1, 8, 48, 256]) {
    const gpu = await createWebGPUBackend({ register: false, dispatchesPerSubmit: perSubmit });
    const buf = gpu.alloc('float32', 1024);
    const v: View = { buf, offset: 0, size: 1024, dtype: 'float32' };
    gpu.fill(v, 1);
    gpu.unary('affine', v, v, 1, 1);
    await gpu.sync();
    const n = 2000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) gpu.unary('affine', v, v, 1, 1);
    const t1 = performance.now();
    await gpu.sync();
    const t2 = performance.now();
    console.log(`tiny dispatch (1024 floats), ${perSubmit} per submit: record ${((t1 - t0) / n * 1000).toFixed(1)} us, end to end ${((t2 - t0) / n * 1000).toFixed(1)} us per dispatch`);
    gpu.destroy();
  }
}

async function trainSteps(profile: boolean): Promise<void> {
  const gpu: WebGPUBackend = await createWebGPUBackend({ profile });
  mp.setBackend(gpu);
  const V = 256, T = 128, L = 4, H = 4, D = 128, B = 16;
  // The peer-comparison workload: its initialisation, and weight decay on matrices only.
  const { record } = peerTraining({ vocabSize: V, blockSize: T, nLayer: L, nHead: H, nEmbd: D, dropout: 0, bias: true }, gpu, mp.parsePolicy(precision));
  const x = new Int32Array(B * T), y = new Int32Array(B * T);
  for (let i = 0; i < x.length; i++) { x[i] = (i * 37 + 11) % V; y[i] = (i * 37 + 48) % V; }
  let recordMs = 0;
  const step = async () => {
    const r0 = performance.now();
    const loss = record(x, y, [B, T]);
    recordMs += performance.now() - r0;
    const v = await loss.item();
    loss.dispose();
    return v;
  };
  // Warm-up: compiles every pipeline.
  let t = performance.now();
  await step();
  console.log(`first step (compiling pipelines): ${(performance.now() - t).toFixed(0)} ms, ${gpu.rt.stats.pipelines} pipelines`);
  await step();
  const before = { ...gpu.rt.stats };
  const mem0 = gpu.memory();
  t = performance.now();
  const cpu0 = process.cpuUsage();
  recordMs = 0;
  let loss = 0;
  for (let i = 0; i < steps; i++) loss = await step();
  const ms = (performance.now() - t) / steps;
  // CPU time of the whole process (host and, on a CPU adapter, the device's threads): unlike the
  // wall clock, it hardly changes when other processes share the cores.
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000 / steps;
  const mem1 = gpu.memory();
  const d = gpu.rt.stats.dispatches - before.dispatches, s = gpu.rt.stats.submits - before.submits;
  console.log(`${profile ? '[profiled] ' : ''}gpt-mini ${precision}: ${ms.toFixed(0)} ms/step (cpu ${cpuMs.toFixed(0)} ms, host recording ${(recordMs / steps).toFixed(0)} ms), ${((B * T) / ms * 1000).toFixed(0)} tokens/s, ` +
    `${(d / steps).toFixed(0)} dispatches, ${(s / steps).toFixed(0)} submits and ${((gpu.rt.stats.bindGroups - before.bindGroups) / steps).toFixed(0)} new bind groups per step, loss ${loss.toFixed(4)}, ` +
    `memory ${mem0.bytes} -> ${mem1.bytes} bytes (${mem1.buffers} buffers)`);
  if (profile) {
    const prof = [...(await gpu.profile()).entries()].sort((a, b) => b[1].ms - a[1].ms);
    const total = prof.reduce((a, [, p]) => a + p.ms, 0);
    const runs = steps + 2;
    console.log(`device time per step: ${(total / runs).toFixed(1)} ms`);
    // Totals by kind of kernel (the part of the label before the first ':' or ' ').
    const kinds = new Map<string, number>();
    for (const [k, p] of prof) {
      const kind = k.startsWith('ew:') ? `ew:${k.split(':')[1]}` : k.split(/[: ]/)[0]!.replace(/(Quad|SG|Rows|Final|Backward.*)$/, '');
      kinds.set(kind, (kinds.get(kind) ?? 0) + p.ms / runs);
    }
    console.log(`by kind: ${[...kinds.entries()].sort((a, b) => b[1] - a[1]).map(([k, ms]) => `${k} ${ms.toFixed(1)}`).join(', ')}`);
    for (const [k, p] of prof.slice(0, +(args.top ?? 40))) {
      console.log(`  ${k.padEnd(44)} ${(p.ms / runs).toFixed(2).padStart(8)} ms/step  ${(p.count / runs).toFixed(0).padStart(4)} calls/step  ${(p.ms / p.count * 1000).toFixed(0).padStart(7)} us/call`);
    }
  }
  gpu.destroy();
}

if (!('no-dispatch' in args)) await dispatchCosts();
await trainSteps(false);
if (!('no-profile' in args)) await trainSteps(true);
