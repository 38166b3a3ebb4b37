// tar.ts: artifacts as a tar stream, both ends. The only importer of tar-stream.
//
// packArtifacts (workerd) walks the job directory with lstat, never following a
// link: regular files, directories and symlinks (as symlinks) go into the
// stream, each file hashed (SHA-256) as it is read; fifos, sockets and devices
// are skipped with a note for the console. The manifest it returns names every
// entry with its size and hash, because a tar stream cut at an entry boundary
// looks complete (DEPENDENCIES.md 5).
//
// receiveArtifacts (spoold) writes a stream into a fresh directory and refuses,
// by throwing, anything that could escape it or harm the host: absolute paths,
// '..', entries below a symlink, hard links, devices, fifos, over-long names,
// more bytes than the limit. Files are created O_EXCL|O_NOFOLLOW, mode 0644
// (the archive's mode bits, setuid included, are ignored). Memory stays bounded:
// entries are taken one at a time, a large file streams through, a small one
// (SMALL_FILE) is held whole. A file is on disk (fsync) before `done`
// resolves; a large one is flushed in steps while it arrives.

import tar from 'tar-stream';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { MAX_ARTIFACT_FILES, MAX_ARTIFACT_NAMES, MAX_NAME, nameBytes, type ArtifactEntry } from './protocol.js';

export const MAX_DEPTH = 64;
// Artifact files are read and written 1 MiB at a time (the fs streams' defaults are 64 KiB
// and 16 KiB): a frame, a disk call and a thread-pool hand-off per MiB, not per 64 KiB.
export const IO_CHUNK = 1 << 20;

// While an artifact is received, its written bytes are flushed to disk every
// SYNC_EVERY bytes (one fdatasync at a time, beside the writes), so the fsync
// before close, which must come before the rename into done/ publishes the
// file, finds little left to write: the disk works while the stream goes on
// instead of all at once at its end (a 512 MiB artifact: ~0.4 s saved). At
// 16 MiB the last fsync of a 100 MB console takes ~12 ms here; at 32 MiB, ~30.
const SYNC_EVERY = 16 << 20;

class Hasher extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  // IO_CHUNK, not the 16 KiB default: the pieces are 64 KiB to 1 MiB, and a window under one piece makes every piece a backpressure round trip.
  constructor(private readonly limit: number, private readonly onOver: () => Error, private readonly onBytes?: (n: number) => void) { super({ highWaterMark: IO_CHUNK }); }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) { cb(this.onOver()); return; }
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/**
 * Hold a stream's writes until the socket reads of this turn of the event loop
 * are in: they then go to disk in one writev instead of one write per 64 KiB
 * read, each a hand-off to the thread pool (~100 ms of spoold's CPU per 100 MB).
 */
export function batchWrites(w: Writable): void {
  if (w.writableCorked) return;
  w.cork();
  setImmediate(() => w.uncork());
}

/**
 * fdatasync of a file being written (`sync`), every SYNC_EVERY bytes. An error
 * is kept and thrown by settle(), and given to `onError` at once: the fsync at
 * close on the same file description would not report a writeback error
 * again once fdatasync has (Linux reports it once per open file), so it must
 * not be lost. Received artifacts (below) and spoold's console.log use it.
 */
export class Flusher {
  // Early flushes in flight in this process (artifacts and consoles together):
  // at most one, so that with many jobs streaming to a slow disk they do not
  // take the thread pool that every other file operation of spoold needs. One
  // that is skipped is tried again at the next write; the fsync at the end does
  // whatever is left.
  private static inFlight = 0;
  private since = 0;
  private running: Promise<void> | undefined;
  private error: Error | undefined;
  constructor(private readonly sync: () => Promise<void>, private readonly onError?: (e: Error) => void) {}
  wrote(n: number): void {
    this.since += n;
    if (this.since < SYNC_EVERY || this.running || Flusher.inFlight > 0) return;
    this.since = 0;
    Flusher.inFlight++;
    this.running = this.sync()
      .catch((e: Error) => { this.error ??= e; this.onError?.(e); })
      .finally(() => { Flusher.inFlight--; this.running = undefined; });
  }
  /** Wait for a running fdatasync; throw the error one of them met. */
  async settle(): Promise<void> {
    await this.running;
    if (this.error) throw this.error;
  }
}

