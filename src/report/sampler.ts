// Sampling tensor statistics during training: for one step, the gradient
// entering each transformer block (through a gradient tap on the block's
// output, installed for that step only) and every parameter's gradient after
// the backward pass. Everything is computed on the device, in one pass per
// tensor, and read back once; steps that are not sampled run none of it.

import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { installForwardHooks, tapGradient } from './probe.js';
import { decodeStats, statsOnDevice, type StatsMeta } from './stats.js';
import type { StatsSample } from './recommend.js';

/** Modules whose output gradient is sampled: the blocks of a GPT (h.0, h.1, ...). */
export const BLOCK_PATH = /^h\.\d+$/;

export class StatsSampler {
  private meta: StatsMeta[] = [];
  private rows: Tensor[] = [];
  private removeHooks: (() => void) | null = null;

  constructor(private readonly model: Module, private readonly blocks: RegExp = BLOCK_PATH) {}

  /** Statistics of the tensors into a device row each (one pass per tensor, no read-back). */
  private add(kind: StatsMeta['kind'], named: readonly (readonly [string, Tensor])[]): void {
    if (named.length === 0) return;
    for (const [name, t] of named) this.meta.push({ name, kind, dtype: t.dtype, size: t.size });
    this.rows.push(statsOnDevice(named.map(([, t]) => t)));
  }

  /** Before the step's forward pass: taps the gradient of every block's output. */
  arm(): void {
    if (this.removeHooks) return;
    this.removeHooks = installForwardHooks(this.model, (path, out) =>
      this.blocks.test(path) ? tapGradient(out, (g) => this.add('activation-grad', [[path, g]])) : out);
  }

  /** After the backward pass (before unscaling): every parameter's gradient, and the hooks come off. */
  collectWeightGradients(): void {
    this.removeHooks?.();
    this.removeHooks = null;
    this.add('weight-grad', this.model.namedParameters().flatMap(([name, p]) => (p.grad ? [[name, p.grad] as const] : [])));
  }

  get armed(): boolean {
    return this.removeHooks !== null;
  }

  /** Reads what was collected (one transfer) as the sample of `step`, taken at loss scale `scale` (read alongside). */
  async read(step: number, scale: number | Promise<number>): Promise<StatsSample> {
    const meta = this.meta, rows = this.rows;
    this.meta = [];
    this.rows = [];
    const [value, tensors] = await Promise.all([scale, decodeStats(meta, rows)]);
    return { step, scale: value, tensors };
  }

  /** Removes the hooks and drops anything not read. */
  dispose(): void {
    this.removeHooks?.();
    this.removeHooks = null;
    for (const r of this.rows) r.dispose();
    this.rows = [];
    this.meta = [];
  }
}
