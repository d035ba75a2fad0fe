// Modules: named trees of parameters, and the four layers a GPT is made of.
//
// A parameter is a leaf tensor with requiresGrad set and `name` set to its full
// dotted path in the tree (`h.0.attn.c_attn.weight`), so error messages and
// checkpoints use the same names. Parameters live in a per-module table, not in
// fields, so that `to(dtype)` can swap every one of them for a converted copy.

import type { Backend } from '../backend/backend.js';
import type { Generator } from '../backend/random.js';
import { resolveBackend } from '../backend/registry.js';
import { isFloat, parseDType, type DType, type FloatDType } from '../dtype/dtype.js';
import { Tensor } from '../tensor/tensor.js';
import { fusions } from '../tensor/fusions.js';
import { dropout, embedding, layerNorm, linear } from '../tensor/ops.js';
import { quantizedLinear, type QuantizedWeight } from '../tensor/quantized.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export class ModuleError extends MixprecError {
  override readonly code: ErrorCode = 'MODULE_INVALID';
}

/** Where a module's parameters are made. */
export interface ParameterOptions {
  backend?: Backend | string;
  dtype?: FloatDType;
  /** Leaves Linear weights unallocated, for quantized ones set later (setQuantized): a quantized model never holds its float matrices. */
  quantizedLinear?: boolean;
}

export { resolveBackend };

export abstract class Module {
  /** Dropout is active only while training (`train()` / `eval()`). */
  training = true;
  private readonly params = new Map<string, Tensor | null>();
  private readonly children = new Map<string, Module>();

  /** Adds a parameter under `name` (null records an absent one, e.g. a disabled bias). */
  protected addParameter(name: string, t: Tensor | null): void {
    if (this.params.has(name) || this.children.has(name)) throw new ModuleError(`parameter '${name}' is already defined`);
    if (t) t.requiresGrad_(true).name = name;
    this.params.set(name, t);
  }

  protected addModule<M extends Module>(name: string, m: M): M {
    if (this.params.has(name) || this.children.has(name)) throw new ModuleError(`submodule '${name}' is already defined`);
    this.children.set(name, m);
    return m;
  }

  /** The module's own parameter `name`, or null when it was registered as absent. */
  protected param(name: string): Tensor | null {
    const t = this.params.get(name);
    if (t === undefined) throw new ModuleError(`no parameter '${name}' in ${this.constructor.name}`);
    return t;
  }

  /** Replaces (and disposes) the module's own parameter `name`; null leaves it absent. */
  protected replaceParameter(name: string, t: Tensor | null): void {
    const old = this.param(name);
    if (old) {
      old.grad?.dispose();
      old.dispose();
    }
    if (t) t.requiresGrad_(true).name = old?.name ?? name;
    this.params.set(name, t);
  }

