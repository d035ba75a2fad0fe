// GradScaler: dynamic loss scaling with PyTorch's algorithm, defaults and
// errors (torch.amp.GradScaler).
//
// The scale, the growth tracker and each optimizer's found-inf flag are
// 1-element float32 tensors on the backend. Unscaling, the inf/NaN check, the
// decision to skip a step and the scale update all happen there, so a GPU
// backend never has to read anything back in the training loop.

import type { Backend } from '../backend/backend.js';
import { getBackend } from '../backend/registry.js';
import { GUARDED_UPDATE_SCALE_RULE, UNSCALE_RULE, UPDATE_SCALE_RULE } from './loss-scale-rules.js';
import { OverflowRecord, type OverflowInfo } from './overflow-record.js';
import { Tensor, keep } from '../tensor/tensor.js';
import { mul } from '../tensor/ops.js';
import { fusions } from '../tensor/fusions.js';
import { full } from '../tensor/creation.js';
import { MixprecError, type ErrorCode } from '../errors.js';

/** What the scaler needs from an optimizer (implemented by mixprec's optimizers). */
export interface ScalableOptimizer {
  /**
   * The gradients the optimizer's next step will use, ready to be unscaled in
   * place: the parameters' own gradients, or float32 master gradients for
   * 16-bit parameters with master weights.
   */
  prepareGradients(): Tensor[];
  /** Takes a step; with `foundInf` the update is skipped on the device when the flag is nonzero. */
  step(opts?: { foundInf?: Tensor }): void;
}

export class GradScalerError extends MixprecError {
  override readonly code: ErrorCode = 'GRAD_SCALER_MISUSE';
}

/** The loss scale fell below GradScalerOptions.minScale: the run cannot recover by scaling. */
export class LossScaleCollapsedError extends MixprecError {
  override readonly code: ErrorCode = 'LOSS_SCALE_COLLAPSED';
}

/** What a step did, read on demand from the device (see StepStatus.read). */
export interface StepStatusInfo {
  applied: boolean;
  /** The gradients that held inf or NaN (why the step was skipped), by parameter name; the first is `firstNonFinite`. */
  nonFinite: string[];
  firstNonFinite: string | null;
}

/** The outcome of one scaler.step(optimizer), kept on the device until read. */
export interface StepStatus {
  /** Reads the outcome back. Valid until the next unscale of the same optimizer. */
  read(): Promise<StepStatusInfo>;
}

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  enabled?: boolean;
  /** false keeps the scale fixed at initScale (steps with inf/NaN are still skipped). */
  dynamic?: boolean;
  /**
   * Never back off below this scale: a back-off that would is recorded on the
   * device and `checkScale()` throws LossScaleCollapsedError. Default 0 (off, as PyTorch).
   */
  minScale?: number;
  /** Back off only after this many consecutive overflows (DeepSpeed's hysteresis). Default 1 (PyTorch). */
  hysteresis?: number;
  backend?: Backend;
}

export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  growthTracker: number;
  /** Present when the scaler has guards (minScale or hysteresis), so that a resumed run continues mid-hysteresis. */
  minScale?: number;
  hysteresis?: number;
  /** Consecutive overflows still taken without a back-off. */
  hysteresisLeft?: number;
  /** Whether a back-off would have taken the scale below minScale (checkScale throws). */
  collapsed?: boolean;
}

type Stage = 'ready' | 'unscaled' | 'stepped';

interface PerOptimizer {
  stage: Stage;
  foundInf: Tensor | null;
}

type GuardState = Required<Pick<GradScalerState, 'minScale' | 'hysteresis' | 'hysteresisLeft' | 'collapsed'>>;

