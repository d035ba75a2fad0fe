// The embedding gradient: out[ids[i], :] += g[i, :], deterministically.
//
// Every table row gets one writer that adds its positions' gradient rows in
// increasing position order, the CPU's order, so the result is the CPU's to
// the bit. To find each id's positions in order, the positions are sorted by
// id with a stable radix sort (8-bit digits, as many passes as the table's row
// count needs: two for GPT-2's 50257). A pass is three kernels: per block of
// positions a digit histogram, one exclusive scan of the histograms, and per
// block a stable scatter; all of it is O(n) work per pass, so O(n log V) for n
// positions and V rows. Adjacent equal ids in the sorted order then link each
// position to the next with the same id.

import type { View } from '../../backend.js';
import type { GpuBuf, KernelSource, Runtime } from '../runtime.js';
import { is16Bit } from '../storage.js';

const RADIX_BITS = 8;
const RADIX = 1 << RADIX_BITS;
/** Positions per radix block: one invocation walks a block in order, which keeps the sort stable. */
const BLOCK = 256;
const WG = 64;
const NONE = 0xffffffff;

/** The sort key of a position: its id, or `rows` for an id out of range (those rows are skipped). */
const KEY_FN = `fn key_of(pos: u32) -> u32 {
  let id = loadi_ids(P.o_ids + pos);
  if (id < 0 || u32(id) >= P.rows) { return P.rows; }
  return u32(id);
}`;

/** Position j of the pass's input order: the identity on the first pass. */
const PASS_WGSL = `${KEY_FN}
fn position(j: u32) -> u32 {
  if (P.first != 0u) { return j; }
  return loadbits_src(j);
}
fn digit_slot(pos: u32, b: u32) -> u32 { return ((key_of(pos) >> P.shift) & ${RADIX - 1}u) * P.blocks + b; }`;

const PASS_PARAMS = [['n', 'u32'], ['rows', 'u32'], ['o_ids', 'u32'], ['first', 'u32'], ['shift', 'u32'], ['blocks', 'u32']] as const;

const BLOCK_MAIN = `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat_id(gid, nwg, ${WG}u);
  if (b >= P.blocks) { return; }
  let end = min(P.n, (b + 1u) * ${BLOCK}u);`;

/** counts[digit * blocks + b]: how many positions of block b have that digit. */
const histogramSource: KernelSource = {
  key: 'embeddingSortHistogram',
  params: PASS_PARAMS,
  body: () => `${PASS_WGSL}
${BLOCK_MAIN}
  for (var d = 0u; d < ${RADIX}u; d = d + 1u) { putbits_counts(d * P.blocks + b, 0u); }
  for (var j = b * ${BLOCK}u; j < end; j = j + 1u) {
    let e = digit_slot(position(j), b);
    putbits_counts(e, loadbits_counts(e) + 1u);
  }
}`,
};

/** Exclusive prefix sums of counts in digit-major order: where each (digit, block) starts in the output. */
const scanSource: KernelSource = {
  key: 'embeddingSortScan',
  params: [['blocks', 'u32']],
  body: () => `var<workgroup> totals: array<u32, ${RADIX}>;
@compute @workgroup_size(${RADIX}) fn main(@builtin(local_invocation_id) lid: vec3u) {
  let d = lid.x;
  var s = 0u;
  for (var b = 0u; b < P.blocks; b = b + 1u) {
    let e = d * P.blocks + b;
    let c = loadbits_counts(e);
    putbits_counts(e, s);
    s = s + c;
  }
  totals[d] = s;
  workgroupBarrier();
  var base = 0u;
  for (var k = 0u; k < d; k = k + 1u) { base = base + totals[k]; }
  for (var b = 0u; b < P.blocks; b = b + 1u) {
    let e = d * P.blocks + b;
    putbits_counts(e, loadbits_counts(e) + base);
  }
}`,
};

/** Each block moves its positions, in order, to their digit's next free slot. */
const scatterSortSource: KernelSource = {
  key: 'embeddingSortScatter',
  params: PASS_PARAMS,
  body: () => `${PASS_WGSL}
${BLOCK_MAIN}
  for (var j = b * ${BLOCK}u; j < end; j = j + 1u) {
    let pos = position(j);
    let e = digit_slot(pos, b);
    let slot = loadbits_counts(e);
    putbits_counts(e, slot + 1u);
    putbits_dst(slot, pos);
  }
}`,
};

