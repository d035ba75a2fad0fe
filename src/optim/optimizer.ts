// The optimizer base: parameter groups, per-group state on the backend,
// float32 master weights for 16-bit parameters, and a step that applies the
// optimizer's update rule (its formula, as data) to every parameter of a group
// with the backend's one multi-tensor update primitive.

import type { UpdateCall, UpdateRule } from '../backend/update-rule.js';
import type { ScalableOptimizer } from '../amp/grad-scaler.js';
import { Tensor, keep, tidy } from '../tensor/tensor.js';
import { full } from '../tensor/creation.js';
import { fusions } from '../tensor/fusions.js';
import { streamKey } from '../backend/random.js';
import { MixprecError, type ErrorCode } from '../errors.js';

export class OptimizerError extends MixprecError {
  override readonly code: ErrorCode = 'OPTIMIZER_INVALID';
}

export interface BaseOptions {
  lr: number;
  weightDecay: number;
}

/** A parameter group: its parameters and any options that override the optimizer's defaults. */
export type ParamGroupSpec<O> = { params: readonly Tensor[] } & Partial<O>;

export interface ParamGroup<O> {
  params: Tensor[];
  options: O;
  /** float32 [1] on the backend: steps taken (skipped steps not counted). */
  step: Tensor;
  /** Optimizer state per parameter, by name (exp_avg, momentum_buffer, ...; 1-element ones such as momentum_step too). */
  state: Map<string, Tensor>[];
  /** float32 master copies and gradients of 16-bit parameters (null entries for float32 ones). */
  master: (Tensor | null)[];
  masterGrad: (Tensor | null)[];
}

export interface OptimizerOptions {
  /** Keep float32 master weights for 16-bit parameters (default true). */
  masterWeights?: boolean;
  /** Round bfloat16 parameters stochastically when writing them from the master copy (seeded). */
  stochasticRounding?: boolean | { seed: number };
}

export interface OptimizerStateDict<O> {
  type: string;
  groups: (O & { params: number[] })[];
  /** Steps taken per group. */
  steps: number[];
  /** Per parameter (global index): state buffers by name, as float32 values. */
  state: Record<number, Record<string, Float32Array>>;
  /** Random numbers drawn so far by stochastic rounding (when enabled), so that a resumed run draws the same ones. */
  stochasticRoundingCounter?: number;
}

const is16Bit = (t: Tensor) => t.dtype === 'float16' || t.dtype === 'bfloat16';

/** The float32 master copy of a 16-bit parameter; an allocation error names the parameter. */
function masterCopy(p: Tensor): Tensor {
  try {
    return keep(tidy(() => p.to('float32').detach()));
  } catch (e) {
    if (e instanceof Error) e.message = `the float32 master copy of ${p.describe()}: ${e.message}`;
    throw e;
  }
}

/** The optimizer holding each parameter, so that clipGradNorm(params) finds the gradient it will apply. */
const owners = new WeakMap<Tensor, Optimizer<BaseOptions>>();

/**
 * The gradient the optimizer holding `p` will apply: its float32 master
 * gradient once prepared (by GradScaler.unscale, say), else `p.grad`, from
 * which the master gradient will be copied.
 */
export function appliedGradient(p: Tensor): Tensor | null {
  return owners.get(p)?.appliedGradient(p) ?? p.grad;
}

export abstract class Optimizer<O extends BaseOptions> implements ScalableOptimizer {
  readonly paramGroups: ParamGroup<O>[] = [];
  private prepared = false;
  private srCounter = 0;
  private readonly srSeed: number | null;

