// The inference commands: `quantize` writes a directory that `eval` and
// `generate` open in its format; `eval --weights int8` on the float directory
// gives the same loss; `generate` streams, stops at --stop and draws --num-samples.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { saveGPT2 } from '../../src/io/gpt2.js';
import { GPT } from '../../src/nn/gpt.js';
import { tempRunRoot } from '../train/tiny-run.js';

async function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const status = await main(args, { write: (s: string) => (stdout += s) }, { write: (s: string) => (stderr += s) });
  return { status, stdout, stderr };
}

let root = '', dataFile = '', floatDir = '', int8Dir = '';
before(async () => {
  ({ root, dataFile } = await tempRunRoot('mixprec-inference-'));
  floatDir = path.join(root, 'float');
  int8Dir = path.join(root, 'int8');
  const m = new GPT({ vocabSize: 256, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 32, dropout: 0, bias: true }, { backend: 'cpu', seed: 3 });
  await saveGPT2(m, floatDir);
});
after(() => fs.rm(root, { recursive: true, force: true }));

describe('mixprec quantize, eval --weights, generate --weights', () => {
  test('quantize writes an int8 directory; eval of it equals eval --weights int8 of the float one', async () => {
    const q = await run(['quantize', '--checkpoint', floatDir, '--weights', 'int8', '--out', int8Dir]);
    assert.equal(q.status, 0, q.stderr);
    assert.match(q.stdout, /int8 weights, [\d.]+ MiB/);
    const evalArgs = ['--data', dataFile, '--backend', 'cpu', '--batch-size', '2', '--block-size', '16', '--eval-steps', '2', '--json'];
    const a = await run(['eval', '--checkpoint', int8Dir, ...evalArgs]);
    const b = await run(['eval', '--checkpoint', floatDir, '--weights', 'int8', ...evalArgs]);
    const f = await run(['eval', '--checkpoint', floatDir, ...evalArgs]);
    assert.equal(a.status, 0, a.stderr);
    const [ra, rb, rf] = [a, b, f].map((r) => JSON.parse(r.stdout) as { valLoss: number; weightBytes: number });
    assert.equal(ra.valLoss, rb.valLoss);
    assert.ok(ra.weightBytes < 0.5 * rf.weightBytes, `${ra.weightBytes} vs ${rf.weightBytes}`);
    const wrong = await run(['eval', '--checkpoint', int8Dir, '--weights', 'int4', ...evalArgs]);
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stderr, /holds int8 weights, not int4/);
  });

  test('generate: a stop string, several samples, top-p', async () => {
    const base = ['generate', '--checkpoint', int8Dir, '--backend', 'cpu', '--prompt', 'ab', '--max-new-tokens', '20', '--temperature', '1.5', '--seed', '2'];
    const free = await run(base);
    assert.equal(free.status, 0, free.stderr);
    assert.match(free.stderr, /int8 weights/);
    const continuation = free.stdout.slice(2, -1);
    const stop = continuation.slice(4, 6);
    const stopped = await run([...base, '--stop', stop]);
    assert.equal(stopped.stdout, `ab${continuation.slice(0, continuation.indexOf(stop))}\n`);
    // Several stop strings: the sample ends where the first of them to appear does.
    const later = continuation.slice(9, 11);
    assert.ok(continuation.indexOf(later) > continuation.indexOf(stop), `'${later}' appears after '${stop}' in '${continuation}'`);
    const either = await run([...base, '--stop', later, '--stop', stop]);
    assert.equal(either.stdout, stopped.stdout);
    assert.equal((await run([...base, '--stop', later])).stdout, `ab${continuation.slice(0, continuation.indexOf(later))}\n`);
    const empty = await run([...base, '--stop', '']);
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, /--stop: the stop text is empty/);
    const many = await run([...base, '--num-samples', '3', '--top-p', '0.9']);
    assert.equal(many.status, 0, many.stderr);
    assert.equal(many.stdout.match(/^--- sample \d ---$/gm)?.length, 3);
    const bad = await run([...base, '--top-p', '1.5']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--top-p/);
  });
});
