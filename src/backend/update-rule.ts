// Update rules as data: AdamW, SGD, GradScaler's unscale and loss-scale rule
// are each written once, as formulas over named slots, and every backend runs
// them through one primitive, Backend.update.
//
// A rule names
// - hyperparameters: host numbers given with each call (lr, betas, ...);
// - scalars: 1-element float32 tensors of the whole call (the step counter,
//   the loss scale, found-inf flags), updated once per call;
// - tensor scalars: 1-element float32 tensors, one per tensor, updated once
//   per tensor. A GPU updates them in the same pass as the elements, so an
//   element may see the value before or after its update: a tensor scalar's
//   update must be idempotent (f(f(x)) = f(x)), and element formulas read the
//   updated value;
// - slots: the tensors updated element by element (param, grad, exp_avg, ...).
//   The first slot is the one a float32 master copy stands in for.
// Values are computed in at least float32 (float64 on the CPU). Each updated
// value is stored rounded to its slot's dtype (through float32), and later
// formulas read what was stored (float32 for 16-bit slots).

import type { View } from './backend.js';
import { MixprecError, type ErrorCode } from '../errors.js';

/** A number, a name (slot, scalar, tensor scalar or hyperparameter), or an operation. */
export type Expr = number | string | { readonly op: Op; readonly args: readonly Expr[] };

/** Booleans are 1 and 0; `select` and `or` take any nonzero value (NaN included) as true. */
export type Op =
  | 'add' | 'sub' | 'mul' | 'div' | 'sqrt' | 'log'
  /** 1 - a^b, accurate for a in (0, 1) near b = 0 (bias corrections). */
  | 'oneMinusPow'
  /** The float32 reciprocal, correctly rounded (PyTorch's scale.double().reciprocal().float()). */
  | 'reciprocal'
  /** select(c, a, b): c != 0 ? a : b */
  | 'select'
  | 'eq' | 'ge' | 'or'
  /** 1 when the value is finite as a float32. */
  | 'finite';

/** One assignment: the named slot or scalar gets the value. */
export type Assign = readonly [target: string, value: Expr];

export interface UpdateRule {
  readonly name: string;
  readonly hypers: readonly string[];
  readonly scalars: readonly string[];
  readonly tensorScalars?: readonly string[];
  readonly slots: readonly string[];
  /** When this scalar is nonzero the whole update is skipped (GradScaler's found-inf flag); a call may leave it out, then nothing is skipped. */
  readonly skipIf?: string;
  /** In order; once per call. */
  readonly scalarUpdates?: readonly Assign[];
  /** In order; once per tensor, after the scalar updates. */
  readonly tensorScalarUpdates?: readonly Assign[];
  /** In order; per element. */
  readonly updates: readonly Assign[];
  /** [flag scalar, condition]: the flag is set to 1 when the condition holds for any element (on its values before its updates). */
  readonly raise?: readonly Assign[];
}

/** The tensors and numbers of one application of a rule. */
export interface UpdateCall {
  hypers: Readonly<Record<string, number>>;
  /** Per tensor, hyperparameters that override `hypers` for that tensor's elements (not for the per-call scalars). */
  tensorHypers?: readonly Readonly<Record<string, number>>[];
  scalars: Readonly<Record<string, View>>;
  /** Per tensor: a view for every slot and tensor scalar, by name. */
  tensors: readonly Readonly<Record<string, View>>[];
  /**
   * Per tensor, a float32 copy that the first slot is computed in (master
   * weights); the slot itself then gets the result rounded to its dtype. null
   * (or absent) updates the slot directly.
   */
  master?: readonly (View | null)[];
  /** Round bfloat16 write-backs from the master copy stochastically: counter start + (element index over all tensors). */
  stochasticRounding?: { key: number; start: number };
}

const op = (o: Op) => (...args: Expr[]): Expr => ({ op: o, args });
/** Builders, so that a rule reads as its formula. */
export const add = op('add'), sub = op('sub'), mul = op('mul'), div = op('div'), sqrt = op('sqrt'), log = op('log');
export const oneMinusPow = op('oneMinusPow'), reciprocal = op('reciprocal'), select = op('select');
export const eq = op('eq'), ge = op('ge'), or = op('or'), finite = op('finite');

