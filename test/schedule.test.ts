// schedule.ts: what a schedule expression accepts, and nextRun away from DST
// (schedule.dst.test.ts has the daylight saving rules). Fixed dates only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkSchedule, isValidTz, nextRun, periodToSchedule, PERIODS } from '../src/spool/schedule.js';
import { parseSchedule } from '../src/spool/job.js';
import { SpoolError } from '../src/spool/errors.js';

function err(f: () => unknown): SpoolError {
  try { f(); } catch (e) { if (e instanceof SpoolError) return e; throw e; }
  throw new Error('expected a SpoolError');
}

function next(expr: string, tz: string, after: string): string {
  const d = nextRun(expr, tz, new Date(after));
  if (!d) throw new Error('no next run');
  return d.toISOString();
}

// ---- checkSchedule ----

test('checkSchedule refuses what is not a 5-field schedule, naming what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /^bad schedule '': it is empty; write @hourly/],
    ['   ', /^bad schedule '   ': it is empty/],
    ['* * *', /^bad schedule '\* \* \*': 3 fields, a cron schedule has 5 \(minute hour day-of-month month day-of-week\)/],
    ['0 0 * *', /^bad schedule '0 0 \* \*': 4 fields, a cron schedule has 5/],
    ['0 0 0 * * *', /: 6 fields, a cron schedule has 5 .*, and no seconds field/],
    ['0 0 0 * * * *', /: 7 fields/],
    ['@fortnightly', /^bad schedule '@fortnightly': unknown name \(known: @hourly, @daily, @weekly, never\)/],
    ['@monthly', /^bad schedule '@monthly': unknown name/],
    ['daily', /^bad schedule 'daily': 1 field, a cron schedule has 5/],
  ];
  for (const [expr, re] of cases) {
    const e = err(() => checkSchedule(expr));
    assert.is(e.code, 'SPOOL_BAD_VALUE', expr);
    assert.match(e.message, re, expr);
  }
});

test('checkSchedule names the field whose value is out of range or malformed', () => {
  const cases: Array<[string, RegExp]> = [
    ['61 * * * *', /^bad schedule '61 \* \* \* \*': minute field '61': 61 is outside 0-59/],
    ['*/0 * * * *', /^bad schedule '\*\/0 \* \* \* \*': minute field '\*\/0': a step of 0 repeats nothing/],
    ['0 24 * * *', /: hour field '24': 24 is outside 0-23/],
    ['0 0 0 * *', /: day-of-month field '0': 0 is outside 1-31/],
    ['0 0 * 13 *', /: month field '13': 13 is outside 1-12/],
    ['0 0 * * 8', /: day-of-week field '8': 8 is outside 0-7/],
    ['5-70 * * * *', /: minute field '5-70': not a value or range within 0-59/],   // cron-parser's words were 'Constraint error, got range ...'
    ['0 0 L-2 * *', /: day-of-month field 'L-2': not a value or range within 1-31/],
    ['1-0 * * * *', /: minute field '1-0'/],
    ['0,,1 * * * *', /: minute field '0,,1'/],
    // H is cron-parser's hash: a random minute on every parse, so never accepted
    ['H * * * *', /: minute field 'H': it takes numbers 0-59, \*, lists, ranges and steps/],
    ['0 0 * H *', /: month field 'H'/],
    ['0 0 * * THU,H', /: day-of-week field 'THU,H'/],
    ['0 0 1W * *', /: day-of-month field '1W'/],
    ['0 0 * * 1#2,3', /: day-of-week field '1#2,3'/],
    ['x 0 * * *', /: minute field 'x'/],
  ];
  for (const [expr, re] of cases) assert.match(err(() => checkSchedule(expr)).message, re, expr);
});

test('checkSchedule refuses a schedule that never fires', () => {
  assert.match(err(() => checkSchedule('0 0 30 2 *')).message, /^bad schedule '0 0 30 2 \*': it never fires \(.*: no month it names has that day\)/);
  assert.match(err(() => checkSchedule('0 0 31 4,6 *')).message, /never fires/);
});