/**
 * The fsyncs of received files, run side by side rather than one after the
 * other: fsyncs in flight together share the file system's journal commits.
 * A job leaving 3,000 small files spent 6 s in spoold when each was fsynced
 * before the next was opened. Each descriptor given (a small file's own, a
 * large file's second one: receiveArtifacts) is closed once its fsync is
 * done; at most MAX_SYNCS are open and waiting.
 * The first error is thrown by settle().
 */
const MAX_SYNCS = 16;
const fsyncFd = promisify(fs.fsync);
class Syncs {
  private running = new Set<Promise<void>>();
  private error: Error | undefined;
  /** fsync `fd`, then close it; waits only while MAX_SYNCS are in flight. */
  async add(fd: number): Promise<void> {
    while (this.running.size >= MAX_SYNCS) await Promise.race(this.running);
    const p: Promise<void> = fsyncFd(fd)
      .catch((e: Error) => { this.error ??= e; })
      .finally(() => { try { fs.closeSync(fd); } catch { /* closed is closed */ } })
      .then(() => { this.running.delete(p); });
    this.running.add(p);
  }
  async settle(): Promise<void> {
    await Promise.all(this.running);
    if (this.error) throw this.error;
  }
}

type Found = { rel: string; abs: string; kind: 'directory' | 'symlink' | 'file'; st: fs.Stats };

/** Entries of the job's directory are looked at this many at a time: one after the other, a job's thousands of files took a thread-pool round trip each. */
const BATCH = 32;

/**
 * Every entry of dir (but `skip` names at its top) that can be an artifact,
 * depth first in name order, never following a link. What cannot be one (a
 * fifo, a socket, a device, an unreadable directory, a name with control
 * characters, a path or link target too long, entries past MAX_ARTIFACT_FILES
 * or MAX_ARTIFACT_NAMES) is reported through `note` and left out.
 */
async function* walkArtifacts(dir: string, skip: string[], note: (line: string) => void): AsyncGenerator<Found> {
  let count = 0;
  let nameTotal = 0;
  async function* walk(rel: string): AsyncGenerator<Found> {
    let raw: Buffer[];
    try {
      // The job may have replaced its own directory with a link (to /etc, say): not followed either.
      if (rel === '' && !(await fsp.lstat(dir)).isDirectory()) {
        note(`workerd: the job's directory ${path.basename(dir)}/ is no longer a directory (the job replaced it with a link?); no files are returned`);
        return;
      }
      raw = await fsp.readdir(path.join(dir, rel), { encoding: 'buffer' });
    } catch (e) {
      note(`workerd: cannot read job output ${rel || '.'}: ${(e as Error).message}; its files are not returned`);
      return;
    }
    const names: string[] = [];
    for (const b of raw) {
      const n = b.toString();
      // A name that is not UTF-8 cannot be named in a manifest or SHA256SUMS as it is.
      if (!Buffer.from(n).equals(b)) note(`workerd: skipped ${JSON.stringify(rel === '' ? n : `${rel}/${n}`)}: the file name is not UTF-8`);
      else names.push(n);
    }
    names.sort();
    const rels = names.filter((n) => !(rel === '' && skip.includes(n))).map((n) => (rel === '' ? n : `${rel}/${n}`));
    for (let i = 0; i < rels.length; i += BATCH) {
      const part = rels.slice(i, i + BATCH);
      const stats = await Promise.all(part.map((r) => fsp.lstat(path.join(dir, r)).catch((e: Error) => e)));
      for (const [k, r] of part.entries()) {
        const st = stats[k]!;
        if (st instanceof Error) { note(`workerd: cannot read job output ${r}: ${st.message}`); continue; }
        if (Buffer.byteLength(r) > MAX_NAME || r.split('/').length > MAX_DEPTH) { note(`workerd: skipped ${r.slice(0, 80)}...: path too long`); continue; }
        if (/[\x00-\x1f\x7f\\]/.test(r)) { note(`workerd: skipped ${JSON.stringify(r)}: control characters or backslashes in a file name`); continue; }
        const kind = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : undefined;
        if (!kind) { note(`workerd: skipped ${r}: not a regular file, directory or symlink`); continue; }
        if (kind === 'symlink' && st.size > MAX_NAME) { note(`workerd: skipped ${r}: its link target is over ${MAX_NAME} bytes`); continue; }   // a link's size is its target's
        if (++count > MAX_ARTIFACT_FILES) { note(`workerd: skipped ${r} and everything after it: more than ${MAX_ARTIFACT_FILES} artifacts`); return; }
        if ((nameTotal += Buffer.byteLength(r) + (kind === 'symlink' ? st.size : 0)) > MAX_ARTIFACT_NAMES) { note(`workerd: skipped ${r} and everything after it: artifact paths over ${MAX_ARTIFACT_NAMES} bytes in all`); return; }
        yield { rel: r, abs: path.join(dir, r), kind, st };
        if (kind === 'directory') yield* walk(r);
      }
    }
  }
  yield* walk('');
}