  protected constructor(
    readonly type: string,
    params: readonly Tensor[] | readonly ParamGroupSpec<O>[],
    readonly defaults: O,
    /** Per-parameter state: `element` tensors of the parameter's shape, `scalar` 1-element tensors. */
    states: { element: readonly string[]; scalar?: readonly string[] },
    opts: OptimizerOptions = {},
  ) {
    const specs: ParamGroupSpec<O>[] = params.length > 0 && params[0] instanceof Tensor
      ? [{ params: params as Tensor[] } as unknown as ParamGroupSpec<O>]
      : (params as ParamGroupSpec<O>[]);
    if (specs.length === 0 || specs.every((g) => g.params.length === 0)) throw new OptimizerError(`${type}: got an empty parameter list`);
    const seen = new Set<Tensor>();
    const sr = opts.stochasticRounding;
    this.srSeed = sr ? (typeof sr === 'object' ? sr.seed : 0) : null;
    for (const spec of specs) {
      const { params: ps, ...overrides } = spec;
      for (const p of ps) {
        if (seen.has(p)) throw new OptimizerError(`${type}: parameter ${p.describe()} appears in more than one group`);
        if (!p.requiresGrad) throw new OptimizerError(`${type}: parameter ${p.describe()} does not require grad`);
        seen.add(p);
        owners.set(p, this as unknown as Optimizer<BaseOptions>);
      }
      const options = { ...defaults, ...(overrides as unknown as Partial<O>) };
      this.validate(options);
      const useMaster = opts.masterWeights ?? true;
      const master = ps.map((p) => (useMaster && is16Bit(p) ? masterCopy(p) : null));
      this.paramGroups.push({
        params: [...ps],
        options,
        step: keep(full([], 0, { backend: ps[0]!.backend })),
        // States are float32 when there is a master copy (or the parameter is float32); a 16-bit
        // parameter without master weights keeps its states in its own dtype, as PyTorch would.
        state: ps.map((p, i) => new Map([
          ...states.element.map((n) => [n, keep(full(p.shape, 0, {
            backend: p.backend, dtype: master[i] || !is16Bit(p) ? 'float32' : p.dtype,
          }))] as const),
          ...(states.scalar ?? []).map((n) => [n, keep(full([], 0, { backend: p.backend }))] as const),
        ])),
        master,
        masterGrad: ps.map((p) => (useMaster && is16Bit(p) ? keep(full(p.shape, 0, { backend: p.backend })) : null)),
      });
    }
  }

  protected abstract validate(options: O): void;
  /** The update rule for a group with these options: slots param, grad and the element states; scalars step and foundInf. */
  protected abstract rule(options: O): UpdateRule;
  /** The rule's hyperparameters for these options. */
  protected abstract hypers(options: O): Record<string, number>;

