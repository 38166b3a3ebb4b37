// queue.ts: the queued jobs of new/, per platform, in dispatch order.
//
// Dispatch order is priority (higher first), then id (older first, since ids
// sort by time). The queue is a cache of new/: the directory is the truth.
// consider() reads one file (on a watcher event); rescan() lists new/ and
// reconciles the cache with it (on start, periodically, after a watcher error),
// so a missed event never strands a job. A file that does not parse, or that is
// not a regular file, is moved to bad/ with a .why; a file under a name that is
// not an id is adopted (renamed to a fresh id). A file written in place may be
// read half-written: one that does not parse, and one to adopt (its writer,
// a person or `sed -i`, may not be done with it), is taken only once it has
// settled (settle.ts). A job bctl or a script moved in under its id, the hot
// path, is taken at once.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseJob, type ParsedJob } from '../spool/job.js';
import { adopt, reject } from '../spool/state.js';
import { MAX_FILE } from '../spool/headers.js';
import { readSpoolFile } from '../spool/read.js';
import { isId, isName, type SpoolPaths } from '../spool/paths.js';
import { SpoolError, errno } from '../spool/errors.js';
import { log, LogOnce } from './log.js';
import { Settle } from './settle.js';

export interface Queued { id: string; name: string; platform: string; priority: number; origin: string }

const before = (a: Queued, b: Queued): boolean => a.priority > b.priority || (a.priority === b.priority && a.id < b.id);

export class Queue {
  private byPlatform = new Map<string, Queued[]>();
  private byId = new Map<string, { q: Queued; mtimeMs: number; size: number }>();

  /** Files maybe being written in place: looked at again once settled. */
  private settle = new Settle((n) => void this.consider(n).catch((e) => log('error', { file: `new/${n}`, why: (e as Error).message })));
  /** new/ names that are not UTF-8, warned about once. */
  private misnamed = new LogOnce();
  /** Files spoold cannot read (EACCES): logged once per version. */
  private unreadable = new LogOnce();
  /** Queued jobs edited in place that did not parse for a while: out of the queue meanwhile, and no new job once they parse again. */
  private editing = new Set<string>();

  constructor(private readonly sp: SpoolPaths, private readonly onAdd: (q: Queued) => void) {}

  stop(): void { this.settle.stop(); }

  get size(): number { return this.byId.size; }
  has(id: string): boolean { return this.byId.has(id); }
  /** The platforms on which a job of this name waits. */
  platformsOf(name: string): Set<string> {
    const out = new Set<string>();
    for (const { q } of this.byId.values()) if (q.name === name) out.add(q.platform);
    return out;
  }
  platforms(): string[] { return [...this.byPlatform.keys()].filter((p) => (this.byPlatform.get(p)?.length ?? 0) > 0); }

  /** The next job for platform, without removing it. */
  peek(platform: string): Queued | undefined { return this.byPlatform.get(platform)?.[0]; }

  remove(id: string): void {
    const e = this.byId.get(id);
    if (!e) return;
    this.byId.delete(id);
    const list = this.byPlatform.get(e.q.platform)!;
    const i = list.indexOf(e.q);
    if (i >= 0) list.splice(i, 1);
  }

