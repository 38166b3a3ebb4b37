// schedule.ts: when a schedule is due. The only importer of cron-parser.
//
// A schedule expression is @hourly, @daily, @weekly, never, or a 5-field cron
// expression (minute hour day-of-month month day-of-week), read in the
// schedule's time zone (tz:, UTC by default).

import { CronExpressionParser } from 'cron-parser';
import { SpoolError } from './errors.js';

export const PERIODS = ['hourly', 'daily', 'weekly', 'never'] as const;
export type Period = (typeof PERIODS)[number];

export function isValidTz(tz: string): boolean {
  try { new Intl.DateTimeFormat('en-US', { timeZone: tz }); return true; } catch { return false; }
}

/** Throws a SpoolError naming the problem when expr or tz is not accepted. */
export function checkSchedule(expr: string, tz = 'UTC', where: { path?: string; line?: number } = {}): void {
  if (!isValidTz(tz)) {
    throw new SpoolError('SPOOL_BAD_VALUE', `unknown time zone '${tz}'`, { ...where, hint: 'use an IANA zone such as UTC or Europe/Berlin' });
  }
  if (expr === 'never' || expr === '@hourly' || expr === '@daily' || expr === '@weekly') return;
  const fields = expr.trim().split(/\s+/);
  const hint = "write @hourly, @daily, @weekly, never, or 5 cron fields 'min hour dom mon dow' like '30 2 * * *'";
  if (expr.startsWith('@') || fields.length !== 5) {
    throw new SpoolError('SPOOL_BAD_VALUE', `bad schedule '${expr.slice(0, 60)}'`, { ...where, hint });
  }
  try {
    CronExpressionParser.parse(expr, { tz, currentDate: new Date(0) }).next();
  } catch (e) {
    throw new SpoolError('SPOOL_BAD_VALUE', `bad schedule '${expr.slice(0, 60)}': ${(e as Error).message}`, { ...where, hint });
  }
}

/** The first time strictly after `after` at which the schedule is due; undefined for never. */
export function nextRun(expr: string, tz: string, after: Date): Date | undefined {
  if (expr === 'never') return undefined;
  const it = CronExpressionParser.parse(expr, { tz, currentDate: after });
  return it.next().toDate();
}

export function periodToSchedule(p: Period): string {
  return p === 'never' ? 'never' : `@${p}`;
}
