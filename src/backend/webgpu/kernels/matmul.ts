// Matrix product C[b] = op(A[b]) @ op(B[b]) (+ bias) (-> tanh-GELU), in WGSL.
//
// op() is a transpose read in place: A is stored [M, K] or, with transA, [K, M];
// B is stored [K, N] or, with transB, [N, K]. Each operand has its own element
// offset, row stride and batch stride (0 shares one matrix across the batch).
// A, B, C, bias and the pre-GELU output may each be float32, float16 or
// bfloat16; a pipeline is generated per combination.
//
// This file is the host side: it binds the operands, caches pipelines, uniform
// buffers and bind groups, and records dispatches. matmul-plan.ts resolves a
// call and picks its variant; matmul-wgsl.ts generates the variant's WGSL.

/// <reference types="@webgpu/types" />

import {
  MatmulError, matmulVariant, resolveMatmul, type MatmulCall, type MatmulDType, type MatmulKernelKind, type MatmulVariant, type ResolvedMatmul,
} from './matmul-plan.js';
import { matmulTile, matmulWGSL, PARAMS, SUBGROUP_SIZES } from './matmul-wgsl.js';

export {
  MatmulError, matmulVariant, resolveMatmul,
  type MatmulCall, type MatmulDType, type MatmulKernelKind, type MatmulOperand, type MatmulVariant, type ResolvedMatmul,
} from './matmul-plan.js';
export { matmulTile, matmulWGSL, SUBGROUP_COLUMNS } from './matmul-wgsl.js';

/** What the kernels need to know about the device. */
export interface MatmulDeviceInfo {
  isSoftware: boolean;
  hasF16: boolean;
  hasSubgroups: boolean;
}

export interface MatmulKernelsOptions {
  /** Force a kernel; 'auto' takes 'subgroup' on software adapters with subgroups of a fixed size. */
  kernel?: MatmulKernelKind | 'auto';
  /**
   * Read float16 operands as f16 (default: when the device has shader-f16 and
   * is a GPU; on lavapipe packed words are faster: half the loads per value).
   */
  nativeF16?: boolean;
  /** Subgroup size for the 'subgroup' kernel (default: the adapter's, when min == max). */
  lanes?: number;
  /** Columns of the subgroup kernel's tile (default 16). */
  cols?: number;
}

const MAX_PARAM_BUFFERS = 1024;
const MAX_BIND_GROUPS = 4096;

function overlaps(x: GPUBufferBinding, y: GPUBufferBinding): boolean {
  const [xs, ys] = [x.offset ?? 0, y.offset ?? 0];
  return xs < ys + (y.size ?? 0) && ys < xs + (x.size ?? 0);
}

/**
 * The part of `operand.buffer` a matrix occupies, bound from the aligned byte
 * offset at or below its first element; `offset` is the first element relative
 * to that binding. Throws when the buffer is too small for the matrix.
 */
function bindingRange(
  name: string, operand: { buffer: GPUBuffer; dtype: MatmulDType }, first: number,
  batch: number, batchStride: number, rows: number, rowStride: number, cols: number, align: number,
): { resource: GPUBufferBinding; offset: number; wholeVectors: boolean } {
  const bytesPer = operand.dtype === 'float32' ? 4 : 2;
  const last = first + (batch - 1) * batchStride + (rows - 1) * rowStride + cols; // one past the last element
  const endBytes = Math.ceil((last * bytesPer) / 4) * 4;
  if (rows > 0 && cols > 0 && endBytes > operand.buffer.size) {
    throw new MatmulError(`matmul: ${name} needs ${endBytes} bytes (elements up to ${last} of ${operand.dtype}) but its buffer has ${operand.buffer.size}`);
  }
  const start = Math.floor((first * bytesPer) / align) * align;
  // Whole 16-byte vectors past the end stay inside the binding where the buffer allows.
  const size = Math.max(4, Math.min(operand.buffer.size, Math.ceil(endBytes / 16) * 16) - start);
  // 4-element loads need the binding to hold the last group of 4 whole: arrays of
  // vectors end at the last whole vector.
  const wholeVectors = start + size >= Math.ceil(last / 4) * 4 * bytesPer;
  return { resource: { buffer: operand.buffer, offset: start, size }, offset: first - start / bytesPer, wholeVectors };
}

/**
 * Matmul pipelines for one device: generates, compiles and caches a pipeline
 * per variant, keeps the small uniform buffers of recent shapes, and records
 * dispatches into a caller's compute pass.
 */