/**
 * Whether dir holds nothing but `skip`: found synchronously, for a job that
 * left nothing (W1 of npm run bench: `true`), which the walk took thread-pool
 * round trips to say. A directory is read whole, and only a small one:
 * st_size up to SMALL_DIR, which is bytes of entries on ext4 (~500 names),
 * 20 a name on tmpfs, one a name on ZFS (16,384 names, a few ms). False
 * when it is larger or cannot be read (the walk then says why).
 */
function leavesNothing(dir: string, skip: string[]): boolean {
  try {
    const st = fs.lstatSync(dir);
    // A link in its place: the walk says what it is. One that is large holds,
    // or held, many entries: the walk reads them in batches.
    if (!st.isDirectory() || st.size > SMALL_DIR) return false;
    return fs.readdirSync(dir).every((n) => skip.includes(n));   // not opendirSync: its Dir cost more than the read (perf, W1)
  } catch { return false; }
}
/** A directory's st_size up to which leavesNothing reads it whole (what it counts depends on the file system: see there). */
const SMALL_DIR = 16 << 10;

/**
 * What will be left out of the artifacts, and why, as console lines: workerd
 * appends them to the job's console when the job ends, so the reasons are in
 * the result where people look (a file that cannot even be opened included).
 * `entries` counts what will be sent.
 */
