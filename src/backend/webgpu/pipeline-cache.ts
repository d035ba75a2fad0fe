/// <reference types="@webgpu/types" />
// Compute pipelines built from kernel sources and cached by key: a kernel's
// WGSL plus the storage declarations of its bindings (dtype, access, vec4),
// with each argument's helpers (load_x, put_x, ...) forwarding to its binding.

import type { DType } from '../../dtype/dtype.js';
import type { Buf } from '../backend.js';
import { WGSL_RANDOM } from '../random.js';
import type { Block } from './buffer-pool.js';
import { STAGE_COMPUTE } from './constants.js';
import { WGSL_HALF, declareBinding, declareVec4, is16Bit, type Access, type WriteMode } from './storage.js';

export type ParamType = 'u32' | 'i32' | 'f32';

/** A compute kernel before its bindings are known: WGSL that uses the helpers of `declareBinding` for each named binding. */
export interface KernelSource {
  /** Identifies `body` and `params`: equal keys must mean equal code. */
  key: string;
  params: readonly (readonly [string, ParamType])[];
  /**
   * WGSL: helper functions and `@compute ... fn main(...)`; parameters are fields of `P`.
   * A function is called only when the pipeline is built (generating WGSL on every dispatch costs more than the dispatch).
   */
  body: string | (() => string);
  /** Include WGSL_RANDOM. */
  random?: boolean;
  /** Needs `enable subgroups;`. */
  subgroups?: boolean;
}

/** One named binding of a dispatch. */
export interface Arg {
  name: string;
  buf: Buf;
  access: Access;
  /** For read_write bindings (default 'owned'). */
  mode?: WriteMode;
  /** Reads raw bits (`loadbits_`): float16 is then declared as u32 words even with shader-f16. */
  bits?: boolean;
  /** Declared four elements at a time (`declareVec4`): load4_, put4_, ... Every argument on the same buffer must agree. */
  vec4?: boolean;
}

/** One binding of a dispatch: a distinct block and how the kernel declares it. */
export interface Physical {
  block: Block;
  dtype: DType;
  access: Access;
  mode: WriteMode;
  native: boolean;
  vec4: boolean;
}

export interface Pipeline {
  pipeline: GPUComputePipeline;
  layoutKey: string;
  layout: GPUBindGroupLayout;
}

/** Common WGSL: bit-level float tests that no fast-math pass can fold away, and a quiet NaN. */
const WGSL_COMMON = /* wgsl */ `
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
// Through a var: constant NaN and infinity are rejected by WGSL's constant evaluation.
fn nan_f32() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
fn inf_f32() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
`;

export class PipelineCache {
  private pipelines = new Map<string, Pipeline>();
  private layouts = new Map<string, GPUBindGroupLayout>();

  constructor(
    private readonly device: GPUDevice,
    /** The runtime's counters (pipelines built, compile time). */
    private readonly stats: { pipelines: number; compileMs: number },
    private readonly checkShaders: boolean,
  ) {}

  /** The pipeline of `src` with these bindings (`map[i]`: the binding of argument i), built on first use. */
  get(src: KernelSource, args: readonly Arg[], phys: Physical[], map: number[]): Pipeline {
    let key = src.key + '#';
    for (const p of phys) key += `${p.dtype}:${p.access === 'read' ? 'r' : 'w'}${p.mode === 'atomic' ? 'a' : ''}${p.native ? 'n' : ''}${p.vec4 ? '4' : ''},`;
    key += '#' + map.join(',');
    let pipe = this.pipelines.get(key);
    if (!pipe) {
      pipe = this.build(src, args, phys, map);
      this.pipelines.set(key, pipe);
    }
    return pipe;
  }

  clear(): void {
    this.pipelines.clear();
  }

