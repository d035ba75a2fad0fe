// Crash-safe writes of files and directories.
//
// A file is written under a temporary name in the same directory, flushed to disk
// and renamed over the target: rename within one file system is atomic, so a
// reader (or a restart after a crash) sees either the old complete file or the new
// complete one, never a half-written one.
//
// A directory cannot be swapped in one atomic step portably, so it is replaced in
// stages whose state is encoded in sibling names (see `replaceDirectoryAtomic` and
// `recoverDirectory`). One writer per target at a time is assumed.

import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Writes the content of the temporary file; it receives an open handle positioned at 0. */
export type FileWriter = (file: FileHandle) => Promise<void>;

/** A name unique to this process and moment; the leading time makes names sort oldest first. */
function uniqueSuffix(): string {
  return `${Date.now().toString().padStart(13, '0')}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The prefix of temporary files made for `path` by `writeFileAtomic`. */
function tempFilePrefix(path: string): string {
  return `.${basename(path)}.tmp-`;
}

/** Writes every byte of `bytes` at the handle's current position (one write call may write fewer). */
export async function writeAll(file: FileHandle, bytes: Uint8Array): Promise<void> {
  const CHUNK = 1 << 30; // a single write is limited to under 2 GiB
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await file.write(bytes, done, Math.min(CHUNK, bytes.byteLength - done));
    done += bytesWritten;
  }
}

/**
 * Flushes a directory's entries (a new name from rename) to disk. Some platforms
 * (Windows) cannot open a directory; there renames are durable without it.
 */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES') throw err;
  } finally {
    await handle?.close();
  }
}

/**
 * Replaces the file at `path` with `data` (or what `data(handle)` writes) so that a
 * crash at any moment leaves either the previous file or the new one, complete.
 * On failure the temporary file is removed and the previous file is untouched.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array | FileWriter): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, tempFilePrefix(path) + uniqueSuffix());
  let handle: FileHandle | undefined = await open(temp, 'wx');
  try {
    if (typeof data === 'function') await data(handle);
    else await writeAll(handle, typeof data === 'string' ? new TextEncoder().encode(data) : data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (err) {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
  await syncDirectory(dir);
}

/** Removes temporary files that an interrupted `writeFileAtomic(path, ...)` left behind. Returns their paths. */
export async function removeStaleTempFiles(path: string): Promise<string[]> {
  const dir = dirname(path);
  const prefix = tempFilePrefix(path);
  const stale = (await readdir(dir)).filter((name) => name.startsWith(prefix)).map((name) => join(dir, name));
  for (const file of stale) await rm(file, { force: true });
  return stale;
}

// Sibling names used while replacing the directory `dir`:
//   <dir>.~partial-<id>  being filled; incomplete, always safe to delete
//   <dir>.~ready-<id>    filled completely; the next content of <dir>
//   <dir>.~old-<id>      the previous content of <dir>, set aside during the swap
type Stage = 'partial' | 'ready' | 'old';

function stagePath(dir: string, stage: Stage, suffix: string): string {
  return `${dir}.~${stage}-${suffix}`;
}

/** The staged siblings of `dir` and whether `dir` itself exists, from one listing of its parent. */
async function stageSiblings(dir: string): Promise<Record<Stage, string[]> & { present: boolean }> {
  const parent = dirname(dir);
  const base = basename(dir);
  const found = { partial: [] as string[], ready: [] as string[], old: [] as string[], present: false };
  for (const name of (await readdir(parent)).sort()) {
    if (name === base) found.present = true;
    for (const stage of ['partial', 'ready', 'old'] as const) {
      if (name.startsWith(`${base}.~${stage}-`)) found[stage].push(join(parent, name));
    }
  }
  return found;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Where the complete content of `dir` is now, without changing anything (for
 * readers): `dir` itself if it exists, since it is only ever created by a rename
 * of a finished directory; else, after a crash or during a swap, the newest
 * `ready` sibling, or failing that the newest `old` one; undefined if none.
 * This is what `recoverDirectory` moves into `dir`.
 *
 * One listing answers, so a swap in progress cannot fall between looking for
 * `dir` and looking for its siblings: every instant of a swap has `dir` or a
 * `ready` or `old` sibling. The answer may be moved by a swap right after; a
 * reader that then finds nothing there must look again.
 */
export async function currentDirectory(dir: string): Promise<string | undefined> {
  const staged = await stageSiblings(dir);
  if (staged.present) return dir;
  return staged.ready.at(-1) ?? staged.old.at(-1);
}

/**
 * Brings `dir` back to a complete state after a crash during `replaceDirectoryAtomic`
 * (for the writer only: it moves and deletes). `dir` keeps or receives the content
 * `currentDirectory(dir)` names; every other staged sibling (`partial` ones are
 * never used) is deleted. Returns the path moved into `dir`, if any.
 */
export async function recoverDirectory(dir: string): Promise<string | undefined> {
  const current = await currentDirectory(dir);
  const restored = current === dir ? undefined : current;
  if (restored !== undefined) {
    await rename(restored, dir);
    await syncDirectory(dirname(dir));
  }
  const staged = await stageSiblings(dir);
  for (const path of [...staged.partial, ...staged.ready, ...staged.old]) await rm(path, { recursive: true, force: true });
  return restored;
}

/**
 * Replaces the directory `dir` with one that `fill(tempDir)` builds. The new
 * directory is built under a sibling name and only swapped in once `fill` has
 * resolved; if `fill` throws, the partial directory is deleted and `dir` is as it
 * was. A crash leaves `dir` complete, or recoverable by `recoverDirectory(dir)`
 * (which this function also runs first). `fill` should write files with
 * `writeFileAtomic` or otherwise flush them, so that the content is on disk
 * before the swap.
 */
export async function replaceDirectoryAtomic(dir: string, fill: (tempDir: string) => Promise<void>): Promise<void> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  await recoverDirectory(dir);

  const suffix = uniqueSuffix();
  const partial = stagePath(dir, 'partial', suffix);
  await mkdir(partial);
  try {
    await fill(partial);
    await syncDirectory(partial);
  } catch (err) {
    await rm(partial, { recursive: true, force: true });
    throw err;
  }

  const ready = stagePath(dir, 'ready', suffix);
  await rename(partial, ready);
  const old = stagePath(dir, 'old', suffix);
  const hadOld = await exists(dir);
  if (hadOld) await rename(dir, old);
  try {
    await rename(ready, dir);
  } catch (err) {
    if (hadOld) await rename(old, dir).catch(() => {}); // leave things as recoverDirectory would
    throw err;
  }
  await syncDirectory(parent);
  if (hadOld) await rm(old, { recursive: true, force: true });
}
