/// <reference types="@webgpu/types" />
// Compute pipelines built from kernel sources and cached by key: a kernel's
// WGSL plus the storage declarations of its bindings (dtype, access, vec4),
// with each argument's helpers (load_x, put_x, ...) forwarding to its binding.

import type { DType } from '../../dtype/dtype.js';
import type { Buf } from '../backend.js';
import { WGSL_RANDOM } from '../random.js';
import type { Block } from './buffer-pool.js';
import { STAGE_COMPUTE } from './constants.js';
import { type Access, type WriteMode } from './storage.js';
import { argumentHelpers, bindingHelpers, declareStorage, linkHelpers, type BindingKind } from './kernels/wgsl-helpers.js';

export type ParamType = 'u32' | 'i32' | 'f32';

/** A compute kernel before its bindings are known: WGSL that calls the helpers of kernels/wgsl-helpers.ts by name (`load_x`, `put2_out`, `is_nan`, ...). */
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
  /** Declared four elements at a time: load4_, put4_, ... Every argument on the same buffer must agree. */
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
    // Each binding is declared once as b<i>; each argument's helpers forward to its binding's.
    const kinds: BindingKind[] = phys.map((p) => ({
      dtype: p.dtype, access: p.access, atomic: p.access === 'read_write' && p.mode === 'atomic' && !p.vec4, vec4: p.vec4, native: p.native,
    }));
    const helpers = new Map<string, string>();
    kinds.forEach((k, i) => bindingHelpers(`b${i}`, k).forEach((v, n) => helpers.set(n, v)));
    args.forEach((a, i) => argumentHelpers(a.name, `b${map[i]}`, kinds[map[i]!]!, a.access).forEach((v, n) => helpers.set(n, v)));
    const fields = src.params.length ? src.params.map(([n, t]) => `${n}: ${t},`).join(' ') : 'unused: u32,';
    const own = [
      src.random ? WGSL_RANDOM : '',
      `struct Params { ${fields} }\n@group(0) @binding(${phys.length}) var<uniform> P: Params;`,
      typeof src.body === 'function' ? src.body() : src.body,
    ].filter(Boolean).join('\n');
    const code = [
      ...(phys.some((p) => p.native) ? ['enable f16;'] : []),
      ...(src.subgroups ? ['enable subgroups;'] : []),
      ...kinds.map((k, i) => declareStorage(i, k)),
      ...linkHelpers(own, helpers),
      own,
    ].join('\n');

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