/** Each operation in float64, as the CPU backend computes it (and as hyperparameter-only parts are folded on the host). */
export const HOST_OPS: Record<Op, (...a: number[]) => number> = {
  add: (a, b) => a! + b!,
  sub: (a, b) => a! - b!,
  mul: (a, b) => a! * b!,
  div: (a, b) => a! / b!,
  sqrt: (a) => Math.sqrt(a!),
  log: (a) => Math.log(a!),
  oneMinusPow: (a, b) => 1 - a! ** b!,
  reciprocal: (a) => Math.fround(1 / a!),
  select: (c, a, b) => (c !== 0 ? a! : b!),
  eq: (a, b) => (a === b ? 1 : 0),
  ge: (a, b) => (a! >= b! ? 1 : 0),
  or: (a, b) => (a !== 0 || b !== 0 ? 1 : 0),
  finite: (a) => (Number.isFinite(Math.fround(a!)) ? 1 : 0),
};

/** Evaluates an expression in float64 with the names' values from `env`. */
export function evaluate(e: Expr, env: Readonly<Record<string, number>>): number {
  if (typeof e === 'number') return e;
  if (typeof e === 'string') {
    const v = env[e];
    if (v === undefined) throw new UpdateRuleError(`no value for '${e}'`);
    return v;
  }
  return HOST_OPS[e.op](...e.args.map((a) => evaluate(a, env)));
}

/** The names an expression reads. */
export function namesIn(e: Expr, out = new Set<string>()): Set<string> {
  if (typeof e === 'string') out.add(e);
  else if (typeof e === 'object') for (const a of e.args) namesIn(a, out);
  return out;
}

/** An update rule that is malformed, or a call that does not give it what it reads. */
export class UpdateRuleError extends MixprecError {
  override readonly code: ErrorCode = 'UPDATE_RULE_INVALID';
}

const keys = new WeakMap<UpdateRule, string>();

/** The rule's structure as a string: equal keys mean equal formulas (hyperparameter values are not part of it). */
export function ruleKey(rule: UpdateRule): string {
  let k = keys.get(rule);
  if (k === undefined) {
    k = JSON.stringify(rule);
    keys.set(rule, k);
  }
  return k;
}

/** Checks that a call gives every view and number the rule names; errors name the rule, the tensor and the slot. */
export function checkCall(rule: UpdateRule, call: UpdateCall): void {
  const fail = (what: string) => { throw new UpdateRuleError(`update rule '${rule.name}': ${what}`); };
  for (const h of rule.hypers) if (typeof call.hypers[h] !== 'number') fail(`hyperparameter '${h}' is missing`);
  for (const s of rule.scalars) {
    const v = call.scalars[s];
    if (!v) {
      if (s !== rule.skipIf) fail(`scalar '${s}' is missing`);
    } else if (v.dtype !== 'float32') fail(`scalar '${s}' is ${v.dtype}, expected float32`);
    else if (v.size !== 1) fail(`scalar '${s}' has ${v.size} elements, expected 1`);
  }
  call.tensors.forEach((t, i) => {
    const first = t[rule.slots[0]!];
    if (!first) return fail(`tensor ${i}: slot '${rule.slots[0]}' is missing`);
    for (const s of rule.slots) {
      const v = t[s];
      if (!v) fail(`tensor ${i}: slot '${s}' is missing`);
      else if (v.size !== first.size) fail(`tensor ${i}: slot '${s}' has ${v.size} elements, '${rule.slots[0]}' ${first.size}`);
    }
    for (const s of rule.tensorScalars ?? []) if (t[s]?.size !== 1) fail(`tensor ${i}: tensor scalar '${s}' must be a 1-element view`);
    const m = call.master?.[i];
    if (m && (m.size !== first.size || m.dtype !== 'float32')) fail(`tensor ${i}: the master copy must be float32 with ${first.size} elements, got ${m.dtype} with ${m.size}`);
  });
}
