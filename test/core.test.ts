// The browser-safe entry point must not statically import Node built-ins or
// packages: browsers load `mixprec/core` (the WebGPU backend reaches the Node
// `webgpu` package only through a dynamic import, when navigator.gpu is absent).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Static import/export specifiers of a file (not `import()` calls). */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'([^']+)'/gms)].map((m) => m[1]!)
    .concat([...text.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]!));
}

test('src/core.ts reaches no Node built-in or package through static imports', () => {
  const seen = new Set<string>();
  const external: string[] = [];
  const visit = (file: string, from: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')), file);
      else if (!/^import type|^export type/.test(spec)) external.push(`${spec} (from ${file.slice(src.length + 1)}, reached from ${from.slice(src.length + 1)})`);
    }
  };
  visit(resolve(src, 'core.ts'), resolve(src, 'core.ts'));
  assert.ok(seen.size > 30, `followed ${seen.size} modules`);
  assert.deepEqual(external, []);
});
