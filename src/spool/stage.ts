// stage.ts: durable, atomic writes. The one helper every spool write goes through.
//
// writeStaged() writes bytes to a fresh file in tmp/ (write-file-atomic: open,
// write, fsync, rename within tmp/), checks that every byte arrived (write-file-atomic 7
// resolves on a short write when the disk is full, leaving a truncated file;
// DEPENDENCIES.md 4), and returns the staged path. publish() renames it into
// place and fsyncs the target directory, so after publish() returns the file
// survives a power loss. A reader never sees a partial file: before the rename
// there is nothing, after it there is everything.
//
// Failure: the staged file is removed and the error (ENOSPC, EROFS ...) is
// thrown as a SpoolError naming the target; the previous content of the target,
// if any, is untouched.

import fsp from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { ioError } from './errors.js';
import { stagingPid, type SpoolPaths } from './paths.js';

export const FILE_MODE = 0o664;   // group-writable for the builder group, never world-writable
export const DIR_MODE = 0o2775;   // setgid: files inherit the spool's group

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

/** Write data to a new file in tmp/; returns its path. The caller publishes or removes it. */
export async function writeStaged(sp: SpoolPaths, tag: string, data: string | Buffer, target: string, durable = true): Promise<string> {
  const staged = sp.staging(tag);
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    await writeFileAtomic(staged, buf, { mode: FILE_MODE, fsync: durable });
    if ((await fsp.stat(staged)).size !== buf.length) {
      throw Object.assign(new Error('short write: no space left on device'), { code: 'ENOSPC' });
    }
  } catch (e) {
    await fsp.rm(staged, { force: true }).catch(() => {});
    throw ioError(e, sp.rel(target), 'cannot write');
  }
  return staged;
}

/** Rename a staged file (or directory) into place and make the rename durable. */
export async function publish(sp: SpoolPaths, staged: string, target: string, durable = true): Promise<void> {
  try {
    await fsp.rename(staged, target);
  } catch (e) {
    await fsp.rm(staged, { force: true, recursive: true }).catch(() => {});
    throw ioError(e, sp.rel(target), 'cannot publish');
  }
  if (durable) await fsyncDir(path.dirname(target)).catch(() => {});
}

/**
 * writeStaged + publish: atomically replace `target` with `data`.
 * durable=false skips the fsyncs: still atomic for readers, but may be lost
 * in a power failure. Only for status files that nothing recovers from
 * (workers/NAME, running/ID/lease), which sit on the dispatch hot path.
 */
export async function writeAtomic(sp: SpoolPaths, target: string, data: string | Buffer, durable = true): Promise<void> {
  const staged = await writeStaged(sp, path.basename(target), data, target, durable);
  await publish(sp, staged, target, durable);
}

/**
 * Atomically replace a file in running/ID/, which the caller publishes whole
 * later (finalize): staged in tmp/ like every write (so a crash leaves no
 * temporary file inside the job's directory), but without the directory
 * fsync, which the caller does once for the whole directory before publishing.
 */
export async function writePrivate(sp: SpoolPaths, target: string, data: string | Buffer): Promise<void> {
  const staged = await writeStaged(sp, path.basename(target), data, target);
  await publish(sp, staged, target, false);
}

/** Atomically point symlink `link` at `target` (a relative name), by renaming a new link over it. */
export async function replaceSymlink(sp: SpoolPaths, target: string, link: string): Promise<void> {
  const staged = sp.staging(`${path.basename(link)}-link`);
  try {
    await fsp.symlink(target, staged);
  } catch (e) {
    throw ioError(e, sp.rel(link), 'cannot create symlink');
  }
  await publish(sp, staged, link);
}

export const TMP_MAX_AGE_MS = 3_600_000;

/**
 * Remove leftovers from tmp/: files staged by a process that is gone (a writer
 * killed between staging and publishing), and anything else older than
 * TMP_MAX_AGE_MS. Files a live writer (bctl, a script) is about to publish are
 * left alone, so cleaning never races a submission.
 */
export async function cleanTmp(sp: SpoolPaths, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fsp.readdir(sp.tmp).catch(() => [] as string[])) {
    const p = path.join(sp.tmp, name);
    const pid = stagingPid(name);
    let stale: boolean;
    if (pid !== undefined && pid !== process.pid) {
      try { process.kill(pid, 0); stale = false; } catch (e) { stale = (e as NodeJS.ErrnoException).code === 'ESRCH'; }
    } else {
      const st = await fsp.lstat(p).catch(() => undefined);
      stale = st !== undefined && now - st.mtimeMs > TMP_MAX_AGE_MS;
    }
    if (stale) { await fsp.rm(p, { recursive: true, force: true }); removed.push(name); }
  }
  return removed;
}
