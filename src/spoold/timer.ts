// timer.ts: schedules/ to new/. Fires each schedule when it is due.
//
// One timer is armed for the earliest due time (accurate to the second, not a
// 60-second poll). Firing queues one instance per platform through
// instance.ts, records it in state/NAME (spoold's own file: the person's
// schedules/NAME is never rewritten), and re-arms. A schedule whose last
// instance still waits in new/ does not queue a second: that firing is skipped
// and the period moves on. Missed runs after downtime fire once (nextDue).
// A firing whose state spoold did not live to write is found by its job
// (firedUnrecorded) and recorded, not repeated.
// A schedule file that does not parse moves to bad/ with a .why, once it has
// stayed unchanged for SETTLE_MS (it may be being written); a schedule
// of a dropped platform is set aside (kept, not fired) until it is undropped.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { parseJob, parseSchedule, type Schedule } from '../spool/job.js';
import { idTime } from '../spool/ids.js';
import { queueInstances } from '../spool/instance.js';
import { findTemplate } from '../spool/template.js';
import { readScheduleState, writeScheduleState, nextDue, scheduled, stateAfterFire, stateAfterFinish, type ScheduleState } from '../spool/schedstate.js';
import { reject } from '../spool/state.js';
import { MAX_FILE } from '../spool/headers.js';
import { readSpoolFile } from '../spool/read.js';
import { isId, isName, NAME_RULE, type SpoolPaths } from '../spool/paths.js';
import { SpoolError, errno } from '../spool/errors.js';
import type { Result } from '../spool/result.js';
import { log } from './log.js';
import type { Daemon } from './daemon.js';

const MAX_TIMEOUT = 2 ** 31 - 1;

/** A schedule that does not parse goes to bad/ once it has not changed for this long: it may be being written. */
export const SETTLE_MS = 2_000;

export class ScheduleTimer {
  private schedules = new Map<string, { s: Schedule; mtimeMs: number; size: number }>();
  private timer: NodeJS.Timeout | undefined;
  private firing = false;
  private stopped = false;

