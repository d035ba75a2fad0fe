// Multi-tensor kernels of the CPU backend: the sum of squares for gradient
// clipping, and update rules (update-rule.ts), each compiled once into a
// JavaScript loop that computes in float64 and stores every updated value
// rounded to its slot's dtype.

import { float32BitsToBFloat16Bits, float32Bits } from '../../dtype/codec.js';
import { randomBits } from '../random.js';
import type { HostArray, View } from '../backend.js';
import { HOST_OPS, checkCall, evaluate, namesIn, ruleKey, type Expr, type UpdateCall, type UpdateRule } from '../update-rule.js';
import { inout, output, raw, values } from './arrays.js';

function scalar(v: View): number {
  return values(v)[0]!;
}

/** Stores x rounded to the view's dtype and returns the stored value. */
function setScalar(v: View, x: number): number {
  const o = output(v);
  o.arr[0] = x;
  o.commit();
  return scalar(v);
}

export function sumOfSquares(views: readonly View[], out: View): void {
  let s = 0;
  for (const v of views) {
    const x = values(v);
    for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  }
  setScalar(out, s);
}

/** Writes float32 master values into 16-bit parameters; bf16 may round stochastically (llm.c's rule). */
function writeBack(param: View, master: ArrayLike<number>, sr: { key: number; start: number } | undefined, offset: number): void {
  if (sr && param.dtype === 'bfloat16') {
    const r = raw(param) as Uint16Array;
    for (let i = 0; i < r.length; i++) {
      const bits = float32Bits(master[i]!);
      const isSpecial = (bits & 0x7f800000) === 0x7f800000;
      r[i] = isSpecial ? float32BitsToBFloat16Bits(bits) : ((bits + (randomBits(sr.key, (sr.start + offset + i) >>> 0) & 0xffff)) >>> 16);
    }
    return;
  }
  const o = output(param);
  o.arr.set(master);
  o.commit();
}

/** One tensor's element loop: arrays in slot order, values of the other names, length; returns the raised flags (1 or 0). */
type ElementLoop = (arrays: HostArray[], env: Readonly<Record<string, number>>, n: number) => number[];

const JS_INFIX: Partial<Record<string, string>> = { add: '+', sub: '-', mul: '*', div: '/' };

function jsExpr(e: Expr, ref: (name: string) => string): string {
  if (typeof e === 'number') return Object.is(e, -0) ? '-0' : String(e);
  if (typeof e === 'string') return ref(e);
  const a = e.args.map((x) => jsExpr(x, ref));
  const infix = JS_INFIX[e.op];
  return infix ? `(${a[0]} ${infix} ${a[1]})` : `F.${e.op}(${a.join(', ')})`;
}

const loops = new Map<string, ElementLoop>();

/** Compiles the rule's per-element formulas into one loop (JavaScript source, made once per rule structure). */
function elementLoop(rule: UpdateRule): ElementLoop {
  const key = ruleKey(rule);
  let loop = loops.get(key);
  if (loop) return loop;
  const slot = new Map(rule.slots.map((s, i) => [s, i]));
  const others = new Set<string>();
  for (const [, e] of [...rule.updates, ...(rule.raise ?? [])]) for (const n of namesIn(e)) if (!slot.has(n)) others.add(n);
  const names = [...others];
  const ref = (n: string) => (slot.has(n) ? `v${slot.get(n)}` : `e${names.indexOf(n)}`);
  const flags = rule.raise ?? [];
  const src = `return function (A, E, n) {
  ${rule.slots.map((_, i) => `const a${i} = A[${i}];`).join(' ')}
  ${names.map((n, k) => `const e${k} = E[${JSON.stringify(n)}];`).join(' ')}
  ${flags.map((_, k) => `let r${k} = 0;`).join(' ')}
  for (let j = 0; j < n; j++) {
    ${rule.slots.map((_, i) => `let v${i} = a${i}[j];`).join(' ')}
    ${flags.map(([, c], k) => `if (${jsExpr(c, ref)} !== 0) r${k} = 1;`).join('\n    ')}
    ${rule.updates.map(([s, e]) => `a${slot.get(s)}[j] = ${jsExpr(e, ref)}; v${slot.get(s)} = a${slot.get(s)}[j];`).join('\n    ')}
  }
  return [${flags.map((_, k) => `r${k}`).join(', ')}];
};`;
  loop = new Function('F', src)(HOST_OPS) as ElementLoop;
  loops.set(key, loop);
  return loop;
}

/** Applies the scalar assignments in order, storing each into its view; later ones read what was stored. */
function assignScalars(assigns: readonly (readonly [string, Expr])[], views: Readonly<Record<string, View>>, env: Record<string, number>): void {
  for (const [name, e] of assigns) env[name] = setScalar(views[name]!, evaluate(e, env));
}

export function update(rule: UpdateRule, call: UpdateCall): void {
  checkCall(rule, call);
  const env: Record<string, number> = { ...call.hypers };
  for (const [name, v] of Object.entries(call.scalars)) env[name] = scalar(v);
  if (rule.skipIf && call.scalars[rule.skipIf] && env[rule.skipIf] !== 0) return;
  assignScalars(rule.scalarUpdates ?? [], call.scalars, env);
  const updated = new Set(rule.updates.map(([s]) => s));
  const loop = elementLoop(rule);
  const raised = (rule.raise ?? []).map(() => 0);
  let offset = 0;
  call.tensors.forEach((t, i) => {
    const tenv = { ...env, ...call.tensorHypers?.[i] };
    for (const name of rule.tensorScalars ?? []) tenv[name] = scalar(t[name]!);
    assignScalars(rule.tensorScalarUpdates ?? [], t, tenv);
    const master = call.master?.[i] ?? null;
    const outs = rule.slots.map((s, k) => {
      const v = k === 0 && master ? master : t[s]!;
      return updated.has(s) ? inout(v) : { arr: values(v), commit: () => {} };
    });
    const n = t[rule.slots[0]!]!.size;
    loop(outs.map((o) => o.arr), tenv, n).forEach((r, k) => { raised[k] ||= r; });
    for (const o of outs) o.commit();
    if (master) writeBack(t[rule.slots[0]!]!, outs[0]!.arr, call.stochasticRounding, offset);
    offset += n;
  });
  (rule.raise ?? []).forEach(([flag], k) => {
    if (raised[k]) setScalar(call.scalars[flag]!, 1);
  });
}