/** From the sorted positions: links[pos] = the next position with the same id (or NONE), links[n + pos] = 1 for an id's first position. */
const linkSource: KernelSource = {
  key: 'embeddingLinks',
  params: [['n', 'u32'], ['rows', 'u32'], ['o_ids', 'u32']],
  body: () => `${KEY_FN}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = flat_id(gid, nwg, ${WG}u);
  if (k >= P.n) { return; }
  let pos = loadbits_sorted(k);
  let key = key_of(pos);
  var next = ${NONE}u;
  if (k + 1u < P.n) {
    let q = loadbits_sorted(k + 1u);
    if (key_of(q) == key) { next = q; }
  }
  var first = 1u;
  if (k > 0u && key_of(loadbits_sorted(k - 1u)) == key) { first = 0u; }
  putbits_links(pos, next);
  putbits_links(P.n + pos, first);
}`,
};

/** Links of the n positions of `ids` (see linkSource), in a new buffer of 2n elements. */
function linkPositions(rt: Runtime, ids: View, n: number, rows: number): GpuBuf {
  const blocks = Math.ceil(n / BLOCK);
  const keyBits = Math.max(1, Math.ceil(Math.log2(rows + 1)));
  let src = rt.alloc('int32', n), dst = rt.alloc('int32', n);
  const counts = rt.alloc('int32', RADIX * blocks);
  const idsArg = { name: 'ids', buf: ids.buf, access: 'read' as const };
  const countsArg = { name: 'counts', buf: counts, access: 'read_write' as const };
  for (let shift = 0; shift < keyBits; shift += RADIX_BITS) {
    const params = [n, rows, ids.offset, shift === 0 ? 1 : 0, shift, blocks];
    const grid = rt.grid(Math.ceil(blocks / WG));
    rt.dispatch(histogramSource, [idsArg, countsArg, { name: 'src', buf: src, access: 'read' }], params, grid);
    rt.dispatch(scanSource, [countsArg], [blocks], [1]);
    rt.dispatch(scatterSortSource, [idsArg, countsArg, { name: 'src', buf: src, access: 'read' }, { name: 'dst', buf: dst, access: 'read_write' }], params, grid);
    [src, dst] = [dst, src];
  }
  const links = rt.alloc('int32', 2 * n);
  rt.dispatch(linkSource, [idsArg, { name: 'sorted', buf: src, access: 'read' }, { name: 'links', buf: links, access: 'read_write' }],
    [n, rows, ids.offset], rt.grid(Math.ceil(n / WG)));
  rt.release(src);
  rt.release(dst);
  rt.release(counts);
  return links;
}

const SCATTER_WG = 64;
/** Each id's first position walks its chain in order and adds the gradient rows into the id's table row. */
const scatterSource: KernelSource = {
  key: 'scatterAdd',
  params: [['n', 'u32'], ['dim', 'u32'], ['pairs', 'u32'], ['rows', 'u32'], ['o_ids', 'u32'], ['o_g', 'u32'], ['o_out', 'u32']],
  body: () => `@compute @workgroup_size(${SCATTER_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat_id(gid, nwg, ${SCATTER_WG}u);
  let i = t / P.pairs;
  if (i >= P.n) { return; }
  if (loadbits_links(P.n + i) == 0u) { return; }
  let id = loadi_ids(P.o_ids + i);
  if (id < 0 || u32(id) >= P.rows) { return; }
  let c = (t % P.pairs) * 2u;
  let two = c + 1u < P.dim;
  let ob = P.o_out + u32(id) * P.dim + c;
  var a0 = load_out(ob);
  var a1 = 0.0;
  if (two) { a1 = load_out(ob + 1u); }
  var j = i;
  loop {
    let gb = P.o_g + j * P.dim + c;
    a0 = a0 + load_g(gb);
    if (two) { a1 = a1 + load_g(gb + 1u); }
    j = loadbits_links(j);
    if (j == ${NONE}u) { break; }
  }
  put2_out(ob, a0, a1, select(1u, 3u, two));
}`,
};

export function scatterAdd(rt: Runtime, g: View, ids: View, out: View, n: number, dim: number): void {
  if (n === 0 || dim === 0) return;
  const rows = Math.floor(out.size / dim);
  const links = linkPositions(rt, ids, n, rows);
  const pairs = Math.ceil(dim / 2);
  const owned = !is16Bit(out.dtype) || (out.offset % 2 === 0 && dim % 2 === 0);
  rt.dispatch(scatterSource, [
    { name: 'links', buf: links, access: 'read' },
    { name: 'ids', buf: ids.buf, access: 'read' },
    { name: 'g', buf: g.buf, access: 'read' },
    { name: 'out', buf: out.buf, access: 'read_write', mode: owned ? 'owned' : 'atomic' },
  ], [n, dim, pairs, rows, ids.offset, g.offset, out.offset], rt.grid(Math.ceil((n * pairs) / SCATTER_WG)));
  rt.release(links);
}
