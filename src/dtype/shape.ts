// The one definition of a shape's element count.

/** The number of elements of a tensor of `shape` (1 for a scalar's empty shape). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
