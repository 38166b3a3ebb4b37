// info.ts: bctl info [--json]: the spool at a glance.
//
// Sections: schedules (with the next run from nextDue and the last status
// from state/NAME), queued jobs per platform in dispatch order (priority
// high to low, then id), running jobs (with the worker from running/ID/lease),
// workers (workers/NAME as spoold wrote them), dropped platforms (platforms/).
// A file that does not parse is listed under errors with its message; it never
// stops the listing. Everything is a snapshot: jobs move while we read, and a
// file that vanishes between readdir and read is simply left out.
//
// --json prints one object {schedules, queues, running, workers, dropped,
// errors}; times are RFC 3339 strings, absent values null. man/bctl.1
// documents every field.

import path from 'node:path';
import fsp from 'node:fs/promises';
import { SpoolError, oneLine } from '../spool/errors.js';
import { parseJob, parseSchedule, type ParsedJob } from '../spool/job.js';
import { isId, isName, type SpoolPaths } from '../spool/paths.js';
import { formatStatus, parseResult } from '../spool/result.js';
import { checkSpool } from '../spool/layout.js';
import { heldWhy, isOverdue, nextDue, readScheduleStateFound } from '../spool/schedstate.js';
import { exists } from '../spool/state.js';
import { EXIT_OK } from '../spool/exit.js';
import { flag, fmtTime, headerMap, list, readIf, table, type Ctx } from './cli.js';
import { doneFile } from './find.js';

export interface ScheduleInfo {
  name: string; platform: string | null; template: string | null; schedule: string; tz: string;
  next: string | null; due: boolean; overdue: boolean; held: boolean; lastStatus: string | null; lastId: string | null;
}
export interface QueuedInfo { id: string | null; file: string; name: string; platform: string; priority: number; origin: string; attempt: number; queued: string | null }
export interface RunningInfo { id: string; name: string; platform: string; worker: string | null; started: string | null; attempt: number | null; cancelRequested: boolean }
export interface Info {
  schedules: ScheduleInfo[];
  queues: Record<string, QueuedInfo[]>;
  running: RunningInfo[];
  workers: Array<Record<string, string | null>>;
  dropped: Array<Record<string, string>>;
  errors: Array<{ file: string; error: string }>;
}

function iso(d: Date | undefined): string | null {
  return d === undefined ? null : fmtTime(d);
}

function message(e: unknown): string {
  if (e instanceof SpoolError) return e.message;
  throw e;
}