  private insert(q: Queued, mtimeMs: number, size: number): void {
    this.remove(q.id);
    this.byId.set(q.id, { q, mtimeMs, size });
    let list = this.byPlatform.get(q.platform);
    if (!list) { list = []; this.byPlatform.set(q.platform, list); }
    let lo = 0;
    let hi = list.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (before(list[mid]!, q)) lo = mid + 1; else hi = mid; }
    list.splice(lo, 0, q);
  }

  /**
   * Read new/NAME and queue, adopt or reject it. The reads are synchronous:
   * this runs once or twice per job on the dispatch path (the rename in, the
   * claim out), where a thread-pool round trip per call cost more than the
   * call (stage.ts says by how much).
   */
  async consider(name: string): Promise<void> {
    if (name.startsWith('.')) return;
    const file = path.join(this.sp.new, name);
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    if (!st) { if (isId(name)) this.remove(name); this.settle.forget(name); this.unreadable.forget(name); this.editing.delete(name); return; }
    const known = isId(name) ? this.byId.get(name) : undefined;
    if (known && known.mtimeMs === st.mtimeMs && known.size === st.size) return;
    if (!st.isFile()) return void this.rejectFile(file, `new/${name} is not a regular file (a ${st.isSymbolicLink() ? 'symlink' : 'directory or special file'}); put job files into new/ as plain files`);
    if (st.size > MAX_FILE) return void this.rejectFile(file, `new/${name}: file is ${st.size} bytes, over the limit of ${MAX_FILE}; keep job files small`);
    let job: ParsedJob;
    let wanted: string | undefined;
    try {
      const buf = readSpoolFile(file);
      if (!buf) return;   // swapped for something else since the lstat: its own event, or the rescan, sees it
      this.unreadable.forget(name);
      job = parseJob(buf, `new/${name}`, name);
      if (job.id === undefined) wanted = parseJob(buf, `new/${name}`).id;   // its own id: header, if any
      else this.settle.forget(name);   // it parses now
    } catch (e) {
      if (errno(e) === 'ENOENT') return;  // claimed or removed meanwhile
      if (errno(e) === 'EACCES') return this.cannotRead(name, st, e as Error);
      if (!(e instanceof SpoolError)) throw e;
      if (this.settle.settled(name, st)) return void this.rejectFile(file, e.message);
      if (isId(name)) {   // being edited: not given out meanwhile
        if (this.byId.has(name)) this.editing.add(name);
        this.remove(name);
      }
      return;
    }
    if (job.id === undefined) {
      if (!this.settle.settled(name, st)) return;
      if (wanted !== undefined && await this.taken(wanted)) {
        return void this.rejectFile(file, `new/${name}: id ${wanted} is taken by another job; remove the id: header to queue this as a new job`);
      }
      const id = await adopt(this.sp, name, wanted, (id) => log('adopted', { file: `new/${name}`, id }));
      if (id) await this.consider(id);
      return;
    }
    // One back from `editing` was queued all along, so the checks below, made
    // when it came, are not made again (its file never left new/: a gap would
    // have reached the !st line above and ended the editing).
    const isNew = !known && !this.editing.delete(name);
    // A finished job copied back into new/ under its own id (to run it again)
    // could never be stored: its done/ directory is taken.
    if (isNew && fs.lstatSync(this.sp.doneDir(job.name, job.id), { throwIfNoEntry: false })) {
      return void this.rejectFile(file, `new/${name}: job ${job.id} has finished already (done/${job.name}/${job.id}); to run it again, put a copy into new/ under another name, without its id: header`);
    }
    // Nor one saved back by an editor after a worker took it: it would be
    // queued beside itself running (found by a tester). A requeue moves
    // running/ID/job here in one rename, so the two never both exist else.
    if (isNew && fs.lstatSync(this.sp.runningFile(job.id, 'job'), { throwIfNoEntry: false })) {
      return void this.rejectFile(file, `new/${name}: job ${job.id} is running already (running/${job.id}/), as it was before this version; to run this version, put a copy into new/ under another name, without its id: header`);
    }
    const q: Queued = { id: job.id, name: job.name, platform: job.platform, priority: job.priority, origin: job.origin };
    this.insert(q, st.mtimeMs, st.size);
    if (isNew) log('queued', { id: q.id, name: q.name, platform: q.platform, origin: q.origin, priority: q.priority || undefined });
    else log('edited', { id: q.id, name: q.name, platform: q.platform, priority: q.priority || undefined });
    this.onAdd(q);
  }

  /** new/name cannot be read by spoold's user: not queued, and said once per version of the file, with what to do. */
  private cannotRead(name: string, st: { mtimeMs: number; size: number; mode: number }, e: Error): void {
    if (isId(name)) this.remove(name);
    if (!this.unreadable.first(name, `${st.mtimeMs} ${st.size} ${st.mode}`)) return;
    log('error', { file: `new/${name}`, why: `${e.message}; it is not queued until spoold can read it: make it readable by spoold's user (chmod g+r, or write it as that user), or remove it` });
  }

  /**
   * Is id in use: queued, running, or finished under any name? An id is one
   * job's for good (bctl fsck reports one found twice). Only a file with an
   * id: header asks, so the walk over done/ is rare.
   */
  private async taken(id: string): Promise<boolean> {
    const names = await fsp.readdir(this.sp.done).catch(() => [] as string[]);
    for (const p of [this.sp.queued(id), this.sp.runningDir(id), ...names.filter(isName).map((n) => this.sp.doneDir(n, id))]) {
      try { await fsp.lstat(p); return true; } catch (e) { if (errno(e) !== 'ENOENT') return true; }
    }
    return false;
  }

  /** List new/ and make the cache match it. */
  async rescan(): Promise<void> {
    let names: string[];
    try { names = await fsp.readdir(this.sp.new); } catch (e) { log('error', { dir: 'new/', why: (e as Error).message }); return; }
    const present = new Set(names);
    for (const id of [...this.byId.keys()]) if (!present.has(id)) this.remove(id);
    this.misnamed.keepOnly(present);
    for (const n of names) {
      // A name that is not UTF-8 reads back with U+FFFD in it, under which
      // there is no file: nothing could take it, so it is said (once).
      if (n.includes('\ufffd') && !fs.existsSync(path.join(this.sp.new, n))) {
        if (this.misnamed.first(n)) log('warning', { file: `new/${n}`, why: 'file name is not valid UTF-8, so spoold cannot take it: rename it (mv with a plain name)' });
        continue;
      }
      try { await this.consider(n); } catch (e) { log('error', { file: `new/${n}`, why: (e as Error).message }); }
    }
  }

  private async rejectFile(file: string, why: string): Promise<void> {
    const name = path.basename(file);
    if (isId(name)) this.remove(name);
    this.settle.forget(name);
    this.editing.delete(name);
    try {
      const bad = await reject(this.sp, file, why);
      if (bad) log('rejected', { file: this.sp.rel(file), bad: `bad/${bad}`, why });
    } catch (e) {
      log('error', { file: this.sp.rel(file), why: `${(e as Error).message}; it was rejected because: ${why}` });
    }
  }
}
