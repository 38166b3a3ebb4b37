// reschedule.ts: bctl reschedule NAME NEXT [--period P].
//
// NEXT goes into spoold's state/NAME (next:), which overrides the period once;
// the other state fields are kept. --period rewrites the schedule: header of
// schedules/NAME (parse, change, format, parse back, publish). That rewrite
// drops comments a person wrote in the header block; the body is kept as is.
// BUGS: spoold writes state/NAME too; a firing in the same instant may lose
// our next: (read-modify-write without a lock). Run reschedule again then.

import { formatSchedule, parseSchedule } from '../spool/job.js';
import { checkSpool, ensureSpool } from '../spool/layout.js';
import { periodToSchedule } from '../spool/schedule.js';
import { heldWhy, readScheduleStateFound, writeScheduleState } from '../spool/schedstate.js';
import { writeAtomic } from '../spool/stage.js';
import { EXIT_OK } from '../spool/exit.js';
import { SpoolError } from '../spool/errors.js';
import { argName, argPeriod, argTime, checkFits, str, type Ctx } from './cli.js';
import { loadSchedule } from './find.js';

export async function reschedule(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const name = argName(ctx.args[0]!);
  const next = argTime(ctx.args[1]!, 'time NEXT');
  const p = str(ctx, 'period');
  const period = p === undefined ? undefined : argPeriod(p);
  checkSpool(sp);
  const s = await loadSchedule(sp, name);
  // A state a person broke holds the schedule; writing next: over it would lose what they wrote.
  const { st, found, why } = await readScheduleStateFound(sp, name);
  if (found === 'unparsed') throw new SpoolError('SPOOL_BAD_FILE', heldWhy(name, why!), { hint: 'fix it, then reschedule' });
  await ensureSpool(sp, { makeRoot: false });
  if (period !== undefined) {
    const file = sp.schedule(name);
    const text = formatSchedule({ ...s, schedule: periodToSchedule(period) });
    parseSchedule(text, sp.rel(file), name);
    checkFits(text, 'the schedule file', sp.rel(file), 'the script');
    await writeAtomic(sp, file, text);
  }
  if (!(await writeScheduleState(sp, name, { ...st, next }))) {
    throw new SpoolError('SPOOL_NOT_FOUND', `schedule ${name} was removed meanwhile (bctl unschedule?)`, { path: sp.rel(sp.schedule(name)), hint: 'bctl schedule makes it again' });
  }
  return EXIT_OK;
}
