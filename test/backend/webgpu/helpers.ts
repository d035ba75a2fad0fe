// Shared by the WebGPU backend tests: one backend per test process (pipelines
// are compiled once and shared by the tests of a file), random inputs with the
// awkward values (huge, tiny, subnormal, infinite, NaN, signed zeros), and
// comparison against the CPU backend.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { Backend, View } from '../../../src/backend/backend.js';
import { CpuBackend } from '../../../src/backend/cpu/backend.js';
import { Generator } from '../../../src/backend/random.js';
import { createWebGPUBackend, type WebGPUBackend } from '../../../src/backend/webgpu/backend.js';
import type { DType } from '../../../src/dtype/dtype.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

let gpu: WebGPUBackend | null = null;
/** Why the WebGPU tests are skipped here, or false when they run. */
export let skip: string | false = false;
try {
  gpu = await createWebGPUBackend({ register: false });
} catch (e) {
  // Where the WebGPU tests must run (CI installs a software Vulkan driver), a missing adapter is a failure.
  if (process.env.MIXPREC_REQUIRE_WEBGPU) throw new Error(`MIXPREC_REQUIRE_WEBGPU is set but WebGPU is unavailable: ${(e as Error).message}`);
  skip = `WebGPU tests skipped: ${(e as Error).message}`;
  console.log(skip);
}
after(() => gpu?.destroy());

export function webgpu(): WebGPUBackend {
  if (!gpu) throw new Error('no WebGPU backend');
  return gpu;
}

export const cpu = new CpuBackend();

export const FLOATS = ['float32', 'float16', 'bfloat16'] as const;

/** A fresh view holding `data` (rounded to dtype), starting `pad` elements into its buffer. */
export function upload(b: Backend, dtype: DType, data: ArrayLike<number>, pad = 0): View {
  const v = empty(b, dtype, data.length, pad);
  b.write(v, data);
  return v;
}

export function empty(b: Backend, dtype: DType, size: number, pad = 0, fillWith = 7): View {
  const buf = b.alloc(dtype, size + pad + 1);
  const whole: View = { buf, offset: 0, size: size + pad + 1, dtype };
  b.write(whole, new Array<number>(whole.size).fill(fillWith));
  return { buf, offset: pad, size, dtype };
}

/** The same data on both backends. */
export function both(dtype: DType, data: ArrayLike<number>, pad = 0): [View, View] {
  return [upload(webgpu(), dtype, data, pad), upload(cpu, dtype, data, pad)];
}

export function bothEmpty(dtype: DType, size: number, pad = 0): [View, View] {
  return [empty(webgpu(), dtype, size, pad), empty(cpu, dtype, size, pad)];
}

/** Values in [lo, hi) from a seeded stream. */
export function uniform(n: number, seed: number, lo = -3, hi = 3): number[] {
  const u = new Generator(seed).uniform(n);
  return Array.from(u, (x) => lo + (hi - lo) * x);
}

export function normal(n: number, seed: number, std = 1): number[] {
  return Array.from(new Generator(seed).normal(n), (x) => x * std);
}

/** Extreme values for a dtype: huge, tiny, subnormal, infinities, NaN and signed zeros. */
export function specials(dtype: DType): number[] {
  const wide = dtype !== 'float16';
  return [
    0, -0, Infinity, -Infinity, NaN, 1, -1,
    wide ? 1e30 : 6e4, wide ? -3e38 : -65504, wide ? 1e-30 : 1e-4, wide ? -1e-35 : -7e-5,
    wide ? 1e-40 : 3e-6, wide ? -5e-42 : -6e-8, // subnormal
  ];
}

/** Random values with the special ones mixed in at random places. */
export function mixed(n: number, seed: number, dtype: DType, lo = -3, hi = 3): number[] {
  const v = uniform(n, seed, lo, hi);
  const s = specials(dtype);
  const pos = new Generator(seed + 1).uniform(s.length);
  if (n > 0) s.forEach((x, i) => { v[Math.floor(pos[i]! * n)] = x; });
  return v;
}

/** Relative tolerance: a few units of the output dtype's last place (arithmetic is f32 on the GPU, f64 on the CPU). */
export function rtolFor(dtype: DType, f32 = 2e-6): number {
  return dtype === 'float16' ? 2 ** -9 : dtype === 'bfloat16' ? 2 ** -6 : f32;
}

export interface Tol {
  rtol: number;
  atol?: number;
}

/** Element-wise closeness; NaN matches NaN, infinities must match exactly. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const atol = tol.atol ?? 0;
  let bad = 0;
  const report: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    let ok: boolean;
    if (Number.isNaN(e)) ok = Number.isNaN(a);
    else if (!Number.isFinite(e)) ok = a === e;
    else ok = Math.abs(a - e) <= atol + tol.rtol * Math.abs(e);
    if (!ok) {
      bad++;
      if (report.length < 8) report.push(`[${i}] got ${a}, expected ${e}`);
    }
  }
  assert.equal(bad, 0, `${what}: ${bad} of ${expected.length} elements differ (rtol ${tol.rtol}, atol ${atol}):\n${report.join('\n')}`);
}

/** Runs checks and reports every failure at the end, not just the first. */
export async function collect(checks: (check: (f: () => Promise<void>) => Promise<void>) => Promise<void>): Promise<void> {
  const failures: string[] = [];
  await checks(async (f) => {
    try { await f(); } catch (e) { failures.push((e as Error).message.split('\n').slice(0, 4).join('\n') + (process.env.MIXPREC_TEST_STACKS ? (e as Error).stack : '')); }
  });
  assert.equal(failures.length, 0, failures.join('\n\n'));
}

/** Reads a view from both backends and compares. */
export async function compare(g: View, c: View, tol: Tol, what: string): Promise<void> {
  assertClose(await webgpu().read(g), await cpu.read(c), tol, what);
}

/** Bit-identical storage (NaN payloads included). */
export async function compareBits(g: View, c: View, what: string): Promise<void> {
  const a = await webgpu().readRaw(g), e = await cpu.readRaw(c);
  const ab = new Uint32Array(a.length), eb = new Uint32Array(e.length);
  if (a instanceof Float32Array) { ab.set(new Uint32Array(a.buffer, a.byteOffset, a.length)); eb.set(new Uint32Array((e as Float32Array).buffer, e.byteOffset, e.length)); }
  else { ab.set(a); eb.set(e); }
  const diffs: string[] = [];
  for (let i = 0; i < eb.length; i++) if (ab[i] !== eb[i] && diffs.length < 8) diffs.push(`[${i}] 0x${ab[i]!.toString(16)} vs 0x${eb[i]!.toString(16)}`);
  assert.equal(diffs.length, 0, `${what}: bits differ:\n${diffs.join('\n')}`);
}

/** Two GPU views hold the same bits. */
export async function sameGpuBits(a: View, b: View, what: string): Promise<void> {
  const ra = await webgpu().readRaw(a), rb = await webgpu().readRaw(b);
  assert.deepEqual(new Uint8Array(ra.buffer, ra.byteOffset, ra.byteLength), new Uint8Array(rb.buffer, rb.byteOffset, rb.byteLength), what);
}

/** The whole buffer of a view (to check that neighbours of a view were left alone). */
export function whole(v: View): View {
  return { buf: v.buf, offset: 0, size: v.buf.size, dtype: v.dtype };
}

after(() => {
  if (gpu && process.env.MIXPREC_GPU_STATS) console.log(`# webgpu stats: ${JSON.stringify(gpu.rt.stats)}`);
});
