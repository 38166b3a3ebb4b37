// schedstate.ts: spoold's own state per schedule, in state/NAME, apart from
// the person's schedules/NAME (which spoold never rewrites).
//
//   since: RFC 3339      when spoold first fired it: written before that firing queues
//                        anything, so a crash in it can be told apart from older jobs of the name
//   fired: RFC 3339      when an instance was last queued by the timer or execute
//   next: RFC 3339       the next due time, when set by bctl reschedule (overrides the period once)
//   last-id: ID          the last instance queued
//   last-status: STATUS  the status of the last finished instance
//   last-success: RFC 3339 / last-failure: RFC 3339
//
// Same header syntax as every spool file (no body); written with writeAtomic.
// Times are read strictly (2026-03-29T01:00:00Z, or with an offset such as
// +02:00); anything else, an unknown key, a bad id or a NUL byte makes the
// file bad. When (schedule.ts has the full rules a man page copies):
//   - never fired (no state, or a bad state file): due at once;
//   - next: set: due then;
//   - else: the first due time strictly after fired:. A time in the past
//     means due now, and after that firing planAfterFire() counts from the
//     firing, so a run missed during downtime fires once, not once per period.
// Nothing here reads the clock: callers pass `now`.

import fsp from 'node:fs/promises';
import { decodeFile, formatHeaders, parseHeaders, parseTime } from './headers.js';
import { readSpoolFile } from './read.js';
import { SpoolError, errno } from './errors.js';
import { writeAtomic } from './stage.js';
import { existsOr } from './state.js';
import { nextRun } from './schedule.js';
import { isId } from './paths.js';
import { formatStatus, isSuccess, type Status } from './result.js';
import type { Schedule } from './job.js';
import type { SpoolPaths } from './paths.js';

export interface ScheduleState {
  since: Date | undefined;
  fired: Date | undefined;
  next: Date | undefined;
  lastId: string | undefined;
  lastStatus: string | undefined;
  lastSuccess: Date | undefined;
  lastFailure: Date | undefined;
}

const FIELDS: Array<[keyof ScheduleState, string]> = [
  ['since', 'since'], ['fired', 'fired'], ['next', 'next'], ['lastId', 'last-id'], ['lastStatus', 'last-status'],
  ['lastSuccess', 'last-success'], ['lastFailure', 'last-failure'],
];
const DATES = new Set<keyof ScheduleState>(['since', 'fired', 'next', 'lastSuccess', 'lastFailure']);

export function emptyState(): ScheduleState {
  return { since: undefined, fired: undefined, next: undefined, lastId: undefined, lastStatus: undefined, lastSuccess: undefined, lastFailure: undefined };
}

export function parseScheduleState(buf: Uint8Array, source: string): ScheduleState {
  const st = emptyState();
  const { headers, body, bodyLine } = parseHeaders(decodeFile(buf, source), source);
  for (const h of headers) {
    const f = FIELDS.find(([, k]) => k === h.key);
    if (!f) throw new SpoolError('SPOOL_BAD_FILE', `unknown header '${h.key}'`, { path: source, line: h.line, hint: `known: ${FIELDS.map(([, k]) => k).join(', ')}` });
    if (DATES.has(f[0])) {
      const d = parseTime(h.value);
      if (!d) throw new SpoolError('SPOOL_BAD_VALUE', `bad time '${h.value.slice(0, 60)}'`, { path: source, line: h.line, hint: 'write RFC 3339, e.g. 2026-03-29T01:00:00Z' });
      (st as unknown as Record<string, unknown>)[f[0]] = d;
    } else if (f[0] === 'lastId' && !isId(h.value)) {
      throw new SpoolError('SPOOL_BAD_VALUE', `bad last-id '${h.value.slice(0, 60)}'`, { path: source, line: h.line, hint: 'an id looks like 0190b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f, or remove the line' });
    } else {
      (st as unknown as Record<string, unknown>)[f[0]] = h.value;
    }
  }
  if (body !== '') throw new SpoolError('SPOOL_BAD_FILE', `text after the headers (line ${bodyLine})`, { path: source, line: bodyLine, hint: 'a state file has headers only: remove the blank line and what follows' });
  return st;
}

export function formatScheduleState(st: ScheduleState): string {
  const hs: Array<[string, string]> = [];
  for (const [f, k] of FIELDS) {
    const v = st[f];
    if (v === undefined) continue;
    hs.push([k, v instanceof Date ? v.toISOString() : v]);
  }
  return formatHeaders(hs);
}

/** What bctl says of a state/NAME that does not parse, which it leaves for the person to fix (spoold holds the schedule). */
export function heldWhy(name: string, why: string): string {
  return `${why}; schedule ${name} is held until state/${name} is fixed, or removed (it then fires at once)`;
}

/**
 * state/NAME (empty when there is none: a new schedule), and whether the
 * file is there and good, missing, not a file spoold reads (a directory, a
 * link, over the size limit), or a file that does not parse (`why` says how;
 * spoold holds such a schedule); the last two read as empty.
 */
export async function readScheduleStateFound(sp: SpoolPaths, name: string): Promise<{ st: ScheduleState; found: 'good' | 'missing' | 'broken' | 'unparsed'; why?: string }> {
  const p = sp.scheduleState(name);
  try {
    const buf = readSpoolFile(p);
    return buf ? { st: parseScheduleState(buf, sp.rel(p)), found: 'good' } : { st: emptyState(), found: 'broken' };
  } catch (e) {
    if (['ENOENT', 'ENOTDIR'].includes(errno(e) ?? '')) return { st: emptyState(), found: 'missing' };
    if (e instanceof SpoolError) return { st: emptyState(), found: 'unparsed', why: e.message };
    throw e;
  }
}

