// Runs every test/**/*.test.ts file with node:test through tsx (Node 20's
// test runner does not expand globs itself). Extra arguments are passed on,
// so `npm test -- test/amp` runs one folder.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(path) {
  if (statSync(path).isFile()) return path.endsWith('.test.ts') ? [path] : [];
  return readdirSync(path).sort().flatMap((name) => (name === 'fixtures' ? [] : find(join(path, name))));
}

const args = process.argv.slice(2);
const roots = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
const files = (roots.length ? roots : ['test']).flatMap(find);
const r = spawnSync(process.execPath, ['--test', '--import', 'tsx', ...flags, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
