// The WebGPU matmul against a float64 reference computed here from the same
// inputs (rounded to their storage dtype with the codec), for every dtype
// combination, transposes, batch broadcast, bias / GELU / pre-GELU / accumulate
// epilogues, odd shapes and output layouts, on both kernels; and the WGSL
// narrowing against codec.ts on special values. Skips, saying why, when no
// WebGPU adapter is available.

/// <reference types="@webgpu/types" />

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  float32Bits, float32BitsToBFloat16Bits, float32BitsToFloat16Bits, fromBFloat16Bits, fromFloat16Bits,
  fromFloat32Bits, roundTo, toBFloat16Bits, toFloat16Bits,
} from '../../../src/dtype/codec.js';
import {
  MatmulError, MatmulKernels, resolveMatmul, type MatmulCall, type MatmulDType, type MatmulKernelKind,
} from '../../../src/backend/webgpu/kernels/matmul.js';
import { WGSL_NARROW_16 } from '../../../src/backend/webgpu/kernels/wgsl-helpers.js';
import { skip, webgpu } from './helpers.js';

const STORAGE = 0x80, COPY_SRC = 0x4, COPY_DST = 0x8, MAP_READ = 0x1;
const DTYPES: MatmulDType[] = ['float32', 'float16', 'bfloat16'];

// ------------------------------------------------------------------ device ---

interface Gpu { device: GPUDevice; hasF16: boolean; hasSubgroups: boolean; isSoftware: boolean; lanes: number }
// The device of the shared test backend (one per test process), or null when the tests skip.
const gpu: Gpu | null = skip ? null : (() => {
  const b = webgpu(), i = b.adapterInfo;
  return { device: b.rt.device, hasF16: i.hasF16, hasSubgroups: i.hasSubgroups, isSoftware: i.isSoftware, lanes: i.subgroupSize };
})();

// ------------------------------------------------------------- host arrays ---

/** Deterministic values in [-1, 1). */
function values(count: number, seed: number): Float64Array {
  const out = new Float64Array(count);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const rounded = (xs: Float64Array, dtype: MatmulDType) => xs.map((x) => roundTo(x, dtype));

/** A buffer holding exactly `xs` (padded to 4 bytes). */
function upload(device: GPUDevice, dtype: MatmulDType, xs: ArrayLike<number>): GPUBuffer {
  const bytes = Math.max(4, Math.ceil(((dtype === 'float32' ? 4 : 2) * xs.length) / 4) * 4);
  const buffer = device.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST, mappedAtCreation: true });
  const range = buffer.getMappedRange();
  if (dtype === 'float32') new Float32Array(range).set(Array.from(xs));
  else {
    const h = new Uint16Array(range);
    const bits = dtype === 'float16' ? toFloat16Bits : toBFloat16Bits;
    for (let i = 0; i < xs.length; i++) h[i] = bits(xs[i]!);
  }
  buffer.unmap();
  return buffer;
}

async function download(device: GPUDevice, buffer: GPUBuffer, dtype: MatmulDType, count: number): Promise<Float64Array> {
  const bytes = Math.max(4, Math.ceil(((dtype === 'float32' ? 4 : 2) * count) / 4) * 4);
  const staging = device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(MAP_READ);
  const range = staging.getMappedRange();
  const out = new Float64Array(count);
  if (dtype === 'float32') out.set(new Float32Array(range, 0, count));
  else {
    const h = new Uint16Array(range, 0, count);
    for (let i = 0; i < count; i++) out[i] = dtype === 'float16' ? fromFloat16Bits(h[i]!) : fromBFloat16Bits(h[i]!);
  }
  staging.unmap();
  staging.destroy();
  return out;
}

// --------------------------------------------------------------- reference ---

const GELU_K = Math.sqrt(2 / Math.PI);
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(GELU_K * (x + 0.044715 * x * x * x)));

