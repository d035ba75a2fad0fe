#!/usr/bin/env node
// The mixprec command line. It runs the compiled CLI in dist/, which `npm run build`
// makes (npm install and npm ci run it through the `prepare` script).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    'mixprec: the compiled command line (dist/cli/main.js) is missing.\n' +
      'Build it with `npm run build` in the package directory, or run from source with\n' +
      '`node --import tsx src/cli/main.ts <command> [options]`.\n',
  );
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
