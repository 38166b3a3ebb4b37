// schedstate.ts: when a schedule is due given its state, missed runs, and the
// state file (round trip, hostile content). Fixed dates; the clock is never read.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  clockSetBack, emptyState, formatScheduleState, isOverdue, nextDue, parseScheduleState, planAfterFire,
  readScheduleStateFound, stateAfterFire, writeScheduleState, GONE_MS, type ScheduleState,
} from '../src/spool/schedstate.js';
import { parseTime } from '../src/spool/headers.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { SpoolError } from '../src/spool/errors.js';
import type { Schedule } from '../src/spool/job.js';

function sched(schedule: string, tz = 'UTC'): Schedule {
  return { name: 's', platform: 'p', timeout: undefined, retries: undefined, priority: 0, network: false, template: undefined, vars: {}, body: 'true\n', schedule, tz };
}
function state(over: Partial<ScheduleState>): ScheduleState {
  return { ...emptyState(), ...over };
}
function err(f: () => unknown): SpoolError {
  try { f(); } catch (e) { if (e instanceof SpoolError) return e; throw e; }
  throw new Error('expected a SpoolError');
}
const H = 3_600_000;
const NOW = new Date('2026-06-15T10:20:30Z');

// ---- when due ----

test('a schedule that never fired is due at once, and that is not a missed run', () => {
  const due = nextDue(sched('@daily'), emptyState())!;
  assert.ok(due.getTime() <= NOW.getTime());
  assert.not.ok(isOverdue(sched('@daily'), emptyState(), NOW));
});

test('after downtime a missed run fires once: @hourly last fired 2 years ago is due now, then within the hour', () => {
  const s = sched('@hourly');
  const st = state({ fired: new Date('2024-06-15T10:00:00Z') });
  const due = nextDue(s, st)!;
  assert.is(due.toISOString(), '2024-06-15T11:00:00.000Z');   // in the past: due now
  assert.ok(isOverdue(s, st, NOW));
  // it fires now; the next run counts from the firing, not from 2024
  const after = planAfterFire(s, NOW)!;
  assert.is(after.toISOString(), '2026-06-15T11:00:00.000Z');
  assert.ok(after.getTime() > NOW.getTime() && after.getTime() - NOW.getTime() <= H);
  const fired = stateAfterFire(st, NOW, '0190b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f');
  assert.equal(nextDue(s, fired), after);
  assert.not.ok(isOverdue(s, fired, NOW));
  // and a timer that loops "fire while due" fires exactly once
  let cur = st;
  let firings = 0;
  while (nextDue(s, cur)!.getTime() <= NOW.getTime()) { cur = stateAfterFire(cur, NOW); firings++; assert.ok(firings < 3, 'catch-up burst'); }
  assert.is(firings, 1);
});

test('clockSetBack: a firing recorded more than 3 hours ahead of the clock; a smaller step is an NTP correction', () => {
  assert.ok(clockSetBack(state({ fired: new Date('2030-01-01T00:00:00Z') }), NOW));
  assert.not.ok(clockSetBack(state({ fired: new Date(NOW.getTime() + 10 * 60_000) }), NOW));
  assert.not.ok(clockSetBack(state({ fired: new Date(NOW.getTime() + 3 * H) }), NOW), 'exactly 3 hours is still taken as it is');
  assert.not.ok(clockSetBack(state({}), NOW));
  assert.not.ok(clockSetBack(state({ fired: new Date('2024-01-01T00:00:00Z') }), NOW));
});

test('planAfterFire is strictly after the firing, also when it fired exactly on a due time', () => {
  assert.is(planAfterFire(sched('@hourly'), new Date('2026-06-15T10:00:00Z'))!.toISOString(), '2026-06-15T11:00:00.000Z');
  assert.is(planAfterFire(sched('@daily'), new Date('2026-06-15T00:00:00Z'))!.toISOString(), '2026-06-16T00:00:00.000Z');
  assert.is(planAfterFire(sched('@weekly'), new Date('2031-01-01T00:00:00Z'))!.toISOString(), '2031-01-05T00:00:00.000Z');
  // fired late, inside the repeated hour of a fall back: not again that night
  assert.is(planAfterFire(sched('30 2 * * *', 'Europe/Berlin'), new Date('2026-10-25T01:10:00Z'))!.toISOString(), '2026-10-26T01:30:00.000Z');
});

