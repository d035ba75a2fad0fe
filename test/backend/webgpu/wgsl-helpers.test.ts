// The WGSL helper table, checked as text (no GPU needed): each helper is
// defined under the name the table gives it, the helpers it calls exist, and
// a shader gets exactly the helpers it calls.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  BINDING_HELPERS, WGSL_FUNCTIONS, argumentHelpers, bindingHelpers, declareStorage, linkHelpers, type BindingKind,
} from '../../../src/backend/webgpu/kernels/wgsl-helpers.js';
import { OPERAND_HELPERS, type OperandLayout, type OperandSpec } from '../../../src/backend/webgpu/kernels/vector-io.js';
import type { DType } from '../../../src/dtype/dtype.js';

/** Every way the backend declares a buffer. */
function allKinds(): BindingKind[] {
  const kinds: BindingKind[] = [];
  for (const dtype of ['float32', 'int32', 'float16', 'bfloat16'] as DType[]) {
    for (const access of ['read', 'read_write'] as const) {
      for (const vec4 of [false, true]) {
        for (const atomic of access === 'read_write' && !vec4 ? [false, true] : [false]) {
          for (const native of dtype === 'float16' && access === 'read' ? [false, true] : [false]) kinds.push({ dtype, access, atomic, vec4, native });
        }
      }
    }
  }
  return kinds;
}

