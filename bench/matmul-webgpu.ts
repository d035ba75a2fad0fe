// WebGPU matmul throughput and queue overheads.
//
//   XDG_RUNTIME_DIR=/tmp node --import tsx bench/matmul-webgpu.ts [--out FILE] [--big] [--kernel auto|subgroup|tiled] [--quick]
//
// Square products n = 256 .. 2048 (4096 with --big) for float32, float16
// (native f16 reads when the adapter has shader-f16, and packed) and bfloat16
// storage, GPT-shaped products and their backward forms, then the cost of a
// dispatch, of a submit and of a small read-back. Compilation is excluded: each
// case runs once before it is timed, then many dispatches go into one submit.

/// <reference types="@webgpu/types" />

import { writeFileSync } from 'node:fs';
import { MatmulKernels, type MatmulCall, type MatmulDType, type MatmulKernelKind } from '../src/backend/webgpu/kernels/matmul.js';

interface Args { out?: string; big: boolean; kernel: MatmulKernelKind | 'auto'; quick: boolean }

function parseArgs(argv: string[]): Args {
  const args: Args = { big: false, kernel: 'auto', quick: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') args.out = argv[++i];
    else if (a === '--big') args.big = true;
    else if (a === '--quick') args.quick = true;
    else if (a === '--kernel') args.kernel = argv[++i] as Args['kernel'];
    else throw new Error(`unknown argument ${a} (expected --out FILE, --big, --quick, --kernel auto|subgroup|tiled)`);
  }
  return args;
}

// Kept for the whole run: Dawn tears the device down when its GPU object is collected.
let gpuInstance: GPU | null = null;

async function openDevice(): Promise<{ device: GPUDevice; description: string; isSoftware: boolean; hasF16: boolean; hasSubgroups: boolean }> {
  const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU };
  gpuInstance = create(['enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis']);
  const adapter = await gpuInstance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const features = (['shader-f16', 'subgroups'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
  });
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const description = info.description || info.device || info.vendor;
  const isSoftware = info.isFallbackAdapter === true || info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(description);
  return { device, description, isSoftware, hasF16: device.features.has('shader-f16'), hasSubgroups: device.features.has('subgroups') };
}

const STORAGE = 0x80, COPY_SRC = 0x4, COPY_DST = 0x8, MAP_READ = 0x1;

function randomBuffer(device: GPUDevice, dtype: MatmulDType, elements: number): GPUBuffer {
  const bytes = Math.ceil((dtype === 'float32' ? 4 : 2) * elements / 4) * 4;
  const buffer = device.createBuffer({ size: Math.max(16, bytes), usage: STORAGE | COPY_DST, mappedAtCreation: true });
  const range = buffer.getMappedRange();
  if (dtype === 'float32') {
    const f = new Float32Array(range);
    for (let i = 0; i < elements; i++) f[i] = Math.random() - 0.5;
  } else {
    // Small random 16-bit patterns around +-0.5 in either format: exponent bits 0x38/0x3e.. keep them finite.
    const h = new Uint16Array(range);
    const top = dtype === 'float16' ? 0x3400 : 0x3e80;
    for (let i = 0; i < elements; i++) h[i] = (Math.random() < 0.5 ? 0x8000 : 0) | (top + ((Math.random() * 0x3ff) | 0));
  }
  buffer.unmap();
  return buffer;
}

interface Case { name: string; m: number; n: number; k: number; transA: boolean; transB: boolean; dtype: MatmulDType; mode: string }
interface Result extends Case { gflops: number; msPerMatmul: number; dispatchesPerSubmit: number }

async function timeCase(device: GPUDevice, kernels: MatmulKernels, c: Case, targetMs: number): Promise<Result> {
  const a = randomBuffer(device, c.dtype, c.m * c.k), b = randomBuffer(device, c.dtype, c.k * c.n);
  const out = device.createBuffer({ size: Math.max(16, Math.ceil((c.dtype === 'float32' ? 4 : 2) * c.m * c.n / 4) * 4), usage: STORAGE | COPY_SRC });
  const call: MatmulCall = {
    m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB,
    a: { buffer: a, dtype: c.dtype }, b: { buffer: b, dtype: c.dtype }, c: { buffer: out, dtype: c.dtype },
  };
  const run = async (reps: number) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let i = 0; i < reps; i++) kernels.encode(pass, call);
    pass.end();
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  const first = await run(1); // compiles (excluded) and gives a first estimate
  const estimate = Math.max(0.05, Math.min(first, await run(1)));
  const reps = Math.max(1, Math.min(200, Math.round(targetMs / estimate)));
  let best = Infinity;
  for (let t = 0; t < 3; t++) best = Math.min(best, (await run(reps)) / reps);
  a.destroy(); b.destroy(); out.destroy();
  return { ...c, gflops: (2 * c.m * c.n * c.k) / (best * 1e6), msPerMatmul: best, dispatchesPerSubmit: reps };
}

interface Overheads { dispatchUs: number; dispatchWithBindGroupUs: number; submitUs: number; emptySubmitUs: number; readbackMs: number }