test('never runs only when next: is set by reschedule, and only once', () => {
  const s = sched('never');
  assert.is(nextDue(s, emptyState()), undefined);
  assert.is(nextDue(s, state({ fired: new Date('2026-01-01T00:00:00Z') })), undefined);
  assert.not.ok(isOverdue(s, emptyState(), NOW));
  const at = new Date('2026-06-15T12:00:00Z');
  const st = state({ next: at });
  assert.equal(nextDue(s, st), at);
  assert.not.ok(isOverdue(s, st, NOW));                          // not yet
  assert.ok(isOverdue(s, st, new Date('2026-06-15T12:05:00Z')));  // passed by 5 minutes
  assert.is(planAfterFire(s, at), undefined);
  assert.is(nextDue(s, stateAfterFire(st, at)), undefined);
});

test('a reschedule replaces the next due time once, then the period resumes', () => {
  const s = sched('@daily');
  const st = state({ fired: new Date('2026-06-15T00:00:00Z'), next: new Date('2026-06-15T18:30:00Z') });
  assert.is(nextDue(s, st)!.toISOString(), '2026-06-15T18:30:00.000Z');
  const fired = stateAfterFire(st, new Date('2026-06-15T18:30:00Z'));
  assert.is(fired.next, undefined);
  assert.is(nextDue(s, fired)!.toISOString(), '2026-06-16T00:00:00.000Z');
});

test('isOverdue allows a grace period', () => {
  const s = sched('@hourly');
  const st = state({ fired: new Date('2026-06-15T09:00:00Z') });   // due 10:00
  assert.not.ok(isOverdue(s, st, new Date('2026-06-15T09:59:00Z')));
  assert.not.ok(isOverdue(s, st, new Date('2026-06-15T10:00:30Z')));
  assert.ok(isOverdue(s, st, new Date('2026-06-15T10:01:00.001Z')));
  assert.not.ok(isOverdue(s, st, new Date('2026-06-15T10:04:00Z'), 5 * 60_000));
});

// ---- the state file ----

test('the state file round-trips', () => {
  const st: ScheduleState = {
    since: new Date('2026-06-01T08:00:00Z'), fired: new Date('2026-06-15T10:00:00.123Z'), next: new Date('2026-06-16T00:00:00Z'),
    lastId: '0190b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f', lastStatus: 'exited 3',
    lastSuccess: new Date('2026-06-14T10:00:00Z'), lastFailure: new Date('2026-06-15T10:01:00Z'),
  };
  const text = formatScheduleState(st);
  assert.is(text, 'since: 2026-06-01T08:00:00.000Z\nfired: 2026-06-15T10:00:00.123Z\nnext: 2026-06-16T00:00:00.000Z\nlast-id: 0190b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f\n' +
    'last-status: exited 3\nlast-success: 2026-06-14T10:00:00.000Z\nlast-failure: 2026-06-15T10:01:00.000Z\n');
  assert.equal(parseScheduleState(Buffer.from(text), 'state/s'), st);
  assert.is(formatScheduleState(emptyState()), '');
  assert.equal(parseScheduleState(Buffer.from(''), 'state/s'), emptyState());
});

test('times are RFC 3339, strictly', () => {
  assert.is(parseTime('2026-03-29T02:30:00+01:00')!.toISOString(), '2026-03-29T01:30:00.000Z');
  assert.is(parseTime('2026-03-29t01:30:00.5z')!.toISOString(), '2026-03-29T01:30:00.500Z');
  assert.is(parseTime('2026-03-29T01:30:00.123456789-00:30')!.toISOString(), '2026-03-29T02:00:00.123Z');
  for (const bad of ['1', '2026', '2026-03-29', '2026-03-29 01:30:00', '2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z',
    '2026-03-29T24:00:00Z', '2026-03-29T01:60:00Z', '2026-03-29T01:30:60Z', '2026-03-29T01:30:00', '2026-03-29T01:30:00+0100',
    '1969-12-31T23:59:59Z', 'yesterday', ' 2026-03-29T01:30:00Z']) {
    assert.is(parseTime(bad), undefined, bad);
  }
});

test('hostile state files are refused with the line and the fix', () => {
  const p = (s: string | Buffer) => err(() => parseScheduleState(typeof s === 'string' ? Buffer.from(s) : s, 'state/s'));
  assert.match(p('fired: 2026-01-01T00:00:00Z\nowner: root\n').message, /^state\/s:2: unknown header 'owner'; known: since, fired, next, last-id/);
  assert.match(p('fired: yesterday\n').message, /^state\/s:1: bad time 'yesterday'; write RFC 3339/);
  assert.match(p('next: 2026-02-30T00:00:00Z\n').message, /^state\/s:1: bad time/);
  assert.match(p('last-success: 1\n').message, /^state\/s:1: bad time '1'/);       // Date.parse says 2001
  assert.match(p(Buffer.from('fired: 2026-01-01T00:00:00Z\0\n')).message, /^state\/s:1: NUL byte/);
  assert.match(p('last-id: ../../etc/passwd\n').message, /^state\/s:1: bad last-id/);
  assert.match(p('fired: 2026-01-01T00:00:00Z\nfired: 2026-01-02T00:00:00Z\n').message, /duplicate header 'fired'/);
  assert.match(p('fired: 2026-01-01T00:00:00Z\n\n#!/bin/sh\nrm -rf /\n').message, /^state\/s:3: text after the headers/);
  assert.match(p('fired: 2026-01-01T00:00:00Z\r\n').message, /carriage return/);
});

