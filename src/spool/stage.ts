// stage.ts: durable, atomic writes. The one helper every spool write goes through.
//
// writeStaged() writes bytes to a fresh file in tmp/ (created with O_EXCL
// under a name of this process's own, so never through a link nor over
// another writer's file), every byte of them (a short write on a full disk
// goes on, and fails ENOSPC), and returns the staged path. publish() renames
// it into place and fsyncs the target directory, so after publish() returns
// the file survives a power loss. A reader never sees a partial file: before
// the rename there is nothing, after it there is everything.
//
// Failure: the staged file is removed and the error (ENOSPC, EROFS ...) is
// thrown as a SpoolError naming the target; the previous content of the target,
// if any, is untouched.
//
// Not write-file-atomic, which the spool used before: it replaces a file in
// its own directory (through a temporary name there, which a watcher of new/
// would see), where every spool write is staged in tmp/ and renamed by us;
// its one write is unchecked, so a full disk left a truncated file
// (DEPENDENCIES.md 4); and each call cost spoold ~0.5 ms (a realpath, two
// stats, a chmod, a rename within tmp/, and signal handlers set and removed),
// twice per job on the dispatch path (W1 of npm run bench).
//
// Every call but the fsyncs is synchronous. The files written here are small
// header files, and spoold's dispatch and finalize are made of them: an fs
// promise is a thread-pool round trip that cost ~45 µs of CPU per call on the
// project's VMs against ~5 µs for the same call made synchronously (profiled:
// futex and eventfd calls were most of spoold's system time in W1 of npm run
// bench). The fsyncs wait on the disk, for milliseconds when it is busy, so
// they go to the thread pool and spoold's event loop never stalls on them
// (several in flight share the file system's journal commits).

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ioError } from './errors.js';
import { stagingPid, type SpoolPaths } from './paths.js';
import { READ_NOFOLLOW } from './read.js';

export const FILE_MODE = 0o664;   // group-writable for the builder group, never world-writable
export const DIR_MODE = 0o2775;   // setgid: files inherit the spool's group

/**
 * mkdir(2) of a job's directory (running/ID, done/NAME, artifacts/) at
 * exactly DIR_MODE, whatever the umask: one made by root (bctl cancel) under
 * umask 022 was not writable by the spool's group, so spoold, running as the
 * spool's user, could store no more results there. The chmod follows the
 * mkdir: a crash between them leaves the directory as the umask made it.
 * For running/ID and its artifacts/ the recovery removes or remakes such a
 * directory (an empty running/ID; the artifacts of a delivery made again);
 * done/NAME, which stays, is made with mkdirSpoolStaged. (Lifting the umask
 * instead would loosen the modes of files spoold's thread pool creates
 * meanwhile.) Throws as mkdirSync does (EEXIST, also for a link there); an
 * existing directory keeps its mode.
 */
export function mkdirSpool(dir: string): void {
  fs.mkdirSync(dir, { mode: DIR_MODE });
  fs.chmodSync(dir, DIR_MODE);
}

/**
 * mkdirSpool for a directory that outlives a crash as it is (done/NAME): made
 * and chmodded in tmp/, then renamed into place, so that a crash between the
 * mkdir and the chmod leaves only a leftover in tmp/ (a chaos test found a
 * done/NAME of mode 2755 after a kill -9). An existing empty directory is
 * replaced; one with something in it throws EEXIST and keeps its mode;
 * anything else there (a file, a link) throws ENOTDIR.
 */
export function mkdirSpoolStaged(sp: SpoolPaths, dir: string): void {
  const staged = sp.staging(path.basename(dir));
  mkdirSpool(staged);
  try {
    fs.renameSync(staged, dir);
  } catch (e) {
    try { fs.rmdirSync(staged); } catch { /* the error below says what matters */ }
    if ((e as NodeJS.ErrnoException).code === 'ENOTEMPTY') {
      throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST', path: dir });
    }
    throw e;
  }
}

const fsyncFd = promisify(fs.fsync);
const EMPTY = Buffer.alloc(0);

/**
 * Create a file holding `data` (every byte: a short write on a full disk goes
 * on, and fails ENOSPC), failing if it exists (EEXIST): FILE_MODE whatever
 * the umask, as mkdirSpool makes directories.
 */
export function createSpoolFile(p: string, data: Buffer = EMPTY): void {
  const fd = fs.openSync(p, 'wx', FILE_MODE);
  try {
    fs.fchmodSync(fd, FILE_MODE);
    for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off);
  } finally { fs.closeSync(fd); }
}

// Opened to be flushed as a spool file is to be read (READ_NOFOLLOW): never
// through a link, never blocking, for a fifo put in place of a file of
// running/ID/ froze spoold in open(2) (found by a tester); fsync(2) of a fifo
// then fails (EINVAL).

/** fsync a file or directory by path (any fd of it flushes its inode). */
export async function fsyncPath(p: string): Promise<void> {
  const fd = fs.openSync(p, READ_NOFOLLOW);
  try { await fsyncFd(fd); } finally { fs.closeSync(fd); }
}

/** fsyncPath without the thread pool, for one-shot processes (bctl), where waiting for it buys nothing. */
function fsyncPathSync(p: string): void {
  const fd = fs.openSync(p, READ_NOFOLLOW);
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

export const fsyncDir = fsyncPath;

/** fsyncDir after a rename that has already happened: a failure cannot undo it, so it is not the operation's failure. */
export async function fsyncDirQuiet(dir: string): Promise<void> {
  try { await fsyncDir(dir); } catch { /* durability is best effort here; the rename stands */ }
}

/**
 * The part of every staged write before its fsync (ours follows, in the
 * thread pool or not, as the caller needs): a fresh file in tmp/, FILE_MODE
 * whatever the umask, all of `data` in it.
 */
function stage(sp: SpoolPaths, tag: string, data: string | Buffer, target: string): string {
  const staged = sp.staging(tag);
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    createSpoolFile(staged, buf);
  } catch (e) {
    throw unstage(sp, staged, target, e);
  }
  return staged;
}

