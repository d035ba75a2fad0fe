/// <reference types="@webgpu/types" />
// Finding a GPU: navigator.gpu in browsers (and Deno), the `webgpu` package in
// Node; then an adapter and a device with the limits and features mixprec uses.

import { WebGPUUnavailableError } from './errors.js';

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** Ask for the fallback (software) adapter. */
  forceFallbackAdapter?: boolean;
  /** Node only: extra Dawn options passed to the `webgpu` package's create(). */
  dawnOptions?: readonly string[];
  /** Use shader-f16 for reading float16 where the adapter has it (default true). */
  useF16?: boolean;
  /** Use subgroup operations where the adapter has them (default true). */
  useSubgroups?: boolean;
}

/** What `--backend auto` reports about the adapter it picked. */
export interface AdapterInfo {
  /** A one-line description, e.g. "NVIDIA GeForce RTX 4090 (nvidia/lovelace)". */
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  /** A CPU implementation (lavapipe/llvmpipe, SwiftShader, WARP) rather than a GPU. */
  isSoftware: boolean;
  /** shader-f16 is available and enabled on the device. */
  hasF16: boolean;
  /** subgroups are available and enabled on the device. */
  hasSubgroups: boolean;
  /** The subgroup size when the adapter has one fixed size (lavapipe: 8), else 0. */
  subgroupSize: number;
}

export interface Acquired {
  device: GPUDevice;
  info: AdapterInfo;
  /** The GPU object: in Node, Dawn processes callbacks (map, work done) only while it is referenced. */
  gpu: GPU;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|warp|software|microsoft basic render/i;

function describeAdapter(adapter: GPUAdapter, hasF16: boolean, hasSubgroups: boolean): AdapterInfo {
  const i = adapter.info;
  const vendor = i?.vendor ?? '';
  const architecture = i?.architecture ?? '';
  const device = i?.device ?? '';
  const desc = i?.description ?? '';
  const fallback = (i as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter
    ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  const isSoftware = fallback || SOFTWARE.test(`${vendor} ${architecture} ${device} ${desc}`);
  const name = desc || device || vendor || 'unknown adapter';
  const tag = [vendor, architecture].filter(Boolean).join('/');
  const sizes = i as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  const subgroupSize = hasSubgroups && sizes?.subgroupMinSize && sizes.subgroupMinSize === sizes.subgroupMaxSize ? sizes.subgroupMinSize : 0;
  return {
    description: `${name}${tag ? ` (${tag})` : ''}${isSoftware ? ', software' : ''}`,
    vendor, architecture, device, isSoftware, hasF16, hasSubgroups, subgroupSize,
  };
}

interface GPUEntry {
  gpu: GPU;
  /** Node: the same entry with Dawn's unsafe f16 toggles (see node.ts); null in browsers. */
  withUnsafeF16: (() => Promise<GPU>) | null;
}

async function gpuEntry(opts: DeviceOptions): Promise<GPUEntry> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, withUnsafeF16: null };
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (!isNode) throw new WebGPUUnavailableError('no-navigator-gpu', 'this runtime has no navigator.gpu');
  try {
    const { nodeGPU } = await import('./node.js');
    return { gpu: await nodeGPU(opts.dawnOptions), withUnsafeF16: () => nodeGPU(opts.dawnOptions, true) };
  } catch (e) {
    throw new WebGPUUnavailableError('package-not-loadable', `the 'webgpu' package could not be loaded: ${(e as Error).message}`);
  }
}

/**
 * Whether to reopen the adapter with Dawn's unsafe f16 toggles: only when
 * shader-f16 is wanted and an NVIDIA adapter (whose Vulkan driver Dawn hides it
 * on) lacks it. Everywhere else unsafe APIs stay off.
 */
export function needsUnsafeF16(adapter: Pick<GPUAdapter, 'features' | 'info'>, opts: Pick<DeviceOptions, 'useF16'>): boolean {
  return opts.useF16 !== false && !adapter.features.has('shader-f16') && /nvidia/i.test(adapter.info?.vendor ?? '');
}

async function requestAdapter(gpu: GPU, opts: DeviceOptions): Promise<GPUAdapter | null> {
  try {
    return await gpu.requestAdapter({
      powerPreference: opts.powerPreference ?? 'high-performance',
      forceFallbackAdapter: opts.forceFallbackAdapter,
    });
  } catch (e) {
    throw new WebGPUUnavailableError('no-adapter', `requestAdapter failed: ${(e as Error).message}`);
  }
}

/** The largest limits of `adapter` that mixprec's kernels and buffers can use. */
function wantedLimits(adapter: GPUAdapter): Record<string, number> {
  const names = [
    'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
    'maxStorageBuffersPerShaderStage', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupsPerDimension',
  ] as const;
  const out: Record<string, number> = {};
  for (const n of names) {
    const v = adapter.limits[n];
    if (typeof v === 'number') out[n] = v;
  }
  return out;
}

export async function acquireDevice(opts: DeviceOptions = {}): Promise<Acquired> {
  const entry = await gpuEntry(opts);
  let gpu = entry.gpu;
  let adapter = await requestAdapter(gpu, opts);
  if (adapter && entry.withUnsafeF16 && needsUnsafeF16(adapter, opts)) {
    const unsafeGpu = await entry.withUnsafeF16();
    const unsafeAdapter = await requestAdapter(unsafeGpu, opts);
    if (unsafeAdapter) [gpu, adapter] = [unsafeGpu, unsafeAdapter];
  }
  if (!adapter) throw new WebGPUUnavailableError('no-adapter', 'no WebGPU adapter was found (no GPU, and no software Vulkan driver such as lavapipe)');
  const hasF16 = opts.useF16 !== false && adapter.features.has('shader-f16');
  const hasSubgroups = opts.useSubgroups !== false && adapter.features.has('subgroups');
  const requiredFeatures: GPUFeatureName[] = [];
  if (hasF16) requiredFeatures.push('shader-f16');
  if (hasSubgroups) requiredFeatures.push('subgroups' as GPUFeatureName);
  // For the backend's optional kernel profiler.
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits: wantedLimits(adapter) });
  } catch (e) {
    throw new WebGPUUnavailableError('device-request-failed', (e as Error).message);
  }
  return { device, info: describeAdapter(adapter, hasF16, hasSubgroups), gpu };
}
