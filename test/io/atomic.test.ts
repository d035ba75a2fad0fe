import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { recoverDirectory, removeStaleTempFiles, replaceDirectoryAtomic, writeAll, writeFileAtomic } from '../../src/io/atomic.js';

let root: string;
let counter = 0;
/** A fresh, empty folder per test, so listings only show what the test made. */
async function freshDir(): Promise<string> {
  const d = join(root, `case${counter++}`);
  await mkdir(d);
  return d;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'mixprec-atomic-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('writes strings, bytes and callback output, replacing the previous file', async () => {
    const d = await freshDir();
    const path = join(d, 'f.txt');
    await writeFileAtomic(path, 'first');
    assert.equal(await readFile(path, 'utf8'), 'first');
    await writeFileAtomic(path, Uint8Array.from([104, 105]));
    assert.equal(await readFile(path, 'utf8'), 'hi');
    await writeFileAtomic(path, async (file) => {
      await writeAll(file, new TextEncoder().encode('one,'));
      await writeAll(file, new TextEncoder().encode('two'));
    });
    assert.equal(await readFile(path, 'utf8'), 'one,two');
    assert.deepEqual(await readdir(d), ['f.txt']);
  });

  it('leaves the previous file intact and no temporary file when the writer throws', async () => {
    const d = await freshDir();
    const path = join(d, 'model.safetensors');
    await writeFile(path, 'good checkpoint');
    await assert.rejects(
      writeFileAtomic(path, async (file) => {
        await writeAll(file, new TextEncoder().encode('half a check'));
        throw new Error('crash mid-save');
      }),
      /crash mid-save/,
    );
    assert.equal(await readFile(path, 'utf8'), 'good checkpoint');
    assert.deepEqual(await readdir(d), ['model.safetensors']);
  });

  it('creates no file at all when the first write fails', async () => {
    const d = await freshDir();
    const path = join(d, 'new.bin');
    await assert.rejects(writeFileAtomic(path, async () => { throw new Error('nope'); }), /nope/);
    assert.deepEqual(await readdir(d), []);
  });

  it('removes temporary files left by an interrupted write, and only those', async () => {
    const d = await freshDir();
    const path = join(d, 'a.bin');
    await writeFile(path, 'kept');
    await writeFile(join(d, '.a.bin.tmp-0000000000001-1-abcd'), 'stale');
    await writeFile(join(d, '.b.bin.tmp-0000000000001-1-abcd'), 'other target');
    const removed = await removeStaleTempFiles(path);
    assert.deepEqual(removed, [join(d, '.a.bin.tmp-0000000000001-1-abcd')]);
    assert.deepEqual((await readdir(d)).sort(), ['.b.bin.tmp-0000000000001-1-abcd', 'a.bin']);
  });
});

describe('replaceDirectoryAtomic', () => {
  it('creates, then replaces a directory, leaving no staged siblings', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await replaceDirectoryAtomic(ckpt, async (tmp) => {
      await writeFileAtomic(join(tmp, 'a.txt'), 'v1');
      await writeFileAtomic(join(tmp, 'only-in-v1.txt'), 'x');
    });
    assert.deepEqual((await readdir(ckpt)).sort(), ['a.txt', 'only-in-v1.txt']);
    await replaceDirectoryAtomic(ckpt, async (tmp) => {
      assert.notEqual(tmp, ckpt);
      await writeFileAtomic(join(tmp, 'a.txt'), 'v2');
    });
    assert.deepEqual(await readdir(ckpt), ['a.txt']);
    assert.equal(await readFile(join(ckpt, 'a.txt'), 'utf8'), 'v2');
    assert.deepEqual(await readdir(d), ['ckpt']);
  });

  it('leaves the old directory intact when fill fails', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await replaceDirectoryAtomic(ckpt, async (tmp) => writeFileAtomic(join(tmp, 'a.txt'), 'old'));
    await assert.rejects(
      replaceDirectoryAtomic(ckpt, async (tmp) => {
        await writeFileAtomic(join(tmp, 'a.txt'), 'new');
        throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.equal(await readFile(join(ckpt, 'a.txt'), 'utf8'), 'old');
    assert.deepEqual(await readdir(d), ['ckpt']);
  });
});

describe('recoverDirectory', () => {
  async function dirWith(path: string, content: string): Promise<void> {
    await mkdir(path);
    await writeFile(join(path, 'content.txt'), content);
  }

  it('keeps an existing directory and deletes every staged sibling', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await dirWith(ckpt, 'current');
    await dirWith(`${ckpt}.~partial-0000000000003-1-aaaa`, 'partial');
    await dirWith(`${ckpt}.~ready-0000000000002-1-bbbb`, 'ready');
    await dirWith(`${ckpt}.~old-0000000000001-1-cccc`, 'old');
    await dirWith(join(d, 'ckpt2'), 'unrelated');
    assert.equal(await recoverDirectory(ckpt), undefined);
    assert.deepEqual((await readdir(d)).sort(), ['ckpt', 'ckpt2']);
    assert.equal(await readFile(join(ckpt, 'content.txt'), 'utf8'), 'current');
  });

  it('moves the newest complete directory in when a crash fell mid-swap', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await dirWith(`${ckpt}.~old-0000000000005-1-aaaa`, 'old');
    await dirWith(`${ckpt}.~ready-0000000000004-1-bbbb`, 'older ready');
    await dirWith(`${ckpt}.~ready-0000000000005-1-aaaa`, 'new');
    await dirWith(`${ckpt}.~partial-0000000000006-1-cccc`, 'partial');
    assert.equal(await recoverDirectory(ckpt), `${ckpt}.~ready-0000000000005-1-aaaa`);
    assert.deepEqual(await readdir(d), ['ckpt']);
    assert.equal(await readFile(join(ckpt, 'content.txt'), 'utf8'), 'new');
  });

  it('puts the old directory back when nothing complete replaced it', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await dirWith(`${ckpt}.~old-0000000000005-1-aaaa`, 'old');
    await dirWith(`${ckpt}.~partial-0000000000005-1-aaaa`, 'partial');
    assert.equal(await recoverDirectory(ckpt), `${ckpt}.~old-0000000000005-1-aaaa`);
    assert.deepEqual(await readdir(d), ['ckpt']);
    assert.equal(await readFile(join(ckpt, 'content.txt'), 'utf8'), 'old');
  });

  it('does nothing when there is nothing to recover', async () => {
    const d = await freshDir();
    assert.equal(await recoverDirectory(join(d, 'ckpt')), undefined);
    assert.deepEqual(await readdir(d), []);
  });

  it('runs before a replacement, so a crashed earlier save does not linger', async () => {
    const d = await freshDir();
    const ckpt = join(d, 'ckpt');
    await dirWith(`${ckpt}.~old-0000000000005-1-aaaa`, 'old');
    await replaceDirectoryAtomic(ckpt, async (tmp) => writeFileAtomic(join(tmp, 'content.txt'), 'fresh'));
    assert.deepEqual(await readdir(d), ['ckpt']);
    assert.equal(await readFile(join(ckpt, 'content.txt'), 'utf8'), 'fresh');
  });
});