/** Remove a staged file that will not be published; the error to throw, naming the target. */
function unstage(sp: SpoolPaths, staged: string, target: string, e: unknown): Error {
  try { fs.rmSync(staged, { force: true }); } catch { /* the error says what matters */ }
  return ioError(e, sp.rel(target), 'cannot write');
}

/** Write data to a new file in tmp/; returns its path. The caller publishes or removes it. */
export async function writeStaged(sp: SpoolPaths, tag: string, data: string | Buffer, target: string, durable = true): Promise<string> {
  const staged = stage(sp, tag, data, target);
  if (durable) { try { await fsyncPath(staged); } catch (e) { throw unstage(sp, staged, target, e); } }
  return staged;
}

/** writeStaged without the thread pool (fsyncPathSync says when). */
export function writeStagedSync(sp: SpoolPaths, tag: string, data: string | Buffer, target: string): string {
  const staged = stage(sp, tag, data, target);
  try { fsyncPathSync(staged); } catch (e) { throw unstage(sp, staged, target, e); }
  return staged;
}

/** Rename a staged file (or directory) into place and make the rename durable. */
export async function publish(sp: SpoolPaths, staged: string, target: string, durable = true): Promise<void> {
  renameInto(sp, staged, target);
  if (durable) await fsyncDirQuiet(path.dirname(target));
}

/** publish without the thread pool (fsyncPathSync says when). */
export function publishSync(sp: SpoolPaths, staged: string, target: string): void {
  renameInto(sp, staged, target);
  try { fsyncPathSync(path.dirname(target)); } catch { /* durability is best effort here; the rename stands */ }
}

function renameInto(sp: SpoolPaths, staged: string, target: string): void {
  try {
    fs.renameSync(staged, target);
  } catch (e) {
    try { fs.rmSync(staged, { force: true, recursive: true }); } catch { /* the error below says what matters */ }
    throw ioError(e, sp.rel(target), 'cannot publish');
  }
}

/** writeStaged + publish: atomically and durably replace `target` with `data`. */
export async function writeAtomic(sp: SpoolPaths, target: string, data: string | Buffer): Promise<void> {
  const staged = await writeStaged(sp, path.basename(target), data, target);
  await publish(sp, staged, target);
}

/**
 * Atomically replace a status file that nothing recovers from (workers/NAME,
 * running/ID/lease), which sit on the dispatch hot path: synchronous and
 * without fsyncs, so a reader never sees it half-written but a power failure
 * may lose it.
 */
export function writeStatus(sp: SpoolPaths, target: string, data: string | Buffer): void {
  renameInto(sp, stage(sp, path.basename(target), data, target), target);
}

/**
 * Atomically replace a file in running/ID/, which the caller publishes whole
 * later (finalize): staged in tmp/ like every write (so a crash leaves no
 * temporary file inside the job's directory), but without the directory
 * fsync, which the caller does once for the whole directory before publishing.
 * durable=false leaves the file's own fsync to the caller too (finalize
 * flushes SHA256SUMS with the result).
 */
export async function writePrivate(sp: SpoolPaths, target: string, data: string | Buffer, durable = true): Promise<void> {
  const staged = await writeStaged(sp, path.basename(target), data, target, durable);
  await publish(sp, staged, target, false);
}

/**
 * Atomically point symlink `link` at `target` (a relative name), by renaming a
 * new link over it. Not flushed: the caller flushes the directory.
 */
export function replaceSymlink(sp: SpoolPaths, target: string, link: string): void {
  const staged = sp.staging(`${path.basename(link)}-link`);
  try {
    fs.symlinkSync(target, staged);
  } catch (e) {
    throw ioError(e, sp.rel(link), 'cannot create symlink');
  }
  renameInto(sp, staged, link);
}

/**
 * rm -rf of one entry, never through a link (a directory goes with
 * fs.rmSync). Absent is the usual case on spoold's hot path, and is found
 * without an error thrown: fs.rmSync makes one, with its stack trace, for a
 * path that is not there.
 */
export function removeEntry(p: string): void {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isDirectory()) { fs.rmSync(p, { recursive: true, force: true }); return; }
  try { fs.unlinkSync(p); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
}

const REMOVE_BATCH = 32;

/**
 * rm -r of a tree a worker sent (an unfinished delivery, a requeued attempt's
 * artifacts), REMOVE_BATCH entries of a directory at a time, its
 * subdirectories one after the other. fs.rm
 * starts the removal of every entry of a directory at once: for a hostile
 * worker's 8,000 links that took spoold's memory up by 45 MiB; this, by 10,
 * and in less time. A tree that is gone is no error.
 */
export async function removeTree(dir: string): Promise<void> {
  // A link in its place is removed, never read through (readdir follows it: a
  // link planted as running/ID/artifacts emptied the directory it named).
  const st = await fsp.lstat(dir).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
  if (!st) return;
  if (!st.isDirectory()) { await fsp.rm(dir, { force: true }); return; }
  let entries: fs.Dirent[];
  try { entries = await fsp.readdir(dir, { withFileTypes: true }); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const files = entries.filter((e) => !e.isDirectory());
  for (let i = 0; i < files.length; i += REMOVE_BATCH) await Promise.all(files.slice(i, i + REMOVE_BATCH).map((e) => fsp.rm(path.join(dir, e.name), { force: true })));
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
  await fsp.rmdir(dir).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
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
