// Multi-tensor kernels for mixed-precision training: the sum of squares for
// gradient clipping, and update rules (update-rule.ts) generated as WGSL from
// their formulas. Everything stays on the device. A rule that has a skip flag,
// scalar updates or per-call values (the step counter, bias corrections, the
// reciprocal of the loss scale) first runs a one-invocation kernel that reads
// the flag, updates the scalars and leaves the skip decision and the per-call
// values in a small scratch buffer; then one kernel per tensor (adjacent
// tensors merged) updates its elements. A shader binds a fixed handful of
// buffers and every tensor has its own, so the tensors of a group cannot share
// one dispatch; they share one pipeline, cached by the rule's structure, with
// hyperparameters as uniforms (a new learning rate never recompiles).
// Recorded without a host round trip.

import { BackendError, type View } from '../../backend.js';
import { checkCall, evaluate, ruleKey, type Expr, type UpdateCall, type UpdateRule } from '../../update-rule.js';
import type { Arg, KernelSource, Runtime } from '../runtime.js';
import { is16Bit, nonzeroMask, type WriteMode } from '../storage.js';
import { chunksFor, reduce, reducePass } from './reduce.js';
import { WGSL_RULE_HELPERS, emit, hyperOnly, nameKinds, type Scope } from './rule-wgsl.js';

/** Views of one buffer that follow each other are merged into one (fewer dispatches). */
export function mergeAdjacent(views: readonly View[]): View[] {
  const out: View[] = [];
  for (const v of views) {
    if (v.size === 0) continue;
    const last = out[out.length - 1];
    if (last && last.buf === v.buf && last.offset + last.size === v.offset) out[out.length - 1] = { ...last, size: last.size + v.size };
    else out.push(v);
  }
  return out;
}


// ---- sum of squares ----

export function sumOfSquares(rt: Runtime, views: readonly View[], out: View): void {
  const merged = mergeAdjacent(views);
  // Each tensor's squares are summed in chunks into a slice of one partial buffer, which is then summed in a fixed order.
  const plan = merged.map((v) => {
    const chunks = chunksFor(v.size, 1);
    return { v, chunks, len: Math.ceil(v.size / chunks) };
  });
  const total = plan.reduce((a, p) => a + p.chunks, 0);
  const part = rt.alloc('float32', Math.max(total, 1));
  let slot = 0;
  for (const { v, chunks, len } of plan) {
    reducePass(rt, 'sumsq', v, { buf: part, offset: slot, size: chunks, dtype: 'float32' }, 1, v.size, 1, chunks, len);
    slot += chunks;
  }
  // Zero when there is nothing to sum.
  reduce(rt, 'sum', { buf: part, offset: 0, size: total, dtype: 'float32' }, out, 1, total, 1);
  rt.release(part);
}

// ---- update rules ----

/** WGSL code and the hyperparameter parts it folds into uniforms h0, h1, ... */
interface Generated {
  src: KernelSource;
  folded: Expr[];
  /** Element kernels without the one-invocation kernel: the scalars they read in place (indices into rule.scalars). */
  inlineScalars?: number[];
}

/** What one rule needs on WebGPU, worked out once per rule structure. */
interface Plan {
  rule: UpdateRule;
  id: number;
  kinds: ReturnType<typeof nameKinds>;
  /** Per-call parts of the element and tensor-scalar formulas, computed by the one-invocation kernel into scratch[1..]. */
  callParts: Map<string, { expr: Expr; slot: number }>;
  /** Whether the rule runs its one-invocation kernel first. */
  prepass: boolean;
  kernels: Map<string, Generated>;
}

const plans = new Map<string, Plan>();

