// spoold's schedule timer in this process, on a real spool in a temporary
// directory, with a fake daemon whose queue lets a test act in the middle of
// a firing: races an end-to-end test cannot time. Each test is a defect
// found in review; each fails on the code before its fix.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, until } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';
import { parseJob } from '../src/spool/job.js';
import { parseScheduleState } from '../src/spool/schedstate.js';
import { ScheduleTimer } from '../src/spoold/timer.js';
import type { Daemon } from '../src/spoold/daemon.js';
import type { Result } from '../src/spool/result.js';

let root = '';
let timers: ScheduleTimer[] = [];
test.before.each(async () => { root = await tmpdir('timer'); timers = []; });
test.after.each(async () => {
  for (const t of timers) t.stop();
  await fsp.rm(root, { recursive: true, force: true });
});

async function spool(): Promise<SpoolPaths> {
  const sp = new SpoolPaths(path.join(root, 'spool'));
  await ensureSpool(sp);
  return sp;
}

/** A timer over sp whose daemon calls `onQueued` (once) as the first job a firing queues is taken into the queue. */
function timerOf(sp: SpoolPaths, onQueued: (t: ScheduleTimer) => Promise<void> = async () => {}): ScheduleTimer {
  let once = false;
  const d = {
    dropped: new Set<string>(), stopping: false, runningJobs: () => [],
    queue: {
      platformsOf: () => new Set<string>(), remove() {},
      async consider() { if (!once) { once = true; await onQueued(t); } },
    },
  };
  const t = new ScheduleTimer(sp, d as unknown as Daemon, [sp.templates]);
  timers.push(t);
  return t;
}

/** Schedule x (@hourly), fired once by a timer that cannot write its state/x (a directory stands there). */
async function firedUnwritable(): Promise<{ sp: SpoolPaths; t: ScheduleTimer }> {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('x'), 'platform: p\nschedule: @hourly\n\n#!/bin/sh\ntrue\n');
  fs.mkdirSync(sp.scheduleState('x'));
  const t = timerOf(sp);
  await t.rescan();
  await until('fired', () => queued(sp).length === 1);
  // And its write of state/x failed: cleared before, the fault would let that write through.
  await until('the failed write', () => (t as unknown as { unwritten: Map<string, string> }).unwritten.has('x'));
  return { sp, t };
}

const stateOf = (sp: SpoolPaths, name: string) => parseScheduleState(fs.readFileSync(sp.scheduleState(name)), 'state');
const finished = (name: string, code: number, at = new Date()) => ({ name, status: { kind: 'exited', code }, finished: at }) as unknown as Result;
const queued = (sp: SpoolPaths) => fs.readdirSync(sp.new).map((f) => parseJob(fs.readFileSync(path.join(sp.new, f)), f, f));

test('a job that finishes while its schedule fires keeps its result in the state the firing writes', async () => {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('tw'), 'platform: p\nschedule: @hourly\n\n#!/bin/sh\ntrue\n');
  fs.writeFileSync(sp.scheduleState('tw'), `fired: ${new Date(Date.now() - 2 * 3600e3).toISOString()}\nlast-status: exited 0\n`);
  const t = timerOf(sp, (timer) => timer.finished(finished('tw', 3)));
  await t.rescan();
  await until('fired and recorded', () => queued(sp).length === 1 && stateOf(sp, 'tw').lastId === queued(sp)[0]!.id ? true : undefined);
  await until('writes settled', () => (stateOf(sp, 'tw').lastStatus === 'exited 3' ? true : undefined));
  const st = stateOf(sp, 'tw');
  assert.is(st.lastStatus, 'exited 3', 'the finished job is not undone by the firing');
  assert.ok(st.lastFailure, 'last-failure recorded');
});

test("a late watcher event for spoold's own earlier write does not undo a later result still being written", async () => {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('x'), 'platform: p\nschedule: @hourly\n\n#!/bin/sh\ntrue\n');
  fs.writeFileSync(sp.scheduleState('x'), `fired: ${new Date(Date.now() - 60e3).toISOString()}\n`);
  const t = timerOf(sp);
  await t.rescan();
  await t.finished(finished('x', 1));                   // its write lands
  const second = t.finished(finished('x', 0));          // its write is under way
  t.stateChanged('x');                                 // the event of the first write arrives now
  await new Promise((r) => setImmediate(r));
  const third = t.finished(finished('x', 2));
  await Promise.all([second, third]);
  const st = stateOf(sp, 'x');
  assert.is(st.lastStatus, 'exited 2');
  assert.ok(st.lastSuccess, 'the exit 0 in between is kept (last-success)');
  assert.ok(st.lastFailure);
});

