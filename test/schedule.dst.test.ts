// Daylight saving time and nextRun: the rules at the top of src/spool/schedule.ts.
// Fixed dates only; the clock is never read. Times are asserted in UTC with the
// local time in a comment. Tests marked "cron-parser 5.10.6:" fail when
// nextRun just returns CronExpressionParser.parse(expr, { tz, currentDate }).next().
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nextRun } from '../src/spool/schedule.js';

const BERLIN = 'Europe/Berlin';

function next(expr: string, tz: string, after: string | Date): string {
  const d = nextRun(expr, tz, typeof after === 'string' ? new Date(after) : after);
  if (!d) throw new Error('no next run');
  return d.toISOString();
}

/** Every run in [from, to), by iterating nextRun from each run, checking that it always moves forward. */
function runs(expr: string, tz: string, from: string, to: string): Date[] {
  const out: Date[] = [];
  let t = new Date(from);
  for (;;) {
    const n = nextRun(expr, tz, t);
    assert.ok(n, 'a run');
    assert.ok(n!.getTime() > t.getTime(), `${expr} ${tz}: ${n!.toISOString()} is not after ${t.toISOString()}`);
    if (n!.getTime() >= new Date(to).getTime()) return out;
    out.push(n!);
    t = n!;
  }
}

const dayFmt = new Map<string, Intl.DateTimeFormat>();
function localDay(d: Date, tz: string): string {
  let f = dayFmt.get(tz);
  if (!f) { f = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }); dayFmt.set(tz, f); }
  return f.format(d);
}

/** Runs per local day over [from, to). */
function perDay(expr: string, tz: string, from: string, to: string): Record<string, number> {
  const c: Record<string, number> = {};
  for (const r of runs(expr, tz, from, to)) c[localDay(r, tz)] = (c[localDay(r, tz)] ?? 0) + 1;
  return c;
}

function ones(days: string[]): Record<string, number> {
  return Object.fromEntries(days.map((d) => [d, 1]));
}

const DAILY = ['30 2 * * *', '0 2 * * *', '0 3 * * *', '15 1 * * *', '@daily'];

// ---- Europe/Berlin: spring forward 2026-03-29 02:00 CET -> 03:00 CEST ------------

test('Berlin spring week: each daily schedule fires exactly once on every local day', () => {
  const days = ['2026-03-25', '2026-03-26', '2026-03-27', '2026-03-28', '2026-03-29', '2026-03-30', '2026-03-31', '2026-04-01'];
  // from 2026-03-25 00:00 CET (minus a millisecond, so a run at midnight counts) to 2026-04-02 00:00 CEST
  for (const e of DAILY) assert.equal(perDay(e, BERLIN, '2026-03-24T22:59:59.999Z', '2026-04-01T22:00:00Z'), ones(days), e);
});

test('0 2 * * * fires once on the day 02:00 does not exist, at 03:00 CEST, the first minute after the gap', () => {
  assert.is(next('0 2 * * *', BERLIN, '2026-03-28T12:00:00Z'), '2026-03-29T01:00:00.000Z');   // 03:00 CEST
  assert.is(next('0 2 * * *', BERLIN, '2026-03-29T01:00:00Z'), '2026-03-30T00:00:00.000Z');   // then 02:00 CEST
});

test('30 2 * * * on the gap day fires at 03:00 CEST too, not 03:30 (cron-parser 5.10.6: 03:30)', () => {
  assert.is(next('30 2 * * *', BERLIN, '2026-03-28T12:00:00Z'), '2026-03-29T01:00:00.000Z');  // 03:00 CEST
  assert.is(next('59 2 * * *', BERLIN, '2026-03-28T12:00:00Z'), '2026-03-29T01:00:00.000Z');
  assert.is(next('30 2 * * *', BERLIN, '2026-03-29T01:00:00Z'), '2026-03-30T00:30:00.000Z');  // then 02:30 CEST
});

test('several due times in the gap fire once, and a due time right after the gap is the same run', () => {
  assert.equal(runs('*/15 2 * * *', BERLIN, '2026-03-28T23:00:00Z', '2026-03-30T00:20:00Z').map((d) => d.toISOString()),
    ['2026-03-29T01:00:00.000Z', '2026-03-30T00:00:00.000Z', '2026-03-30T00:15:00.000Z']);
  assert.equal(runs('0 2,3 * * *', BERLIN, '2026-03-28T23:00:00Z', '2026-03-30T02:00:00Z').map((d) => d.toISOString()),
    ['2026-03-29T01:00:00.000Z', '2026-03-30T00:00:00.000Z', '2026-03-30T01:00:00.000Z']);
  // a due time after the gap keeps its own run
  assert.equal(runs('30 2,3 * * *', BERLIN, '2026-03-28T23:00:00Z', '2026-03-29T02:00:00Z').map((d) => d.toISOString()),
    ['2026-03-29T01:00:00.000Z', '2026-03-29T01:30:00.000Z']);
});