function planFor(rule: UpdateRule): Plan {
  const key = ruleKey(rule);
  let plan = plans.get(key);
  if (plan) return plan;
  const kinds = nameKinds(rule);
  const callParts = new Map<string, { expr: Expr; slot: number }>();
  const collect = (e: Expr): void => {
    if (hyperOnly(e, (n) => kinds.hypers.has(n))) return;
    if (kinds.isCallLevel(e)) {
      const k = JSON.stringify(e);
      if (!callParts.has(k)) callParts.set(k, { expr: e, slot: callParts.size + 1 });
    } else if (typeof e === 'object') e.args.forEach(collect);
  };
  for (const [, e] of [...rule.updates, ...(rule.raise ?? []), ...(rule.tensorScalarUpdates ?? [])]) collect(e);
  const onlyScalarNames = [...callParts.values()].every((p) => typeof p.expr === 'string');
  const prepass = !!rule.skipIf || (rule.scalarUpdates?.length ?? 0) > 0 || !onlyScalarNames;
  if (rule.updates.length > 0 && rule.updates.every(([s]) => s !== rule.slots[0])) {
    throw new BackendError(`webgpu: update rule '${rule.name}' must update its first slot '${rule.slots[0]}'`);
  }
  plan = { rule, id: plans.size, kinds, callParts, prepass, kernels: new Map() };
  plans.set(key, plan);
  return plan;
}

/** A scope whose hyperparameter-only parts become uniforms h0, h1, ... */
function folding(plan: Plan, vec4: boolean, name: Scope['name'], callLevel?: Scope['callLevel']): Scope & { folded: Expr[] } {
  const folded: Expr[] = [];
  return {
    folded, vec4, name, callLevel,
    isHyper: (n) => plan.kinds.hypers.has(n),
    fold: (e) => {
      const k = JSON.stringify(e);
      let i = folded.findIndex((f) => JSON.stringify(f) === k);
      if (i < 0) i = folded.push(e) - 1;
      return `P.h${i}`;
    },
  };
}

const hyperParams = (folded: Expr[]) => folded.map((_, i) => [`h${i}`, 'f32'] as [string, 'f32']);

/** The one-invocation kernel: skip flag, scalar updates, per-call parts into scratch. Scalars are bound as sc<index>. */
function prepassKernel(plan: Plan, present: readonly string[]): Generated {
  const variant = `pre:${present.join(',')}`;
  let g = plan.kernels.get(variant);
  if (g) return g;
  const { rule } = plan;
  const idx = (n: string) => rule.scalars.indexOf(n);
  const scope = folding(plan, false, (n) => {
    if (!plan.kinds.scalars.has(n) || !present.includes(n)) throw new BackendError(`webgpu: update rule '${rule.name}' reads '${n}', which the call does not give`);
    return { code: `s${idx(n)}`, vec: false };
  });
  const flag = rule.skipIf && present.includes(rule.skipIf) ? idx(rule.skipIf) : -1;
  const body = [
    flag >= 0 ? `if ((loadbits_sc${flag}(P.o_sc${flag}) & P.fmask) != 0u) { put_scr(0u, 1.0); return; }` : '',
    'put_scr(0u, 0.0);',
    ...present.map((n) => `var s${idx(n)} = load_sc${idx(n)}(P.o_sc${idx(n)});`),
    ...(rule.scalarUpdates ?? []).map(([n, e]) => `s${idx(n)} = ${emit(e, scope).code}; put_sc${idx(n)}(P.o_sc${idx(n)}, s${idx(n)});`),
    ...[...plan.callParts.values()].map((p) => `put_scr(${p.slot}u, ${emit(p.expr, scope).code});`),
  ].filter(Boolean).join('\n  ');
  const code = `${WGSL_RULE_HELPERS}\n@compute @workgroup_size(1) fn main() {\n  ${body}\n}`;
  g = {
    src: {
      key: `update ${rule.name} once|${plan.id}:${variant}`,
      params: [...present.map((n) => [`o_sc${idx(n)}`, 'u32'] as [string, 'u32']), ['fmask', 'u32'], ...hyperParams(scope.folded)],
      body: code,
    },
    folded: scope.folded,
  };
  plan.kernels.set(variant, g);
  return g;
}

const UPD_WG = 128;

interface ElementVariant {
  master: boolean;
  sr: boolean;
  quads: boolean;
}

/**
 * The per-tensor kernel, driven by the first slot's quads (four elements per
 * invocation with vector loads, when every tensor lines up) or words (two).
 * Bindings: slots sl<k>, master mst, scratch scr, tensor scalars ts<k>,
 * scalars read in place sc<k>, raised flags fl<k>.
 */
