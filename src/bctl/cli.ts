// cli.ts: what every bctl verb shares: the context a verb runs in, usage
// errors, argument checks, reading a script, and people-readable tables.
//
// Argument values (names, periods, durations, times) are checked here with the
// same functions the spool parsers use, and a bad one is a UsageError (exit 2):
// it is the command line that is wrong, not the spool. Failures of the
// operation itself are SpoolErrors (exit 1), printed as their message, which
// names the file and the fix.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SpoolError, errno, ioError } from '../spool/errors.js';
import { checkName, checkPlatform, type SpoolPaths } from '../spool/paths.js';
import { decodeFile, MAX_FILE, parseHeaders, parseTime } from '../spool/headers.js';
import { readRegular } from '../spool/read.js';
import { parseDuration } from '../spool/duration.js';
import { checkSchedule, PERIODS, type Period } from '../spool/schedule.js';
import { fsyncDirQuiet } from '../spool/stage.js';

export { UsageError, usage, type Ctx } from './usage.js';
import { UsageError, usage, type Ctx } from './usage.js';

/** Run a spool check on an argument; its SpoolError becomes a UsageError with the same words. */
export function asUsage<T>(f: () => T): T {
  try { return f(); } catch (e) {
    if (e instanceof SpoolError) throw new UsageError(e.message);
    throw e;
  }
}

export const argName = (s: string, what = 'job name'): string => asUsage(() => checkName(s, what));
export const argPlatform = (s: string): string => asUsage(() => checkPlatform(s));

/** A --period value; `cron` when the command also takes --cron, the way to other times. */
export function argPeriod(s: string, cron = false): Period {
  if (!(PERIODS as readonly string[]).includes(s)) usage(`bad period '${s}'; use one of ${PERIODS.join(', ')}${cron ? ' (or --cron EXPR)' : ''}`);
  return s as Period;
}

export function argDuration(s: string, what: string): number {
  return asUsage(() => parseDuration(s, what));
}

export function argInt(s: string, what: string, min: number, max: number): number {
  if (!/^-?\d{1,9}$/.test(s) || Number(s) < min || Number(s) > max) usage(`bad ${what} '${s}'; write a whole number from ${min} to ${max}`);
  return Number(s);
}

export function argSchedule(expr: string, tz: string): void {
  asUsage(() => checkSchedule(expr, tz));
}

/**
 * An RFC 3339 time, read as spoold reads the spool's times (parseTime: every
 * field in range, no year before 1970); a blank may stand for the T.
 */
export function argTime(s: string, what: string): Date {
  const t = parseTime(s.replace(/^(\d{4}-\d{2}-\d{2}) /, '$1T'));
  if (!t) usage(`bad ${what} '${s.slice(0, 40)}'; write an RFC 3339 time like 2026-11-27T18:00:00Z or 2026-11-27T19:00:00+01:00`);
  return t;
}

/** A string flag's value, or undefined when absent. */
export function str(ctx: Ctx, flag: string): string | undefined {
  const v = ctx.opts[flag];
  return typeof v === 'string' ? v : undefined;
}

export function flag(ctx: Ctx, name: string): boolean {
  return ctx.opts[name] === true;
}

/** How much of a script bctl reads before it says "over the limit" without a count. */
const SCRIPT_READ_MAX = 4 * MAX_FILE;

/**
 * Read a job script: a file, or standard input for `-`. The bytes must be what
 * a spool file may hold (decodeFile), checked against the script's own name so
 * the message points at the file the person wrote.
 */
export async function readScript(ctx: Ctx, file: string): Promise<{ body: string; source: string }> {
  let buf: Buffer;
  const source = file === '-' ? 'stdin' : file;
  if (file === '-') {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of ctx.stdin) {
      const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
      chunks.push(b);
      n += b.length;
      // Far too large already: no need to read the rest, but then the size is
      // unknown, so say 'over', not a byte count (decodeFile would count what we read).
      if (n > SCRIPT_READ_MAX) throw new SpoolError('SPOOL_BAD_FILE', `the script is over the limit of ${MAX_FILE} bytes`, { path: source, hint: 'keep job scripts small; fetch large inputs from the script' });
    }
    buf = Buffer.concat(chunks);
  } else {
    try {
      // Synchronous: a script is small (decodeFile caps it at 1 MiB), and bctl
      // has nothing else to do meanwhile; each async call is a round trip
      // through the thread pool, which showed in bctl submit's start.
      const st = fs.statSync(file);
      if (!st.isFile()) throw new SpoolError('SPOOL_NOT_FOUND', 'not a regular file', { path: file, hint: 'give the path of a script file, or - for standard input' });
      if (st.size > SCRIPT_READ_MAX) throw new SpoolError('SPOOL_BAD_FILE', `the script is ${st.size} bytes, over the limit of ${MAX_FILE}`, { path: source, hint: 'keep job scripts small; fetch large inputs from the script' });
      buf = fs.readFileSync(file);
    } catch (e) {
      if (e instanceof SpoolError) throw e;
      if (errno(e) === 'ENOENT') throw new SpoolError('SPOOL_NOT_FOUND', 'no such script', { path: file, hint: 'give the path of a script file, or - for standard input' });
      throw ioError(e, file, 'cannot read script');
    }
  }
  // Checked against MAX_FILE with its headers (checkFits), which gives the
  // whole cut at once; alone, the script's own cut fell short by the headers.
  const body = decodeFile(buf, source, SCRIPT_READ_MAX);
  if (body.trim() === '') throw new SpoolError('SPOOL_BAD_FILE', 'the script is empty', { path: source, hint: 'write the commands to run, starting with #!/bin/sh' });
  return { body, source };
}

