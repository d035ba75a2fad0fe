// The digests of a checkpoint's files are computed from a stream: a file past
// 2 GiB (GPT-2 medium's optimizer state is 2.8 GB) cannot be read into one buffer.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileDigest } from '../../src/io/checkpoint.js';

test('fileDigest gives the size and SHA-256 of a file larger than 2 GiB', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mixprec-digest-'));
  try {
    // A sparse file of 2 GiB and 5 bytes: zeros, then 'mixed'.
    const file = path.join(dir, 'large.bin');
    const size = 2 ** 31;
    const handle = await fs.open(file, 'w');
    await handle.write(Buffer.from('mixed'), 0, 5, size);
    await handle.close();
    const expected = createHash('sha256');
    const zeros = Buffer.alloc(1 << 26);
    for (let done = 0; done < size; done += zeros.length) expected.update(zeros);
    expected.update('mixed');
    assert.deepEqual(await fileDigest(file), { bytes: size + 5, sha256: expected.digest('hex') });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