function elementKernel(plan: Plan, v: ElementVariant): Generated {
  const variant = `el:${v.master}:${v.sr}:${v.quads}`;
  let g = plan.kernels.get(variant);
  if (g) return g;
  const { rule, kinds } = plan;
  const slotIdx = (n: string) => rule.slots.indexOf(n);
  const tsIdx = (n: string) => (rule.tensorScalars ?? []).indexOf(n);
  const scalarIdx = (n: string) => rule.scalars.indexOf(n);
  const callLevel = (e: Expr): string | null => {
    if (!kinds.isCallLevel(e)) return null;
    if (plan.prepass) return `load_scr(${plan.callParts.get(JSON.stringify(e))!.slot}u)`;
    return typeof e === 'string' ? `load_sc${scalarIdx(e)}(P.o_sc${scalarIdx(e)})` : null;
  };
  const tsScope = folding(plan, false, (n) => {
    if (!kinds.tensorScalars.has(n)) throw new BackendError(`webgpu: update rule '${rule.name}': a tensor scalar's update reads '${n}'`);
    return { code: `ts_${tsIdx(n)}`, vec: false };
  }, callLevel);
  const elementName = (n: string) => {
    if (kinds.slots.has(n)) return { code: `x${slotIdx(n)}`, vec: true };
    if (kinds.tensorScalars.has(n)) return { code: `tv${tsIdx(n)}`, vec: false };
    throw new BackendError(`webgpu: update rule '${rule.name}' reads '${n}' per element, which is not a slot, tensor scalar or scalar`);
  };
  // The four-element code, the one-element code (ragged ends) and the tensor scalars share one list of uniforms.
  const scope = folding(plan, false, (n) => ({ ...elementName(n), vec: false }), callLevel);
  const scope4: Scope = { ...scope, vec4: true, name: elementName };
  Object.assign(tsScope, { fold: scope.fold });
  const tensorScalars = rule.tensorScalars ?? [];
  const flags = (rule.raise ?? []).map(([f]) => scalarIdx(f));
  const inlineScalars = plan.prepass ? [] : [...new Set([...plan.callParts.values()].map((p) => scalarIdx(p.expr as string)))];
  const tsCode = [
    ...tensorScalars.map((n, k) => `var ts_${k} = load_ts${k}(P.o_ts${k});`),
    ...(rule.tensorScalarUpdates ?? []).map(([n, e]) => `ts_${tsIdx(n)} = ${emit(e, tsScope).code};`),
    ...tensorScalars.map((_, k) => `tv${k} = ts_${k};\n  if (t == 0u) { put_ts${k}(P.o_ts${k}, tv${k}); }`),
  ].join('\n  ');
  const src0 = v.master ? 'mst' : 'sl0';
  const off0 = v.master ? 'P.o_mst' : 'P.o0';
  const step = (ld: string, st: string, at: (o: string) => string, sc: Scope, T: string) => [
    `var x0 = ${ld}_${src0}(${at(off0)});`,
    ...rule.slots.slice(1).map((_, i) => `var x${i + 1} = ${ld}_sl${i + 1}(${at(`P.o${i + 1}`)});`),
    ...(rule.raise ?? []).map(([, c], k) => `if (any(${emit(c, sc).code} != ${T}(0.0))) { raise_fl${k}(P.o_fl${k}); }`),
    ...rule.updates.map(([n, e]) => {
      const k = slotIdx(n);
      const store = k > 0 ? `${st}_sl${k}(${at(`P.o${k}`)}, x${k});` : v.master ? `${st}_mst(${at('P.o_mst')}, x0);` : '';
      return `x${k} = ${emit(e, sc).code};${store ? ` ${store}` : ''}`;
    }),
    'return x0;',
  ].join('\n  ');
  const one = `fn update(k: u32) -> f32 {\n  ${step('load', 'put', (o) => `${o} + k`, scope, 'f32')}\n}`;
  const four = v.quads ? `fn update4(k: u32) -> vec4<f32> {\n  ${step('load4', 'put4', (o) => `(${o} + k) >> 2u`, scope4, 'vec4<f32>')}\n}` : '';
  const srFn = v.sr ? `
fn round_sr(x: f32, k: u32) -> u32 {
  let b = bitcast<u32>(x);
  let r = (b + (random_bits(P.key, P.ctr + k) & 0xffffu)) >> 16u;
  return select(r, f32_to_bf16_bits(x), (b & 0x7f800000u) == 0x7f800000u);
}` : '';
  const write4 = v.sr
    ? 'put4bits_sl0(q, vec4<u32>(round_sr(x.x, k0), round_sr(x.y, k0 + 1u), round_sr(x.z, k0 + 2u), round_sr(x.w, k0 + 3u)));'
    : 'put4_sl0(q, x);';
  const write1 = v.sr ? 'putbits_sl0(e, round_sr(update(e - P.o0), e - P.o0));' : 'put_sl0(e, update(e - P.o0));';
  const main = v.quads ? `
  let q = P.w0 + t;
  let e0 = q * 4u;
  if (e0 >= P.end) { return; }
  if (e0 >= P.o0 && e0 + 4u <= P.end) {
    let k0 = e0 - P.o0;
    let x = update4(k0);
    ${write4}
    return;
  }
  for (var e = max(e0, P.o0); e < min(e0 + 4u, P.end); e = e + 1u) { ${write1} }` : `
  let e0 = (P.w0 + t) * 2u;
  if (e0 >= P.end) { return; }
  let k0 = e0 - P.o0;
  var x = array<f32, 2>(0.0, 0.0);
  var m = 0u;
  if (e0 >= P.o0) { m = 1u; x[0] = update(k0); }
  if (e0 + 1u < P.end) { m = m | 2u; x[1] = update(k0 + 1u); }
  ${v.sr ? 'put2bits_sl0(e0, round_sr(x[0], k0), round_sr(x[1], k0 + 1u), m);' : 'put2_sl0(e0, x[0], x[1], m);'}`;
  const code = `${WGSL_RULE_HELPERS}${srFn}
${tensorScalars.map((_, k) => `var<private> tv${k}: f32;`).join('\n')}
${one}
${four}
@compute @workgroup_size(${UPD_WG}) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${plan.prepass ? 'if (load_scr(0u) != 0.0) { return; }' : ''}
  let t = flat_id(gid, nwg, ${UPD_WG}u);
  ${tsCode}${main}
}`;
  const u32 = (n: string) => [n, 'u32'] as [string, 'u32'];
  g = {
    src: {
      key: `update ${rule.name}|${plan.id}:${variant}`,
      random: v.sr,
      params: [u32('w0'), u32('end'), ...rule.slots.map((_, k) => u32(`o${k}`)), u32('o_mst'), u32('key'), u32('ctr'),
        ...tensorScalars.map((_, k) => u32(`o_ts${k}`)), ...inlineScalars.map((k) => u32(`o_sc${k}`)), ...flags.map((_, k) => u32(`o_fl${k}`)),
        ...hyperParams(scope.folded)],
      body: code,
    },
    folded: scope.folded,
    inlineScalars,
  };
  plan.kernels.set(variant, g);
  return g;
}

