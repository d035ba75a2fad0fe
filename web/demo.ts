// `npm run demo [-- --port N]`: builds the page and serves it on localhost.
import { buildDemo, DIST } from './build.js';
import { serveStatic } from './serve.js';

function portOption(args: string[]): number {
  const i = args.findIndex((a) => a === '--port' || a.startsWith('--port='));
  if (i < 0) return 5173;
  const text = args[i]!.includes('=') ? args[i]!.split('=')[1] : args[i + 1];
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: must be an integer from 0 to 65535, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return port;
}

const port = portOption(process.argv.slice(2));
const built = await buildDemo();
console.log(`built web/dist (${(built.code.gzip / 1024).toFixed(0)} KiB of code, gzip)`);
const { url } = await serveStatic(DIST, port);
console.log(`mixprec demo: ${url}  (Ctrl-C to stop)`);
