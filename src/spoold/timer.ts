// timer.ts: schedules/ to new/. Fires each schedule when it is due.
//
// One timer is armed for the earliest due time (accurate to the second, not a
// 60-second poll). Firing queues one instance per platform through
// instance.ts, records it in state/NAME (spoold's own file: the person's
// schedules/NAME is never rewritten), and re-arms. A schedule whose last
// instance still waits in new/ does not queue a second: that firing is skipped
// and the period moves on. Missed runs after downtime fire once (nextDue).
// A firing whose state spoold did not live to write is found by its job
// (firedUnrecorded) and recorded, not repeated. A firing that could queue
// none of its jobs (a full disk) is not recorded, and is made again every
// REFIRE_MS until one is queued.
//
// spoold keeps each schedule's state, and the due time it gives, in memory:
// read from state/NAME when the schedule appears, when state/NAME changes
// (bctl reschedule, execute, cancel) and at each rescan; written through
// to it at each firing and each finished job, one write after the other per
// name. A firing counts from the moment it is decided, whatever becomes of
// its write: a state/NAME that cannot be written (a directory in its place,
// a full disk) no longer makes the schedule fire again at once, for ever;
// nor can a finished job's write, landing after a firing's, undo it. Arming
// the timer reads nothing, so thousands of schedules cost no file reads per
// firing.
// A schedule file that does not parse moves to bad/ with a .why, once it has
// settled (settle.ts: it may be being written); a schedule
// of a dropped platform is set aside (kept, not fired) until it is undropped.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseJob, parseSchedule, type Schedule } from '../spool/job.js';
import { idTime } from '../spool/ids.js';
import { instances, queueInstance, type Instance } from '../spool/instance.js';
import { findTemplate, templatePlatforms } from '../spool/template.js';
import { emptyState, heldWhy, readScheduleStateFound, writeScheduleState, nextDue, clockSetBack, scheduled, stateAfterFire, stateAfterFinish, type ScheduleState } from '../spool/schedstate.js';
import { reject, existsOr } from '../spool/state.js';
import { MAX_FILE } from '../spool/headers.js';
import { readSpoolFile } from '../spool/read.js';
import { isId, isName, NAME_RULE, type SpoolPaths } from '../spool/paths.js';
import { SpoolError, errno } from '../spool/errors.js';
import type { Result } from '../spool/result.js';
import { log, LogOnce } from './log.js';
import { Settle } from './settle.js';
import type { Daemon } from './daemon.js';

const MAX_TIMEOUT = 2 ** 31 - 1;

/** A firing none of whose jobs could be queued (a full disk) is made again this long after, until one can. */
export const REFIRE_MS = 10_000;

export class ScheduleTimer {
  private schedules = new Map<string, { s: Schedule; mtimeMs: number; size: number }>();
  /** Each schedule's state as this spoold knows it, and when that makes it due (undefined: never). */
  private states = new Map<string, { st: ScheduleState; due: number | undefined }>();
  /** The write of state/NAME in progress, per name: the next waits for it. */
  private writes = new Map<string, Promise<boolean>>();
  /** Schedule files that could not be read (EACCES), by name: the version already logged. */
  private unreadable = new LogOnce();
  /** Schedules held because state/NAME does not parse, with why (logged once per cause). */
  private broken = new LogOnce();
  /** state/NAME files whose last write failed, with its cause (logged once per cause): memory is ahead of them. */
  private unwritten = new LogOnce();
  /** Schedules whose last firing could queue nothing: when to try again, and its cause (logged once per cause). */
  private unqueued = new Map<string, { at: number; cause: string }>();
  /** The rescan under way, and whether another was asked for meanwhile. */
  private scanning: Promise<void> | undefined;
  private scanAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private firing = false;
  private stopped = false;

