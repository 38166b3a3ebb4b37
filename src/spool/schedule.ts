// schedule.ts: when a schedule is due. The only importer of cron-parser.
//
// WHEN A SCHEDULE FIRES (spoold.8, builder-spool.5 and bctl.1 copy this block)
//
//   schedule: is @hourly (minute 0 of every hour), @daily (00:00), @weekly
//   (Sunday 00:00), never, or five cron fields: minute hour day-of-month month
//   day-of-week. Fields take numbers, lists (1,15), ranges (1-5), steps (*/15,
//   8-18/2), month and day names (JAN, MON), L (last day of the month; 5L the
//   last Friday) and N#M (1#2 the second Monday); 0 and 7 are both Sunday.
//   When both day fields are restricted (anything but * or ?, so */2 counts),
//   a day that matches either is due: 0 0 13 * 5 runs on the 13th and on
//   every Friday.
//   Times are wall-clock times in the schedule's tz: (an IANA zone such as
//   Europe/Berlin; UTC when absent), at minute resolution.
//
//   1. A new schedule (one that has never fired) fires at once, unless it is 'never'.
//   2. After each firing the schedule is next due at the first due time
//      strictly after that firing. bctl reschedule NAME TIME sets next:, which
//      replaces that one due time; the period resumes after it fires.
//      A never schedule fires only when next: is set or on bctl execute.
//   3. Missed runs fire once. When due times pass while spoold is down, the
//      schedule fires once when spoold starts, however many were missed, and
//      its period then counts from that firing: no catch-up burst.
//   4. Clocks spring forward (a local hour does not exist: 02:00-02:59 in
//      Europe/Berlin on 2026-03-29):
//      - with a fixed hour field (anything but every hour), a due time in the
//        gap fires once, at the first minute after the gap: 0 2 * * * and
//        30 2 * * * both fire at 03:00 CEST that day, and */15 2 * * * fires
//        once, at 03:00. (When 03:00 is itself due, that is the same run.)
//      - with an hour field of * (every hour, as in @hourly or 30 * * * *),
//        times in the gap are skipped: the schedule follows elapsed time
//        (0 * * * * fires at 01:00 CET, then at 03:00 CEST).
//   5. Clocks fall back (a local hour happens twice: 02:00-02:59 in
//      Europe/Berlin on 2026-10-25):
//      - with a fixed hour field, a due time in the repeated hour fires once,
//        at its first occurrence (30 2 * * * fires at 02:30 CEST, not again at
//        02:30 CET), even when spoold was down during the first;
//      - with an hour field of *, it fires in both (0 * * * * fires at
//        02:00 CEST and again an hour later at 02:00 CET).
//   The same holds wherever and by however much a zone changes its clocks
//   (30 minutes on Lord Howe Island; at midnight in America/Santiago, where
//   @daily runs at 01:00 on the day midnight does not exist).
//   So a daily schedule fires exactly once on every local day, also on the
//   days the clocks change; an hourly one fires once per hour that passes.
//   A system clock set back (it was ahead when a firing was made, as on a
//   machine that booted with a wrong clock): a firing recorded more than 3
//   hours after the present is recorded again as made now (spoold rewrites
//   fired:, with a warning), so the schedule is next due at its first due
//   time after that instead of waiting for the clock to reach the old firing.
//   A smaller step back (an NTP correction) keeps the firing, so that no
//   period runs twice.
//
// How: cron-parser only parses and validates; its own next() is not used.
// cron-parser 5.10.6 mis-steps around DST transitions (see test/schedule.dst.test.ts:
// it throws "loop limit exceeded" or goes back in time across the Lord Howe
// fall-back, skips a day across the Lord Howe 30-minute gap, fires an explicit
// hour twice when asked from inside the repeated hour, picks the second pass
// of a repeated midnight), and parse + next() took about 8 ms for 0 0 29 2 * here. So we
// search the wall clock ourselves, on a calendar without DST (UTC arithmetic),
// and map each matching wall time to real instants with Intl (the tz database
// Node carries): none in a gap, two in a repeated hour, then apply the rules.
// The clock is never read here: every function takes the time it reasons about.
//
// Fails: checkSchedule throws a SpoolError naming the field and what is
// accepted. nextRun throws the same for an expression checkSchedule refuses.
// BUGS: two offset changes less than a day apart (none in the tz database for
// the years this runs in) are seen as one; a zone's rules are those of the
// ICU data of the running Node.

import { createRequire } from 'node:module';
import type { CronExpressionParser as CronParser } from 'cron-parser';
import { SpoolError } from './errors.js';