/** The guard entries of a state dict: all four or none (a state saved without guards). */
function checkGuardState(s: GradScalerState): GuardState | null {
  const keys = ['minScale', 'hysteresis', 'hysteresisLeft', 'collapsed'] as const;
  const present = keys.filter((k) => s[k] !== undefined);
  if (present.length === 0) return null;
  if (present.length < keys.length) throw new GradScalerError(`loadStateDict: the guard state needs ${keys.join(', ')}; only ${present.join(', ')} given`);
  const g = s as GradScalerState & GuardState;
  if (!(g.minScale >= 0 && Number.isFinite(g.minScale))) throw new GradScalerError(`loadStateDict: 'minScale' must be a finite number >= 0, got ${JSON.stringify(g.minScale)}`);
  if (!(Number.isSafeInteger(g.hysteresis) && g.hysteresis >= 1)) throw new GradScalerError(`loadStateDict: 'hysteresis' must be an integer >= 1, got ${JSON.stringify(g.hysteresis)}`);
  if (!(Number.isSafeInteger(g.hysteresisLeft) && g.hysteresisLeft >= 1 && g.hysteresisLeft <= g.hysteresis)) {
    throw new GradScalerError(`loadStateDict: 'hysteresisLeft' must be an integer from 1 to hysteresis ${g.hysteresis}, got ${JSON.stringify(g.hysteresisLeft)}`);
  }
  if (typeof g.collapsed !== 'boolean') throw new GradScalerError(`loadStateDict: 'collapsed' must be true or false, got ${JSON.stringify(g.collapsed)}`);
  return g;
}

export class GradScaler {
  readonly enabled: boolean;
  readonly dynamic: boolean;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  minScale: number;
  hysteresis: number;
  private readonly backend: Backend;
  /** The guards' device state: [consecutive overflows left before a back-off, collapsed flag]. */
  private hysteresisLeftT: Tensor | null = null;
  private collapsedT: Tensor | null = null;
  private readonly records = new Map<ScalableOptimizer, OverflowRecord>();
  private scaleT: Tensor | null = null;
  private trackerT: Tensor | null = null;
  private initScale: number;
  private perOptimizer = new Map<ScalableOptimizer, PerOptimizer>();

  constructor(opts: GradScalerOptions = {}) {
    this.initScale = opts.initScale ?? 2 ** 16;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    this.enabled = opts.enabled ?? true;
    this.dynamic = opts.dynamic ?? true;
    this.backend = opts.backend ?? getBackend();
    this.minScale = opts.minScale ?? 0;
    this.hysteresis = opts.hysteresis ?? 1;
    if (!(this.minScale >= 0 && Number.isFinite(this.minScale))) throw new GradScalerError(`minScale must be a finite number >= 0, got ${this.minScale}`);
    if (!(Number.isSafeInteger(this.hysteresis) && this.hysteresis >= 1)) throw new GradScalerError(`hysteresis must be an integer >= 1, got ${this.hysteresis}`);
    if (this.minScale > this.initScale) throw new GradScalerError(`minScale ${this.minScale} is above initScale ${this.initScale}`);
    if (!(this.growthFactor > 1)) throw new GradScalerError(`growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new GradScalerError(`backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(this.growthInterval > 0)) throw new GradScalerError(`growthInterval must be positive, got ${this.growthInterval}`);
    if (!(this.initScale > 0)) throw new GradScalerError(`initScale must be positive, got ${this.initScale}`);
  }

  private lazyInit(): void {
    if (this.scaleT) return;
    this.scaleT = keep(full([], this.initScale, { backend: this.backend }));
    this.trackerT = keep(full([], 0, { backend: this.backend }));
    this.initGuards();
  }

  /** The guards' device state, when there are guards (a loaded state dict may add them). */
  private initGuards(): void {
    if (!this.guarded || this.hysteresisLeftT) return;
    this.hysteresisLeftT = keep(full([], this.hysteresis, { backend: this.backend }));
    this.collapsedT = keep(full([], 0, { backend: this.backend }));
  }

  /** Whether the scale update has guards (minScale or hysteresis). */
  private get guarded(): boolean {
    return this.minScale > 0 || this.hysteresis > 1;
  }

  private record(opt: ScalableOptimizer): OverflowRecord {
    let r = this.records.get(opt);
    if (!r) this.records.set(opt, (r = new OverflowRecord()));
    return r;
  }

  /** The 1-element float32 scale tensor (on the backend). */
  get scaleTensor(): Tensor {
    this.lazyInit();
    return this.scaleT!;
  }

  private state(opt: ScalableOptimizer): PerOptimizer {
    let s = this.perOptimizer.get(opt);
    if (!s) this.perOptimizer.set(opt, (s = { stage: 'ready', foundInf: null }));
    return s;
  }

  /** loss * scale (every tensor of an array). Disabled: returns its input. */
  scale(loss: Tensor): Tensor;
  scale(losses: Tensor[]): Tensor[];
  scale(x: Tensor | Tensor[]): Tensor | Tensor[] {
    if (!this.enabled) return x;
    this.lazyInit();
    return Array.isArray(x) ? x.map((t) => mul(t, this.scaleT!)) : mul(x, this.scaleT!);
  }