  /** Every parameter, in group order (the indices used by stateDict). */
  get params(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /**
   * Random numbers drawn so far by stochastic rounding, or null when it is off.
   * Checkpoints keep it, so that a resumed run draws the same numbers.
   */
  get stochasticRoundingCounter(): number | null {
    return this.srSeed === null ? null : this.srCounter;
  }

  set stochasticRoundingCounter(n: number | null) {
    if (this.srSeed === null || n === null) return;
    if (!Number.isSafeInteger(n) || n < 0) throw new OptimizerError(`stochasticRoundingCounter must be a non-negative integer, got ${n}`);
    this.srCounter = n;
  }

  setLr(lr: number): void {
    for (const g of this.paramGroups) g.options.lr = lr;
  }

  /**
   * The gradients the next step will use, for a GradScaler to unscale in place:
   * each parameter's own gradient, or its float32 master gradient (a copy of the
   * 16-bit gradient, made here) when it has master weights. Each carries its
   * parameter's name, so that a report can say whose gradient overflowed.
   */
  prepareGradients(): Tensor[] {
    const out: Tensor[] = [];
    for (const g of this.paramGroups) {
      g.params.forEach((p, i) => {
        if (!p.grad) return;
        const mg = g.masterGrad[i];
        (mg ?? p.grad).name = p.name;
        if (mg) {
          if (!this.prepared) fusions(p.backend).cast(p.grad.storageView, mg.storageView);
          out.push(mg);
        } else out.push(p.grad);
      });
    }
    this.prepared = true;
    return out;
  }

  /** See the function appliedGradient. */
  appliedGradient(p: Tensor): Tensor | null {
    if (!p.grad) return null;
    for (const g of this.paramGroups) {
      const i = g.params.indexOf(p);
      if (i >= 0) return (this.prepared && g.masterGrad[i]) || p.grad;
    }
    return p.grad;
  }

  /** Updates every parameter that has a gradient; with `foundInf` nonzero the step is skipped on the device. */
  step(opts: { foundInf?: Tensor } = {}): void {
    this.prepareGradients();
    for (const g of this.paramGroups) {
      const idx = g.params.map((p, i) => (p.grad ? i : -1)).filter((i) => i >= 0);
      if (idx.length === 0) continue;
      const hasMaster = idx.some((i) => g.master[i]);
      const sizes = idx.reduce((a, i) => a + g.params[i]!.size, 0);
      const call: UpdateCall = {
        hypers: this.hypers(g.options),
        scalars: { step: g.step.storageView, ...(opts.foundInf ? { foundInf: opts.foundInf.storageView } : {}) },
        tensors: idx.map((i) => {
          const views = { param: g.params[i]!.storageView, grad: (g.masterGrad[i] ?? g.params[i]!.grad!).storageView };
          for (const [n, t] of g.state[i]!) Object.assign(views, { [n]: t.storageView });
          return views;
        }),
        master: hasMaster ? idx.map((i) => g.master[i]?.storageView ?? null) : undefined,
        stochasticRounding: this.srSeed !== null && hasMaster ? { key: streamFor(this.srSeed), start: (this.srCounter += sizes) - sizes } : undefined,
      };
      g.step.backend.update(this.rule(g.options), call);
    }
    this.prepared = false;
  }

  /**
   * Drops every gradient (PyTorch's default, set_to_none=True: the next backward
   * hands its gradients over instead of adding them to zeros), or with
   * `{ setToNone: false }` zeroes them in place, keeping their storage.
   */
  zeroGrad(opts: { setToNone?: boolean } = {}): void {
    for (const p of this.params) {
      if (!p.grad) continue;
      if (opts.setToNone ?? true) {
        p.grad.dispose();
        p.grad = null;
      } else p.backend.fill(p.grad.storageView, 0);
    }
    this.prepared = false;
  }

  /** State tensors by a stable name: `<param name or index>.<state>`, plus `group<k>.step`. For checkpoints. */
  namedState(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    let index = 0;
    this.paramGroups.forEach((g, k) => {
      out.push([`group${k}.step`, g.step]);
      g.params.forEach((p, i) => {
        const id = p.name ?? String(index);
        for (const [n, t] of g.state[i]!) out.push([`${id}.${n}`, t]);
        if (g.master[i]) out.push([`${id}.master`, g.master[i]!]);
        index++;
      });
    });
    return out;
  }

  async stateDict(): Promise<OptimizerStateDict<O>> {
    const state: Record<number, Record<string, Float32Array>> = {};
    const groups: (O & { params: number[] })[] = [];
    const steps: number[] = [];
    let index = 0;
    for (const g of this.paramGroups) {
      steps.push(await g.step.item());
      groups.push({ ...g.options, params: g.params.map((_, i) => index + i) });
      for (let i = 0; i < g.params.length; i++, index++) {
        const entry: Record<string, Float32Array> = {};
        for (const [n, t] of g.state[i]!) entry[n] = Float32Array.from(await t.toArray());
        if (g.master[i]) entry.master = Float32Array.from(await g.master[i]!.toArray());
        state[index] = entry;
      }
    }
    return { type: this.type, groups, steps, state, ...(this.srSeed !== null ? { stochasticRoundingCounter: this.srCounter } : {}) };
  }

  loadStateDict(sd: OptimizerStateDict<O>): void {
    if (sd.type !== this.type) throw new OptimizerError(`loadStateDict: state of a ${sd.type} optimizer given to ${this.type}`);
    if (sd.groups.length !== this.paramGroups.length) {
      throw new OptimizerError(`loadStateDict: ${sd.groups.length} parameter groups in the state, ${this.paramGroups.length} in the optimizer`);
    }
    let index = 0;
    this.paramGroups.forEach((g, k) => {
      const { params: ids, ...options } = sd.groups[k]!;
      if (ids.length !== g.params.length) throw new OptimizerError(`loadStateDict: group ${k} has ${ids.length} parameters in the state, ${g.params.length} in the optimizer`);
      g.options = { ...g.options, ...(options as unknown as O) };
      g.step.backend.fill(g.step.storageView, sd.steps[k] ?? 0);
      for (let i = 0; i < g.params.length; i++, index++) {
        const entry = sd.state[index];
        if (!entry) throw new OptimizerError(`loadStateDict: no state for parameter ${index} (${g.params[i]!.describe()})`);
        for (const [n, t] of g.state[i]!) load(t, entry[n], `${index}.${n}`);
        if (g.master[i]) load(g.master[i]!, entry.master, `${index}.master`);
      }
    });
    if (sd.stochasticRoundingCounter !== undefined) this.srCounter = sd.stochasticRoundingCounter;
    this.prepared = false;
  }

  /** Releases the optimizer's state on the backend. */
  dispose(): void {
    for (const p of this.params) if (owners.get(p) === (this as unknown)) owners.delete(p);
    for (const g of this.paramGroups) {
      g.step.dispose();
      for (const m of g.state) for (const t of m.values()) t.dispose();
      for (const t of [...g.master, ...g.masterGrad]) t?.dispose();
    }
  }
}

function load(t: Tensor, data: ArrayLike<number> | undefined, what: string): void {
  if (!data || data.length !== t.size) {
    throw new OptimizerError(`loadStateDict: state '${what}' has ${data?.length ?? 'no'} values, expected ${t.size}`);
  }
  t.backend.write(t.storageView, data);
}

/** The stochastic-rounding stream, separate from the seed's other uses. */
function streamFor(seed: number): number {
  return streamKey((seed ^ 0x5bd1e995) >>> 0);
}