export async function collect(ctx: Ctx, now = new Date()): Promise<Info> {
  const { sp } = ctx;
  const info: Info = { schedules: [], queues: {}, running: [], workers: [], dropped: [], errors: [] };
  const err = (file: string, e: unknown) => info.errors.push({ file, error: message(e) });
  // A file that cannot be read (a fifo, a link) is listed with the errors, like one that does not parse.
  // Named as under errors' `file`: relative to the spool, as every other message of info.
  const read = (p: string): Promise<Buffer | undefined> => readIf(p, undefined, sp.rel(p)).catch((e) => { err(sp.rel(p), e); return undefined; });

  for (const f of await list(sp.schedules)) {
    if (f.startsWith('.')) continue;
    const rel = `schedules/${f}`;
    if (!isName(f)) { err(rel, new SpoolError('SPOOL_BAD_NAME', 'not a job name', { path: rel, hint: 'rename it; spoold moves it to bad/' })); continue; }
    const buf = await read(sp.schedule(f));
    if (buf === undefined) continue;
    try {
      const s = parseSchedule(buf, rel, f);
      const { st, found, why } = await readScheduleStateFound(sp, f);
      // A state that does not parse holds the schedule (spoold(8), SCHEDULES).
      const held = found === 'unparsed';
      if (held) err(sp.rel(sp.scheduleState(f)), new SpoolError('SPOOL_BAD_FILE', heldWhy(f, why!)));
      const next = held ? undefined : nextDue(s, st);
      info.schedules.push({
        name: s.name, platform: s.platform ?? null, template: s.template ?? null, schedule: s.schedule, tz: s.tz,
        next: iso(next), due: next !== undefined && next.getTime() <= now.getTime(), held,
        // Never fired, it is due from when its file was written (found by a new user: a new schedule with spoold down showed "now" for ever).
        overdue: !held && isOverdue(s, st, now, undefined, (await fsp.lstat(sp.schedule(f)).catch(() => undefined))?.mtime),
        ...(held ? await latestOf(sp, s.name) : { lastStatus: st.lastStatus ?? null, lastId: st.lastId ?? null }),
      });
    } catch (e) { err(rel, e); }
  }

  const queued: QueuedInfo[] = [];
  for (const f of await list(sp.new)) {
    if (f.startsWith('.')) continue;
    const rel = `new/${f}`;
    const buf = await read(isId(f) ? sp.queued(f) : path.join(sp.new, f));
    if (buf === undefined) continue;
    try {
      const j = parseJob(buf, rel, f);
      queued.push({ id: j.id ?? null, file: f, name: j.name, platform: j.platform, priority: j.priority, origin: j.origin, attempt: j.attempt, queued: iso(j.queued) });
    } catch (e) { err(rel, e); }
  }
  // Dispatch order: priority high to low, then id (time) low to high. A file
  // without an id yet is adopted (given a fresh id) first, so it sorts last.
  const key = (q: QueuedInfo) => q.id ?? `~${q.file}`;   // '~' sorts after every hex digit
  queued.sort((a, b) => b.priority - a.priority || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  for (const q of queued) (info.queues[q.platform] ??= []).push(q);

  for (const id of await list(sp.running)) {
    if (!isId(id)) { err(`running/${id}`, new SpoolError('SPOOL_BAD_NAME', 'not a job id', { path: `running/${id}`, hint: 'remove it; see bctl fsck' })); continue; }
    const jobFile = sp.runningFile(id, 'job');
    const buf = await read(jobFile);
    if (buf === undefined) continue;   // a crash leftover, or finalized meanwhile; fsck says which
    let j: ParsedJob;
    try { j = parseJob(buf, sp.rel(jobFile)); } catch (e) { err(sp.rel(jobFile), e); continue; }
    let lease: Record<string, string> = {};
    const lbuf = await read(sp.runningFile(id, 'lease'));
    if (lbuf !== undefined) {
      try { lease = headerMap(lbuf, sp.rel(sp.runningFile(id, 'lease'))); } catch (e) { err(sp.rel(sp.runningFile(id, 'lease')), e); }
    }
    const cancelRequested = exists(sp.runningFile(id, 'cancel'));
    info.running.push({ id, name: j.name, platform: j.platform, worker: lease.worker || null, started: lease.started || null, attempt: /^\d+$/.test(lease.attempt ?? '') ? Number(lease.attempt) : null, cancelRequested });
  }

  for (const f of await list(sp.workers)) {
    if (f.startsWith('.') || !isName(f)) continue;
    const buf = await read(sp.worker(f));
    if (buf === undefined) continue;
    // An empty value (job: of an idle worker) is unknown: null, as everywhere in --json.
    try { info.workers.push({ name: f, ...Object.fromEntries(Object.entries(headerMap(buf, `workers/${f}`)).map(([k, v]) => [k, v === '' ? null : v])) }); } catch (e) { err(`workers/${f}`, e); }
  }

  for (const f of await list(sp.platforms)) {
    if (f.startsWith('.')) continue;
    if (!isName(f)) { err(`platforms/${f}`, new SpoolError('SPOOL_BAD_NAME', 'not a platform name', { path: `platforms/${f}`, hint: 'rename or remove it' })); continue; }
    // Only the name counts (builder-spool(5)): a directory, link or unreadable
    // file drops the platform as spoold sees it, and is no error here.
    const buf = await readIf(sp.platform(f)).catch(() => undefined);
    if (buf === undefined) { if (exists(sp.platform(f))) info.dropped.push({ platform: f }); continue; }
    try { info.dropped.push({ platform: f, ...headerMap(buf, `platforms/${f}`) }); } catch (e) {
      // A marker is a marker whatever it says; list the platform and the complaint.
      info.dropped.push({ platform: f });
      err(`platforms/${f}`, e);
    }
  }
  return info;
}

/**
 * LAST of a held schedule, whose state cannot be read: the newest result of
 * its name (done/NAME/latest), which is its last firing's unless a job of
 * that name was also submitted by hand since.
 */
async function latestOf(sp: SpoolPaths, name: string): Promise<{ lastStatus: string | null; lastId: string | null }> {
  try {
    const buf = await readIf(doneFile(sp.latest(name), 'result'));
    if (buf) { const r = parseResult(buf, `done/${name}/latest/result`); return { lastStatus: formatStatus(r.status), lastId: r.id }; }
  } catch { /* none to show; fsck reports a broken one */ }
  return { lastStatus: null, lastId: null };
}

function section(ctx: Ctx, title: string, header: string[], rows: string[][]): void {
  ctx.out(`${title}:`);
  if (rows.length === 0) { ctx.out('  (none)'); return; }
  for (const l of table(header, rows.map((r) => r.map(oneLine)))) ctx.out(`  ${l}`);
}

const dash = (s: string | null | undefined): string => (s === null || s === undefined || s === '' ? '-' : s);

export async function info(ctx: Ctx): Promise<number> {
  checkSpool(ctx.sp);
  const i = await collect(ctx);
  if (flag(ctx, 'json')) {
    ctx.out(JSON.stringify(i, null, 2));
    return EXIT_OK;
  }
  section(ctx, 'schedules', ['NAME', 'PLATFORM', 'SCHEDULE', 'NEXT', 'LAST'], i.schedules.map((s) => [
    s.name, s.platform ?? '(template)', s.tz === 'UTC' ? s.schedule : `${s.schedule} ${s.tz}`,
    s.held ? 'held' : s.next === null ? 'never' : s.overdue ? `${Date.parse(s.next) === 0 ? 'now' : s.next} (overdue)` : s.due ? 'now' : s.next, dash(s.lastStatus),
  ]));
  const qrows: string[][] = [];
  for (const [platform, jobs] of Object.entries(i.queues).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const q of jobs) qrows.push([platform, q.id ?? `(new/${q.file})`, q.name, String(q.priority), q.origin, String(q.attempt), dash(q.queued)]);
  }
  section(ctx, 'queued', ['PLATFORM', 'ID', 'NAME', 'PRIO', 'ORIGIN', 'ATTEMPT', 'QUEUED'], qrows);
  // A worker with no file in workers/ is not connected: spoold waits for it until the job's lease runs out.
  const connected = new Set(i.workers.map((w) => w.name));
  section(ctx, 'running', ['ID', 'NAME', 'PLATFORM', 'WORKER', 'STARTED'], i.running.map((r) => [
    r.id, r.name, r.platform, r.worker && !connected.has(r.worker) ? `${r.worker} (away)` : dash(r.worker), `${dash(r.started)}${r.cancelRequested ? ' (cancel requested)' : ''}`,
  ]));
  section(ctx, 'workers', ['NAME', 'PLATFORM', 'CONNECTED', 'JOB', 'SEEN', 'PEER'], i.workers.map((w) => [
    dash(w.name), dash(w.platform), dash(w.connected), dash(w.job), dash(w.seen), dash(w.peer),
  ]));
  section(ctx, 'dropped platforms', ['PLATFORM', 'DROPPED', 'REASON'], i.dropped.map((d) => [d.platform!, dash(d.dropped), dash(d.reason)]));
  if (i.errors.length > 0) {
    ctx.out('errors:');
    for (const e of i.errors) ctx.out(`  ${oneLine(e.error)}`);
  }
  return EXIT_OK;
}