export async function artifactNotes(dir: string, skip: string[]): Promise<{ notes: string[]; entries: number }> {
  if (leavesNothing(dir, skip)) return { notes: [], entries: 0 };
  const notes: string[] = [];
  let entries = 0;
  let files: Found[] = [];
  // Opened BATCH at a time; the notes of a batch come after those the walk made meanwhile.
  const check = async (): Promise<void> => {
    const failed = await Promise.all(files.map((f) => fsp.open(f.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
      .then((fh) => fh.close()).then(() => undefined, (e: Error) => `workerd: cannot read job output ${f.rel}: ${e.message}`)));
    for (const n of failed) if (n) notes.push(n);
    files = [];
  };
  for await (const f of walkArtifacts(dir, skip, (l) => notes.push(l))) {
    entries++;
    if (f.kind === 'file') files.push(f);
    if (files.length >= BATCH) await check();
  }
  await check();
  return { notes, entries };
}

/**
 * Reusable read buffers lent by the consumer of a pack stream: take() waits
 * for a free one (undefined: the consumer is gone); the consumer gives each
 * back once it has sent the bytes.
 */
export interface LentBuffers { take(): Promise<Buffer | undefined>; give(b: Buffer): void }

/** A file's bytes, read into lent buffers: each chunk is a view of one, handed on without a copy. */
async function* readLent(fh: fsp.FileHandle, bufs: LentBuffers): AsyncGenerator<Buffer> {
  for (let pos = 0; ;) {
    const b = await bufs.take();
    if (!b) throw new Error('the connection is gone');
    let n: number;
    try { n = (await fh.read(b, 0, b.length, pos)).bytesRead; } catch (e) { bufs.give(b); throw e; }
    if (n === 0) { bufs.give(b); return; }
    pos += n;
    yield b.subarray(0, n);
  }
}

/**
 * Pack the artifacts of dir into a tar stream; the manifest resolves when the
 * stream is complete. With `bufs`, file bytes are read into those buffers, and
 * the stream's chunks that are views of them must be given back once sent:
 * fresh 1 MiB buffers per read (the fs stream's way) cost a page fault per
 * 4 KiB touched, which on a VM with expensive faults was a large part of
 * workerd's time for a big artifact.
 */
export function packArtifacts(dir: string, skip: string[], note: (line: string) => void, bufs?: LentBuffers): { stream: Readable; manifest: Promise<ArtifactEntry[]> } {
  const pack = tar.pack();
  const files: ArtifactEntry[] = [];
  // Small files are read ahead, BATCH at a time (at most BATCH * SMALL_FILE
  // bytes held): one after the other, each took its own open, stat, read and
  // close round trips to the thread pool.
  const readSmall = async (f: Found): Promise<Buffer | undefined> => {
    const fh = await fsp.open(f.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const size = (await fh.stat()).size;
      if (size > SMALL_FILE) return undefined;   // grew since the walk: sent as a large one
      const buf = Buffer.allocUnsafe(size + 1);   // one byte more: a file that grew is refused, as a large one is
      const n = (await fh.read(buf, 0, size + 1, 0)).bytesRead;
      if (n !== size) throw new Error(`${f.rel} ${n > size ? 'grew' : 'shrank'} while it was being sent`);
      return buf.subarray(0, size);
    } finally { await fh.close(); }
  };
  const packOne = async ({ rel: r, abs, kind, st }: Found, small: Promise<Buffer | undefined> | undefined): Promise<void> => {
    if (kind === 'directory') {
      await entry(pack, { name: r, type: 'directory', mode: 0o755 });
      files.push({ name: r, type: 'directory', size: 0 });
      return;
    }
    if (kind === 'symlink') {
      const target = await fsp.readlink(abs);
      await entry(pack, { name: r, type: 'symlink', linkname: target, mode: 0o777 });
      files.push({ name: r, type: 'symlink', size: 0, target });
      return;
    }
    const mode = st.mode & 0o111 ? 0o755 : 0o644;
    let body: Buffer | undefined;
    try { body = await small; } catch (e) { note(`workerd: cannot read job output ${r}: ${(e as Error).message}`); return; }
    if (body) {
      await entry(pack, { name: r, type: 'file', size: body.length, mode }, body);
      files.push({ name: r, type: 'file', size: body.length, sha256: createHash('sha256').update(body).digest('hex') });
      return;
    }
    let fh: fsp.FileHandle;
    try { fh = await fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW); } catch (e) {
      note(`workerd: cannot read job output ${r}: ${(e as Error).message}`); return;
    }
    try {
      const size = (await fh.stat()).size;
      const h = new Hasher(size, () => new Error(`${r} grew while it was being sent`));
      const sink = pack.entry({ name: r, type: 'file', size, mode });
      await pipeline(bufs ? readLent(fh, bufs) : fh.createReadStream({ autoClose: false, highWaterMark: IO_CHUNK }), h, sink);
      files.push({ name: r, type: 'file', size, sha256: h.hash.digest('hex') });
    } finally { await fh.close(); }
  };
  const run = async (): Promise<void> => {
    let batch: Found[] = [];
    const flush = async (): Promise<void> => {
      const reads = batch.map((f) => (f.kind === 'file' && f.st.size <= SMALL_FILE ? readSmall(f) : undefined));
      for (const r of reads) r?.catch(() => {});   // each is awaited in turn below
      for (const [i, f] of batch.entries()) await packOne(f, reads[i]);
      batch = [];
    };
    for await (const f of walkArtifacts(dir, skip, note)) {
      batch.push(f);
      if (batch.length >= BATCH) await flush();
    }
    await flush();
  };
  const manifest = run().then(() => { pack.finalize(); return files; }, (e) => { pack.destroy(e as Error); throw e; });
  return { stream: pack as unknown as Readable, manifest };
}