// cron-parser and luxon take about 90 ms to load, most of what `bctl submit`
// would spend beyond node's own start (scripts/bench.mjs W1). Load them on the
// first schedule check, so that programs that never read a schedule start fast.
let cronParser: typeof CronParser | undefined;
function cron(): typeof CronParser {
  cronParser ??= (createRequire(import.meta.url)('cron-parser') as typeof import('cron-parser')).CronExpressionParser;
  return cronParser;
}

export const PERIODS = ['hourly', 'daily', 'weekly', 'never'] as const;
export type Period = (typeof PERIODS)[number];

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const MACROS: Record<string, string> = { '@hourly': '0 * * * *', '@daily': '0 0 * * *', '@weekly': '0 0 * * 0' };
const FIELDS = ['minute', 'hour', 'day-of-month', 'month', 'day-of-week'] as const;
const HINT = "write @hourly, @daily, @weekly, never, or 5 cron fields 'minute hour day-of-month month day-of-week' like '30 2 * * *'";
const MONTH_NAMES = /\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\b/gi;
const DAY_NAMES = /\b(sun|mon|tue|wed|thu|fri|sat)\b/gi;
// What each field may hold once names are replaced. No H: cron-parser reads it
// as a hash with a random seed, so the due time would change on every parse.
const FIELD_CHARS = [/^[0-9*,/-]+$/, /^[0-9*,/-]+$/, /^[0-9*,/?L-]+$/, /^[0-9*,/-]+$/, /^[0-9*,/?L#-]+$/];
const FIELD_ACCEPTS = [
  'numbers 0-59, *, lists, ranges and steps',
  'numbers 0-23, *, lists, ranges and steps',
  'numbers 1-31, *, ?, L, lists, ranges and steps',
  'numbers 1-12 or JAN-DEC, *, lists, ranges and steps',
  'numbers 0-7 or SUN-SAT, *, ?, 5L (last Friday), 1#2 (second Monday), lists, ranges and steps',
];

export function isValidTz(tz: string): boolean {
  if (tz === '') return false;
  try { formatter(tz); return true; } catch { return false; }
}

/** A checked expression, ready to match wall-clock days and times. */
interface Compiled {
  minutes: number[];        // sorted
  hours: number[];          // sorted
  everyHour: boolean;       // the hour field covers all 24 hours: DST rules follow elapsed time
  months: boolean[];        // index 1-12
  dom: Set<number>; domLast: boolean; domRestricted: boolean;
  dow: Set<number>; dowLast: number[]; dowNth: number; dowRestricted: boolean;
}

const compiled = new Map<string, Compiled>();

type Where = { path?: string; line?: number };

/** "bad schedule 'EXPR': WHY", the form every refusal takes. */
function bad(expr: string, why: string, where: Where): SpoolError {
  return new SpoolError('SPOOL_BAD_VALUE', `bad schedule ${quote(expr)}: ${why}`, { ...where, hint: HINT });
}

function quote(s: string): string {
  return `'${s.length > 60 ? `${s.slice(0, 60)}...` : s}'`;
}

/** Parse and check `expr` (not never); the error names the field that is wrong. */
function compile(expr: string, where: Where = {}): Compiled {
  const hit = compiled.get(expr);
  if (hit) return hit;
  const text = MACROS[expr] ?? expr;
  if (text.trim() === '') throw bad(expr, 'it is empty', where);
  if (text.trim().startsWith('@')) throw bad(expr, 'unknown name (known: @hourly, @daily, @weekly, never)', where);
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw bad(expr, `${fields.length} field${fields.length === 1 ? '' : 's'}, a cron schedule has 5 (${FIELDS.join(' ')})${fields.length === 6 ? ', and no seconds field' : ''}`, where);
  }
  fields.forEach((f, i) => {
    const plain = i === 3 ? f.replace(MONTH_NAMES, '1') : i === 4 ? f.replace(DAY_NAMES, '1') : f;
    if (!FIELD_CHARS[i]!.test(plain)) {
      throw bad(expr, `${FIELDS[i]} field ${quote(f)}: it takes ${FIELD_ACCEPTS[i]}`, where);
    }
  });
  // cron-parser's words for a bad field, in ours.
  const cronWhy = (m: string) => m
    .replace(/^Constraint error, got value (\d+) expected range (\d+)-(\d+)$/, '$1 is outside $2-$3')
    .replace(/^Constraint error, got range (\S+) expected range (\d+)-(\d+)$/, 'not a value or range within $2-$3')
    .replace(/^Constraint error, cannot repeat at every 0 time\.$/, 'a step of 0 repeats nothing')
    .replace(/^Constraint error, /, '');
  let fc;
  try {
    fc = cron().parse(fields.join(' '), { tz: 'UTC' }).fields;
  } catch (e) {
    // Say which field: parse each alone (a parse costs about 0.3 ms, so only on error).
    fields.forEach((f, i) => {
      try {
        cron().parse(fields.map((g, j) => (j === i ? g : '*')).join(' '), { tz: 'UTC' });
      } catch (e2) {
        throw bad(expr, `${FIELDS[i]} field ${quote(f)}: ${cronWhy((e2 as Error).message)}`, where);
      }
    });
    throw bad(expr, `it never fires (${(e as Error).message}: no month it names has that day)`, where);
  }
  const nums = (v: ReadonlyArray<number | string>) => v.filter((x): x is number => typeof x === 'number');
  const months: boolean[] = new Array(13).fill(false);
  for (const m of nums(fc.month.values)) months[m] = true;
  const c: Compiled = {
    minutes: [...nums(fc.minute.values)].sort((a, b) => a - b),
    hours: [...nums(fc.hour.values)].sort((a, b) => a - b),
    everyHour: new Set(nums(fc.hour.values)).size === 24,
    months,
    dom: new Set(nums(fc.dayOfMonth.values)),
    domLast: fc.dayOfMonth.hasLastChar,
    domRestricted: !fc.dayOfMonth.isWildcard,
    dow: new Set(nums(fc.dayOfWeek.values).map((d) => d % 7)),
    // cron-parser reads the weekday of "5L" from its first character; so do we
    dowLast: fc.dayOfWeek.values.filter((x) => typeof x === 'string').map((x) => Number.parseInt(String(x).charAt(0), 10) % 7),
    dowNth: fc.dayOfWeek.nthDay,
    dowRestricted: !fc.dayOfWeek.isWildcard,
  };
  if (compiled.size >= 1000) compiled.clear();
  compiled.set(expr, c);
  return c;
}

/** cron-parser's day rule (CronExpression #matchDayOfMonth), on a calendar date. */
function dayMatches(c: Compiled, y: number, m0: number, d: number): boolean {
  const last = new Date(Date.UTC(y, m0 + 1, 0)).getUTCDate();
  const wd = new Date(Date.UTC(y, m0, d)).getUTCDay();
  const byDom = c.dom.has(d) || (c.domLast && d === last);
  const byDow = (c.dow.has(wd) && (c.dowNth <= 0 || Math.ceil(d / 7) === c.dowNth)) ||
    (c.dowLast.length > 0 && d + 7 > last && c.dowLast.includes(wd));
  if (c.domRestricted && c.dowRestricted) return byDom || byDow;
  if (!c.dowRestricted) return byDom;
  return byDow;
}

// The search gives up after 400 years: the Gregorian calendar repeats then,
// so an expression that has not matched by then never will.
const MAX_YEARS = 400;

/** The first matching wall time at or after `from`, on the DST-free wall calendar (UTC arithmetic). */
function nextWall(c: Compiled, from: number, expr: string): number {
  const start = new Date(Math.ceil(from / MIN) * MIN);
  let y = start.getUTCFullYear(), m0 = start.getUTCMonth(), d = start.getUTCDate();
  let h = start.getUTCHours(), mi = start.getUTCMinutes();
  const endYear = y + MAX_YEARS;
  while (y <= endYear) {
    if (!c.months[m0 + 1]) {
      m0++; if (m0 === 12) { m0 = 0; y++; }
      d = 1; h = 0; mi = 0;
      continue;
    }
    if (dayMatches(c, y, m0, d)) {
      for (const H of c.hours) {
        if (H < h) continue;
        for (const M of c.minutes) {
          if (H === h && M < mi) continue;
          return Date.UTC(y, m0, d, H, M);
        }
      }
    }
    const next = new Date(Date.UTC(y, m0, d + 1));
    y = next.getUTCFullYear(); m0 = next.getUTCMonth(); d = next.getUTCDate(); h = 0; mi = 0;
  }
  throw bad(expr, 'it never fires', {});
}

// Intl is the one source of time zone rules; formatters are costly to build, so keep one per zone.
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23',
      year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(tz, f);
  }
  return f;
}