/** Unit roundoff of each dtype, used for the output rounding in the tolerance. */
const UNIT: Record<MatmulDType, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };
/** Smallest subnormal: rounding a tiny result can be off by this much. */
const TINY: Record<MatmulDType, number> = { float32: 2 ** -149, float16: 2 ** -24, bfloat16: 2 ** -133 };

interface Case {
  name: string;
  batch?: number; m: number; n: number; k: number;
  transA?: boolean; transB?: boolean;
  a: MatmulDType; b: MatmulDType; c: MatmulDType;
  bias?: MatmulDType; gelu?: boolean; pre?: MatmulDType; accumulate?: boolean;
  /** Batch strides of A and B (default dense); 0 shares one matrix. */
  strideA?: number; strideB?: number;
  /** Row strides and element offsets of A and B as stored (default dense, 0). */
  lda?: number; ldb?: number; offA?: number; offB?: number;
  /** Row stride and offset of C (default n and 0). */
  ldc?: number; offC?: number;
}

/**
 * Runs a case on the GPU and checks every element of C (and of the pre-GELU
 * output) against a float64 reference. Tolerance: the f32 accumulation error
 * bound (K + 4) * 2^-24 * sum_k |a||b|, plus one unit in the last place of the
 * output dtype (a value that lands near a rounding boundary may round either
 * way), plus, after GELU, the error of tanh.
 */
async function check(kernels: MatmulKernels, c: Case): Promise<void> {
  const device = gpu!.device;
  const batch = c.batch ?? 1;
  const { m, n, k } = c;
  // Stored shapes: A is [m, k] or [k, m]; B is [k, n] or [n, k]. Buffers end right after the last element.
  const [aRows, aCols] = c.transA ? [k, m] : [m, k];
  const [bRows, bCols] = c.transB ? [n, k] : [k, n];
  const lda = c.lda ?? aCols, ldb = c.ldb ?? bCols, offA = c.offA ?? 0, offB = c.offB ?? 0;
  const strideA = c.strideA ?? aRows * lda, strideB = c.strideB ?? bRows * ldb;
  const aCount = offA + (batch - 1) * strideA + (aRows - 1) * lda + aCols;
  const bCount = offB + (batch - 1) * strideB + (bRows - 1) * ldb + bCols;
  const ldc = c.ldc ?? n, offC = c.offC ?? 0;
  const cCount = offC + batch * m * ldc;
  const A = rounded(values(aCount, 1 + m * 7 + k), c.a);
  const B = rounded(values(bCount, 2 + n * 5 + k), c.b);
  const bias = c.bias ? rounded(values(n, 3 + n), c.bias) : null;
  const C0 = rounded(values(cCount, 4 + m), c.c).map((x) => x * 4);
  const call: MatmulCall = {
    batch, m, n, k, transA: c.transA, transB: c.transB,
    a: { buffer: upload(device, c.a, A), dtype: c.a, batchStride: strideA, rowStride: lda, offset: offA },
    b: { buffer: upload(device, c.b, B), dtype: c.b, batchStride: strideB, rowStride: ldb, offset: offB },
    c: { buffer: upload(device, c.c, C0), dtype: c.c, rowStride: ldc, offset: offC },
    gelu: c.gelu, accumulate: c.accumulate,
  };
  if (bias) call.bias = { buffer: upload(device, c.bias!, bias), dtype: c.bias! };
  if (c.pre) call.preGelu = { buffer: upload(device, c.pre, new Float64Array(batch * m * n)), dtype: c.pre };
  const r = resolveMatmul(call);

  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  kernels.encode(pass, call);
  pass.end();
  device.queue.submit([encoder.finish()]);
  const got = await download(device, call.c.buffer, c.c, cCount);
  const gotPre = c.pre ? await download(device, call.preGelu!.buffer, c.pre, batch * m * n) : null;

  const written = new Set<number>();
  let worst = 0;
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0, mag = 0;
        for (let q = 0; q < k; q++) {
          const a = A[offA + bi * strideA + (c.transA ? q * lda + i : i * lda + q)]!;
          const b = B[offB + bi * strideB + (c.transB ? j * ldb + q : q * ldb + j)]!;
          sum += a * b;
          mag += Math.abs(a * b);
        }
        const x = sum + (bias ? bias[j]! : 0);
        const accErr = (k + 4) * 2 ** -24 * (mag + (bias ? Math.abs(bias[j]!) : 0));
        if (gotPre) {
          const e = gotPre[bi * m * n + i * n + j]!;
          const tol = accErr + UNIT[c.pre!] * 2 * Math.abs(x) + TINY[c.pre!];
          assert.ok(Math.abs(e - x) <= tol, `${c.name}: pre-GELU [${bi},${i},${j}] = ${e}, expected ${x} +- ${tol}`);
        }
        let y = c.gelu ? gelu(x) : x;
        let tol = c.gelu ? 1.2 * accErr + 4e-6 * (1 + Math.abs(x)) : accErr;
        const at = offC + bi * m * ldc + i * ldc + j;
        if (c.accumulate) {
          y += C0[at]!;
          tol += 2 ** -24 * Math.abs(y);
        }
        tol += UNIT[c.c] * 2 * Math.abs(y) + TINY[c.c];
        const e = got[at]!;
        assert.ok(Math.abs(e - y) <= tol, `${c.name}: C[${bi},${i},${j}] = ${e}, expected ${y} +- ${tol}`);
        worst = Math.max(worst, Math.abs(e - y) / tol);
        written.add(at);
      }
    }
  }
  // Elements of C outside the matrix (offset, row padding) are untouched.
  for (let e = 0; e < cCount; e++) {
    if (!written.has(e)) assert.equal(got[e], C0[e], `${c.name}: C element ${e} outside the matrix was overwritten`);
  }
  for (const buffer of [call.a.buffer, call.b.buffer, call.c.buffer, call.bias?.buffer, call.preGelu?.buffer]) buffer?.destroy();
  assert.ok(worst <= 1);
}