function entry(pack: tar.Pack, h: tar.Header | (Partial<tar.Header> & { name: string }), body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (body) pack.entry(h, body, cb); else pack.entry(h, cb);
  });
}

export class ArtifactError extends Error {
  constructor(why: string) { super(why); this.name = 'ArtifactError'; }
}

/** Artifact files up to this size are received whole, without a stream (receiveArtifacts). */
const SMALL_FILE = 64 << 10;
const CREATE = fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW;
const openFd = promisify(fs.open);
const writeFd = (fd: number, b: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, b, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));

/** What a failed exclusive create of artifact `rel` means. */
function createError(err: unknown, rel: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'EEXIST' && code !== 'ELOOP') return err;   // ENOSPC, EROFS ...: the spool's trouble, not the stream's
  return new ArtifactError(`artifact ${rel} rejected: it exists already (a duplicate name)`);
}

/** The `size` bytes of a tar entry, whole. */
async function readEntry(e: AsyncIterable<unknown>, size: number, rel: string, progress: { bytes: number }): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of e) {
    const chunk = c as Buffer;
    progress.bytes += chunk.length;
    if (progress.bytes > size) throw new ArtifactError(`artifact ${rel} has more bytes than its header says`);
    parts.push(chunk);
  }
  if (progress.bytes !== size) throw new ArtifactError(`artifact ${rel} is short: ${progress.bytes} of ${size} bytes`);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}

/** Check an entry name; returns its parts. */
export function safeParts(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (name.startsWith('/') || name.includes('\\') || /[\x00-\x1f\x7f]/.test(name) || parts.length === 0 || parts.includes('..')
    || Buffer.byteLength(name) > MAX_NAME || parts.length > MAX_DEPTH) {
    throw new ArtifactError(`artifact path ${JSON.stringify(name.slice(0, 100))} rejected: it must be relative, without '..'`);
  }
  return parts;
}

/**
 * Receive a tar stream into `dir` (which must exist and be empty). Write the
 * stream's bytes into `sink`; end it when the sender says the stream is done,
 * or destroy it to give up. `done` resolves with what was written, or rejects
 * with the reason; once it has settled, dir changes no more and no file in it
 * is open here.
 */