  /** Divides the optimizer's gradients by the scale in place and records whether any is inf or NaN. */
  unscale(optimizer: ScalableOptimizer): void {
    if (!this.enabled) return;
    this.lazyInit();
    const s = this.state(optimizer);
    if (s.stage === 'unscaled') throw new GradScalerError('unscale() has already been called on this optimizer since the last update().');
    if (s.stage === 'stepped') throw new GradScalerError('unscale() is being called after step().');
    const grads = optimizer.prepareGradients();
    for (const g of grads) {
      if (g.dtype === 'float16') {
        throw new GradScalerError(`Attempting to unscale FP16 gradients (${g.describe()}): keep float32 parameters, or use 16-bit parameters with float32 master weights.`);
      }
    }
    const b = this.backend;
    s.foundInf?.dispose();
    s.foundInf = keep(full([], 0, { backend: b }));
    b.update(UNSCALE_RULE, {
      hypers: {}, scalars: { scale: this.scaleT!.storageView, foundInf: s.foundInf.storageView }, tensors: grads.map((g) => ({ grad: g.storageView })),
    });
    this.record(optimizer).record(grads, s.foundInf);
    s.stage = 'unscaled';
  }

  /**
   * Unscales if not done yet, then steps the optimizer unless a gradient was
   * inf/NaN (decided on the device). Returns the step's status, which stays on
   * the device until read.
   */
  step(optimizer: ScalableOptimizer): StepStatus {
    if (!this.enabled) {
      optimizer.step();
      return { read: async () => ({ applied: true, nonFinite: [], firstNonFinite: null }) };
    }
    const s = this.state(optimizer);
    if (s.stage === 'stepped') throw new GradScalerError('step() has already been called since the last update().');
    if (s.stage === 'ready') this.unscale(optimizer);
    optimizer.step({ foundInf: s.foundInf! });
    s.stage = 'stepped';
    const record = this.record(optimizer), unscale = record.unscales;
    return {
      read: async () => {
        if (record.unscales !== unscale) throw new GradScalerError(`the status of unscale ${unscale} was read after unscale ${record.unscales}: read it before the next step, or use lastOverflow()`);
        const info = await record.latest();
        return { applied: info === null, nonFinite: info?.tensors ?? [], firstNonFinite: info?.tensors[0] ?? null };
      },
    };
  }

  /** The most recent overflow over all optimizers: which unscale and which gradients (reads back). */
  async lastOverflow(): Promise<OverflowInfo | null> {
    const all = await Promise.all([...this.records.values()].map((r) => r.lastOverflow()));
    return all.reduce<OverflowInfo | null>((a, r) => (r && (!a || r.unscale > a.unscale) ? r : a), null);
  }

  /**
   * Throws LossScaleCollapsedError when a back-off would have taken the scale
   * below minScale (reads one flag back; call it when convenient, e.g. at logging steps).
   */
  async checkScale(): Promise<void> {
    if (!this.enabled || !this.collapsedT || (await this.collapsedT.item()) === 0) return;
    const last = await this.lastOverflow();
    const scale = await this.getScale();
    throw new LossScaleCollapsedError(`the loss scale would fall below minScale ${this.minScale} (it is ${scale}, backoff factor ${this.backoffFactor})`
      + `${last ? `: the gradients of ${last.tensors.join(', ')} overflowed most recently` : ''}`);
  }