const defined = (wgsl: string) => [...wgsl.matchAll(/\bfn\s+(\w+)\s*\(/g)].map((m) => m[1]!);
/** Helper-style calls (lower case with an underscore): WGSL's built-ins are camelCase or single words. */
const calledHelpers = (wgsl: string) => [...wgsl.matchAll(/\b([a-z][a-z0-9]*_\w+)\s*\(/g)].map((m) => m[1]!);
const describeKind = (k: BindingKind) => JSON.stringify(k);

describe('WGSL helper table', () => {
  it('defines each fixed helper under its table name, once, with a description', () => {
    for (const [name, f] of Object.entries(WGSL_FUNCTIONS)) {
      assert.deepEqual(defined(f.wgsl), [name]);
      assert.ok(f.doc.length > 10, name);
    }
  });

  it('defines each binding helper as <base>_<binding>, for every declaration it exists for', () => {
    const names = BINDING_HELPERS.map((h) => h.name);
    assert.equal(new Set(names).size, names.length, 'a helper listed twice');
    for (const h of BINDING_HELPERS) {
      assert.ok(h.doc.length > 10, h.name);
      let made = 0;
      for (const k of allKinds()) {
        const src = h.source('b3', k);
        if (src === undefined) continue;
        made++;
        assert.deepEqual(defined(src), [h.name.replace('<binding>', 'b3')], `${h.name} for ${describeKind(k)}`);
      }
      assert.ok(made > 0, `${h.name} exists for no declaration`);
    }
  });

  it('gives every binding declaration helpers whose calls all resolve, and loads for every argument', () => {
    for (const k of allKinds()) {
      const helpers = bindingHelpers('b0', k);
      for (const [name, v] of argumentHelpers('x', 'b0', k, k.access)) helpers.set(name, v);
      const roots = [...helpers.keys()].filter((n) => n.endsWith('_x'));
      assert.ok(roots.includes('load_x'), describeKind(k));
      assert.equal(roots.includes('put_x'), k.access === 'read_write', describeKind(k));
      assert.equal(roots.includes('load4_x'), k.vec4, describeKind(k));
      const shader = [declareStorage(0, k), ...linkHelpers(roots.map((n) => `${n}(`).join('\n'), helpers)].join('\n');
      const all = new Set(defined(shader));
      for (const called of calledHelpers(shader)) assert.ok(all.has(called), `${called} is called but not defined, for ${describeKind(k)}`);
      assert.equal(all.size, defined(shader).length, `a function defined twice for ${describeKind(k)}`);
    }
  });

  it('links only what a shader calls, through the helpers it calls', () => {
    const k: BindingKind = { dtype: 'bfloat16', access: 'read_write', atomic: false, vec4: false, native: false };
    const helpers = new Map([...bindingHelpers('b0', k), ...argumentHelpers('out', 'b0', k, 'read_write')]);
    const body = 'fn main() { if (!is_nan(1.0)) { put2_out(0u, 1.0, 2.0, 3u); } }';
    const linked = linkHelpers(body, helpers).flatMap(defined).sort();
    assert.deepEqual(linked, ['f32_to_bf16_bits', 'is_nan', 'put2_b0', 'put2_out', 'put2bits_b0', 'sethalf_b0', 'setword_b0']);
  });

  it('leaves a helper a kernel defines itself to the kernel', () => {
    const body = 'fn hsum(v: vec4<f32>) -> f32 { return v.x; }\nfn main() { let s = hsum(vec4<f32>(1.0)) + inf_f32(); }';
    assert.deepEqual(linkHelpers(body).flatMap(defined), ['inf_f32']);
  });

  it('defines each matrix-product operand helper as <base>_<operand>, and the helpers they call', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
      for (const layout of ['scalar', 'vec4', 'words', 'atomic-words'] as OperandLayout[]) {
        if (dtype === 'float32' && (layout === 'words' || layout === 'atomic-words')) continue;
        for (const access of layout === 'atomic-words' ? ['read_write' as const] : ['read' as const, 'read_write' as const]) {
          for (const nativeF16 of [false, true]) {
            const spec: OperandSpec = { name: 'A', dtype, binding: 1, access, layout, nativeF16 };
            const sources = OPERAND_HELPERS.map((h) => [h.name, h.source(spec)] as const).filter(([, src]) => src !== undefined);
            for (const [name, src] of sources) assert.deepEqual(defined(src!), [name.replace('<operand>', 'A')]);
            const all = new Set([...sources.flatMap(([, src]) => defined(src!)), 'f32_to_f16_bits', 'f32_to_bf16_bits']);
            for (const [, src] of sources) for (const called of calledHelpers(src!)) assert.ok(all.has(called), `${called} for ${JSON.stringify(spec)}`);
            assert.ok(all.has('load_A') && all.has('load4_A'));
          }
        }
      }
    }
  });

  it('reads float16 as native f16 only for read-only bindings and keeps int32 loads exact', () => {
    assert.equal(declareStorage(2, { dtype: 'float16', access: 'read', atomic: false, vec4: true, native: true }),
      '@group(0) @binding(2) var<storage, read> b2: array<vec4<f16>>;');
    assert.equal(declareStorage(1, { dtype: 'bfloat16', access: 'read_write', atomic: true, vec4: false, native: false }),
      '@group(0) @binding(1) var<storage, read_write> b1: array<atomic<u32>>;');
    const i32 = bindingHelpers('b0', { dtype: 'int32', access: 'read', atomic: false, vec4: false, native: false });
    assert.equal(i32.get('loadi_b0'), 'fn loadi_b0(i: u32) -> i32 { return b0[i]; }');
  });
});

describe('WGSL helper definitions are found by name', () => {
  const webgpu = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src/backend/webgpu');
  const files = [...readdirSync(webgpu).map((f) => join(webgpu, f)), ...readdirSync(join(webgpu, 'kernels')).map((f) => join(webgpu, 'kernels', f))]
    .filter((f) => f.endsWith('.ts'));

  it('no WGSL function outside the tables (wgsl-helpers.ts, vector-io.ts) has a name built from a template', () => {
    const outside: string[] = [];
    for (const file of files) {
      if (file.endsWith('wgsl-helpers.ts') || file.endsWith('vector-io.ts')) continue;
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\bfn\s+\w*\$\{/g)) outside.push(`${file.slice(webgpu.length + 1)}: ${text.slice(m.index, m.index + 40)}`);
    }
    assert.deepEqual(outside, []);
  });
});