async function measureOverheads(device: GPUDevice): Promise<Overheads> {
  const buffer = device.createBuffer({ size: 256, usage: STORAGE | COPY_SRC });
  const module = device.createShaderModule({ code: '@group(0) @binding(0) var<storage, read_write> x: array<u32>;\n@compute @workgroup_size(1) fn main() { x[0] = x[0] + 1u; }' });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
  const encodeDispatches = (count: number, rebind: boolean) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < count; i++) {
      if (rebind) pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] }));
      pass.dispatchWorkgroups(1);
    }
    pass.end();
    return encoder.finish();
  };
  const best = async (f: () => Promise<number>) => { let b = Infinity; for (let i = 0; i < 3; i++) b = Math.min(b, await f()); return b; };
  // Warm up (compilation, first submit).
  device.queue.submit([encodeDispatches(1, false)]);
  await device.queue.onSubmittedWorkDone();

  const N = 2000;
  const perDispatch = async (rebind: boolean) => best(async () => {
    const t0 = performance.now();
    device.queue.submit([encodeDispatches(N, rebind)]);
    await device.queue.onSubmittedWorkDone();
    const withMany = performance.now() - t0;
    const t1 = performance.now();
    device.queue.submit([encodeDispatches(1, rebind)]);
    await device.queue.onSubmittedWorkDone();
    return ((withMany - (performance.now() - t1)) / (N - 1)) * 1000;
  });
  const dispatchUs = await perDispatch(false);
  const dispatchWithBindGroupUs = await perDispatch(true);

  const S = 200;
  const perSubmit = async (empty: boolean) => best(async () => {
    const t0 = performance.now();
    for (let i = 0; i < S; i++) device.queue.submit(empty ? [] : [encodeDispatches(1, false)]);
    await device.queue.onSubmittedWorkDone();
    return ((performance.now() - t0) / S) * 1000;
  });
  const submitUs = await perSubmit(false);
  const emptySubmitUs = await perSubmit(true);

  const staging = device.createBuffer({ size: 256, usage: MAP_READ | COPY_DST });
  const R = 50;
  const readbackMs = await best(async () => {
    const t0 = performance.now();
    for (let i = 0; i < R; i++) {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, 256);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MAP_READ);
      staging.unmap();
    }
    return (performance.now() - t0) / R;
  });
  buffer.destroy(); staging.destroy();
  return { dispatchUs, dispatchWithBindGroupUs, submitUs, emptySubmitUs, readbackMs };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dev = await openDevice();
  const { device } = dev;
  const modes: { mode: string; dtype: MatmulDType; nativeF16: boolean }[] = [
    { mode: 'f32', dtype: 'float32', nativeF16: false },
    ...(dev.hasF16 ? [{ mode: 'f16-native', dtype: 'float16' as const, nativeF16: true }] : []),
    { mode: 'f16-packed', dtype: 'float16', nativeF16: false },
    { mode: 'bf16', dtype: 'bfloat16', nativeF16: false },
  ];
  const kernelsByMode = new Map(modes.map((m) => [m.mode, new MatmulKernels(device, dev, { kernel: args.kernel, nativeF16: m.nativeF16 })]));
  const first = kernelsByMode.get('f32')!;
  console.log(`adapter: ${dev.description}${dev.isSoftware ? ' (software)' : ''}; kernel: ${first.kernel}${first.lanes ? ` (${first.lanes} lanes)` : ''}; shader-f16: ${dev.hasF16}, subgroups: ${dev.hasSubgroups}`);

  const sizes = args.quick ? [256, 512] : [256, 512, 1024, 2048, ...(args.big ? [4096] : [])];
  const cases: Case[] = [];
  for (const { mode, dtype } of modes) {
    for (const n of sizes) cases.push({ name: `square ${n}`, m: n, n, k: n, transA: false, transB: false, dtype, mode });
    // GPT shapes: Y = X W for X [2048 x 128], W [128 x 384]; and X [2048 x 512], W [512 x 128];
    // backward dX = dY W^T (transB) and dW = X^T dY (transA).
    for (const [rows, d, e] of args.quick ? [[2048, 128, 384]] : [[2048, 128, 384], [2048, 512, 128]]) {
      cases.push({ name: `[${rows}x${d}]@[${d}x${e}]`, m: rows!, n: e!, k: d!, transA: false, transB: false, dtype, mode });
      cases.push({ name: `[${rows}x${e}]@[${d}x${e}]^T`, m: rows!, n: d!, k: e!, transA: false, transB: true, dtype, mode });
      cases.push({ name: `[${rows}x${d}]^T@[${rows}x${e}]`, m: d!, n: e!, k: rows!, transA: true, transB: false, dtype, mode });
    }
  }

  const results: Result[] = [];
  console.log(`${'case'.padEnd(24)} ${'storage'.padEnd(11)} ${'GFLOP/s'.padStart(8)} ${'ms'.padStart(9)}`);
  for (const c of cases) {
    const r = await timeCase(device, kernelsByMode.get(c.mode)!, c, args.quick ? 150 : 400);
    results.push(r);
    console.log(`${c.name.padEnd(24)} ${c.mode.padEnd(11)} ${r.gflops.toFixed(2).padStart(8)} ${r.msPerMatmul.toFixed(3).padStart(9)}`);
  }

  const overheads = await measureOverheads(device);
  console.log(`dispatch (one pass, one submit): ${overheads.dispatchUs.toFixed(1)} us; with a new bind group each: ${overheads.dispatchWithBindGroupUs.toFixed(1)} us`);
  console.log(`submit of one tiny dispatch: ${overheads.submitUs.toFixed(1)} us; empty submit: ${overheads.emptySubmitUs.toFixed(1)} us`);
  console.log(`read-back of 256 bytes (copy, submit, mapAsync): ${overheads.readbackMs.toFixed(3)} ms`);

  const report = {
    adapter: dev.description, isSoftware: dev.isSoftware, kernel: first.kernel, lanes: first.lanes,
    hasF16: dev.hasF16, hasSubgroups: dev.hasSubgroups, results, overheads,
  };
  if (args.out) writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
  for (const k of kernelsByMode.values()) k.destroy();
  device.destroy();
  gpuInstance = null;
}

await main();
