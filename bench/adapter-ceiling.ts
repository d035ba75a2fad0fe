// The adapter's float32 arithmetic ceiling: GFLOP/s of a kernel that does only
// multiply-adds on values held in registers (no memory traffic in its loop), the
// best over a few shapes of independent chains and unrolling. No matmul can beat
// it on that adapter, so it says what a matmul's GFLOP/s leave on the table and
// whether a target is within the adapter's reach at all.

/// <reference types="@webgpu/types" />

import { deviceWait } from '../src/backend/webgpu/device-wait.js';

const STORAGE = 0x80, UNIFORM = 0x40, COPY_DST = 0x8;
const WORKGROUP = 64;

/** One shape: `chains` independent vec4 accumulators, `unroll` multiply-adds of each per loop iteration. */
function ceilingWGSL(chains: number, unroll: number, iterations: number): string {
  const acc = Array.from({ length: chains }, (_, c) => `a${c}`);
  const step = acc.map((a) => `${a} = fma(${a}, m, b);`).join(' ');
  return `
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> coefficients: vec4<f32>;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  ${acc.map((a, c) => `var ${a} = vec4<f32>(f32(id.x) * 1e-9 + ${c}.0);`).join('\n  ')}
  let m = vec4<f32>(coefficients.x);
  let b = vec4<f32>(coefficients.y);
  for (var i = 0u; i < ${iterations}u; i++) {
    ${Array.from({ length: unroll }, () => step).join('\n    ')}
  }
  out[id.x] = ${acc.join(' + ')};
}`;
}

export interface CeilingResult {
  gflops: number;
  shapes: { chains: number; unroll: number; gflops: number }[];
}

/**
 * Measures the ceiling on `device`: each shape once to compile, then the fastest of `reps` timed
 * dispatches (a ceiling is what the adapter can do, so the run least disturbed by other work counts).
 * `groups` workgroups of 64 invocations: 1024 keep a CPU's cores busy; a GPU needs more to fill it.
 */
export async function measureCeiling(device: GPUDevice, { reps = 5, groups = 1024 } = {}): Promise<CeilingResult> {
  const out = device.createBuffer({ size: groups * WORKGROUP * 16, usage: STORAGE });
  const coefficients = device.createBuffer({ size: 16, usage: UNIFORM | COPY_DST });
  device.queue.writeBuffer(coefficients, 0, new Float32Array([0.999, 0.001, 0, 0]));
  const shapes: CeilingResult['shapes'] = [];
  const multiplyAdds = 4096; // of each vec4 chain per invocation, whatever the unrolling
  for (const [chains, unroll] of [[4, 4], [6, 4], [8, 2], [8, 4]] as const) {
    const iterations = multiplyAdds / unroll;
    const module = device.createShaderModule({ code: ceilingWGSL(chains, unroll, iterations) });
    const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }, { binding: 1, resource: { buffer: coefficients } }] });
    const run = async () => {
      const t0 = performance.now();
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(groups);
      pass.end();
      device.queue.submit([encoder.finish()]);
      await deviceWait(device.queue.onSubmittedWorkDone());
      return performance.now() - t0;
    };
    await run();
    const times: number[] = [];
    for (let r = 0; r < reps; r++) times.push(await run());
    times.sort((x, y) => x - y);
    const flops = groups * WORKGROUP * multiplyAdds * chains * 4 * 2;
    shapes.push({ chains, unroll, gflops: flops / (times[0]! * 1e6) });
  }
  out.destroy();
  coefficients.destroy();
  return { gflops: Math.max(...shapes.map((s) => s.gflops)), shapes };
}