test('an hour field of * skips the hour that does not exist: it follows elapsed time', () => {
  assert.equal(runs('0 * * * *', BERLIN, '2026-03-28T23:30:00Z', '2026-03-29T02:30:00Z').map((d) => d.toISOString()),
    ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']);   // 01:00 CET, 03:00 CEST, 04:00 CEST
  assert.is(next('30 * * * *', BERLIN, '2026-03-29T00:30:00Z'), '2026-03-29T01:30:00.000Z');  // 01:30 CET -> 03:30 CEST, an hour later
  assert.is(runs('@hourly', BERLIN, '2026-03-28T22:59:00Z', '2026-03-29T21:59:00Z').length, 23);  // 23 hours in that local day
});

test('nextRun from the edges of the gap and from a time someone meant as 02:30 local', () => {
  // the last instant before the gap: 01:59:59.999 CET
  assert.is(next('30 2 * * *', BERLIN, '2026-03-29T00:59:59.999Z'), '2026-03-29T01:00:00.000Z');
  assert.is(next('0 * * * *', BERLIN, '2026-03-29T00:59:59.999Z'), '2026-03-29T01:00:00.000Z');
  // the first instant after it, 03:00 CEST: the gap's run is at that very instant, so not again
  assert.is(next('30 2 * * *', BERLIN, '2026-03-29T01:00:00Z'), '2026-03-30T00:30:00.000Z');
  // "02:30 +01:00", a wall time that does not exist, is the instant 03:30 CEST
  assert.is(next('0 3 * * *', BERLIN, '2026-03-29T02:30:00+01:00'), '2026-03-30T01:00:00.000Z');
  assert.is(next('45 3 * * *', BERLIN, '2026-03-29T02:30:00+01:00'), '2026-03-29T01:45:00.000Z');
});

test('@weekly on the spring Sunday fires at its midnight, which exists', () => {
  assert.is(next('@weekly', BERLIN, '2026-03-25T00:00:00Z'), '2026-03-28T23:00:00.000Z');   // Sun 00:00 CET
  assert.is(next('@weekly', BERLIN, '2026-03-28T23:00:00Z'), '2026-04-04T22:00:00.000Z');   // Sun 00:00 CEST
});

// ---- Europe/Berlin: fall back 2026-10-25 03:00 CEST -> 02:00 CET (02:xx twice) ----

test('Berlin fall week: each daily schedule fires exactly once on every local day', () => {
  const days = ['2026-10-21', '2026-10-22', '2026-10-23', '2026-10-24', '2026-10-25', '2026-10-26', '2026-10-27', '2026-10-28'];
  for (const e of DAILY) assert.equal(perDay(e, BERLIN, '2026-10-20T21:59:59.999Z', '2026-10-28T23:00:00Z'), ones(days), e);
});

test('an explicit hour in the repeated hour fires once, at its first occurrence', () => {
  assert.is(next('30 2 * * *', BERLIN, '2026-10-24T12:00:00Z'), '2026-10-25T00:30:00.000Z');   // 02:30 CEST
  assert.is(next('30 2 * * *', BERLIN, '2026-10-25T00:30:00Z'), '2026-10-26T01:30:00.000Z');   // not 02:30 CET, but tomorrow
  assert.equal(runs('*/30 1-3 * * *', BERLIN, '2026-10-24T22:00:00Z', '2026-10-25T03:00:00Z').map((d) => d.toISOString()),
    ['2026-10-24T23:00:00.000Z', '2026-10-24T23:30:00.000Z', '2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z',  // 01:00-02:30 CEST
      '2026-10-25T02:00:00.000Z', '2026-10-25T02:30:00.000Z']);                                                          // 03:00, 03:30 CET
});

test('asked from inside the second pass, an explicit hour does not fire again (cron-parser 5.10.6: 02:30 CET again)', () => {
  // spoold was down at 02:30 CEST and fired late at 02:10 CET: the next run is tomorrow
  assert.is(next('30 2 * * *', BERLIN, '2026-10-25T01:10:00Z'), '2026-10-26T01:30:00.000Z');
  assert.is(next('*/30 1-3 * * *', BERLIN, '2026-10-25T01:10:00Z'), '2026-10-25T02:00:00.000Z');  // 03:00 CET, not 02:30 CET
  assert.is(next('30 2 * * 0', BERLIN, '2026-10-25T01:10:00Z'), '2026-11-01T01:30:00.000Z');
});

test('an hour field of * fires in both repeated hours', () => {
  assert.equal(runs('0 * * * *', BERLIN, '2026-10-24T23:30:00Z', '2026-10-25T02:30:00Z').map((d) => d.toISOString()),
    ['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z']);  // 02:00 CEST, 02:00 CET, 03:00 CET
  assert.is(next('30 * * * *', BERLIN, '2026-10-25T00:45:00Z'), '2026-10-25T01:30:00.000Z');  // 02:45 CEST -> 02:30 CET
  assert.is(runs('@hourly', BERLIN, '2026-10-24T21:59:00Z', '2026-10-25T22:59:00Z').length, 25);  // 25 hours in that local day
});

// ---- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST ----

test('America/New_York: gap and repeated hour', () => {
  const NY = 'America/New_York';
  assert.is(next('30 2 * * *', NY, '2026-03-07T12:00:00Z'), '2026-03-08T07:00:00.000Z');   // 03:00 EDT
  assert.is(next('30 2 * * *', NY, '2026-03-08T07:00:00Z'), '2026-03-09T06:30:00.000Z');   // 02:30 EDT
  assert.is(next('30 1 * * *', NY, '2026-10-31T12:00:00Z'), '2026-11-01T05:30:00.000Z');   // 01:30 EDT
  assert.is(next('30 1 * * *', NY, '2026-11-01T05:30:00Z'), '2026-11-02T06:30:00.000Z');   // not 01:30 EST
  assert.is(next('30 1 * * *', NY, '2026-11-01T06:10:00Z'), '2026-11-02T06:30:00.000Z');   // from 01:10 EST either
  assert.equal(runs('0 * * * *', NY, '2026-11-01T04:30:00Z', '2026-11-01T07:30:00Z').map((d) => d.toISOString()),
    ['2026-11-01T05:00:00.000Z', '2026-11-01T06:00:00.000Z', '2026-11-01T07:00:00.000Z']);   // 01:00 EDT, 01:00 EST, 02:00 EST
  for (const e of DAILY) {
    assert.equal(perDay(e, NY, '2026-03-05T04:59:59.999Z', '2026-03-11T04:00:00Z'), ones(['2026-03-05', '2026-03-06', '2026-03-07', '2026-03-08', '2026-03-09', '2026-03-10']), e);
    assert.equal(perDay(e, NY, '2026-10-29T03:59:59.999Z', '2026-11-04T05:00:00Z'), ones(['2026-10-29', '2026-10-30', '2026-10-31', '2026-11-01', '2026-11-02', '2026-11-03']), e);
  }
});

// ---- Australia/Sydney (southern hemisphere): 2026-04-05 03:00 AEDT -> 02:00 AEST; 2026-10-04 02:00 AEST -> 03:00 AEDT ----

test('Australia/Sydney: fall back in April, spring forward in October', () => {
  const SYD = 'Australia/Sydney';
  assert.is(next('30 2 * * *', SYD, '2026-04-04T00:00:00Z'), '2026-04-04T15:30:00.000Z');   // 02:30 AEDT
  assert.is(next('30 2 * * *', SYD, '2026-04-04T15:30:00Z'), '2026-04-05T16:30:00.000Z');   // not 02:30 AEST the same night
  assert.is(next('30 2 * * *', SYD, '2026-04-04T16:10:00Z'), '2026-04-05T16:30:00.000Z');   // from 02:10 AEST either
  assert.is(next('0 2 * * *', SYD, '2026-10-03T00:00:00Z'), '2026-10-03T16:00:00.000Z');    // 03:00 AEDT
  assert.is(next('0 2 * * *', SYD, '2026-10-03T16:00:00Z'), '2026-10-04T15:00:00.000Z');    // 02:00 AEDT
  assert.is(next('0 * * * *', SYD, '2026-10-03T15:30:00Z'), '2026-10-03T16:00:00.000Z');    // 01:30 AEST -> 03:00 AEDT
  for (const e of DAILY) {
    assert.equal(perDay(e, SYD, '2026-04-01T12:59:59.999Z', '2026-04-07T14:00:00Z'), ones(['2026-04-02', '2026-04-03', '2026-04-04', '2026-04-05', '2026-04-06', '2026-04-07']), e);
    assert.equal(perDay(e, SYD, '2026-10-01T13:59:59.999Z', '2026-10-07T13:00:00Z'), ones(['2026-10-02', '2026-10-03', '2026-10-04', '2026-10-05', '2026-10-06', '2026-10-07']), e);
  }
});

// ---- zones that break cron-parser 5.10.6 outright ----

test('Australia/Lord_Howe 30-minute gap: the day is not skipped (cron-parser 5.10.6: skips to the next day)', () => {
  // 2026-10-04 02:00 +10:30 -> 02:30 +11
  assert.is(next('0 2 * * *', 'Australia/Lord_Howe', '2026-10-02T15:30:00Z'), '2026-10-03T15:30:00.000Z');  // 02:30 +11
  assert.is(next('0 */2 * * *', 'Australia/Lord_Howe', '2026-10-03T13:30:00Z'), '2026-10-03T15:30:00.000Z');  // 02:30, not 04:00
});

// 2026-04-05 02:00 +11 -> 01:30 +10:30 (01:30-01:59 twice)
const LH = 'Australia/Lord_Howe';

test('Australia/Lord_Howe fall back: a fixed hour finds its run (cron-parser 5.10.6: throws "loop limit exceeded")', () => {
  assert.is(next('0 2 * * *', LH, '2026-04-03T15:38:00Z'), '2026-04-04T15:30:00.000Z');   // 02:00 +10:30
  assert.is(next('0 3 * * *', LH, '2026-04-03T16:19:00Z'), '2026-04-04T16:30:00.000Z');
  assert.is(next('0 12 * * 0', LH, '2026-04-02T00:00:00Z'), '2026-04-05T01:30:00.000Z');
});

test('Australia/Lord_Howe fall back: an hourly run is never before `after` (cron-parser 5.10.6: 01:00 +11, 11 minutes back)', () => {
  assert.is(next('0 * * * *', LH, '2026-04-04T14:11:00Z'), '2026-04-04T15:30:00.000Z');   // from 01:11 +11: 02:00 +10:30
  assert.is(next('30 * * * *', LH, '2026-04-04T14:52:00Z'), '2026-04-04T15:00:00.000Z');  // 01:30 +10:30, the repeat
});

test('Australia/Lord_Howe fall back week: each daily schedule fires exactly once on every local day', () => {
  for (const e of DAILY) {
    assert.equal(perDay(e, LH, '2026-04-01T12:59:59.999Z', '2026-04-07T13:30:00Z'), ones(['2026-04-02', '2026-04-03', '2026-04-04', '2026-04-05', '2026-04-06', '2026-04-07']), e);
  }
});

test('a repeated midnight fires at its first occurrence (America/Havana; cron-parser 5.10.6: the second)', () => {
  // 2026-11-01 01:00 CDT -> 00:00 CST: 00:00-00:59 twice
  assert.is(next('@daily', 'America/Havana', '2026-10-31T05:00:00Z'), '2026-11-01T04:00:00.000Z');  // 00:00 CDT
  assert.is(next('@daily', 'America/Havana', '2026-11-01T04:00:00Z'), '2026-11-02T05:00:00.000Z');
});

test('a missing midnight fires @daily at the first minute of the day (America/Santiago)', () => {
  // 2026-09-06 00:00 -04 -> 01:00 -03
  assert.is(next('@daily', 'America/Santiago', '2026-09-05T12:00:00Z'), '2026-09-06T04:00:00.000Z');  // 01:00 -03
  assert.is(next('30 0 * * *', 'America/Santiago', '2026-09-05T12:00:00Z'), '2026-09-06T04:00:00.000Z');
});

test('a repeated 23:00 before midnight fires once (Africa/Cairo; cron-parser 5.10.6: twice)', () => {
  // 2026-10-30 00:00 EEST -> 2026-10-29 23:00 EET: 23:00-23:59 on the 29th twice
  assert.is(next('45 23 * * *', 'Africa/Cairo', '2026-10-29T20:30:00Z'), '2026-10-29T20:45:00.000Z');  // 23:45 EEST
  assert.is(next('45 23 * * *', 'Africa/Cairo', '2026-10-29T21:10:00Z'), '2026-10-30T21:45:00.000Z');  // not 23:45 EET
});

test.run();