/** The zone's UTC offset in ms at instant t (wall = t + offset). */
function offsetAt(tz: string, t: number): number {
  const ms = ((t % 1000) + 1000) % 1000;
  const p: Record<string, string> = {};
  for (const x of formatter(tz).formatToParts(new Date(t - ms))) p[x.type] = x.value;
  // setUTCFullYear, not Date.UTC, which reads years 0-99 as 1900-1999
  const wall = new Date(0);
  wall.setUTCFullYear(Number(p.year), Number(p.month) - 1, Number(p.day));
  wall.setUTCHours(Number(p.hour) % 24, Number(p.minute), Number(p.second), 0);
  return wall.getTime() - (t - ms);
}

type Offsets = (t: number) => number;

/** offsetAt for one zone, remembering what it was asked (one nextRun asks the same instants often). */
function offsets(tz: string): Offsets {
  // UTC, the default zone, has no rules to look up
  if (/^(Etc\/)?(UTC|UCT|GMT|Zulu|Universal)$/i.test(formatter(tz).resolvedOptions().timeZone)) return () => 0;
  const memo = new Map<number, number>();
  return (t) => {
    let o = memo.get(t);
    if (o === undefined) { o = offsetAt(tz, t); memo.set(t, o); }
    return o;
  };
}

/** The offsets in force around wall time w: before and after any change near it. */
function around(off: Offsets, w: number): [number, number] {
  // As Temporal does, a day away from w; rounded out to whole hours so that
  // the wall times of one hour share the two lookups.
  return [off(Math.floor((w - DAY) / HOUR) * HOUR), off(Math.ceil((w + DAY) / HOUR) * HOUR)];
}

