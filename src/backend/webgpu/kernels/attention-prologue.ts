// What every attention kernel begins with: the uniform parameters, the
// row_<name> index helpers of the q, k, v, o operands and their gradients
// (addressed by HeadLayout), the (batch, head) pair of a workgroup, and the
// causal bound of a query.

import { rowHelper } from './wgsl-helpers.js';

/** layoutParams of each named operand, in order. */
export function headParams(...names: string[]): [string, 'u32'][] {
  return names.flatMap(layoutParams);
}

function layoutParams(name: string): [string, 'u32'][] {
  return [[`${name}_o`, 'u32'], [`${name}_b`, 'u32'], [`${name}_h`, 'u32'], [`${name}_t`, 'u32']];
}

/** WGSL: row_<name>, the element index of row t of (b, h), for each name, one per line. */
export function rowFns(...names: string[]): string {
  return names.map(rowHelper).join('\n');
}

export const COMMON_PARAMS: [string, 'u32' | 'i32' | 'f32'][] = [
  ['hd', 'u32'], ['bh', 'u32'], ['heads', 'u32'], ['tq', 'u32'], ['tk', 'u32'], ['blocks', 'u32'], ['causal', 'u32'], ['shift', 'i32'], ['scale', 'f32'],
];

/** A kernel's first lines: its workgroup's (batch, head) pair from the workgroup's index (P.blocks workgroups per pair). */
export const WORKGROUP_HEAD = `  let w = wid.x + wid.y * nwg.x;
  let bh = w / P.blocks;
  if (bh >= P.bh) { return; }
  let b = bh / P.heads;
  let h = bh % P.heads;`;

/** Index of the last key query i may see (inclusive; negative when none). */
export const LAST_KEY = `fn last_key(i: u32) -> i32 { if (P.causal != 0u) { return min(i32(i) + P.shift, i32(P.tk) - 1); } return i32(P.tk) - 1; }`;
