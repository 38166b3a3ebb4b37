// schedule.ts: bctl schedule NAME PLATFORM SCRIPT: write schedules/NAME.
//
// The file is formatted, parsed back with the parser spoold uses (crontab(1)
// style: refuse what the daemon would reject), checked against the size limit,
// as are the jobs it will queue, staged in tmp/ and linked into
// schedules/ only if no file of that name exists, so a person's schedule is
// never overwritten, not even one written between our check and our write.

import fsp from 'node:fs/promises';
import { ensureSpool } from '../spool/layout.js';
import { existsOr } from '../spool/state.js';
import { formatJob, formatSchedule, parseSchedule, EXECUTE_PRIORITY, MAX_RETRIES, type Schedule } from '../spool/job.js';
import { instances } from '../spool/instance.js';
import { periodToSchedule } from '../spool/schedule.js';
import { writeStaged } from '../spool/stage.js';
import { SpoolError } from '../spool/errors.js';
import type { SpoolPaths } from '../spool/paths.js';
import { EXIT_OK } from '../spool/exit.js';
import { argDuration, argInt, argName, argPeriod, argPlatform, argSchedule, checkFits, publishNew, readScript, str, usage, warnDropped, type Ctx } from './cli.js';

/** The schedule expression from --period / --cron (exclusive; `hasCron` when the command takes --cron), checked with tz. */
export function whenOf(ctx: Ctx, tz: string, hasCron: boolean): string {
  const period = str(ctx, 'period');
  // Blanks around it (a pasted crontab line) are no part of it; inside, they
  // are one separator as in crontab(5). The header holds it on one line.
  const cron = str(ctx, 'cron')?.trim().replace(/\s+/g, ' ');
  if (period !== undefined && cron !== undefined) usage('--period and --cron exclude each other; give one');
  const expr = cron ?? periodToSchedule(argPeriod(period ?? 'daily', hasCron));
  argSchedule(expr, tz);
  return expr;
}

/**
 * Validate s by a round trip through the daemon's parser, then create
 * schedules/NAME. `source` names the script in messages. A state/NAME left
 * by a schedule of that name removed by hand is removed first, so that this
 * new one fires at once rather than when that one was next due; then `warn`
 * says so.
 */
export async function writeNewSchedule(sp: SpoolPaths, s: Schedule, source: string | undefined, warn: (msg: string) => void): Promise<void> {
  const target = sp.schedule(s.name);
  const text = formatSchedule(s);
  parseSchedule(text, sp.rel(target), s.name);
  checkFits(text, 'the schedule file', source ?? sp.rel(target), 'the script');
  // Each run queues the script with a job's headers (id, queued, origin ...),
  // longer than the schedule's; a job over the limit would go to bad/ at every
  // run, so the longer of a timer's and an execute's job must fit. A template
  // is checked when it is expanded (bctl execute).
  if (s.template === undefined) {
    const jobs = [
      ...await instances(s, { origin: 'schedule', templateDirs: [] }),
      ...await instances(s, { origin: 'execute', priority: EXECUTE_PRIORITY, templateDirs: [] }),
    ].map((i) => formatJob(i.job));
    const longest = jobs.reduce((a, b) => (Buffer.byteLength(b) > Buffer.byteLength(a) ? b : a));
    checkFits(longest, 'the job file of each run', source ?? sp.rel(target), 'the script');
  }
  await ensureSpool(sp, { makeRoot: false });
  const state = sp.scheduleState(s.name);
  if (!existsOr(target, true) && existsOr(state, false)) {
    await fsp.rm(state, { force: true })
      .then(() => warn(`removed ${sp.rel(state)}, left by an earlier schedule ${s.name} removed by hand, so that this one ${s.schedule === 'never' ? 'starts afresh' : 'runs at once'}`))
      .catch((e) => warn(`cannot remove ${sp.rel(state)}, left by an earlier schedule ${s.name}: ${(e as Error).message}; this one runs when that one was next due unless you remove it`));
  }
  const staged = await writeStaged(sp, `schedule-${s.name}`, text, target);
  await publishNew(sp, staged, target, () => new SpoolError('SPOOL_EXISTS', `schedule ${s.name} exists`,
    { path: sp.rel(target), hint: `run bctl unschedule ${s.name} first, or edit the file` }));
}

export async function schedule(ctx: Ctx): Promise<number> {
  const [nameArg, platformArg, script] = ctx.args as [string, string, string];
  const name = argName(nameArg);
  const platform = argPlatform(platformArg);
  const tz = str(ctx, 'tz') ?? 'UTC';
  const when = whenOf(ctx, tz, true);
  const t = str(ctx, 'timeout');
  const r = str(ctx, 'retries');
  const timeout = t === undefined ? undefined : argDuration(t, 'timeout');
  const retries = r === undefined ? undefined : argInt(r, 'retries', 0, MAX_RETRIES);
  const { body, source } = await readScript(ctx, script);
  await writeNewSchedule(ctx.sp, {
    name, platform, timeout, retries, priority: 0, network: false, template: undefined, vars: {}, body, schedule: when, tz,
  }, source, ctx.warn);
  warnDropped(ctx, platform, 'the schedule does not fire');
  return EXIT_OK;
}