/**
 * Refuse a file bctl is about to write if it is over MAX_FILE bytes, the
 * limit spoold applies to new/ and schedules/: a script within the limit
 * still makes a larger file with its headers, which spoold would reject.
 * `part` is what the person can shorten (the script, a template).
 */
export function checkFits(text: string, what: string, source: string, part: string): void {
  const n = Buffer.byteLength(text);
  if (n > MAX_FILE) {
    throw new SpoolError('SPOOL_BAD_FILE', `${what} would be ${n} bytes, over the limit of ${MAX_FILE}`,
      { path: source, hint: `shorten ${part} by ${n - MAX_FILE} bytes or more (the file holds it and its headers)` });
  }
}

/**
 * Publish a staged file at target unless target exists: link(2) fails with
 * EEXIST atomically, where a check followed by rename(2) would overwrite a
 * file a person wrote in between. The staged name is removed either way.
 */
export async function publishNew(sp: SpoolPaths, staged: string, target: string, exists: () => SpoolError): Promise<void> {
  try {
    await fsp.link(staged, target);
  } catch (e) {
    await fsp.rm(staged, { force: true }).catch(() => {});
    if (errno(e) === 'EEXIST') throw exists();
    throw ioError(e, sp.rel(target), 'cannot publish');
  }
  await fsp.rm(staged, { force: true }).catch(() => {});
  await fsyncDirQuiet(path.dirname(target));
}

/** RFC 3339 in UTC, to the second: what people read and scripts parse. */
export function fmtTime(d: Date | undefined): string {
  return d === undefined ? '-' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Rows as aligned columns, two spaces apart; the last column is not padded. */
export function table(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const width = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]!))).join('  ').trimEnd());
}

/** readdir that reads a missing directory as empty (a spool spoold never started). */
export async function list(dir: string): Promise<string[]> {
  try { return (await fsp.readdir(dir)).sort(); } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw ioError(e, dir, 'cannot list');
  }
}

/**
 * A spool file's bytes, or undefined when it does not exist; one that is not
 * a regular file of at most `max` bytes (read.ts readRegular: no link
 * followed, no blocking on a fifo) is an error naming it, not a hang.
 */
export async function readIf(p: string, max = MAX_FILE, shown = p): Promise<Buffer | undefined> {
  let r: Buffer | { why: string };
  try { r = readRegular(p, max); } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined;
    // Node's message names the path it was given: named as shown, it is named so there too.
    const err = shown === p ? e : Object.assign(new Error((e as Error).message.split(p).join(shown)), { code: errno(e) });
    throw ioError(err, shown, 'cannot read');
  }
  if (Buffer.isBuffer(r)) return r;
  throw new SpoolError('SPOOL_BAD_FILE', r.why, { path: shown, hint: 'remove it; spool files are plain files' });
}

/** A header-only file (lease, workers/NAME, platforms/P) as key/value pairs. */
export function headerMap(buf: Buffer, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of parseHeaders(decodeFile(buf, source), source).headers) out[h.key] = h.value;
  return out;
}

/**
 * Warn of work put on a dropped platform: it is taken (robur builder refused
 * it), but waits until the platform is undropped, which a new user would not
 * guess (found by a tester). Whether it warned.
 */
export function warnDropped(ctx: Ctx, platform: string, what: string): boolean {
  if (fs.lstatSync(ctx.sp.platform(platform), { throwIfNoEntry: false }) === undefined) return false;
  ctx.warn(`warning: platform ${platform} is dropped: ${what} until bctl undrop-platform ${platform}`);
  return true;
}
