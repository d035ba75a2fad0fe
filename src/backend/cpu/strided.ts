// Iteration over a shape with per-operand strides, one contiguous row at a time.

export interface Operand {
  offset: number;
  strides: readonly number[];
}

/**
 * Simplifies an iteration: drops size-1 dimensions and merges neighbours that
 * every operand walks contiguously, so that broadcasting and permutes cost one
 * loop per row and elementwise ops over equal shapes become a single row.
 */
export function collapse(shape: readonly number[], ops: readonly Operand[]): { shape: number[]; strides: number[][] } {
  const dims: number[] = [];
  const strides: number[][] = ops.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && ops.every((o, k) => strides[k]![last] === o.strides[d]! * shape[d]!)) {
      dims[last]! *= shape[d]!;
      ops.forEach((o, k) => { strides[k]![last] = o.strides[d]!; });
    } else {
      dims.push(shape[d]!);
      ops.forEach((o, k) => strides[k]!.push(o.strides[d]!));
    }
  }
  if (dims.length === 0) { dims.push(1); strides.forEach((s) => s.push(0)); }
  return { shape: dims, strides };
}

/**
 * Calls `row(bases, steps, n)` for every row of the last (collapsed) dimension
 * (`bases` is reused between calls: read it, do not keep it):
 * operand k's elements in that row are at bases[k] + j * steps[k], j < n.
 */
export function forEachRow(
  shape: readonly number[],
  ops: readonly Operand[],
  row: (bases: number[], steps: number[], n: number) => void,
): void {
  const c = collapse(shape, ops);
  const nd = c.shape.length;
  const n = c.shape[nd - 1]!;
  const steps = c.strides.map((s) => s[nd - 1]!);
  const bases = ops.map((o) => o.offset);
  let rows = 1;
  for (let d = 0; d < nd - 1; d++) rows *= c.shape[d]!;
  const idx = new Array<number>(Math.max(nd - 1, 0)).fill(0);
  for (let r = 0; r < rows; r++) {
    row(bases, steps, n);
    // Advance the odometer over the leading dimensions.
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]!++;
      for (let k = 0; k < bases.length; k++) bases[k]! += c.strides[k]![d]!;
      if (idx[d]! < c.shape[d]!) break;
      for (let k = 0; k < bases.length; k++) bases[k]! -= c.strides[k]![d]! * c.shape[d]!;
      idx[d] = 0;
    }
  }
}
