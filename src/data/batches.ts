// Batches of training windows. Window starts come from the counter-based
// Generator, so the seed and the number of batches drawn determine every
// batch, and a sampler's whole state is a few integers that a checkpoint can
// hold: a resumed run sees exactly the batches it would have seen.

import { Generator } from '../backend/random.js';
import { DataError } from './errors.js';

/** Inputs and targets, row-major [batchSize, blockSize]; `y` is `x` shifted one token ahead. */
export interface Batch {
  x: Int32Array;
  y: Int32Array;
}

export interface BatchShape {
  batchSize: number;
  blockSize: number;
}

export interface BatchSamplerOptions extends BatchShape {
  seed: number;
  /** The split's name, used in error messages (e.g. 'train'). */
  split?: string;
}

/** Everything needed to continue drawing exactly where a sampler stopped; plain JSON. */
export interface BatchSamplerState {
  seed: number;
  /** Generator counters consumed so far. */
  offset: number;
  batchesDrawn: number;
  batchSize: number;
  blockSize: number;
  /** Length of the token array, checked on restore so that a state is not applied to other data. */
  tokens: number;
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new DataError(`${name} must be a positive integer, got ${value}`);
}

function checkShape(tokens: ArrayLike<number>, { batchSize, blockSize }: BatchShape, split: string): void {
  checkPositiveInteger('batchSize', batchSize);
  checkPositiveInteger('blockSize', blockSize);
  if (tokens.length < blockSize + 1) {
    throw new DataError(
      `the ${split} split has ${tokens.length} tokens, too few for blockSize ${blockSize} (a window needs blockSize + 1 = ${blockSize + 1})`,
    );
  }
}

/** Copies the window starting at `start` into row `row` of a batch. */
function fillRow(tokens: ArrayLike<number>, start: number, row: number, blockSize: number, batch: Batch): void {
  const base = row * blockSize;
  for (let t = 0; t < blockSize; t++) {
    batch.x[base + t] = tokens[start + t];
    batch.y[base + t] = tokens[start + t + 1];
  }
}

/** Draws batches of windows at uniformly random positions of a token array. */
export class BatchSampler {
  readonly batchSize: number;
  readonly blockSize: number;
  private readonly generator: Generator;
  private batchesDrawn = 0;

  constructor(
    private readonly tokens: ArrayLike<number>,
    options: BatchSamplerOptions,
  ) {
    checkShape(tokens, options, options.split ?? 'token');
    this.batchSize = options.batchSize;
    this.blockSize = options.blockSize;
    this.generator = new Generator(options.seed);
  }

  next(): Batch {
    const { batchSize, blockSize } = this;
    const batch = { x: new Int32Array(batchSize * blockSize), y: new Int32Array(batchSize * blockSize) };
    const starts = this.tokens.length - blockSize;
    for (let row = 0; row < batchSize; row++) fillRow(this.tokens, this.generator.int(starts), row, blockSize, batch);
    this.batchesDrawn++;
    return batch;
  }

  state(): BatchSamplerState {
    const { seed, offset } = this.generator.state();
    return { seed, offset, batchesDrawn: this.batchesDrawn, batchSize: this.batchSize, blockSize: this.blockSize, tokens: this.tokens.length };
  }

  /** Continues from `state`; it must come from a sampler of the same shape over data of the same length. */
  setState(state: BatchSamplerState): void {
    const expected = { batchSize: this.batchSize, blockSize: this.blockSize, tokens: this.tokens.length };
    for (const [field, value] of Object.entries(expected)) {
      const saved = state[field as keyof typeof expected];
      if (saved !== value) throw new DataError(`cannot restore batch sampler state: saved ${field} is ${saved}, this sampler has ${value}`);
    }
    this.generator.setState({ seed: state.seed, offset: state.offset });
    this.batchesDrawn = state.batchesDrawn;
  }
}

/**
 * `steps` batches of fixed windows spread evenly over the tokens, from the
 * first window to the last: the same every time, so that validation losses
 * are comparable across runs and across resumes.
 */
export function evalBatches(tokens: ArrayLike<number>, options: BatchShape & { steps: number; split?: string }): Batch[] {
  const { batchSize, blockSize, steps } = options;
  checkShape(tokens, options, options.split ?? 'validation');
  checkPositiveInteger('steps', steps);
  const windows = steps * batchSize;
  const lastStart = tokens.length - blockSize - 1;
  const batches: Batch[] = [];
  for (let step = 0; step < steps; step++) {
    const batch = { x: new Int32Array(batchSize * blockSize), y: new Int32Array(batchSize * blockSize) };
    for (let row = 0; row < batchSize; row++) {
      const window = step * batchSize + row;
      const start = windows === 1 ? 0 : Math.floor((window * lastStart) / (windows - 1));
      fillRow(tokens, start, row, blockSize, batch);
    }
    batches.push(batch);
  }
  return batches;
}