/** The instants whose wall-clock time is w: none in a gap, two in a repeated hour. */
function instantsOf(off: Offsets, w: number): number[] {
  const [before, after] = around(off, w);
  const cands = before === after ? [w - before] : [w - before, w - after].sort((a, b) => a - b);
  return cands.filter((t) => t + off(t) === w);
}

/** The first instant after the gap that swallows wall time w (the moment the clocks jumped). */
function gapEnd(off: Offsets, w: number): number {
  const [before, after] = around(off, w);
  let lo = w - after;    // still under the old offset, or w would exist
  let hi = w - before;   // already under the new one
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (off(mid) === before) lo = mid; else hi = mid;
  }
  return hi;
}

/** The instants at which wall time w fires, by rules 4 and 5 above. */
function firesOf(c: Compiled, off: Offsets, w: number): number[] {
  const inst = instantsOf(off, w);
  if (inst.length === 0) return c.everyHour ? [] : [gapEnd(off, w)];
  return c.everyHour ? inst : inst.slice(0, 1);
}

/** Throws a SpoolError naming the problem when expr or tz is not accepted. */
export function checkSchedule(expr: string, tz = 'UTC', where: Where = {}): void {
  if (!isValidTz(tz)) {
    throw new SpoolError('SPOOL_BAD_VALUE', `unknown time zone ${quote(tz)}`, { ...where, hint: 'use an IANA zone such as UTC or Europe/Berlin' });
  }
  if (expr === 'never') return;
  const c = compile(expr, where);
  try {
    nextWall(c, Date.UTC(2000, 0, 1), expr);
  } catch (e) {
    if (e instanceof SpoolError) throw bad(expr, 'it never fires', where);
    throw e;
  }
}

/**
 * The first time strictly after `after` at which the schedule is due, by the
 * rules at the top of this file; undefined for never. Throws a SpoolError for an
 * expression or zone checkSchedule refuses.
 */
export function nextRun(expr: string, tz: string, after: Date): Date | undefined {
  if (expr === 'never') return undefined;
  if (!isValidTz(tz)) throw new SpoolError('SPOOL_BAD_VALUE', `unknown time zone ${quote(tz)}`, { hint: 'use an IANA zone such as UTC or Europe/Berlin' });
  const c = compile(expr);
  const a = after.getTime();
  if (Number.isNaN(a)) throw new Error('internal error: nextRun of an invalid Date');
  const off = offsets(tz);
  // No wall time below this can fire after `a`: the lowest offset in force
  // soon after `a` bounds how far back a repeated hour reaches.
  let w = nextWall(c, a + Math.min(off(a), off(a + DAY), off(a + 2 * DAY)), expr);
  let best: number | undefined;
  let reach = 0;   // the highest offset near best: a wall time w fires no earlier than w - reach
  for (let i = 0; i < 100_000; i++) {
    if (best !== undefined && w - reach >= best) break;
    for (const t of firesOf(c, off, w)) {
      if (t > a && (best === undefined || t < best)) {
        best = t;
        const o = [off(t - DAY), off(t), off(t + DAY)];
        // No offset change within a day of best: every later wall time fires later.
        if (o[0] === o[1] && o[1] === o[2]) return new Date(best);
        reach = Math.max(...o);
      }
    }
    w = nextWall(c, w + MIN, expr);
  }
  if (best === undefined) throw new Error(`internal error: no run found for ${quote(expr)} in ${tz}`);
  return new Date(best);
}

export function periodToSchedule(p: Period): string {
  return p === 'never' ? 'never' : `@${p}`;
}
