// The CPU backend: pure TypeScript, synchronous, and the numerical reference
// every other backend is tested against. fp16 and bf16 are stored as their bit
// patterns and rounded bit-exactly (round to nearest even) on every store.

import type { DType } from '../../dtype/dtype.js';
import { itemSize } from '../../dtype/dtype.js';
import {
  BackendError, type Backend, type Buf, type Fusions, type HostArray, type MemoryInfo, type RawArray, type View,
} from '../backend.js';
import { CpuBuf, raw, store, values } from './arrays.js';
import * as ew from './elementwise.js';
import { matmul } from './matmul.js';
import { quantizedMatmul } from './quantized.js';
import { sample } from './sample.js';
import * as nn from './nn.js';
import * as optim from './optim.js';
import * as stats from './stats.js';

/** Implements every primitive and offers every fusion. */
export class CpuBackend implements Backend, Fusions {
  readonly name = 'cpu';
  readonly description = 'CPU (TypeScript reference)';
  private live = new Set<CpuBuf>();
  private bytes = 0;
  private peak = 0;

  supports(_dtype: DType): boolean {
    return true;
  }

  alloc(dtype: DType, size: number): Buf {
    if (!Number.isInteger(size) || size < 0) throw new BackendError(`cpu: cannot allocate ${size} elements of ${dtype}`);
    const b = new CpuBuf(dtype, size);
    this.live.add(b);
    this.bytes += size * itemSize(dtype);
    this.peak = Math.max(this.peak, this.bytes);
    return b;
  }

  free(buf: Buf): void {
    const b = buf as CpuBuf;
    if (!this.live.delete(b)) throw new BackendError('cpu: buffer freed twice or not from this backend');
    this.bytes -= b.size * itemSize(b.dtype);
  }

  memory(): MemoryInfo {
    return { buffers: this.live.size, bytes: this.bytes, peakBytes: this.peak };
  }

  write(dst: View, data: ArrayLike<number>): void {
    if (data.length !== dst.size) throw new BackendError(`cpu: write of ${data.length} values into ${dst.size} elements`);
    store(dst, data);
  }

  writeRaw(dst: View, data: RawArray): void {
    if (data.length !== dst.size) throw new BackendError(`cpu: write of ${data.length} values into ${dst.size} elements`);
    raw(dst).set(data);
  }

  readSync(src: View): HostArray {
    const v = values(src);
    // Always hand out a copy, never the storage itself.
    return v.buffer === (src.buf as CpuBuf).data.buffer ? (v.slice() as HostArray) : v;
  }

  read(src: View): Promise<HostArray> {
    return Promise.resolve(this.readSync(src));
  }

  readRaw(src: View): Promise<RawArray> {
    return Promise.resolve(raw(src).slice());
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  fill = ew.fill;
  cast = ew.cast;
  unary = ew.unary;
  binary = ew.binary;
  where = ew.where;
  copy = ew.copy;
  dropout = ew.dropout;
  causalFill = ew.causalFill;
  reduce = ew.reduce;
  matmul = matmul;
  /** One kernel handles the product and its epilogue. */
  matmulEpilogue = matmul;
  quantizedMatmul = quantizedMatmul;
  sample = sample;
  softmax = nn.softmax;
  softmaxBackward = nn.softmaxBackward;
  layerNorm = nn.layerNorm;
  layerNormBackward = nn.layerNormBackward;
  gather = nn.gather;
  scatterAdd = nn.scatterAdd;
  crossEntropy = nn.crossEntropy;
  crossEntropyBackward = nn.crossEntropyBackward;
  attention = nn.attention;
  attentionBackward = nn.attentionBackward;
  sumOfSquares = optim.sumOfSquares;
  magnitudeCounts = stats.magnitudeCounts;
  update = optim.update;
}