  constructor(private readonly sp: SpoolPaths, private readonly d: Daemon, private readonly templateDirs: string[]) {}

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.settle.stop();
  }

  /**
   * List schedules/, parse what changed, drop what is gone, read every
   * state/NAME again (a watcher event may have been missed), re-arm. One
   * schedule that cannot be read holds up none of the others.
   */
  async rescan(): Promise<void> {
    // One at a time: each watcher event asks for one, and a burst of them
    // (many bctl schedule) makes one more after the running one, not many.
    if (this.scanning) { this.scanAgain = true; return this.scanning; }
    this.scanning = (async () => {
      try {
        do { this.scanAgain = false; await this.scanOnce(); } while (this.scanAgain && !this.stopped);
      } finally { this.scanning = undefined; }   // in the same tick as the last look at scanAgain: no request falls between
    })();
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    try {
      let names: string[] = [];
      // Not listed (EMFILE, say): nothing is taken as gone.
      try { names = await fsp.readdir(this.sp.schedules); } catch (e) { log('error', { dir: 'schedules/', why: (e as Error).message }); return; }
      const present = new Set(names.filter((n) => !n.startsWith('.')));
      for (const n of [...this.schedules.keys()]) if (!present.has(n)) this.forget(n);
      const known = new Set(this.states.keys());   // the others are read by consider, as they appear
      for (const n of present) {
        try { await this.consider(n); } catch (e) { this.cannotRead(n, e); }
      }
      for (const n of [...this.schedules.keys()]) if (known.has(n)) await this.loadLogged(n);
    } finally { this.arm(); }
  }

  /** state/n changed (a watcher event): read it again and re-arm. */
  stateChanged(n: string): void {
    void this.loadLogged(n).then(() => this.arm());
  }

  private loadLogged(n: string): Promise<void> {
    return this.loadState(n).catch((e) => log('error', { file: `state/${n}`, why: (e as Error).message }));
  }

  /**
   * schedules/n is gone: no more firings, nothing kept of it; but a state only
   * memory holds (its write failed) outlives a moment's absence of the file
   * (an editor that saves by renaming), or its firing would be made again.
   */
  private forget(n: string): void {
    this.settle.forget(n);
    this.unreadable.forget(n);
    this.broken.forget(n);
    if (!this.unwritten.has(n)) this.states.delete(n);
    this.unqueued.delete(n);
    if (this.schedules.delete(n)) log('unscheduled', { name: n });
  }

  /** schedules/n could not be looked at (EACCES): logged once per version, and not fired until it can be read. */
  private cannotRead(n: string, e: unknown): void {
    const why = (e as Error).message;
    this.schedules.delete(n);   // its state stays: readable again, it fires on from there
    if (!this.unreadable.first(n, why)) return;
    log('error', { file: `schedules/${n}`, why: `${why}; it is not fired until spoold can read it (make it readable by spoold's user, or remove it)` });
  }

  private async consider(n: string): Promise<void> {
    const file = path.join(this.sp.schedules, n);
    let st;
    try { st = await fsp.lstat(file); } catch (e) { if (errno(e) === 'ENOENT') { this.forget(n); return; } throw e; }
    const known = this.schedules.get(n);
    if (known && known.mtimeMs === st.mtimeMs && known.size === st.size) return;
    let why: string | undefined;
    if (!isName(n)) why = `schedules/${n}: bad file name; a schedule file is named after its job: ${NAME_RULE}`;
    else if (!st.isFile()) why = `schedules/${n} is not a regular file; write schedules as plain files`;
    else if (st.size > MAX_FILE) why = `schedules/${n}: file is ${st.size} bytes, over the limit of ${MAX_FILE}`;
    let s: Schedule | undefined;
    if (!why) {
      try {
        const buf = readSpoolFile(file);   // it may have changed since the lstat
        this.unreadable.forget(n);
        if (buf) s = parseSchedule(buf, `schedules/${n}`, n);
        else why = `schedules/${n} is not a regular file of at most ${MAX_FILE} bytes; write schedules as plain files`;
      } catch (e) {
        if (errno(e) === 'ENOENT') return;
        if (!(e instanceof SpoolError)) { this.cannotRead(n, e); return; }
        why = e.message;
        // Written in place (by an editor, cat > file), it may be half-written
        // now: it goes to bad/ only if it still does not parse once settled.
        if (!this.settle.settled(n, st)) return;
      }
    }
    this.settle.forget(n);
    if (why || !s) {
      this.schedules.delete(n);
      this.states.delete(n);
      const bad = await reject(this.sp, file, why ?? 'unreadable')
        .catch((e) => { log('error', { file: `schedules/${n}`, why: `${(e as Error).message}; it was rejected because: ${why}` }); return undefined; });
      if (bad) log('rejected', { file: `schedules/${n}`, bad: `bad/${bad}`, why });
      return;
    }
    if (!known) log('scheduled', { name: s.name, platform: s.platform ?? '(template)', schedule: s.schedule, tz: s.tz === 'UTC' ? undefined : s.tz });
    this.schedules.set(n, { s, mtimeMs: st.mtimeMs, size: st.size });
    const cur = this.states.get(n);
    if (cur) this.setState(n, cur.st);   // its period may have changed: due again
    else await this.loadState(n);
  }

  /** Keep st as schedule n's state, and the due time it gives (none while state/n is broken). */
  private setState(n: string, st: ScheduleState): void {
    const e = this.schedules.get(n);
    if (!e) return;
    this.states.set(n, { st, due: this.broken.has(n) ? undefined : nextDue(e.s, st)?.getTime() });
  }

  /**
   * state/n does not parse (a hand edit gone wrong): the schedule is held,
   * neither fired nor its state written, until the file is fixed or removed
   * (then it fires at once, as with no state). Firing at once, or writing
   * over the file, would run a build the person meant to put off and lose
   * what they wrote. Logged once per cause.
   */
  private holdBroken(n: string, why: string): void {
    if (this.broken.first(n, why)) log('error', { file: `state/${n}`, why: heldWhy(n, why) });
    this.setState(n, this.states.get(n)?.st ?? emptyState());
  }

  /**
   * Read state/n into memory. While a write of ours is on its way there, the
   * file is older than memory: it is not read. Otherwise the file is taken
   * (bctl reschedule's next:, execute's firing, cancel's last status), but
   * when it is behind on firings (a writer that read it before our last
   * firing was written, or our write that failed) memory's firing is kept,
   * and a next: at or before it, which that firing used up, is dropped. A
   * missing file is taken as it is (bctl unschedule, or a person, removed
   * it, and the schedule fires at once), unless our last write failed: then
   * memory is written there. A state spoold could not write is written
   * again at each call, merged with what someone else wrote meanwhile.
   */
  private async loadState(n: string): Promise<void> {
    const pending = () => !this.schedules.has(n) || (this.states.has(n) && this.writes.has(n));
    if (pending()) return;   // (the common case of our own write's event: no read)
    const { st, found, why } = await readScheduleStateFound(this.sp, n);
    // Memory as it is after the read (a firing may have recorded meanwhile); from here on nothing awaits.
    if (pending()) return;
    if (found === 'unparsed') { this.holdBroken(n, why!); return; }
    this.broken.forget(n);
    // A firing far ahead of the clock was made while the clock was wrong: it is
    // recorded as made now, once, or the schedule would wait for the clock.
    const now = new Date();
    if (clockSetBack(st, now)) {
      log('warning', { name: n, why: `state/${n} says it last fired at ${st.fired!.toISOString()}, over 3 hours from now: the clock was set back since? that firing is recorded as made now` });
      void this.record(n, { ...st, fired: now }, []);
      return;
    }
    const cur = this.states.get(n)?.st;
    const failed = cur !== undefined && this.unwritten.has(n);
    if (cur && found === 'missing' && failed) { void this.record(n, cur, []); return; }
    if (cur?.fired !== undefined && found !== 'missing' && (st.fired === undefined || st.fired < cur.fired)) {
      const merged = { ...st, fired: cur.fired, lastId: cur.lastId, since: cur.since ?? st.since, next: st.next && st.next > cur.fired ? st.next : undefined };
      if (failed) void this.record(n, merged, []);
      else this.setState(n, merged);
      return;
    }
    this.setState(n, st);
    if (found === 'good') this.unwritten.forget(n);   // someone wrote a good file, newer than ours
  }

  /** Schedules that do not parse, maybe half-written: looked at again once settled. */
  private settle = new Settle((n) => void this.consider(n).then(() => this.arm()).catch((e) => log('error', { file: `schedules/${n}`, why: (e as Error).message })));

  private setAside(s: Schedule): boolean {
    return s.platform !== undefined && this.d.dropped.has(s.platform);
  }

  /** Arm the timer for the earliest due schedule. */
  arm(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let earliest = Infinity;
    for (const [n, { s }] of this.schedules) {
      const due = this.dueAt(n);
      if (due !== undefined && !this.setAside(s)) earliest = Math.min(earliest, due);
    }
    if (earliest === Infinity) return;
    const delay = Math.max(0, Math.min(MAX_TIMEOUT, earliest - Date.now()));
    this.timer = setTimeout(() => void this.fire(), delay);
  }

  /** When schedule n is next due: its state's due time, or later while a firing that queued nothing waits to be made again. */
  private dueAt(n: string): number | undefined {
    const due = this.states.get(n)?.due;
    const again = this.unqueued.get(n)?.at;
    return due === undefined || again === undefined ? due : Math.max(due, again);
  }

  private async fire(): Promise<void> {
    if (this.firing || this.stopped) return;
    this.firing = true;
    try {
      for (const n of [...this.schedules.keys()]) {
        const s = this.schedules.get(n)?.s;   // as read now: an earlier firing's awaits may have let a new version in
        if (!s || this.setAside(s) || this.d.stopping) continue;
        const cur = this.states.get(n);
        const now = new Date();
        const due = this.dueAt(n);
        if (!cur || due === undefined || due > now.getTime()) continue;
        // Removed meanwhile: not fired, and forgotten until it is back (its
        // watcher event brings it back), or the timer would spin till the rescan.
        if (!scheduled(this.sp, n)) { this.forget(n); continue; }
        try { await this.fireOne(s, cur.st, cur.due ?? due, now); } catch (e) { log('error', { name: n, why: (e as Error).message }); }
      }
    } finally {
      this.firing = false;
      this.arm();
    }
  }

  /** Fire schedule s, due at `dueMs`, whose state is st: queue its instances, but on a platform where its last one still waits. */
  private async fireOne(s: Schedule, st: ScheduleState, dueMs: number, now: Date): Promise<void> {
    // What the firing records is applied at its end to the state as it is
    // then: a job of the schedule may finish meanwhile (finished()).
    let firedAt = now;
    let lastId: string | undefined;
    const failed: string[] = [];
    const queued: string[] = [];
    let unrecorded: string | undefined;
    // Platforms where an instance of it still waits in new/, and dropped ones, get none this time.
    const waiting = this.d.queue.platformsOf(s.name);
    const skip = new Set([...this.d.dropped, ...waiting]);
    const platforms = s.platform !== undefined ? [s.platform] : await templatePlatforms(this.templateDirs, s.template);
    if (waiting.size > 0 && !this.unqueued.has(s.name)) log('skipped', { name: s.name, platform: [...waiting].sort().join(','), why: 'its last instance still waits in new/' });
    if (platforms.length > 0 && platforms.every((p) => skip.has(p))) {
      // Nothing to queue: the period moves on.
    } else if ((unrecorded = await this.firedUnrecorded(s.name, new Date(dueMs), st))) {
      log('fired', { name: s.name, id: unrecorded, why: 'this firing queued its instance before spoold was stopped, and is recorded now' });
      firedAt = idTime(unrecorded);
      lastId = unrecorded;
    } else {
      // A first firing's commit point: since: is on disk before anything
      // is queued, so that after a crash firedUnrecorded can tell this
      // firing's jobs from older ones of the name.
      if (st.fired === undefined && st.since === undefined) {
        if (!(await this.record(s.name, { ...st, since: now }, []))) return;
      }
      let list: Instance[] = [];
      try {
        list = await instances(s, { origin: 'schedule', templateDirs: this.templateDirs, now, skip, platforms });
      } catch (e) {
        log('error', { name: s.name, why: (e as Error).message });   // no platform has its template: the period moves on
      }
      const unstored: Array<{ platform: string; e: Error }> = [];
      for (const i of list) {
        try {
          await queueInstance(this.sp, i);
        } catch (e) {
          // submit throws only before its commit (the rename into new/). recordFailed
          // may throw after its own (running/ID/job published, its result beside it),
          // in or after the move into done/: that one is stored, and a rescan or the
          // next start finalizes it; recording another would give the period two.
          const stored = i.error !== undefined && [this.sp.runningFile(i.id, 'job'), this.sp.doneDir(s.name, i.id)].some((p) => existsOr(p, false));
          if (!stored) {
            unstored.push({ platform: i.platform, e: e as Error });
            continue;
          }
        }
        lastId = i.id;
        if (i.error) {
          log('failed', { id: i.id, name: s.name, platform: i.platform, why: i.error });
          failed.push(i.error);   // recorded in done/ at once
        } else { queued.push(i.id); await this.d.queue.consider(i.id); }
      }
      const said = unstored.map(({ platform, e }) => `${platform}: ${e.message}`).join('; ');
      if (unstored.length > 0 && unstored.length === list.length) {
        // Nothing of this firing is in the spool (a full disk): it is not
        // recorded, and is made again in REFIRE_MS, not lost for the period.
        // Logged once per cause: its errno, not its message, which names a fresh id each time.
        const cause = unstored.map(({ platform, e }) => `${platform}: ${errnoOf(e)}`).join('; ');
        if (this.unqueued.get(s.name)?.cause !== cause) {
          log('error', { name: s.name, why: `cannot queue its job: ${said}; spoold tries again every ${REFIRE_MS / 1000} s until it can` });
        }
        this.unqueued.set(s.name, { at: now.getTime() + REFIRE_MS, cause });
        return;
      }
      if (unstored.length > 0) {
        log('error', { name: s.name, why: `cannot queue its job on some platforms, which miss this period's run: ${said}` });
      }
    }
    this.unqueued.delete(s.name);   // this firing is made
    const base = this.states.get(s.name)?.st ?? st;
    let next = stateAfterFire(base, firedAt, lastId);
    // A next: later than this firing (a bctl reschedule read in meanwhile) is not this firing's to use up.
    if (base.next && base.next.getTime() > now.getTime()) next = { ...next, next: base.next };
    for (const why of failed) next = stateAfterFinish(next, { kind: 'failed', why }, now);
    await this.record(s.name, next, queued);
  }

  /**
   * An instance this schedule queued at `due` or later, running or finished,
   * that state/NAME does not record: spoold was killed between queueing it
   * and writing the state (by then a worker may have taken it, so new/ no
   * longer shows it). Its firing happened; firing again would run it twice.
   * Instance ids carry the time they were queued (ids.ts), and each firing's
   * is after the last one recorded (last-id:). A first firing's jobs are
   * those queued since: it began; a schedule with neither (new, unscheduled
   * and scheduled again, state lost) has no firing to look for: older jobs
   * of its name are not its.
   */
  private async firedUnrecorded(name: string, due: Date, st: ScheduleState): Promise<string | undefined> {
    const from = st.fired !== undefined ? due : st.since;
    if (from === undefined) return undefined;
    const after = (id: string) => idTime(id).getTime() >= from.getTime() && (st.lastId === undefined || id > st.lastId);
    const running = this.d.runningJobs().find(({ id, job }) => job.name === name && job.origin === 'schedule' && after(id));
    if (running) return running.id;
    const ids = (await fsp.readdir(this.sp.doneName(name)).catch(() => [] as string[])).filter((id) => isId(id) && after(id));
    for (const id of ids.sort().reverse()) {
      try {
        const file = path.join(this.sp.doneDir(name, id), 'job');
        const buf = readSpoolFile(file);
        if (buf && parseJob(buf, this.sp.rel(file), id).origin === 'schedule') return id;
      } catch { /* not one of ours to judge: a bad job file is fsck's */ }
    }
    return undefined;
  }

  /** True when some schedule runs on platform p (by platform: or by a template it has). */
  async serves(p: string): Promise<boolean> {
    for (const { s } of this.schedules.values()) {
      if (s.platform === p) return true;
      if (s.platform === undefined && s.template !== undefined && (await findTemplate(this.templateDirs, s.template, p))) return true;
    }
    return false;
  }

  /** A job finished: record its result in its schedule's state. */
  async finished(r: Result): Promise<void> {
    const cur = this.states.get(r.name);
    if (!cur) return;
    await this.record(r.name, stateAfterFinish(cur.st, r.status, r.finished), []);
  }

  /**
   * Take st as schedule name's state at once (the next firing counts from
   * it), and write it to state/NAME after the writes of it already under way.
   */
  private record(name: string, st: ScheduleState, queued: string[]): Promise<boolean> {
    this.setState(name, st);
    const p = (this.writes.get(name) ?? Promise.resolve(true)).then(() => this.write(name, st, queued));
    this.writes.set(name, p);
    void p.finally(() => { if (this.writes.get(name) === p) this.writes.delete(name); });
    return p;
  }

  /**
   * Write state/NAME, unless schedules/NAME is gone. bctl unschedule removes
   * the schedule, then its state, then its jobs waiting in new/, while this
   * spoold may be firing it on what it read before; so the schedule is looked
   * for before the write and again after it, and if it is gone, the jobs
   * just `queued` and the state are removed: whichever comes last, nothing
   * of a firing outlives its schedule but jobs already running. A write that
   * queued nothing (a result) leaves the state, as a removal by hand does.
   * False when the schedule was gone.
   */
  private async write(name: string, st: ScheduleState, queued: string[]): Promise<boolean> {
    if (this.broken.has(name)) return true;   // held: what the person wrote stays for them to fix
    // A schedule removed while it fired (schedstate.ts says how that is
    // found): the jobs this firing queued go first, then its state.
    const undo = async (): Promise<void> => {
      this.forget(name);
      for (const id of queued) {
        this.d.queue.remove(id);
        await fsp.rm(this.sp.queued(id), { force: true }).catch((e) => log('error', { file: `new/${id}`, why: (e as Error).message }));
      }
    };
    try {
      const kept = await writeScheduleState(this.sp, name, st, queued.length > 0 ? undo : undefined);
      this.unwritten.forget(name);
      return kept;
    } catch (e) {
      // Logged once per cause (its errno: the message names a fresh staging file each time).
      const cause = errnoOf(e as Error);
      if (!this.schedules.has(name)) return true;   // forgotten meanwhile: nothing to write again
      if (this.unwritten.first(name, cause)) {
        log('error', { file: `state/${name}`, why: `${(e as Error).message}; spoold keeps the state in memory and writes it at each rescan until it can (fix or remove state/${name}); a restart before that fires the schedule once at once` });
      }
      return true;
    }
  }
}

/** An error's errno, for logging once per cause: the spool library's errors carry it in their cause; else its message. */
function errnoOf(e: Error): string {
  return errno(e.cause) ?? errno(e) ?? e.message;
}