/** How long schedules/NAME must stay missing to count as removed: an editor that saves by renaming the old file away leaves it missing for a moment. */
export const GONE_MS = 250;

/** Is schedules/NAME there (as anything: what it is, its parser judges)? An error but ENOENT counts as there. */
export function scheduled(sp: SpoolPaths, name: string): boolean {
  return existsOr(sp.schedule(name), true);
}

/** schedules/NAME is missing, and still missing GONE_MS later. */
async function removed(sp: SpoolPaths, name: string): Promise<boolean> {
  if (scheduled(sp, name)) return false;
  await new Promise((resolve) => setTimeout(resolve, GONE_MS));
  return !scheduled(sp, name);
}

/**
 * Write state/NAME, the way every writer of it does (spoold, bctl execute,
 * reschedule, cancel): only while schedules/NAME exists. False when the
 * schedule is gone, before the write (nothing is written) or after it.
 *
 * A firing gives `undo`: bctl unschedule removes the schedule, then its
 * state, then its jobs in new/, and a firing that read the schedule before
 * could queue jobs and write the state after; so if the schedule is gone,
 * before or after the write, `undo` removes the jobs the firing queued and
 * then the state goes: the firing is taken back whole. Any other write (a
 * result, a reschedule) leaves the state as it was, or as written: a
 * schedule removed by hand keeps its state, and taking the history away
 * because a removal came during a write would make the schedule, written
 * again, fire at once (builder-spool(5)). Such a state left behind by a
 * bctl unschedule in the same instant is one bctl schedule removes.
 */
export async function writeScheduleState(sp: SpoolPaths, name: string, st: ScheduleState, undo?: () => Promise<void>): Promise<boolean> {
  if (!(await removed(sp, name))) {
    await writeAtomic(sp, sp.scheduleState(name), formatScheduleState(st));
    if (!(await removed(sp, name))) return true;
  }
  if (undo) {
    await undo();
    await fsp.rm(sp.scheduleState(name), { force: true });
  }
  return false;
}

/**
 * When the schedule is next due. A reschedule (`next:`) wins; a schedule never
 * fired is due at once (as robur builder runs a new job at once: the epoch,
 * so always in the past); otherwise the first due time after the last firing.
 * A time in the past means due now: however long spoold was down, that is one
 * firing, and planAfterFire() then counts from it.
 */
export function nextDue(s: Schedule, st: ScheduleState): Date | undefined {
  if (st.next !== undefined) return st.next;
  if (s.schedule === 'never') return undefined;
  if (st.fired === undefined) return new Date(0);
  return nextRun(s.schedule, s.tz, st.fired);
}

/**
 * A firing ahead of the clock by more than this was made while the clock was
 * wrong, and spoold records it as made now (schedule.ts, the rules; timer.ts):
 * as cron(8) takes a clock set back by 3 hours or more as a new time rather
 * than wait for it.
 */
export const CLOCK_SET_BACK_MS = 3 * 3600_000;

/** st's firing is so far ahead of `now` that the clock must have been set back since. */
export function clockSetBack(st: ScheduleState, now: Date): boolean {
  return st.fired !== undefined && st.fired.getTime() - now.getTime() > CLOCK_SET_BACK_MS;
}

/**
 * The next due time after a firing at `firedAt`: strictly after it, counted
 * from the firing and not from the missed due times before it, so a schedule
 * last fired years ago is due once now and then on its period. Undefined for
 * never. This is what nextDue() returns for the state a firing writes
 * ({ ...st, fired: firedAt, next: undefined }, see stateAfterFire).
 */
export function planAfterFire(s: Schedule, firedAt: Date): Date | undefined {
  return nextRun(s.schedule, s.tz, firedAt);
}

/** The state to write after a firing at `firedAt` that queued `lastId`: the reschedule is used up. */
export function stateAfterFire(st: ScheduleState, firedAt: Date, lastId?: string): ScheduleState {
  return { ...st, fired: firedAt, next: undefined, lastId: lastId ?? st.lastId };
}

/** The state after a job of the schedule ended with `status` at `finished`: last-status, and last-success or last-failure. */
export function stateAfterFinish(st: ScheduleState, status: Status, finished: Date): ScheduleState {
  return { ...st, lastStatus: formatStatus(status), ...(isSuccess(status) ? { lastSuccess: finished } : { lastFailure: finished }) };
}

/**
 * True when a due time passed more than graceMs before `now` without a firing:
 * spoold was down or busy, and the run fires late (once). A schedule that has
 * never fired is due at once, from when it was written (`writtenAt`, its
 * file's mtime, when known): overdue once that is more than graceMs ago.
 */
export function isOverdue(s: Schedule, st: ScheduleState, now: Date, graceMs = 60_000, writtenAt?: Date): boolean {
  if (st.next === undefined && st.fired === undefined) {
    return s.schedule !== 'never' && writtenAt !== undefined && now.getTime() - writtenAt.getTime() > graceMs;
  }
  const due = nextDue(s, st);
  return due !== undefined && now.getTime() - due.getTime() > graceMs;
}