  /** Every parameter with its dotted name, in registration order (depth first). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.params) if (t) out.push([prefix + n, t]);
    for (const [n, m] of this.children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, m] of this.children) out.push(...m.namedModules(`${prefix}${n}.`));
    return out;
  }

  /** Sets every parameter's `name` to its full dotted path. Call once the tree is built. */
  protected nameParameters(): void {
    for (const [n, t] of this.namedParameters()) t.name = n;
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** The dtype of the parameters (the first one's; `to` keeps them uniform). */
  get dtype(): DType {
    return this.parameters()[0]?.dtype ?? 'float32';
  }

  get backend(): Backend {
    const p = this.parameters()[0];
    if (!p) throw new ModuleError(`${this.constructor.name} has no parameters`);
    return p.backend;
  }

  /**
   * Converts every parameter in place to `dtype` (for the 16-bit parameter
   * policies): each is replaced by a converted leaf with the same name. Gradients
   * are dropped, so do this before creating the optimizer.
   */
  to(dtype: DType | string): this {
    const d = parseDType(dtype);
    if (!isFloat(d)) throw new ModuleError(`to: parameters must stay floating point, got ${d}`);
    for (const [, m] of this.namedModules()) {
      for (const [n, t] of m.params) {
        if (!t || t.dtype === d) continue;
        const c = Tensor.empty(t.shape, d, t.backend);
        fusions(t.backend).cast(t.storageView, c.storageView);
        c.requiresGrad_(true).name = t.name;
        t.grad?.dispose();
        t.dispose();
        m.params.set(n, c);
      }
    }
    return this;
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }

  /** Releases every parameter and its gradient. The module is unusable afterwards. */
  dispose(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }
}

/** A parameter tensor, zero-filled; initialisers write it afterwards. `what` names it in errors. */
export function emptyParameter(shape: readonly number[], opts: ParameterOptions = {}, what?: string): Tensor {
  const t = Tensor.empty(shape, opts.dtype ?? 'float32', resolveBackend(opts.backend), what);
  t.backend.fill(t.storageView, 0);
  return t;
}

export interface LinearOptions extends ParameterOptions {
  /** Default true. */
  bias?: boolean;
  /** Apply tanh-GELU in the same kernel (the MLP's first layer). */
  gelu?: boolean;
}

/** y = x @ W + b with W stored [in, out] (GPT-2's Conv1D layout), as one fused kernel. */
export class Linear extends Module {
  readonly gelu: boolean;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    this.gelu = !!opts.gelu;
    const what = `Linear(${inFeatures}, ${outFeatures}).weight`;
    this.addParameter('weight', opts.quantizedLinear ? null : emptyParameter([inFeatures, outFeatures], opts, what));
    this.addParameter('bias', opts.bias === false ? null : emptyParameter([outFeatures], opts));
  }
  /** The float weight; a ModuleError once the layer is quantized (see `quantized`), or built for a quantized weight not yet set. */
  get weight(): Tensor {
    const what = `Linear(${this.inFeatures}, ${this.outFeatures}).weight`;
    if (this.quantized) throw new ModuleError(`${what} is quantized to ${this.quantized.format}: read .quantized`);
    const w = this.param('weight');
    if (!w) throw new ModuleError(`${what} was built for a quantized weight, and none has been set (setQuantized)`);
    return w;
  }
  get bias(): Tensor | null { return this.param('bias'); }

  /** The weight in a quantized format, transposed to [out, in] rows; null while it is a float parameter. */
  quantized: QuantizedWeight | null = null;

  /** Replaces the float weight by a quantized one (for inference: it takes no gradient). */
  setQuantized(w: QuantizedWeight): void {
    if (w.layout.n !== this.outFeatures || w.layout.k !== this.inFeatures) {
      throw new ModuleError(`Linear(${this.inFeatures}, ${this.outFeatures}): a quantized weight of [${w.layout.n} out, ${w.layout.k} in] does not fit`);
    }
    if (!this.quantized) this.replaceParameter('weight', null);
    this.quantized?.dispose();
    this.quantized = w;
  }

  forward(x: Tensor): Tensor {
    if (this.quantized) return quantizedLinear(x, this.quantized, this.bias, { gelu: this.gelu });
    return linear(x, this.weight, this.bias, { weightLayout: 'in,out', gelu: this.gelu });
  }

  override dispose(): void {
    super.dispose();
    this.quantized?.dispose();
    this.quantized = null;
  }
}

/** A table of `num` vectors of width `dim`, looked up by int32 ids. */
export class Embedding extends Module {
  constructor(readonly num: number, readonly dim: number, opts: ParameterOptions = {}) {
    super();
    this.addParameter('weight', emptyParameter([num, dim], opts, `Embedding(${num}, ${dim}).weight`));
  }
  get weight(): Tensor { return this.param('weight')!; }

  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }
}

export interface LayerNormOptions extends ParameterOptions {
  /** Learned bias (default true). */
  bias?: boolean;
  eps?: number;
}

/** Layer norm over the last dimension with a learned gain (initialised to 1) and bias. */
export class LayerNorm extends Module {
  readonly eps: number;
  constructor(readonly dim: number, opts: LayerNormOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    const w = emptyParameter([dim], opts);
    w.backend.fill(w.storageView, 1);
    this.addParameter('weight', w);
    this.addParameter('bias', opts.bias === false ? null : emptyParameter([dim], opts));
  }
  get weight(): Tensor { return this.param('weight')!; }
  get bias(): Tensor | null { return this.param('bias'); }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Inverted dropout while training; the identity in eval mode or with p = 0. */
export class Dropout extends Module {
  constructor(readonly p: number, readonly generator?: Generator) {
    super();
    if (!(p >= 0 && p < 1)) throw new ModuleError(`Dropout: probability must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    return dropout(x, this.p, { generator: this.generator });
  }
}
