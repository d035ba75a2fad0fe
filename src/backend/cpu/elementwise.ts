// Elementwise, copy and reduction kernels of the CPU backend.

import { dropoutThreshold, randomBits } from '../random.js';
import type { BinaryOp, HostArray, ReduceOp, Strided, UnaryOp, View } from '../backend.js';
import { inout, output, values } from './arrays.js';
import { forEachRow } from './strided.js';

const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/** tanh-approximated GELU, as GPT-2 uses. */
export function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_K * (x + GELU_C * x * x * x)));
}

export function geluGrad(x: number): number {
  const t = Math.tanh(GELU_K * (x + GELU_C * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * x * x);
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

export function unaryFn(op: UnaryOp, s = 0, s2 = 0): (x: number) => number {
  switch (op) {
    case 'neg': return (x) => -x;
    case 'exp': return Math.exp;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'rsqrt': return (x) => 1 / Math.sqrt(x);
    case 'tanh': return Math.tanh;
    case 'relu': return (x) => (x > 0 ? x : x === x ? 0 : x);
    case 'gelu': return gelu;
    case 'sigmoid': return sigmoid;
    case 'abs': return Math.abs;
    case 'square': return (x) => x * x;
    case 'reciprocal': return (x) => 1 / x;
    case 'sign': return (x) => (x > 0 ? 1 : x < 0 ? -1 : x);
    case 'pow': return (x) => Math.pow(x, s);
    case 'affine': return (x) => x * s + s2;
  }
}

export function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'pow': return Math.pow;
    case 'maximum': return (a, b) => (a !== a || b !== b ? NaN : Math.max(a, b));
    case 'minimum': return (a, b) => (a !== a || b !== b ? NaN : Math.min(a, b));
    case 'eq': return (a, b) => +(a === b);
    case 'ne': return (a, b) => +(a !== b);
    case 'gt': return (a, b) => +(a > b);
    case 'ge': return (a, b) => +(a >= b);
    case 'lt': return (a, b) => +(a < b);
    case 'le': return (a, b) => +(a <= b);
    case 'relu_grad': return (x, g) => (x > 0 ? g : 0);
    case 'gelu_grad': return (x, g) => g * geluGrad(x);
    case 'tanh_grad': return (y, g) => g * (1 - y * y);
    case 'sigmoid_grad': return (y, g) => g * y * (1 - y);
  }
}

export function unary(op: UnaryOp, x: View, out: View, s?: number, s2?: number): void {
  const xs = values(x);
  const o = output(out);
  const y = o.arr;
  const n = out.size;
  // The hottest ops get their own loops; the rest go through a function.
  if (op === 'affine') { const a = s ?? 1, b = s2 ?? 0; for (let i = 0; i < n; i++) y[i] = xs[i]! * a + b; }
  else if (op === 'neg') for (let i = 0; i < n; i++) y[i] = -xs[i]!;
  else if (op === 'gelu') for (let i = 0; i < n; i++) y[i] = gelu(xs[i]!);
  else { const f = unaryFn(op, s, s2); for (let i = 0; i < n; i++) y[i] = f(xs[i]!); }
  o.commit();
}

export function binary(op: BinaryOp, a: Strided, b: Strided, out: View, shape: readonly number[]): void {
  const av = values(a.view), bv = values(b.view);
  const o = output(out);
  const y = o.arr;
  let p = 0;
  const rowLoop = rowKernel(op);
  forEachRow(shape, [a, b], (base, step, n) => {
    rowLoop(av, base[0]!, step[0]!, bv, base[1]!, step[1]!, y, p, n);
    p += n;
  });
  o.commit();
}

type RowKernel = (a: HostArray, ia: number, sa: number, b: HostArray, ib: number, sb: number, y: HostArray, iy: number, n: number) => void;