export function receiveArtifacts(dir: string, maxBytes: number): { sink: NodeJS.WritableStream & { write(b: Buffer): boolean; end(): void; destroy(e?: Error): void; once(ev: 'drain', f: () => void): unknown }; done: Promise<ArtifactEntry[]> } {
  // A window of IO_CHUNK: with the default 16 KiB every 64 KiB piece spoold
  // wrote was refused, and each refusal paused and resumed the socket (conn.ts hold).
  const ex = tar.extract({ highWaterMark: IO_CHUNK });
  const dirs = new Set<string>(['']);   // directories we made: the only ones we descend into
  const got: ArtifactEntry[] = [];
  let total = 0;
  let nameTotal = 0;
  let finished = false;
  ex.once('finish', () => { finished = true; });
  // Once the sink is destroyed (the worker went away), nothing more is made on
  // disk: each step checks before it acts, so that once `done` has settled the
  // directory changes no more, and whoever destroyed the sink may remove it.
  // Before, a receiver destroyed in the middle of an entry went on making its
  // directories and opening its file for a few milliseconds, beside spoold's
  // removal of the directory and into the next delivery's.
  const live = (rel: string): void => { if (ex.destroying && !finished) throw new ArtifactError(`artifact ${rel} is incomplete: the artifact stream was cut off`); };
  const ensureParents = async (parts: string[]): Promise<void> => {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (dirs.has(rel)) continue;
      live(parts.join('/'));
      try {
        await fsp.mkdir(path.join(dir, rel), { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;   // ENOSPC, EROFS ...: the spool's trouble, not the stream's
        throw new ArtifactError(`artifact ${parts.join('/')} rejected: ${rel} exists and is not a directory the stream made`);
      }
      dirs.add(rel);
    }
  };
  const syncs = new Syncs();
  // Rejects when the stream ends unfinished, with the error it was destroyed
  // with (a write's ENOSPC, say), if any; cutShort() names the entry it ended in.
  let exError: Error | undefined;
  ex.on('error', (err) => { exError ??= err; });
  const closed = new Promise<never>((_, reject) => ex.once('close', () => { if (!finished) reject(exError ?? new Error('the artifact stream was cut off')); }));
  closed.catch(() => {});
  const done = (async () => {
    try {
      await receive();
    } catch (e) {
      await syncs.settle().catch(() => {});   // once `done` has settled, no descriptor of ours is open
      throw e;
    }
    // Every file on disk before `done` resolves: the rename into done/ publishes them.
    await syncs.settle();
    return got;
  })();
  done.catch(() => ex.destroy());
  return { sink: ex as never, done };

  /**
   * The error of an entry that failed: a stream that ended inside it names the
   * entry. A system error (ENOSPC, EIO ...: it has a syscall) is the spool's
   * and stays as it is; it destroys the stream too.
   */
  function cutShort(err: unknown, rel: string, bytes: number, size: number): unknown {
    if (finished || !ex.destroying || err instanceof ArtifactError || typeof (err as NodeJS.ErrnoException).syscall === 'string') return err;
    return new ArtifactError(`artifact ${rel} is incomplete: ${bytes} of ${size} bytes (the artifact stream was cut off)`);
  }

  /** A new artifact file, created exclusively, never through a link. */
  async function create(target: string, rel: string): Promise<number> {
    try { return await openFd(target, CREATE, 0o644); } catch (err) { throw createError(err, rel); }
  }

  async function receive(): Promise<void> {
    // Each next entry is raced against the end of the stream: destroyed
    // without an error while an entry was being written, the extractor
    // never settles a later next() (tar-stream 3, streamx).
    const entries = ex[Symbol.asyncIterator]();
    for (;;) {
      const it = await Promise.race([entries.next(), closed]);
      if (it.done) break;
      const e = it.value;
      const h = e.header;
      if (got.length >= MAX_ARTIFACT_FILES) throw new ArtifactError(`more than ${MAX_ARTIFACT_FILES} entries`);
      if ((nameTotal += nameBytes({ name: h.name, target: h.linkname ?? undefined })) > MAX_ARTIFACT_NAMES) throw new ArtifactError(`paths over ${MAX_ARTIFACT_NAMES} bytes in all`);
      const parts = safeParts(h.name);
      const rel = parts.join('/');
      await ensureParents(parts);
      live(rel);
      const target = path.join(dir, rel);
      if (h.type === 'directory') {
        e.resume();
        if (!dirs.has(rel)) {
          try { await fsp.mkdir(target, { mode: 0o755 }); } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
            throw new ArtifactError(`artifact directory ${rel} rejected: it exists already`);
          }
          dirs.add(rel);
        }
        got.push({ name: rel, type: 'directory', size: 0 });
      } else if (h.type === 'symlink') {
        e.resume();
        if (!h.linkname || Buffer.byteLength(h.linkname) > MAX_NAME) throw new ArtifactError(`artifact symlink ${rel} rejected: bad target`);
        try { await fsp.symlink(h.linkname, target); } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          throw new ArtifactError(`artifact symlink ${rel} rejected: it exists already`);
        }
        got.push({ name: rel, type: 'symlink', size: 0, target: h.linkname });
      } else if (h.type === 'file' || h.type === 'contiguous-file') {
        if (!Number.isSafeInteger(h.size) || h.size < 0 || (total += h.size) > maxBytes) {
          throw new ArtifactError(`more than the limit of ${maxBytes} bytes`);
        }
        if (h.size <= SMALL_FILE) {
          // Whole in memory (at most SMALL_FILE), then one open and one write:
          // a stream pipeline per file cost spoold ~1 ms of CPU for each of a
          // job's thousands of small files.
          const progress = { bytes: 0 };
          const body = await Promise.race([readEntry(e, h.size, rel, progress), closed]).catch((err) => { throw cutShort(err, rel, progress.bytes, h.size); });
          live(rel);
          const fd = await create(target, rel);
          try {
            for (let o = 0; o < body.length;) o += await writeFd(fd, body, o, body.length - o, o);
          } catch (err) { fs.closeSync(fd); throw err; }
          await syncs.add(fd);
          got.push({ name: rel, type: 'file', size: h.size, sha256: createHash('sha256').update(body).digest('hex') });
          continue;
        }
        const fh = await fsp.open(target, CREATE, 0o644).catch((err) => { throw createError(err, rel); });
        // The fsync comes later, beside the next entries (Syncs), on a second
        // descriptor opened now, before any byte is written, so that a
        // write-back error of this file is reported to it.
        let syncFd: number;
        try { syncFd = fs.openSync(target, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW); } catch (err) { await fh.close().catch(() => {}); throw err; }
        const flusher = new Flusher(() => fh.datasync());
        const out = fh.createWriteStream({ highWaterMark: IO_CHUNK });
        const hasher = new Hasher(h.size, () => new ArtifactError(`artifact ${rel} has more bytes than its header says`), (n) => {
          flusher.wrote(n);
          batchWrites(out);
        });
        try {
          // If the stream was destroyed while we opened the file (the worker
          // vanished), the entry never ends: settle on the extractor's close too.
          await Promise.race([pipeline(e, hasher, out), closed]);
          await flusher.settle();   // throws what an early fdatasync met; the one in finally only waits
        } catch (err) {
          fs.closeSync(syncFd);
          throw cutShort(err, rel, hasher.bytes, h.size);
        } finally {
          await flusher.settle().catch(() => {});
          // The write stream holds the descriptor until it has closed (it may
          // still be writing when the stream was cut): wait for that, so that
          // nothing is open once `done` has settled.
          if (!out.closed) await new Promise<void>((resolve) => { out.once('close', () => resolve()); out.destroy(); });
          await fh.close().catch(() => {});
        }
        await syncs.add(syncFd);
        if (hasher.bytes !== h.size) throw new ArtifactError(`artifact ${rel} is short: ${hasher.bytes} of ${h.size} bytes`);
        got.push({ name: rel, type: 'file', size: h.size, sha256: hasher.hash.digest('hex') });
      } else {
        throw new ArtifactError(`artifact ${rel} rejected: type ${h.type} (only files, directories and symlinks are accepted)`);
      }
    }
  }
}