test('checkSchedule refuses an unknown time zone, which cron-parser would accept', () => {
  const e = err(() => checkSchedule('30 2 * * *', 'Mars/Olympus'));
  assert.match(e.message, /^unknown time zone 'Mars\/Olympus'; use an IANA zone such as UTC or Europe\/Berlin/);
  assert.match(err(() => checkSchedule('@daily', '')).message, /unknown time zone ''/);
  assert.match(err(() => checkSchedule('never', '+01:00')).message, /unknown time zone/);
  assert.not.ok(isValidTz('Mars/Olympus'));
  assert.ok(isValidTz('Europe/Berlin'));
  assert.ok(isValidTz('UTC'));
});

test('checkSchedule errors carry the file and line they are given', () => {
  const e = err(() => checkSchedule('61 * * * *', 'UTC', { path: 'schedules/x', line: 3 }));
  assert.is(e.path, 'schedules/x');
  assert.is(e.line, 3);
  assert.match(e.message, /^schedules\/x:3: bad schedule '61 \* \* \* \*': minute field '61'/);
});

test('a schedule file with a bad schedule: names its line, and keeps the reason (job.ts cuts at the first "; ")', () => {
  const e = err(() => parseSchedule('name: x\nplatform: p\nschedule: */0 * * * *\n\necho\n', 'schedules/x', 'x'));
  assert.match(e.message, /^schedules\/x:3: bad schedule '\*\/0 \* \* \* \*': minute field '\*\/0': a step of 0 repeats nothing/);
  const z = err(() => parseSchedule('name: x\nplatform: p\nschedule: @daily\ntz: Mars/Olympus\n\necho\n', 'schedules/x', 'x'));
  assert.match(z.message, /^schedules\/x:4: unknown time zone 'Mars\/Olympus'/);
});

test('checkSchedule accepts the documented forms', () => {
  for (const e of ['@hourly', '@daily', '@weekly', 'never', '30 2 * * *', '*/15 * * * *', '0 8-18/2 * * MON-FRI',
    '0 0 1 JAN *', '0 0 L * *', '0 0 * * 5L', '0 0 * * 1#2', '0 0 13 * 5', '0 0 ? * 1', '0 0 * * 7', '  0 0 * * *  ', '0\t0 * * *']) {
    checkSchedule(e, 'Europe/Berlin');
  }
});

test('nextRun refuses what checkSchedule refuses', () => {
  assert.match(err(() => nextRun('* * *', 'UTC', new Date(0))).message, /^bad schedule '\* \* \*': 3 fields/);
  assert.match(err(() => nextRun('@daily', 'Mars/Olympus', new Date(0))).message, /unknown time zone/);
});

// ---- nextRun ----

test('never has no next run', () => {
  assert.is(nextRun('never', 'UTC', new Date('2026-01-01T00:00:00Z')), undefined);
});