export class MatmulKernels {
  readonly kernel: MatmulKernelKind;
  readonly lanes: number;
  readonly cols: number;
  readonly nativeF16: boolean;
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; id: number }>();
  private readonly params = new Map<string, GPUBuffer>();
  /** Bind groups by pipeline, parameters and bound ranges: a training step repeats its products. */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;

  constructor(readonly device: GPUDevice, info: MatmulDeviceInfo, options: MatmulKernelsOptions = {}) {
    const adapterInfo = (device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
    const fixedSize = adapterInfo?.subgroupMinSize && adapterInfo.subgroupMinSize === adapterInfo.subgroupMaxSize ? adapterInfo.subgroupMinSize : 0;
    const lanes = options.lanes ?? fixedSize;
    const subgroupOk = info.hasSubgroups && SUBGROUP_SIZES.includes(lanes);
    const choice = options.kernel ?? 'auto';
    if (choice === 'subgroup' && !subgroupOk) {
      throw new MatmulError(`matmul: the subgroup kernel needs the subgroups feature and a fixed subgroup size in ${SUBGROUP_SIZES.join(', ')} (this device: subgroups ${info.hasSubgroups ? 'on' : 'off'}, size ${lanes || 'unknown'})`);
    }
    this.kernel = choice === 'auto' ? (info.isSoftware && subgroupOk ? 'subgroup' : 'tiled') : choice;
    this.lanes = this.kernel === 'subgroup' ? lanes : 0;
    this.cols = this.kernel === 'subgroup' ? options.cols ?? 16 : 0;
    this.nativeF16 = options.nativeF16 ?? (info.hasF16 && !info.isSoftware);
    if (this.nativeF16 && !info.hasF16) throw new MatmulError('matmul: nativeF16 needs the shader-f16 feature, which this device does not have');
  }

  /** Number of compiled pipelines (one per variant seen). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** The variant a call would run. */
  variantFor(call: MatmulCall): MatmulVariant {
    return this.plan(call).variant;
  }

  /** The compiled pipeline of a variant (compiled on first use). */
  pipelineFor(v: MatmulVariant): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; id: number } {
    const key = JSON.stringify(v);
    let entry = this.pipelines.get(key);
    if (entry) return entry;
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: 4, buffer: { type: 'uniform' } },
      { binding: 1, visibility: 4, buffer: { type: 'read-only-storage' } },
      { binding: 2, visibility: 4, buffer: { type: 'read-only-storage' } },
      { binding: 3, visibility: 4, buffer: { type: 'storage' } },
    ];
    if (v.bias) entries.push({ binding: 4, visibility: 4, buffer: { type: 'read-only-storage' } });
    if (v.pre) entries.push({ binding: 5, visibility: 4, buffer: { type: 'storage' } });
    const layout = this.device.createBindGroupLayout({ label: `matmul ${key}`, entries });
    const module = this.device.createShaderModule({ label: 'matmul', code: matmulWGSL(v) });
    const pipeline = this.device.createComputePipeline({
      label: 'matmul',
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    entry = { pipeline, layout, id: this.pipelines.size + 1 };
    this.pipelines.set(key, entry);
    return entry;
  }

  private paramBuffer(r: ResolvedMatmul): GPUBuffer {
    const values: Record<(typeof PARAMS)[number], number> = {
      M: r.m, N: r.n, K: r.k, pad0: 0, lda: r.lda, ldb: r.ldb, ldc: r.ldc, ldp: r.ldp,
      offA: r.offA, offB: r.offB, offC: r.offC, offP: r.offP,
      strideA: r.strideA, strideB: r.strideB, strideC: r.strideC, strideP: r.strideP,
      offBias: r.offBias, pad1: 0, pad2: 0, pad3: 0,
    };
    const data = new Uint32Array(PARAMS.map((p) => values[p]));
    const key = data.join(',');
    let buffer = this.params.get(key);
    if (buffer) {
      // Most recently used last, so the oldest is evicted first.
      this.params.delete(key);
      this.params.set(key, buffer);
      return buffer;
    }
    buffer = this.device.createBuffer({ label: 'matmul params', size: data.byteLength, usage: 0x40 /* UNIFORM */, mappedAtCreation: true });
    new Uint32Array(buffer.getMappedRange()).set(data);
    buffer.unmap();
    if (this.params.size >= MAX_PARAM_BUFFERS) {
      // Dropped, not destroyed: a command buffer not yet submitted may still use it.
      const oldest = this.params.keys().next().value as string;
      this.params.delete(oldest);
    }
    this.params.set(key, buffer);
    return buffer;
  }

  /** Workgroup counts of a call: [x, y, z]. */
  dispatchSize(r: ResolvedMatmul): [number, number, number] {
    const tile = matmulTile(this);
    return [Math.ceil(r.n / tile.cols), Math.ceil(r.m / tile.rows), r.batch];
  }

  /** Resolves a call: its bindings, parameters relative to them, and its variant. */
  private plan(call: MatmulCall): { params: ResolvedMatmul; variant: MatmulVariant; entries: GPUBindGroupEntry[] } {
    const r = resolveMatmul(call);
    // WebGPU forbids one buffer bound as read-only and as writable storage in the same dispatch.
    for (const [name, input] of [['A', call.a], ['B', call.b], ['bias', call.bias]] as const) {
      for (const [outName, output] of [['C', call.c], ['preGelu', call.preGelu]] as const) {
        if (input && output && input.buffer === output.buffer) {
          throw new MatmulError(`matmul: ${name} and ${outName} are in the same GPUBuffer; WebGPU cannot bind one buffer as an input and an output of one dispatch (give the output its own buffer)`);
        }
      }
    }
    // Each operand is bound from an aligned start just below its first element,
    // so that operands may live anywhere in large pooled buffers; offsets in the
    // uniform parameters become relative to those starts.
    const align = this.device.limits.minStorageBufferOffsetAlignment;
    const ranges = {
      a: bindingRange('A', call.a, r.offA, r.batch, r.strideA, r.transA ? r.k : r.m, r.lda, r.transA ? r.m : r.k, align),
      b: bindingRange('B', call.b, r.offB, r.batch, r.strideB, r.transB ? r.n : r.k, r.ldb, r.transB ? r.k : r.n, align),
      c: bindingRange('C', call.c, r.offC, r.batch, r.strideC, r.m, r.ldc, r.n, align),
      bias: call.bias ? bindingRange('bias', call.bias, r.offBias, 1, 0, 1, r.n, r.n, align) : null,
      pre: call.preGelu ? bindingRange('preGelu', call.preGelu, r.offP, r.batch, r.strideP, r.m, r.ldp, r.n, align) : null,
    };
    const params: ResolvedMatmul = {
      ...r, offA: ranges.a.offset, offB: ranges.b.offset, offC: ranges.c.offset,
      offBias: ranges.bias?.offset ?? 0, offP: ranges.pre?.offset ?? 0,
    };
    if (ranges.pre && call.preGelu!.buffer === call.c.buffer && overlaps(ranges.c.resource, ranges.pre.resource)) {
      throw new MatmulError('matmul: C and preGelu share a GPUBuffer and their bindings (aligned to the storage offset alignment) overlap');
    }
    const variant = matmulVariant(call, params, this.kernel, this.lanes, this.cols, this.nativeF16);
    variant.vecA &&= ranges.a.wholeVectors;
    variant.vecB &&= ranges.b.wholeVectors;
    const entries: GPUBindGroupEntry[] = [
      { binding: 1, resource: ranges.a.resource },
      { binding: 2, resource: ranges.b.resource },
      { binding: 3, resource: ranges.c.resource },
    ];
    if (ranges.bias) entries.push({ binding: 4, resource: ranges.bias.resource });
    if (ranges.pre) entries.push({ binding: 5, resource: ranges.pre.resource });
    return { params, variant, entries };
  }

  /** Records the matmul into `pass`. Nothing runs until the caller submits. */
  encode(pass: GPUComputePassEncoder, call: MatmulCall): void {
    const r = resolveMatmul(call);
    if (r.m === 0 || r.n === 0 || r.batch === 0) return;
    const { params, variant, entries } = this.plan(call);
    const size = this.dispatchSize(params);
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (size.some((s) => s > max)) {
      throw new MatmulError(`matmul: ${size.join(' x ')} workgroups exceed this device's ${max} per dimension (m=${params.m}, n=${params.n}, batch=${params.batch}); split the call`);
    }
    const { pipeline, layout, id } = this.pipelineFor(variant);
    entries.unshift({ binding: 0, resource: { buffer: this.paramBuffer(params) } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.bindGroupFor(id, layout, entries));
    pass.dispatchWorkgroups(size[0], size[1], size[2]);
  }

  private bindGroupFor(pipelineId: number, layout: GPUBindGroupLayout, entries: GPUBindGroupEntry[]): GPUBindGroup {
    let key = `${pipelineId}`;
    for (const e of entries) {
      const r = e.resource as GPUBufferBinding;
      let id = this.bufferIds.get(r.buffer);
      if (id === undefined) this.bufferIds.set(r.buffer, (id = this.nextBufferId++));
      key += `|${e.binding}:${id}:${r.offset ?? 0}:${r.size ?? ''}`;
    }
    let bg = this.bindGroups.get(key);
    if (!bg) {
      if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
      bg = this.device.createBindGroup({ label: 'matmul', layout, entries });
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  /** Forgets cached bind groups (call when buffers they may use are destroyed). */
  clearBindGroups(): void {
    this.bindGroups.clear();
  }

  /** Destroys the cached uniform buffers; pipelines are released with the device. */
  destroy(): void {
    this.bindGroups.clear();
    for (const b of this.params.values()) b.destroy();
    this.params.clear();
    this.pipelines.clear();
  }
}