/**
 * Compare what arrived with what the sender announced; the first difference,
 * or undefined. By name, through one map of the announced entries: a key
 * string per entry, on both sides, held a job's artifact paths (up to
 * MAX_ARTIFACT_NAMES, 16 MiB) twice more in spoold's memory.
 */
export function compareManifest(announced: ArtifactEntry[], got: ArtifactEntry[]): string | undefined {
  const show = (e: ArtifactEntry) => `${e.type} ${e.name} ${e.size} ${e.sha256 ?? ''} ${e.target ?? ''}`.slice(0, 200);
  const same = (x: ArtifactEntry, y: ArtifactEntry) => x.type === y.type && x.size === y.size && (x.sha256 ?? '') === (y.sha256 ?? '') && (x.target ?? '') === (y.target ?? '');
  const byName = new Map<string, ArtifactEntry>();
  for (const e of announced) {
    if (byName.has(e.name)) return `announced twice: ${show(e)}`;
    byName.set(e.name, e);
  }
  const seen = new Set<string>();
  for (const g of got) {
    if (seen.has(g.name)) return `received twice: ${show(g)}`;
    const a = byName.get(g.name);
    if (!a || !same(a, g)) return `received but not announced: ${show(g)}`;
    seen.add(g.name);
  }
  for (const a of byName.values()) if (!seen.has(a.name)) return `announced but not received: ${show(a)}`;
  return undefined;
}

/** SHA256SUMS in the format of sha256sum(1): regular files only, paths relative to artifacts/. */
export function formatSums(entries: ArtifactEntry[]): string {
  return entries.filter((e) => e.type === 'file').sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .map((e) => `${e.sha256}  ${e.name}\n`).join('');
}
