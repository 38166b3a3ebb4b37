// execute.ts: bctl execute NAME [--platform P]: queue a schedule now, ahead
// of the queue (priority EXECUTE_PRIORITY), the same way spoold's timer
// queues it (instance.ts), so both make the same jobs. A job file over the
// size limit (a large script or template with its headers) queues nothing.
//
// An instance whose template is missing or does not expand is recorded in
// done/ as failed by queueList; we report it and exit 1. The schedule's
// state records the firing (fired:, last-id:), so the next periodic run
// counts from now, as a timer firing would.

import { EXECUTE_PRIORITY, formatJob } from '../spool/job.js';
import { checkSpool, ensureSpool } from '../spool/layout.js';
import { instances, queueList } from '../spool/instance.js';
import { heldWhy, readScheduleStateFound, stateAfterFinish, writeScheduleState } from '../spool/schedstate.js';
import { EXIT_FAIL, EXIT_OK } from '../spool/exit.js';
import { argName, argPlatform, checkFits, str, usage, warnDropped, type Ctx } from './cli.js';
import { loadSchedule } from './find.js';
import { isDir } from '../spool/read.js';
import { SpoolError } from '../spool/errors.js';

const TEMPLATES_HINT = 'if spoold reads templates from its --templates directory, give bctl the same --templates (or $BUILDER_TEMPLATES)';

export async function execute(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const name = argName(ctx.args[0]!);
  const p = str(ctx, 'platform');
  const platform = p === undefined ? undefined : argPlatform(p);
  const extra = str(ctx, 'templates') ?? (ctx.env.BUILDER_TEMPLATES || undefined);
  if (extra !== undefined && !isDir(extra)) {
    usage(`${str(ctx, 'templates') !== undefined ? '--templates' : '$BUILDER_TEMPLATES'} ${extra}: not a directory`);
  }
  checkSpool(sp);
  const s = await loadSchedule(sp, name);
  const now = new Date();
  const list = await instances(s, {
    platform, origin: 'execute', priority: EXECUTE_PRIORITY,
    templateDirs: [sp.templates, ...(extra === undefined ? [] : [extra])], now,
  }).catch((e: unknown) => {
    // spoold may read the template from its --templates, which bctl sees only
    // when told (found by a tester moving from robur, whose templates were in /etc).
    if (!(e instanceof SpoolError) || s.template === undefined || extra !== undefined) throw e;
    throw new SpoolError(e.code, e.message, { hint: TEMPLATES_HINT });
  });
  // Refuse before queueing any: spoold would move a job over the limit to bad/.
  for (const i of list) {
    if (i.error !== undefined) continue;
    checkFits(formatJob(i.job), `the job file for ${i.platform}`, sp.rel(sp.schedule(name)),
      s.template === undefined ? 'the script' : `the template ${s.template} for ${i.platform}`);
  }
  await ensureSpool(sp, { makeRoot: false });
  await queueList(sp, list);
  let status = EXIT_OK;
  for (const i of list) {
    ctx.out(i.id);
    if (i.error !== undefined) {
      // spoold may have the template from its --templates, which bctl sees only when told (found by a tester).
      ctx.warn(`${i.id} (${i.platform}) failed at once: ${i.error}${s.template !== undefined && extra === undefined ? `; ${TEMPLATES_HINT}` : ''}`);
      status = EXIT_FAIL;
    } else warnDropped(ctx, i.platform, `job ${i.id} waits in new/`);
  }
  const found = await readScheduleStateFound(sp, name);
  if (found.found === 'unparsed') {   // left for the person to fix (spoold holds the schedule)
    ctx.warn(`${heldWhy(name, found.why!)}; its jobs above are queued all the same, and it is left as it is`);
    return status;
  }
  let st = found.st;
  st = { ...st, fired: now, lastId: list[list.length - 1]?.id ?? st.lastId };
  for (const i of list) if (i.error !== undefined) st = stateAfterFinish(st, { kind: 'failed', why: i.error }, now);   // recorded in done/ at once
  if (!(await writeScheduleState(sp, name, st))) {
    ctx.warn(`schedule ${name} was removed meanwhile (bctl unschedule?); its jobs above are queued all the same`);
    return EXIT_FAIL;
  }
  return status;
}
