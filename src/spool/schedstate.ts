// schedstate.ts: spoold's own state per schedule, in state/NAME, apart from
// the person's schedules/NAME (which spoold never rewrites).
//
//   fired: RFC 3339      when an instance was last queued by the timer or execute
//   next: RFC 3339       the next due time, when set by bctl reschedule (overrides the period once)
//   last-id: ID          the last instance queued
//   last-status: STATUS  the status of the last finished instance
//   last-success: RFC 3339 / last-failure: RFC 3339
//
// Same header syntax as every spool file; written with writeAtomic.

import fsp from 'node:fs/promises';
import { decodeFile, formatHeaders, parseHeaders } from './headers.js';
import { SpoolError, errno } from './errors.js';
import { writeAtomic } from './stage.js';
import { nextRun } from './schedule.js';
import type { Schedule } from './job.js';
import type { SpoolPaths } from './paths.js';

export interface ScheduleState {
  fired: Date | undefined;
  next: Date | undefined;
  lastId: string | undefined;
  lastStatus: string | undefined;
  lastSuccess: Date | undefined;
  lastFailure: Date | undefined;
}

const FIELDS: Array<[keyof ScheduleState, string]> = [
  ['fired', 'fired'], ['next', 'next'], ['lastId', 'last-id'], ['lastStatus', 'last-status'],
  ['lastSuccess', 'last-success'], ['lastFailure', 'last-failure'],
];
const DATES = new Set<keyof ScheduleState>(['fired', 'next', 'lastSuccess', 'lastFailure']);

export function emptyState(): ScheduleState {
  return { fired: undefined, next: undefined, lastId: undefined, lastStatus: undefined, lastSuccess: undefined, lastFailure: undefined };
}

export function parseScheduleState(buf: Uint8Array, source: string): ScheduleState {
  const st = emptyState();
  for (const h of parseHeaders(decodeFile(buf, source), source).headers) {
    const f = FIELDS.find(([, k]) => k === h.key);
    if (!f) throw new SpoolError('SPOOL_BAD_FILE', `unknown header '${h.key}'`, { path: source, line: h.line, hint: `known: ${FIELDS.map(([, k]) => k).join(', ')}` });
    if (DATES.has(f[0])) {
      const d = new Date(h.value);
      if (Number.isNaN(d.getTime())) throw new SpoolError('SPOOL_BAD_VALUE', `bad time '${h.value}'`, { path: source, line: h.line, hint: 'write RFC 3339' });
      (st as unknown as Record<string, unknown>)[f[0]] = d;
    } else {
      (st as unknown as Record<string, unknown>)[f[0]] = h.value;
    }
  }
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

/** state/NAME, or an empty state when there is none (a new schedule). A broken state file reads as empty. */
export async function readScheduleState(sp: SpoolPaths, name: string): Promise<ScheduleState> {
  const p = sp.scheduleState(name);
  try {
    return parseScheduleState(await fsp.readFile(p), sp.rel(p));
  } catch (e) {
    if (errno(e) === 'ENOENT') return emptyState();
    if (e instanceof SpoolError) return emptyState();
    throw e;
  }
}

export async function writeScheduleState(sp: SpoolPaths, name: string, st: ScheduleState): Promise<void> {
  await writeAtomic(sp, sp.scheduleState(name), formatScheduleState(st));
}

/**
 * When the schedule is next due. A reschedule (`next:`) wins; a schedule never
 * fired is due at once (as robur builder runs a new job at once); otherwise the
 * first time after the last firing. A time in the past means due now: after
 * downtime a missed run fires once, not once per missed period.
 */
export function nextDue(s: Schedule, st: ScheduleState): Date | undefined {
  if (st.next !== undefined) return st.next;
  if (s.schedule === 'never') return undefined;
  if (st.fired === undefined) return new Date(0);
  return nextRun(s.schedule, s.tz, st.fired);
}