// ---- reading and writing state/NAME ----

let root: string | undefined;
test.after.each(() => { if (root) fs.rmSync(root, { recursive: true, force: true }); root = undefined; });

function spool(): SpoolPaths {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'schedstate-'));
  const sp = new SpoolPaths(root);
  fs.mkdirSync(sp.state, { recursive: true });
  fs.mkdirSync(sp.tmp, { recursive: true });
  return sp;
}

test('writeScheduleState and readScheduleStateFound round-trip through state/NAME', async () => {
  const sp = spool();
  assert.equal((await readScheduleStateFound(sp, 'hello')).st, emptyState());   // no file: a new schedule
  const st = state({ fired: new Date('2026-06-15T10:00:00Z'), lastStatus: 'exited 0' });
  fs.mkdirSync(sp.schedules, { recursive: true });
  fs.writeFileSync(sp.schedule('hello'), 'platform: p\nschedule: @daily\n\ntrue\n');
  assert.is(await writeScheduleState(sp, 'hello', st), true);
  assert.equal((await readScheduleStateFound(sp, 'hello')).st, st);
  assert.is(fs.readFileSync(sp.scheduleState('hello'), 'utf8'), 'fired: 2026-06-15T10:00:00.000Z\nlast-status: exited 0\n');
  assert.equal(fs.readdirSync(sp.tmp), []);
});

test('state/NAME is not written for a schedule that is gone (bctl unschedule removed it meanwhile): the write is undone', async () => {
  const sp = spool();
  let undone = false;
  assert.is(await writeScheduleState(sp, 'gone', state({ fired: new Date('2026-06-15T10:00:00Z') }), async () => { undone = true; }), false);
  assert.ok(undone);
  assert.not.ok(fs.existsSync(sp.scheduleState('gone')));
});

test('a schedule missing for a moment (an editor saving by renaming the old file away) keeps its state: the writer waits GONE_MS before it counts it removed', async () => {
  const sp = spool();
  fs.mkdirSync(sp.schedules, { recursive: true });
  const text = 'platform: p\nschedule: @daily\n\ntrue\n';
  fs.writeFileSync(sp.schedule('edited'), text);
  fs.renameSync(sp.schedule('edited'), `${sp.schedule('edited')}~`);   // the editor's backup
  setTimeout(() => fs.writeFileSync(sp.schedule('edited'), text), 50);   // and its new file, well within GONE_MS
  let undone = false;
  const st = state({ fired: new Date('2026-06-15T10:00:00Z') });
  assert.is(await writeScheduleState(sp, 'edited', st, async () => { undone = true; }), true);
  assert.not.ok(undone);
  assert.equal((await readScheduleStateFound(sp, 'edited')).st, st);
});

test('a broken state file reads as empty: one that does not parse is found unparsed (spoold holds the schedule), one it does not read broken', async () => {
  const sp = spool();
  const f = sp.scheduleState('x');
  for (const bad of ['owner: root\n', 'fired: yesterday\n', 'fired: 2026-01-01T00:00:00Z\0\n']) {
    fs.writeFileSync(f, bad);
    assert.equal((await readScheduleStateFound(sp, 'x')).st, emptyState());
    const r = await readScheduleStateFound(sp, 'x');
    assert.is(r.found, 'unparsed');
    assert.match(r.why!, /^state\/x:1: /);
  }
  fs.writeFileSync(f, 'x'.repeat(2 << 20));
  assert.equal(await readScheduleStateFound(sp, 'x'), { st: emptyState(), found: 'broken' });
  fs.rmSync(f);
  fs.symlinkSync('/etc/passwd', f);   // not followed
  assert.equal(await readScheduleStateFound(sp, 'x'), { st: emptyState(), found: 'broken' });
  fs.rmSync(f);
  fs.mkdirSync(f);
  assert.equal(await readScheduleStateFound(sp, 'x'), { st: emptyState(), found: 'broken' });
});

test.run();
