// schedule.ts: bctl schedule NAME PLATFORM SCRIPT: write schedules/NAME.
//
// The file is formatted, parsed back with the parser spoold uses (crontab(1)
// style: refuse what the daemon would reject), staged in tmp/ and linked into
// schedules/ only if no file of that name exists, so a person's schedule is
// never overwritten, not even one written between our check and our write.

import { ensureSpool } from '../spool/layout.js';
import { formatSchedule, parseSchedule, MAX_RETRIES, type Schedule } from '../spool/job.js';
import { periodToSchedule } from '../spool/schedule.js';
import { writeStaged } from '../spool/stage.js';
import { SpoolError } from '../spool/errors.js';
import type { SpoolPaths } from '../spool/paths.js';
import { EXIT_OK } from '../spool/exit.js';
import { argDuration, argInt, argName, argPeriod, argPlatform, argSchedule, publishNew, readScript, str, usage, type Ctx } from './cli.js';

/** The schedule expression from --period / --cron (exclusive), checked with tz. */
export function whenOf(ctx: Ctx, tz: string): string {
  const period = str(ctx, 'period');
  const cron = str(ctx, 'cron');
  if (period !== undefined && cron !== undefined) usage('--period and --cron exclude each other; give one');
  const expr = cron ?? periodToSchedule(argPeriod(period ?? 'daily'));
  argSchedule(expr, tz);
  return expr;
}

/** Validate s by a round trip through the daemon's parser, then create schedules/NAME. */
export async function writeNewSchedule(sp: SpoolPaths, s: Schedule): Promise<void> {
  await ensureSpool(sp);
  const target = sp.schedule(s.name);
  const text = formatSchedule(s);
  parseSchedule(text, sp.rel(target), s.name);
  const staged = await writeStaged(sp, `schedule-${s.name}`, text, target);
  await publishNew(sp, staged, target, () => new SpoolError('SPOOL_EXISTS', `schedule ${s.name} exists`,
    { path: sp.rel(target), hint: `run bctl unschedule ${s.name} first, or edit the file` }));
}

export async function schedule(ctx: Ctx): Promise<number> {
  const [nameArg, platformArg, script] = ctx.args as [string, string, string];
  const name = argName(nameArg);
  const platform = argPlatform(platformArg);
  const tz = str(ctx, 'tz') ?? 'UTC';
  const when = whenOf(ctx, tz);
  const t = str(ctx, 'timeout');
  const r = str(ctx, 'retries');
  const timeout = t === undefined ? undefined : argDuration(t, 'timeout');
  const retries = r === undefined ? undefined : argInt(r, 'retries', 0, MAX_RETRIES);
  const { body } = await readScript(ctx, script);
  await writeNewSchedule(ctx.sp, {
    name, platform, timeout, retries, priority: 0, network: false, template: undefined, vars: {}, body, schedule: when, tz,
  });
  return EXIT_OK;
}