  constructor(private readonly sp: SpoolPaths, private readonly d: Daemon, private readonly templateDirs: string[]) {}

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const t of this.retries.values()) clearTimeout(t);
  }

  /** List schedules/, parse what changed, drop what is gone, re-arm. */
  async rescan(): Promise<void> {
    let names: string[] = [];
    try { names = await fsp.readdir(this.sp.schedules); } catch (e) { log('error', { dir: 'schedules/', why: (e as Error).message }); }
    const present = new Set(names.filter((n) => !n.startsWith('.')));
    for (const n of [...this.schedules.keys()]) if (!present.has(n)) { this.schedules.delete(n); log('unscheduled', { name: n }); }
    for (const n of present) await this.consider(n);
    await this.arm();
  }

  private async consider(n: string): Promise<void> {
    const file = path.join(this.sp.schedules, n);
    let st;
    try { st = await fsp.lstat(file); } catch (e) { if (errno(e) === 'ENOENT') { this.schedules.delete(n); this.unsettled.delete(n); return; } throw e; }
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
        if (buf) s = parseSchedule(buf, `schedules/${n}`, n);
        else why = `schedules/${n} is not a regular file of at most ${MAX_FILE} bytes; write schedules as plain files`;
      } catch (e) {
        if (errno(e) === 'ENOENT') return;
        if (!(e instanceof SpoolError)) throw e;
        why = e.message;
        // Written in place (by an editor, cat > file), it may be half-written
        // now: it goes to bad/ only if it still does not parse once it has
        // stayed as it is for SETTLE_MS (timed by our clock, not its mtime).
        const seen = this.unsettled.get(n);
        const since = seen && seen.mtimeMs === st.mtimeMs && seen.size === st.size ? seen.since : Date.now();
        this.unsettled.set(n, { mtimeMs: st.mtimeMs, size: st.size, since });
        const wait = since + SETTLE_MS - Date.now();
        if (wait > 0) { this.retry(n, wait); return; }
      }
    }
    this.unsettled.delete(n);
    if (why || !s) {
      this.schedules.delete(n);
      const bad = await reject(this.sp, file, why ?? 'unreadable')
        .catch((e) => { log('error', { file: `schedules/${n}`, why: `${(e as Error).message}; it was rejected because: ${why}` }); return undefined; });
      if (bad) log('rejected', { file: `schedules/${n}`, bad: `bad/${bad}`, why });
      return;
    }
    if (!known) log('scheduled', { name: s.name, platform: s.platform ?? '(template)', schedule: s.schedule, tz: s.tz === 'UTC' ? undefined : s.tz });
    this.schedules.set(n, { s, mtimeMs: st.mtimeMs, size: st.size });
  }

  private retries = new Map<string, NodeJS.Timeout>();
  private unsettled = new Map<string, { mtimeMs: number; size: number; since: number }>();   // first failed parse of this version
  /** Look at schedules/n again in ms (one pending look per name). */
  private retry(n: string, ms: number): void {
    if (this.retries.has(n) || this.stopped) return;
    this.retries.set(n, setTimeout(() => {
      this.retries.delete(n);
      void this.consider(n).then(() => this.arm()).catch((e) => log('error', { file: `schedules/${n}`, why: (e as Error).message }));
    }, ms + 50));
  }

  private setAside(s: Schedule): boolean {
    return s.platform !== undefined && this.d.dropped.has(s.platform);
  }

  /** Arm the timer for the earliest due schedule. */
  async arm(): Promise<void> {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let earliest = Infinity;
    for (const { s } of this.schedules.values()) {
      // One whose file is gone is not fired (fire skips it): its timer would
      // spin until the rescan drops it. Back, its watcher event arms again.
      if (this.setAside(s) || !scheduled(this.sp, s.name)) continue;
      const due = nextDue(s, await readScheduleState(this.sp, s.name));
      if (due) earliest = Math.min(earliest, due.getTime());
    }
    if (earliest === Infinity) return;
    const delay = Math.max(0, Math.min(MAX_TIMEOUT, earliest - Date.now()));
    this.timer = setTimeout(() => void this.fire(), delay);
  }

  private async fire(): Promise<void> {
    if (this.firing || this.stopped) return;
    this.firing = true;
    try {
      const now = new Date();
      for (const { s } of [...this.schedules.values()]) {
        if (this.setAside(s) || this.d.stopping) continue;
        if (!scheduled(this.sp, s.name)) continue;   // removed meanwhile: the rescan drops it; back, arm() fires it
        let st = await readScheduleState(this.sp, s.name);
        const due = nextDue(s, st);
        if (!due || due.getTime() > now.getTime()) continue;
        let next = stateAfterFire(st, now);
        let unrecorded: string | undefined;
        const queued: string[] = [];
        if (this.d.queue.hasName(s.name)) {
          log('skipped', { name: s.name, why: 'its last instance still waits in new/' });
        } else if ((unrecorded = await this.firedUnrecorded(s.name, due, st))) {
          log('fired', { name: s.name, id: unrecorded, why: 'this firing queued its instance before spoold was stopped, and is recorded now' });
          next = stateAfterFire(st, idTime(unrecorded), unrecorded);
        } else {
          // A first firing's commit point: since: is on disk before anything
          // is queued, so that after a crash firedUnrecorded can tell this
          // firing's jobs from older ones of the name.
          if (st.fired === undefined && st.since === undefined) {
            st = { ...st, since: now };
            if (!(await this.record(s.name, st, []))) continue;
          }
          try {
            const list = await queueInstances(this.sp, s, { origin: 'schedule', templateDirs: this.templateDirs, now, skip: this.d.dropped });
            next = stateAfterFire(st, now, list[list.length - 1]?.id);
            for (const i of list) {
              if (i.error) {
                log('failed', { id: i.id, name: s.name, platform: i.platform, why: i.error });
                next = stateAfterFinish(next, { kind: 'failed', why: i.error }, now);   // recorded in done/ at once
              } else { queued.push(i.id); await this.d.queue.consider(i.id); }
            }
          } catch (e) {
            log('error', { name: s.name, why: (e as Error).message });
          }
        }
        await this.record(s.name, next, queued);
      }
    } finally {
      this.firing = false;
      await this.arm();
    }
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
    if (!this.schedules.has(r.name)) return;
    await this.record(r.name, stateAfterFinish(await readScheduleState(this.sp, r.name), r.status, r.finished), []);
  }

  /**
   * Write state/NAME, unless schedules/NAME is gone. bctl unschedule removes
   * the schedule, then its state, then its jobs waiting in new/, while this
   * spoold may be firing it on what it read before; so the schedule is looked
   * for before the write and again after it, and if it is gone, the state and
   * the jobs just `queued` are removed. Whichever comes last, nothing of the
   * schedule outlives it but jobs already running. False when it was gone.
   */
  private async record(name: string, st: ScheduleState, queued: string[]): Promise<boolean> {
    // A schedule removed while it fired (schedstate.ts says how that is
    // found): the jobs this firing queued go first, then its state.
    const undo = async (): Promise<void> => {
      if (this.schedules.delete(name)) log('unscheduled', { name });
      for (const id of queued) {
        this.d.queue.remove(id);
        await fsp.rm(this.sp.queued(id), { force: true }).catch((e) => log('error', { file: `new/${id}`, why: (e as Error).message }));
      }
    };
    try { return await writeScheduleState(this.sp, name, st, undo); } catch (e) {
      log('error', { file: `state/${name}`, why: (e as Error).message });
      return true;
    }
  }
}