  private build(src: KernelSource, args: readonly Arg[], phys: Physical[], map: number[]): Pipeline {
    const t0 = performance.now();
    const parts: string[] = [];
    if (phys.some((p) => p.native)) parts.push('enable f16;');
    if (src.subgroups) parts.push('enable subgroups;');
    if (phys.some((p) => is16Bit(p.dtype))) parts.push(WGSL_HALF);
    if (src.random) parts.push(WGSL_RANDOM);
    parts.push(WGSL_COMMON);
    phys.forEach((p, i) => parts.push(p.vec4
      ? declareVec4(`b${i}`, i, p.dtype, p.access, { nativeF16: p.native })
      : declareBinding(`b${i}`, i, p.dtype, p.access, { nativeF16: p.native }, p.mode)));
    // Each argument's helpers forward to its physical binding.
    args.forEach((a, i) => {
      const p = phys[map[i]!]!;
      const b = `b${map[i]}`;
      const n = a.name;
      const w: string[] = [`fn load_${n}(i: u32) -> f32 { return load_${b}(i); }`];
      if (p.dtype === 'int32') w.push(`fn loadi_${n}(i: u32) -> i32 { return loadi_${b}(i); }`);
      if (!p.native) w.push(`fn loadbits_${n}(i: u32) -> u32 { return loadbits_${b}(i); }`);
      if (p.vec4) {
        w.push(`fn load4_${n}(q: u32) -> vec4<f32> { return load4_${b}(q); }`);
        if (!p.native) w.push(`fn loadbits4_${n}(q: u32) -> vec4<u32> { return loadbits4_${b}(q); }`);
        if (a.access === 'read_write') {
          w.push(`fn put4_${n}(q: u32, v: vec4<f32>) { put4_${b}(q, v); }`);
          w.push(`fn put4bits_${n}(q: u32, v: vec4<u32>) { put4bits_${b}(q, v); }`);
        }
      }
      if (a.access === 'read_write') {
        w.push(`fn put_${n}(e: u32, v: f32) { put_${b}(e, v); }`);
        w.push(`fn put2_${n}(e: u32, v0: f32, v1: f32, m: u32) { put2_${b}(e, v0, v1, m); }`);
        w.push(`fn putbits_${n}(e: u32, v: u32) { putbits_${b}(e, v); }`);
        w.push(`fn put2bits_${n}(e: u32, v0: u32, v1: u32, m: u32) { put2bits_${b}(e, v0, v1, m); }`);
        if (p.mode === 'atomic' && p.dtype === 'float32') w.push(`fn raise_${n}(i: u32) { raise_${b}(i); }`);
      }
      parts.push(w.join('\n'));
    });
    const fields = src.params.length ? src.params.map(([n, t]) => `${n}: ${t},`).join(' ') : 'unused: u32,';
    parts.push(`struct Params { ${fields} }\n@group(0) @binding(${phys.length}) var<uniform> P: Params;`);
    parts.push(`fn flat_id(gid: vec3u, nwg: vec3u, wg: u32) -> u32 { return gid.x + gid.y * nwg.x * wg; }`);
    parts.push(typeof src.body === 'function' ? src.body() : src.body);
    const code = parts.join('\n');

    const layoutKey = phys.map((p) => (p.access === 'read' ? 'r' : 'w')).join('');
    let layout = this.layouts.get(layoutKey);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = phys.map((p, i) => ({
        binding: i, visibility: STAGE_COMPUTE,
        buffer: { type: p.access === 'read' ? 'read-only-storage' : 'storage' },
      }));
      entries.push({ binding: phys.length, visibility: STAGE_COMPUTE, buffer: { type: 'uniform', minBindingSize: 0 } });
      layout = this.device.createBindGroupLayout({ entries });
      this.layouts.set(layoutKey, layout);
    }
    const module = this.device.createShaderModule({ code });
    if (this.checkShaders) {
      module.getCompilationInfo().then((info) => {
        for (const m of info.messages) if (m.type === 'error') console.error(`${src.key}: ${m.lineNum}:${m.linePos} ${m.message}\n${code.split('\n')[m.lineNum - 1]}`);
      });
    }
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    this.stats.pipelines++;
    this.stats.compileMs += performance.now() - t0;
    return { pipeline, layoutKey, layout };
  }
}