/** 'owned' if a 16-bit tensor's words line up with the first slot's (then that slot's word owner owns them too). */
function alignedMode(v: View, first: View): WriteMode {
  return !is16Bit(v.dtype) || (v.offset - first.offset) % 2 === 0 ? 'owned' : 'atomic';
}

/** Runs of tensors whose every view continues the previous tensor's in the same buffer, merged into one. */
interface Run {
  views: Record<string, View>;
  master: View | null;
  hypers: Readonly<Record<string, number>>;
  size: number;
}

function mergeTensors(rule: UpdateRule, call: UpdateCall): Run[] {
  const first = rule.slots[0]!;
  const out: Run[] = [];
  call.tensors.forEach((t, i) => {
    const master = call.master?.[i] ?? null;
    const hypers = call.tensorHypers?.[i] ? { ...call.hypers, ...call.tensorHypers[i] } : call.hypers;
    const size = t[first]!.size;
    const last = out[out.length - 1];
    const follows = (a: View, b: View) => a.buf === b.buf && a.offset + a.size === b.offset && a.dtype === b.dtype;
    if (last && !rule.tensorScalars?.length && !call.tensorHypers && (!!last.master === !!master) && (!master || follows(last.master!, master))
      && rule.slots.every((s) => follows(last.views[s]!, t[s]!))) {
      for (const s of rule.slots) last.views[s] = { ...last.views[s]!, size: last.views[s]!.size + size };
      if (master) last.master = { ...last.master!, size: last.master!.size + size };
      last.size += size;
    } else out.push({ views: { ...t }, master, hypers, size });
  });
  return out;
}