test('a schedule changed while another fires is fired as it is now, not as it was when the firing began', async () => {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('a'), 'platform: old-plat\nschedule: @hourly\n\n#!/bin/sh\necho OLD a\n');
  fs.writeFileSync(sp.schedule('b'), 'platform: old-plat\nschedule: @hourly\n\n#!/bin/sh\necho OLD b\n');
  // Whichever fires first rewrites the other, and the watcher's rescan reads it.
  const t = timerOf(sp, async (timer) => {
    const other = queued(sp)[0]!.name === 'a' ? 'b' : 'a';
    fs.writeFileSync(sp.schedule(other), `platform: new-plat\nschedule: @hourly\n\n#!/bin/sh\necho NEW ${other}\n`);
    await timer.rescan();
  });
  await t.rescan();
  await until('both fired', () => (queued(sp).length === 2 ? true : undefined));
  const jobs = queued(sp).sort((x, y) => (x.id! < y.id! ? -1 : 1));
  assert.is(jobs[0]!.platform, 'old-plat');
  assert.is(jobs[1]!.platform, 'new-plat', 'the second fired as rewritten');
  assert.match(jobs[1]!.body, /^#!\/bin\/sh\necho NEW /);
});

// Found in review: a bctl cancel that read state/NAME before a firing's write
// landed wrote back the next: that firing had used up; the timer took it and
// fired again at once.
test("a writer's next: that the last firing used up is not taken back from a file behind on firings", async () => {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('x'), 'platform: p\nschedule: @hourly\n\n#!/bin/sh\ntrue\n');
  const fired0 = new Date(Date.now() - 1800e3);
  fs.writeFileSync(sp.scheduleState('x'), `fired: ${fired0.toISOString()}\nnext: ${new Date(Date.now() - 1000).toISOString()}\n`);   // bctl reschedule: due now
  const stale = fs.readFileSync(sp.scheduleState('x'), 'utf8');   // what a bctl cancel reads as the firing runs
  const t = timerOf(sp);
  await t.rescan();
  await until('fired and recorded', () => stateOf(sp, 'x').lastId !== undefined);
  // ...and writes back, with its last status, after spoold's write.
  fs.writeFileSync(sp.scheduleState('x'), `${stale}last-status: canceled\n`);
  t.stateChanged('x');
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(queued(sp).length, 1, 'fired once, not again at once');
});

// Found in review: while a state spoold could not write was pending, a bctl
// reschedule written once the file could be written again was overwritten.
test('a state spoold could not write does not overwrite a reschedule written after the fault cleared', async () => {
  const { sp, t } = await firedUnwritable();
  fs.rmdirSync(sp.scheduleState('x'));
  const next = new Date(Date.now() + 600e3);
  fs.writeFileSync(sp.scheduleState('x'), `next: ${next.toISOString()}\n`);   // bctl reschedule x, on the empty state it read
  t.stateChanged('x');
  await until('the merged state written', () => { try { return stateOf(sp, 'x').fired !== undefined; } catch { return false; } });
  const st = stateOf(sp, 'x');
  assert.is(st.next?.getTime(), next.getTime(), 'the reschedule is kept');
  assert.ok(st.fired, "spoold's firing is kept too");
  await t.rescan();
  assert.is(stateOf(sp, 'x').next?.getTime(), next.getTime(), 'and not overwritten by a later rescan');
  assert.is(queued(sp).length, 1);
});

// Found in review: a reschedule spoold read in while the schedule fired was
// wiped by the end of that firing, which cleared every next:.
test('a reschedule read in while the schedule fires outlives the firing', async () => {
  const sp = await spool();
  fs.writeFileSync(sp.schedule('x'), 'platform: p\nschedule: @hourly\n\n#!/bin/sh\ntrue\n');
  fs.writeFileSync(sp.scheduleState('x'), `fired: ${new Date(Date.now() - 2 * 3600e3).toISOString()}\n`);
  const later = new Date(Date.now() + 6 * 3600e3);
  const t = timerOf(sp, async (timer) => {
    fs.writeFileSync(sp.scheduleState('x'), `${fs.readFileSync(sp.scheduleState('x'), 'utf8')}next: ${later.toISOString()}\n`);   // bctl reschedule x
    timer.stateChanged('x');
    await new Promise((r) => setTimeout(r, 50));
  });
  await t.rescan();
  await until('fired and recorded', () => stateOf(sp, 'x').lastId !== undefined);
  assert.is(stateOf(sp, 'x').next?.getTime(), later.getTime());
  assert.is(queued(sp).length, 1);
});

// Found in review: one failed listing of schedules/ (EMFILE) took every
// schedule as removed, and with it a firing only memory held (its state/NAME
// could not be written), which was then made again.
test('a listing of schedules/ that fails forgets nothing, and a firing only memory holds is not made again', async () => {
  const { sp, t } = await firedUnwritable();
  const real = fsp.readdir;
  (fsp as { readdir: unknown }).readdir = async (p: string, ...a: unknown[]) => {
    if (p === sp.schedules) { (fsp as { readdir: unknown }).readdir = real; throw Object.assign(new Error('EMFILE: too many open files, scandir'), { code: 'EMFILE' }); }
    return (real as (...x: unknown[]) => Promise<unknown>)(p, ...a);
  };
  try { await t.rescan(); } finally { (fsp as { readdir: unknown }).readdir = real; }
  // And an editor's save by rename: the file away for a moment, then back.
  fs.renameSync(sp.schedule('x'), path.join(sp.schedules, '.x.swp'));
  await t.rescan();
  fs.renameSync(path.join(sp.schedules, '.x.swp'), sp.schedule('x'));
  await t.rescan();
  await new Promise((r) => setTimeout(r, 500));
  assert.is(queued(sp).length, 1, 'fired once in its hour');
});

test.run();