function rowKernel(op: BinaryOp): RowKernel {
  switch (op) {
    case 'add': return (a, ia, sa, b, ib, sb, y, iy, n) => { for (let j = 0; j < n; j++, ia += sa, ib += sb) y[iy + j] = a[ia]! + b[ib]!; };
    case 'sub': return (a, ia, sa, b, ib, sb, y, iy, n) => { for (let j = 0; j < n; j++, ia += sa, ib += sb) y[iy + j] = a[ia]! - b[ib]!; };
    case 'mul': return (a, ia, sa, b, ib, sb, y, iy, n) => { for (let j = 0; j < n; j++, ia += sa, ib += sb) y[iy + j] = a[ia]! * b[ib]!; };
    case 'div': return (a, ia, sa, b, ib, sb, y, iy, n) => { for (let j = 0; j < n; j++, ia += sa, ib += sb) y[iy + j] = a[ia]! / b[ib]!; };
    default: {
      const f = binaryFn(op);
      return (a, ia, sa, b, ib, sb, y, iy, n) => { for (let j = 0; j < n; j++, ia += sa, ib += sb) y[iy + j] = f(a[ia]!, b[ib]!); };
    }
  }
}

export function where(cond: Strided, a: Strided, b: Strided, out: View, shape: readonly number[]): void {
  const cv = values(cond.view), av = values(a.view), bv = values(b.view);
  const o = output(out);
  const y = o.arr;
  let p = 0;
  forEachRow(shape, [cond, a, b], (base, step, n) => {
    let ic = base[0]!, ia = base[1]!, ib = base[2]!;
    for (let j = 0; j < n; j++, ic += step[0]!, ia += step[1]!, ib += step[2]!) y[p + j] = cv[ic] !== 0 ? av[ia]! : bv[ib]!;
    p += n;
  });
  o.commit();
}

export function copy(src: Strided, dst: Strided, shape: readonly number[]): void {
  const sv = values(src.view);
  // Elements of the destination outside the copied region must survive: start from its current values.
  const o = inout(dst.view);
  const y = o.arr;
  forEachRow(shape, [src, dst], (base, step, n) => {
    let is = base[0]!, id = base[1]!;
    const ss = step[0]!, sd = step[1]!;
    for (let j = 0; j < n; j++, is += ss, id += sd) y[id] = sv[is]!;
  });
  o.commit();
}

export function fill(out: View, value: number): void {
  const o = output(out);
  o.arr.fill(value);
  o.commit();
}

export function cast(x: View, out: View): void {
  const o = output(out);
  o.arr.set(values(x));
  o.commit();
}

export function dropout(x: View, out: View, p: number, key: number, start: number): void {
  const xs = values(x);
  const o = output(out);
  const y = o.arr;
  const scale = 1 / (1 - p);
  const threshold = dropoutThreshold(p);
  for (let i = 0; i < out.size; i++) {
    const keep = randomBits(key, (start + i) >>> 0) >>> 8 >= threshold;
    y[i] = keep ? xs[i]! * scale : 0;
  }
  o.commit();
}

export function causalFill(x: View, out: View, rows: number, t: number, s: number, value: number): void {
  const xs = values(x);
  const o = output(out);
  const y = o.arr;
  if (y !== xs) y.set(xs);
  const shift = s - t;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < t; i++) {
      const base = (r * t + i) * s;
      for (let j = i + shift + 1; j < s; j++) y[base + j] = value;
    }
  }
  o.commit();
}

export function reduce(op: ReduceOp, x: View, out: View, outer: number, r: number, inner: number): void {
  const xs = values(x);
  const o = output(out);
  const y = o.arr;
  const init = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
  // Accumulate in float64 (the reference's precision, see matmul.ts) in a scratch row so the inner loop stays contiguous.
  const acc = new Float64Array(inner);
  for (let a = 0; a < outer; a++) {
    acc.fill(init);
    const base = a * r * inner;
    for (let k = 0; k < r; k++) {
      const row = base + k * inner;
      if (op === 'sum') for (let i = 0; i < inner; i++) acc[i]! += xs[row + i]!;
      else if (op === 'max') for (let i = 0; i < inner; i++) { const v = xs[row + i]!; if (v > acc[i]! || v !== v) acc[i] = v; }
      else for (let i = 0; i < inner; i++) { const v = xs[row + i]!; if (v < acc[i]! || v !== v) acc[i] = v; }
    }
    y.set(acc, a * inner);
  }
  o.commit();
}