// ------------------------------------------------------------------- tests ---

function kernelsFor(kind: MatmulKernelKind, options: { cols?: number; nativeF16?: boolean } = {}): MatmulKernels {
  const g = gpu!;
  return new MatmulKernels(g.device, g, { kernel: kind, lanes: g.lanes, cols: options.cols, nativeF16: options.nativeF16 ?? false });
}

// Most cases run on the kernel this adapter would use; lavapipe takes the
// subgroup kernel, with a 4-column tile that compiles much faster than the
// production 16-column one through the same code paths.
const hasSubgroupKernel = !!gpu && gpu.hasSubgroups && [4, 8, 16, 32, 64].includes(gpu.lanes);
const primary: MatmulKernelKind = hasSubgroupKernel ? 'subgroup' : 'tiled';

describe('webgpu matmul', { skip }, () => {
  test(`every dtype combination of A, B and C, with each transpose, aligned and unaligned shapes (${primary} kernel)`, async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    let i = 0;
    for (const a of DTYPES) for (const b of DTYPES) for (const c of DTYPES) {
      const transA = (i & 1) === 1, transB = (i & 2) === 2;
      // Even cases: sizes multiple of 4 (vector loads); odd cases: K % 4 == 3, unaligned strides.
      const [m, n, k] = i % 2 === 0 ? [36, 20, 24] : [37, 18, 23];
      await check(kernels, { name: `${a} x ${b} -> ${c}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} ${m}x${n}x${k}`, m, n, k, transA, transB, a, b, c });
      i++;
    }
    kernels.destroy();
  });

  test('odd shapes 1x1x1, 3x5x7, 65x33x17, 2x70x1, 66x9x130', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [65, 33, 17], [2, 70, 1], [66, 9, 130]];
    for (const [idx, [m, n, k]] of shapes.entries()) {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        await check(kernels, { name: `${dtype} ${m}x${n}x${k}`, m, n, k, transA: idx === 2, transB: idx >= 3, a: dtype, b: dtype, c: dtype });
      }
    }
    kernels.destroy();
  });

  test('batches, with A or B shared across the batch (stride 0)', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    await check(kernels, { name: 'shared B', batch: 3, m: 10, n: 12, k: 8, a: 'float32', b: 'bfloat16', c: 'float32', strideB: 0 });
    await check(kernels, { name: 'shared A^T', batch: 2, m: 9, n: 7, k: 13, transA: true, a: 'float16', b: 'float32', c: 'float16', strideA: 0 });
    await check(kernels, { name: 'batched B^T', batch: 4, m: 5, n: 8, k: 12, transB: true, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16' });
    kernels.destroy();
  });

  test('bias, GELU, pre-GELU output and accumulation', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    for (const bias of DTYPES) {
      await check(kernels, { name: `bias ${bias}`, m: 20, n: 14, k: 16, a: 'bfloat16', b: 'bfloat16', c: 'float16', bias });
    }
    await check(kernels, { name: 'bias+gelu+pre bf16', m: 19, n: 10, k: 12, transB: true, a: 'float16', b: 'float16', c: 'float16', bias: 'float32', gelu: true, pre: 'bfloat16' });
    await check(kernels, { name: 'gelu+pre f32', m: 8, n: 16, k: 9, a: 'float32', b: 'float32', c: 'float32', gelu: true, pre: 'float32' });
    await check(kernels, { name: 'accumulate f32', m: 12, n: 6, k: 20, transA: true, a: 'float32', b: 'bfloat16', c: 'float32', accumulate: true });
    await check(kernels, { name: 'accumulate bf16 + bias', m: 7, n: 12, k: 8, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16', bias: 'bfloat16', accumulate: true });
    kernels.destroy();
  });

  test('16-bit outputs whose rows do not start on a word (odd N, odd offset, padded rows)', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    // Odd row stride: neighbouring rows share words (compare-exchange at the row ends).
    await check(kernels, { name: 'f16 N=7', m: 9, n: 7, k: 8, a: 'float32', b: 'float32', c: 'float16' });
    await check(kernels, { name: 'bf16 N=5 accumulate', m: 6, n: 5, k: 4, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16', accumulate: true });
    await check(kernels, { name: 'bf16 odd offset', batch: 2, m: 5, n: 6, k: 4, a: 'float32', b: 'float32', c: 'bfloat16', offC: 1 });
    await check(kernels, { name: 'pre f16 N=3', m: 4, n: 3, k: 5, a: 'float32', b: 'float32', c: 'float32', gelu: true, pre: 'float16' });
    // Even row stride, odd N: the last word of a row is half padding, which must survive.
    await check(kernels, { name: 'bf16 N=7 ldc=8', m: 6, n: 7, k: 4, a: 'float32', b: 'float32', c: 'bfloat16', ldc: 8 });
    kernels.destroy();
  });

  test('operands at offsets inside larger buffers, padded rows, buffers ending mid-vector', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    // Offsets past the 256-byte binding alignment, aligned and not aligned to 4 elements.
    await check(kernels, { name: 'offsets 300/77', m: 12, n: 8, k: 16, a: 'float32', b: 'float32', c: 'float32', offA: 300, offB: 77, offC: 130 });
    await check(kernels, { name: 'offsets bf16 1000/4', m: 9, n: 12, k: 8, transB: true, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16', offA: 1000, offB: 4 });
    // Row stride 8 with K = 6: the buffer ends inside the last 4-element group of A.
    await check(kernels, { name: 'lda 8, k 6', m: 5, n: 8, k: 6, a: 'float32', b: 'float32', c: 'float32', lda: 8 });
    await check(kernels, { name: 'ldb 12, n 10, f16', m: 6, n: 10, k: 8, a: 'float16', b: 'float16', c: 'float32', ldb: 12 });
    kernels.destroy();
  });

  test('two inputs in one GPUBuffer (pooled memory); an input sharing the output buffer is refused', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    const device = gpu!.device;
    const [m, n, k] = [6, 5, 7];
    const A = rounded(values(m * k, 11), 'bfloat16'), B = rounded(values(k * n, 12), 'bfloat16');
    // A at element 0 and B at element 64 of one bfloat16 buffer.
    const both = new Float64Array(64 + k * n);
    both.set(A, 0);
    both.set(B, 64);
    const inputs = upload(device, 'bfloat16', both);
    const out = upload(device, 'float32', new Float64Array(m * n));
    const call: MatmulCall = {
      m, n, k,
      a: { buffer: inputs, dtype: 'bfloat16' }, b: { buffer: inputs, dtype: 'bfloat16', offset: 64 }, c: { buffer: out, dtype: 'float32' },
    };
    device.pushErrorScope('validation');
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    kernels.encode(pass, call);
    assert.throws(() => kernels.encode(pass, { ...call, c: { buffer: inputs, dtype: 'bfloat16', offset: 1024 } }), /A and C are in the same GPUBuffer/);
    pass.end();
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    assert.equal(error, null, error?.message);
    const got = await download(device, out, 'float32', m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let q = 0; q < k; q++) sum += A[i * k + q]! * B[q * n + j]!;
      assert.ok(Math.abs(got[i * n + j]! - sum) <= 2 ** -20 * (1 + Math.abs(sum)), `C[${i},${j}] = ${got[i * n + j]}, expected ${sum}`);
    }
    inputs.destroy();
    out.destroy();
    kernels.destroy();
  });

  test('float16 read natively as f16 (shader-f16)', { skip: gpu?.hasF16 ? false : 'no shader-f16 on this adapter' }, async () => {
    const kernels = kernelsFor(primary, { cols: 4, nativeF16: true });
    await check(kernels, { name: 'native f16 aligned', m: 12, n: 8, k: 16, a: 'float16', b: 'float16', c: 'float16' });
    await check(kernels, { name: 'native f16 A^T B^T unaligned', m: 7, n: 9, k: 11, transA: true, transB: true, a: 'float16', b: 'float32', c: 'float32', bias: 'float16' });
    kernels.destroy();
  });

  test('tiled kernel (the GPU one): each transpose, mixed dtypes, epilogues, shared operand, odd 16-bit output', { skip: primary === 'tiled' ? 'covered by the tests above' : false }, async () => {
    const kernels = kernelsFor('tiled');
    await check(kernels, { name: 'tiled f32 65x70x33', m: 65, n: 70, k: 33, a: 'float32', b: 'float32', c: 'float32' });
    await check(kernels, { name: 'tiled A^T B^T bias gelu pre, f16 N odd', m: 30, n: 17, k: 21, transA: true, transB: true, a: 'bfloat16', b: 'float16', c: 'float16', bias: 'float32', gelu: true, pre: 'bfloat16' });
    await check(kernels, { name: 'tiled B^T accumulate, shared A', batch: 2, m: 9, n: 12, k: 18, transB: true, a: 'float16', b: 'float32', c: 'float32', accumulate: true, strideA: 0 });
    await check(kernels, { name: 'tiled A^T bf16', m: 20, n: 66, k: 17, transA: true, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16' });
    kernels.destroy();
  });

  test('subgroup kernel with the production 16-column tile', { skip: hasSubgroupKernel ? false : 'no subgroups of a fixed size on this adapter' }, async () => {
    const kernels = kernelsFor('subgroup');
    assert.equal(kernels.cols, 16);
    await check(kernels, { name: 'tile16 f32', m: 70, n: 40, k: 36, a: 'float32', b: 'float32', c: 'float32' });
    await check(kernels, { name: 'tile16 f32 A^T', m: 64, n: 33, k: 21, transA: true, a: 'float32', b: 'float32', c: 'float32' });
    await check(kernels, { name: 'tile16 bf16 B^T bias gelu', m: 33, n: 48, k: 40, transB: true, a: 'bfloat16', b: 'bfloat16', c: 'bfloat16', bias: 'float32', gelu: true });
    kernels.destroy();
  });

  test('WGSL rounding to float16 / bfloat16 is bit-identical to codec.ts on special values', async () => {
    const device = gpu!.device;
    const specials = [
      0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, // zeros, infs, NaNs
      0x00000001, 0x807fffff, 0x00400000, // f32 subnormals
      0x33000000, 0x33000001, 0x33800000, 0x33c00000, 0x387fc000, 0x387fe000, 0x38800000, // f16 subnormal range, ties
      0x3f800000, 0x3f801000, 0x3f803000, 0x3f802000, 0x3f808000, 0x3f818000, 0x3f817fff, 0x3f818001, // ties at 1.0
      0x477fe000, 0x477fefff, 0x477ff000, 0x47800000, 0xc77ff000, // around 65504 and the f16 overflow threshold
      0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, // bf16 overflow by rounding
    ];
    const bits = [...specials, ...Array.from(values(2000, 99), (x) => Math.floor((x + 1) * 2 ** 31) >>> 0)];
    const input = device.createBuffer({ size: bits.length * 4, usage: STORAGE, mappedAtCreation: true });
    new Uint32Array(input.getMappedRange()).set(bits);
    input.unmap();
    const output = device.createBuffer({ size: bits.length * 4, usage: STORAGE | COPY_SRC });
    const module = device.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
${WGSL_NARROW_16}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < arrayLength(&x)) { let v = bitcast<f32>(x[id.x]); y[id.x] = f32_to_f16_bits(v) | (f32_to_bf16_bits(v) << 16u); }
}`,
    });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: input } }, { binding: 1, resource: { buffer: output } }] }));
    pass.dispatchWorkgroups(Math.ceil(bits.length / 64));
    pass.end();
    device.queue.submit([encoder.finish()]);
    const staging = device.createBuffer({ size: bits.length * 4, usage: MAP_READ | COPY_DST });
    const copy = device.createCommandEncoder();
    copy.copyBufferToBuffer(output, 0, staging, 0, bits.length * 4);
    device.queue.submit([copy.finish()]);
    await staging.mapAsync(MAP_READ);
    const got = new Uint32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    for (const [i, b] of bits.entries()) {
      const hex = (x: number) => `0x${x.toString(16)}`;
      assert.equal(got[i]! & 0xffff, float32BitsToFloat16Bits(b), `float16 of ${hex(b)} (${fromFloat32Bits(b)})`);
      assert.equal(got[i]! >>> 16, float32BitsToBFloat16Bits(b), `bfloat16 of ${hex(b)} (${fromFloat32Bits(b)})`);
    }
    for (const b of [input, output, staging]) b.destroy();
  });

  test('matmul stores round like codec.ts: ties, overflow, inf and NaN through C = A x [1]', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    const device = gpu!.device;
    const a = [1 + 2 ** -11, 1 + 3 * 2 ** -11, -0, Infinity, -Infinity, NaN, 65519, 65520, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 2 ** -14 * 1.5, 3.4e38];
    for (const c of ['float16', 'bfloat16'] as const) {
      const call: MatmulCall = {
        m: a.length, n: 1, k: 1,
        a: { buffer: upload(device, 'float32', a), dtype: 'float32' },
        b: { buffer: upload(device, 'float32', [1]), dtype: 'float32' },
        c: { buffer: upload(device, c, new Float64Array(a.length)), dtype: c },
      };
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      kernels.encode(pass, call);
      pass.end();
      device.queue.submit([encoder.finish()]);
      const got = await download(device, call.c.buffer, c, a.length);
      for (const [i, x] of a.entries()) {
        // The sum starts at +0, so -0 comes out as +0, as in the CPU backend.
        const sum = 0 + x;
        const want = c === 'float16' ? fromFloat16Bits(toFloat16Bits(sum)) : fromBFloat16Bits(toBFloat16Bits(sum));
        assert.ok(Object.is(got[i], want), `${c} of ${x}: got ${got[i]}, expected ${want} (bits ${float32Bits(x).toString(16)})`);
      }
      for (const b of [call.a.buffer, call.b.buffer, call.c.buffer]) b.destroy();
    }
    kernels.destroy();
  });

  test('pipelines are cached per variant and uniform buffers per shape', async () => {
    const kernels = kernelsFor(primary, { cols: 4 });
    const device = gpu!.device;
    const call: MatmulCall = {
      m: 4, n: 4, k: 4,
      a: { buffer: upload(device, 'float32', values(16, 5)), dtype: 'float32' },
      b: { buffer: upload(device, 'float32', values(16, 6)), dtype: 'float32' },
      c: { buffer: upload(device, 'float32', new Float64Array(16)), dtype: 'float32' },
    };
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    kernels.encode(pass, call);
    kernels.encode(pass, { ...call, m: 3 });
    assert.equal(kernels.pipelineCount, 1);
    kernels.encode(pass, { ...call, transA: true });
    assert.equal(kernels.pipelineCount, 2);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    kernels.destroy();
  });
});

describe('matmul call checks (no device needed)', () => {
  const fake = {} as GPUBuffer;
  const base: MatmulCall = { m: 2, n: 3, k: 4, a: { buffer: fake, dtype: 'float32' }, b: { buffer: fake, dtype: 'float32' }, c: { buffer: fake, dtype: 'float32' } };

  test('defaults: dense row and batch strides for each transpose', () => {
    const r = resolveMatmul({ ...base, batch: 2, transA: true, transB: true });
    assert.deepEqual([r.lda, r.ldb, r.ldc, r.strideA, r.strideB, r.strideC], [2, 4, 3, 8, 12, 6]);
    const s = resolveMatmul(base);
    assert.deepEqual([s.lda, s.ldb, s.ldc], [4, 3, 3]);
  });

  test('a buffer too small for its matrix is reported before anything is recorded', () => {
    const kernels = new MatmulKernels({ limits: { minStorageBufferOffsetAlignment: 256, maxComputeWorkgroupsPerDimension: 65535 } } as unknown as GPUDevice, { isSoftware: false, hasF16: false, hasSubgroups: false });
    const small = { size: 20 } as GPUBuffer, big = { size: 4096 } as GPUBuffer, out = { size: 4096 } as GPUBuffer;
    const pass = {} as GPUComputePassEncoder;
    assert.throws(() => kernels.encode(pass, { ...base, a: { buffer: small, dtype: 'float32' }, b: { buffer: big, dtype: 'float32' }, c: { buffer: out, dtype: 'float32' } }),
      /A needs 32 bytes \(elements up to 8 of float32\) but its buffer has 20/);
    assert.throws(() => kernels.encode(pass, { ...base, a: { buffer: big, dtype: 'float32' }, b: { buffer: big, dtype: 'bfloat16', offset: 2047 }, c: { buffer: out, dtype: 'float32' } }),
      /B needs 4120 bytes/);
  });

  test('bad calls throw MatmulError naming the problem', () => {
    assert.throws(() => resolveMatmul({ ...base, a: { buffer: fake, dtype: 'float64' as MatmulDType } }), (e: Error) => e instanceof MatmulError && /A has dtype float64/.test(e.message));
    assert.throws(() => resolveMatmul({ ...base, preGelu: { buffer: fake, dtype: 'float32' } }), /preGelu is given but gelu is not set/);
    assert.throws(() => resolveMatmul({ ...base, b: { buffer: fake, dtype: 'float32', rowStride: 2 } }), /B row stride 2 is shorter/);
    assert.throws(() => resolveMatmul({ ...base, m: -1 }), /m must be a non-negative integer/);
  });
});

