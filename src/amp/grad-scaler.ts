// GradScaler: dynamic loss scaling with PyTorch's algorithm, defaults and
// errors (torch.amp.GradScaler).
//
// The scale, the growth tracker and each optimizer's found-inf flag are
// 1-element float32 tensors on the backend. Unscaling, the inf/NaN check, the
// decision to skip a step and the scale update all happen there, so a GPU
// backend never has to read anything back in the training loop.

import type { Backend } from '../backend/backend.js';
import { getBackend } from '../backend/registry.js';
import { UNSCALE_RULE, UPDATE_SCALE_RULE } from './loss-scale-rules.js';
import { Tensor, keep } from '../tensor/tensor.js';
import { mul } from '../tensor/ops.js';
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

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  enabled?: boolean;
  /** false keeps the scale fixed at initScale (steps with inf/NaN are still skipped). */
  dynamic?: boolean;
  backend?: Backend;
}

export interface GradScalerState {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  growthTracker: number;
}

type Stage = 'ready' | 'unscaled' | 'stepped';

interface PerOptimizer {
  stage: Stage;
  foundInf: Tensor | null;
}

export class GradScaler {
  readonly enabled: boolean;
  readonly dynamic: boolean;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  private readonly backend: Backend;
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
    if (!(this.growthFactor > 1)) throw new GradScalerError(`growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new GradScalerError(`backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(this.growthInterval > 0)) throw new GradScalerError(`growthInterval must be positive, got ${this.growthInterval}`);
    if (!(this.initScale > 0)) throw new GradScalerError(`initScale must be positive, got ${this.initScale}`);
  }

  private lazyInit(): void {
    if (this.scaleT) return;
    this.scaleT = keep(full([], this.initScale, { backend: this.backend }));
    this.trackerT = keep(full([], 0, { backend: this.backend }));
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
      hypers: {}, scalars: { scale: this.scaleT!.view, foundInf: s.foundInf.view }, tensors: grads.map((g) => ({ grad: g.view })),
    });
    s.stage = 'unscaled';
  }

  /** Unscales if not done yet, then steps the optimizer unless a gradient was inf/NaN (decided on the device). */
  step(optimizer: ScalableOptimizer): void {
    if (!this.enabled) return optimizer.step();
    const s = this.state(optimizer);
    if (s.stage === 'stepped') throw new GradScalerError('step() has already been called since the last update().');
    if (s.stage === 'ready') this.unscale(optimizer);
    optimizer.step({ foundInf: s.foundInf! });
    s.stage = 'stepped';
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
      if (typeof newScale === 'number') b.fill(this.scaleT!.view, newScale);
      else {
        if (newScale.size !== 1) throw new GradScalerError(`update(newScale): expected a 1-element tensor, got ${newScale.describe()}`);
        b.cast(newScale.view, this.scaleT!.view);
      }
    } else {
      const flags = [...this.perOptimizer.values()].map((s) => s.foundInf).filter((f): f is Tensor => f !== null);
      if (flags.length === 0) throw new GradScalerError('No inf checks were recorded prior to update().');
      if (this.dynamic) {
        // One combined flag: the sum of the optimizers' flags.
        const combined = flags.length === 1 ? flags[0]! : flags.slice(1).reduce<Tensor>((acc, f) => {
          const sum = Tensor.empty([], 'float32', b);
          b.binary('add', { view: acc.view, offset: 0, strides: [] }, { view: f.view, offset: 0, strides: [] }, sum.view, []);
          if (acc !== flags[0]) acc.dispose();
          return sum;
        }, flags[0]!);
        b.update(UPDATE_SCALE_RULE, {
          hypers: { growthFactor: this.growthFactor, backoffFactor: this.backoffFactor, growthInterval: this.growthInterval },
          scalars: { scale: this.scaleT!.view, growthTracker: this.trackerT!.view, foundInf: combined.view },
          tensors: [],
        });
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
    return {
      scale: await this.getScale(),
      growthFactor: this.growthFactor,
      backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval,
      growthTracker: await this.getGrowthTracker(),
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
    this.initScale = s.scale;
    this.growthFactor = s.growthFactor;
    this.backoffFactor = s.backoffFactor;
    this.growthInterval = s.growthInterval;
    this.lazyInit();
    this.backend.fill(this.scaleT!.view, s.scale);
    this.backend.fill(this.trackerT!.view, s.growthTracker);
  }

  dispose(): void {
    this.scaleT?.dispose();
    this.trackerT?.dispose();
    for (const s of this.perOptimizer.values()) s.foundInf?.dispose();
    this.perOptimizer.clear();
    this.scaleT = this.trackerT = null;
  }
}