test('@hourly, @daily, @weekly in UTC; strictly after, at minute resolution', () => {
  assert.is(next('@hourly', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-01T01:00:00.000Z');
  assert.is(next('@hourly', 'UTC', '2025-12-31T23:59:59.999Z'), '2026-01-01T00:00:00.000Z');
  assert.is(next('@hourly', 'UTC', '2026-01-01T00:00:00.001Z'), '2026-01-01T01:00:00.000Z');
  assert.is(next('@daily', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-02T00:00:00.000Z');
  assert.is(next('@daily', 'UTC', '2026-02-28T12:00:00Z'), '2026-03-01T00:00:00.000Z');
  assert.is(next('@weekly', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-04T00:00:00.000Z');   // Sunday
  assert.is(next('@weekly', 'UTC', '2026-01-04T00:00:00Z'), '2026-01-11T00:00:00.000Z');
  assert.is(next('* * * * *', 'UTC', '2026-01-01T00:00:30Z'), '2026-01-01T00:01:00.000Z');
  assert.is(next('0 0 1 1 *', 'UTC', '2026-06-01T00:00:00Z'), '2027-01-01T00:00:00.000Z');
});

test('the macros in other zones, including half-hour and 45-minute offsets', () => {
  assert.is(next('@hourly', 'Asia/Kolkata', '2026-01-01T00:00:00Z'), '2026-01-01T00:30:00.000Z');   // +05:30
  assert.is(next('@daily', 'Asia/Kolkata', '2026-01-01T00:00:00Z'), '2026-01-01T18:30:00.000Z');
  assert.is(next('@hourly', 'Asia/Kathmandu', '2026-01-01T00:00:00Z'), '2026-01-01T00:15:00.000Z'); // +05:45
  assert.is(next('@daily', 'Europe/Berlin', '2026-01-01T00:00:00Z'), '2026-01-01T23:00:00.000Z');
  assert.is(next('@daily', 'Europe/Berlin', '2026-07-01T00:00:00Z'), '2026-07-01T22:00:00.000Z');
  assert.is(next('@weekly', 'America/New_York', '2026-01-01T00:00:00Z'), '2026-01-04T05:00:00.000Z');
  assert.is(next('@weekly', 'Pacific/Kiritimati', '2026-01-01T00:00:00Z'), '2026-01-03T10:00:00.000Z'); // +14: Sunday starts Saturday UTC
  assert.is(next('@daily', 'Etc/GMT+12', '2026-01-01T00:00:00Z'), '2026-01-01T12:00:00.000Z');          // -12
});

test('the time zone is the schedule\'s, not the process\'s', () => {
  const saved = process.env.TZ;
  try {
    process.env.TZ = 'Asia/Tokyo';
    assert.is(next('0 9 * * *', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-01T09:00:00.000Z');
    assert.is(next('0 9 * * *', 'Europe/Berlin', '2026-01-01T00:00:00Z'), '2026-01-01T08:00:00.000Z');
  } finally {
    if (saved === undefined) delete process.env.TZ; else process.env.TZ = saved;
  }
});

test('day fields: L, 5L, N#M, names, and day-of-month OR day-of-week', () => {
  assert.is(next('0 0 L * *', 'UTC', '2026-02-10T00:00:00Z'), '2026-02-28T00:00:00.000Z');
  assert.is(next('0 0 L * *', 'UTC', '2028-02-10T00:00:00Z'), '2028-02-29T00:00:00.000Z');
  assert.is(next('0 0 * * 5L', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-30T00:00:00.000Z');   // last Friday of January
  assert.is(next('0 0 * * 1#2', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-12T00:00:00.000Z');  // second Monday
  assert.is(next('0 0 * JAN MON', 'UTC', '2026-01-06T00:00:00Z'), '2026-01-12T00:00:00.000Z');
  assert.is(next('0 0 * * 7', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-04T00:00:00.000Z');    // 7 is Sunday
  // both day fields restricted: the 13th, or any Friday, whichever comes first
  assert.is(next('0 0 13 * 5', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-02T00:00:00.000Z');
  assert.is(next('0 0 13 * 5', 'UTC', '2026-01-10T00:00:00Z'), '2026-01-13T00:00:00.000Z');
  // one restricted: that one alone
  assert.is(next('0 0 13 * *', 'UTC', '2026-01-01T00:00:00Z'), '2026-01-13T00:00:00.000Z');
  assert.is(next('0 0 ? * 5', 'UTC', '2026-01-03T00:00:00Z'), '2026-01-09T00:00:00.000Z');
});

test('sparse expressions: 29 February, across the 2100 non-leap year, and the fifth Monday of February', () => {
  assert.is(next('0 0 29 2 *', 'Europe/Berlin', '2026-03-01T00:00:00Z'), '2028-02-28T23:00:00.000Z');
  assert.is(next('0 0 29 2 *', 'UTC', '2097-03-01T00:00:00Z'), '2104-02-29T00:00:00.000Z');
  assert.is(next('0 0 * 2 1#5', 'UTC', '2016-03-01T00:00:00Z'), '2044-02-29T00:00:00.000Z');
});

test('nextRun does not depend on the clock: the same question gives the same answer', () => {
  const a = nextRun('17 4 * * 3', 'Asia/Tokyo', new Date('2026-05-05T05:05:05Z'))!.toISOString();
  const b = nextRun('17 4 * * 3', 'Asia/Tokyo', new Date('2026-05-05T05:05:05Z'))!.toISOString();
  assert.is(a, '2026-05-05T19:17:00.000Z');   // Wednesday 04:17 JST
  assert.is(b, a);
});

test('periods map to their schedules', () => {
  assert.equal(PERIODS.map(periodToSchedule), ['@hourly', '@daily', '@weekly', 'never']);
  for (const p of PERIODS) checkSchedule(periodToSchedule(p));
});

test.run();