export function update(rt: Runtime, rule: UpdateRule, call: UpdateCall): void {
  checkCall(rule, call);
  const plan = planFor(rule);
  const present = rule.scalars.filter((n) => call.scalars[n]);
  let scr: ReturnType<Runtime['alloc']> | null = null;
  if (plan.prepass) {
    scr = rt.alloc('float32', plan.callParts.size + 1);
    const pre = prepassKernel(plan, present);
    const args: Arg[] = [{ name: 'scr', buf: scr, access: 'read_write' }];
    const updated = new Set((rule.scalarUpdates ?? []).map(([n]) => n));
    for (const n of present) {
      args.push({ name: `sc${rule.scalars.indexOf(n)}`, buf: call.scalars[n]!.buf, access: updated.has(n) ? 'read_write' : 'read', bits: n === rule.skipIf });
    }
    rt.dispatch(pre.src, args, [...present.map((n) => call.scalars[n]!.offset), nonzeroMask('float32'), ...pre.folded.map((e) => evaluate(e, call.hypers))], [1]);
  }
  const sr = call.stochasticRounding;
  let offset = 0;
  for (const { views, master, hypers, size } of mergeTensors(rule, call)) {
    const first = views[rule.slots[0]!]!;
    const useSr = !!(sr && master && first.dtype === 'bfloat16');
    const updated = new Set(rule.updates.map(([n]) => n));
    const slotViews = rule.slots.map((s) => views[s]!);
    const tsViews = (rule.tensorScalars ?? []).map((s) => views[s]!);
    const flagViews = (rule.raise ?? []).map(([f]) => call.scalars[f]!);
    const bound = [...slotViews, ...(master ? [master] : []), ...tsViews, ...flagViews];
    // Quads when every tensor's quads line up with the first slot's and no two bindings share a buffer.
    const quads = size >= 8 && [...slotViews, ...(master ? [master] : [])].every((x) => (x.offset - first.offset) % 4 === 0)
      && new Set(bound.map((x) => x.buf)).size === bound.length;
    const kernel = elementKernel(plan, { master: !!master, sr: useSr, quads });
    const inline = kernel.inlineScalars ?? [];
    const args: Arg[] = [{ name: 'sl0', buf: first.buf, access: 'read_write', bits: useSr, vec4: quads }];
    slotViews.slice(1).forEach((x, k) => args.push({
      name: `sl${k + 1}`, buf: x.buf, access: updated.has(rule.slots[k + 1]!) ? 'read_write' : 'read', mode: alignedMode(x, first), vec4: quads,
    }));
    if (master) args.push({ name: 'mst', buf: master.buf, access: 'read_write', mode: alignedMode(master, first), vec4: quads });
    if (scr) args.push({ name: 'scr', buf: scr, access: 'read' });
    tsViews.forEach((x, k) => args.push({ name: `ts${k}`, buf: x.buf, access: 'read_write', mode: 'atomic' }));
    for (const k of inline) args.push({ name: `sc${k}`, buf: call.scalars[rule.scalars[k]!]!.buf, access: 'read' });
    flagViews.forEach((x, k) => args.push({ name: `fl${k}`, buf: x.buf, access: 'read_write', mode: 'atomic' }));
    const unit = quads ? 4 : 2;
    const w0 = Math.floor(first.offset / unit);
    const n = size === 0 ? 0 : Math.floor((first.offset + size - 1) / unit) - w0 + 1;
    if (n > 0) {
      rt.dispatch(kernel.src, args, [
        w0, first.offset + size, ...slotViews.map((x) => x.offset), master?.offset ?? 0, sr?.key ?? 0, ((sr?.start ?? 0) + offset) >>> 0,
        ...tsViews.map((x) => x.offset), ...inline.map((k) => call.scalars[rule.scalars[k]!]!.offset), ...flagViews.map((x) => x.offset),
        ...kernel.folded.map((e) => evaluate(e, hypers)),
      ], rt.grid(Math.ceil(n / UPD_WG)));
    }
    offset += size;
  }
  if (scr) rt.release(scr);
}