  /**
   * Updates the scale for the next iteration from every optimizer's found-inf
   * flag (PyTorch's _amp_update_scale_), or sets it to `newScale`.
   */
  update(newScale?: number | Tensor): void {
    if (!this.enabled) return;
    this.lazyInit();
    const b = this.backend;
    if (newScale !== undefined) {
      if (typeof newScale === 'number') b.fill(this.scaleT!.storageView, newScale);
      else {
        if (newScale.size !== 1) throw new GradScalerError(`update(newScale): expected a 1-element tensor, got ${newScale.describe()}`);
        fusions(b).cast(newScale.storageView, this.scaleT!.storageView);
      }
    } else {
      const flags = [...this.perOptimizer.values()].map((s) => s.foundInf).filter((f): f is Tensor => f !== null);
      if (flags.length === 0) throw new GradScalerError('No inf checks were recorded prior to update().');
      if (this.dynamic) {
        // One combined flag: the sum of the optimizers' flags.
        const combined = flags.length === 1 ? flags[0]! : flags.slice(1).reduce<Tensor>((acc, f) => {
          const sum = Tensor.empty([], 'float32', b);
          b.binary('add', { view: acc.storageView, offset: 0, strides: [] }, { view: f.storageView, offset: 0, strides: [] }, sum.storageView, []);
          if (acc !== flags[0]) acc.dispose();
          return sum;
        }, flags[0]!);
        const hypers = { growthFactor: this.growthFactor, backoffFactor: this.backoffFactor, growthInterval: this.growthInterval };
        const scalars = { scale: this.scaleT!.storageView, growthTracker: this.trackerT!.storageView, foundInf: combined.storageView };
        if (this.guarded) {
          b.update(GUARDED_UPDATE_SCALE_RULE, {
            hypers: { ...hypers, hysteresis: this.hysteresis, minScale: this.minScale },
            scalars: { ...scalars, hysteresisLeft: this.hysteresisLeftT!.storageView, collapsed: this.collapsedT!.storageView },
            tensors: [],
          });
        } else b.update(UPDATE_SCALE_RULE, { hypers, scalars, tensors: [] });
        if (combined !== flags[0]) combined.dispose();
      }
    }
    for (const s of this.perOptimizer.values()) s.foundInf?.dispose();
    this.perOptimizer.clear();
  }

  /** The current scale (reads it back from the device). */
  async getScale(): Promise<number> {
    if (!this.enabled) return 1;
    this.lazyInit();
    return this.scaleT!.item();
  }

  async getGrowthTracker(): Promise<number> {
    if (!this.enabled) return 0;
    this.lazyInit();
    return this.trackerT!.item();
  }

  /** The found-inf flag of the last unscale of this optimizer (1-element tensor), if any. */
  foundInf(optimizer: ScalableOptimizer): Tensor | null {
    return this.perOptimizer.get(optimizer)?.foundInf ?? null;
  }

  async stateDict(): Promise<GradScalerState | Record<string, never>> {
    if (!this.enabled) return {};
    const state: GradScalerState = {
      scale: await this.getScale(),
      growthFactor: this.growthFactor,
      backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval,
      growthTracker: await this.getGrowthTracker(),
    };
    if (!this.guarded) return state;
    return {
      ...state, minScale: this.minScale, hysteresis: this.hysteresis,
      hysteresisLeft: await this.hysteresisLeftT!.item(), collapsed: (await this.collapsedT!.item()) !== 0,
    };
  }

  loadStateDict(state: GradScalerState | Record<string, never>): void {
    if (!this.enabled) throw new GradScalerError('Attempting to call loadStateDict() on a disabled GradScaler.');
    if (Object.keys(state).length === 0) {
      throw new GradScalerError('The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler.');
    }
    const s = state as GradScalerState;
    for (const k of ['scale', 'growthFactor', 'backoffFactor', 'growthInterval', 'growthTracker'] as const) {
      if (typeof s[k] !== 'number') throw new GradScalerError(`loadStateDict: '${k}' must be a number, got ${JSON.stringify(s[k])}`);
    }
    const guards = checkGuardState(s);
    this.initScale = s.scale;
    this.growthFactor = s.growthFactor;
    this.backoffFactor = s.backoffFactor;
    this.growthInterval = s.growthInterval;
    if (guards) {
      this.minScale = guards.minScale;
      this.hysteresis = guards.hysteresis;
    }
    this.lazyInit();
    this.initGuards();
    this.backend.fill(this.scaleT!.storageView, s.scale);
    this.backend.fill(this.trackerT!.storageView, s.growthTracker);
    if (guards) {
      this.backend.fill(this.hysteresisLeftT!.storageView, guards.hysteresisLeft);
      this.backend.fill(this.collapsedT!.storageView, guards.collapsed ? 1 : 0);
    }
  }

  dispose(): void {
    this.scaleT?.dispose();
    this.trackerT?.dispose();
    this.hysteresisLeftT?.dispose();
    this.collapsedT?.dispose();
    this.hysteresisLeftT = this.collapsedT = null;
    for (const r of this.records.values()) r.dispose();
    this.records.clear();
    for (const s of this.perOptimizer.values()) s.foundInf?.dispose();
    this.perOptimizer.clear();
    this.scaleT = this.trackerT = null;
  }
}
