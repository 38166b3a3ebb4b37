// cancel.ts: bctl cancel ID.
//
// A queued job is canceled here and now: claimed like a dispatch and
// finalized as `canceled` (cancelQueued), so it lands in done/NAME/ID like
// any finished job. A running job belongs to spoold and its worker: we leave
// the request running/ID/cancel and spoold stops the job. If the job moves
// while we look (spoold claims it first), we follow it to the next state.

import { parseJob } from '../spool/job.js';
import { checkSpool, ensureSpool } from '../spool/layout.js';
import { cancelQueued, exists, requestCancel } from '../spool/state.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { heldWhy, readScheduleStateFound, scheduled, stateAfterFinish, writeScheduleState } from '../spool/schedstate.js';
import { parseResult, formatStatus } from '../spool/result.js';
import { SpoolError } from '../spool/errors.js';
import { checkId, type SpoolPaths } from '../spool/paths.js';
import { EXIT_OK } from '../spool/exit.js';
import { asUsage, readIf, type Ctx } from './cli.js';
import { doneFile, noJob, where } from './find.js';

/** Whether running/ID is on its way to done/ (no lease, or a result), waiting up to PASSING_MS for it to leave running/. */
async function passingThrough(sp: SpoolPaths, id: string): Promise<boolean> {
  if (exists(sp.runningFile(id, 'lease')) && !exists(sp.runningFile(id, 'result'))) return false;
  const end = Date.now() + PASSING_MS;
  while (Date.now() < end) {
    if (!exists(sp.runningFile(id, 'job'))) return true;
    await sleep(20);
  }
  return false;   // still there (spoold claimed it and is about to lease it): it is spoold's to stop
}

const PASSING_MS = 3_000;

export async function cancel(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const id = asUsage(() => checkId(ctx.args[0]!));
  checkSpool(sp);
  let asked = false;   // our request is in running/ID/cancel: spoold may complete the cancel itself
  for (let tries = 0; tries < 3; tries++) {
    const w = await where(sp, id);
    if (w.state === 'queued') {
      const buf = await readIf(w.file);
      if (buf === undefined) continue;   // claimed meanwhile: look again
      const job = parseJob(buf, sp.rel(w.file), id);
      await ensureSpool(sp, { makeRoot: false });   // running/, done/, tmp/ for the move
      let r;
      try {
        r = await cancelQueued(sp, id, job);
      } catch (e) {
        // A spoold starting just now finalized the job we had claimed (its
        // start takes over what it finds in running/): look where it went.
        if ((await where(sp, id)).state !== 'done') throw e;
      }
      asked = true;
      if (r) {
        ctx.out(`canceled ${id} (was queued)`);
        // A schedule's job: its state says how its last job ended, as spoold's does for the jobs it finishes.
        if (scheduled(sp, r.name)) {
          const found = await readScheduleStateFound(sp, r.name);
          if (found.found === 'unparsed') ctx.warn(`canceled; not recorded: ${heldWhy(r.name, found.why!)}`);
          else {
            await writeScheduleState(sp, r.name, stateAfterFinish(found.st, r.status, r.finished))
              .catch((e) => ctx.warn(`canceled, but cannot record it in ${sp.rel(sp.scheduleState(r.name))}: ${(e as Error).message}`));
          }
        }
        return EXIT_OK;
      }
      continue;
    }
    if (w.state === 'running') {
      let requested: boolean;
      try { requested = await requestCancel(sp, id); } catch (e) {
        // Moved as we wrote (running/ID renamed into done/, or the job queued
        // again and its directory removed): look where it went.
        if ((await where(sp, id)).state === 'running') throw e;
        continue;
      }
      if (!requested) continue;
      asked = true;
      // spoold's running job has a lease and no result yet. Without a lease it
      // was claimed by another bctl cancel; with a result it is being finished:
      // either way it is about to be in done/, and we say how it ended rather
      // than that spoold stops it (found by a tester racing two cancels).
      if (await passingThrough(sp, id)) continue;
      ctx.out(`cancel of ${id} requested: spoold stops the job (running/${id}/cancel)`);
      return EXIT_OK;
    }
    if (w.state === 'done') {
      const rel = sp.rel(doneFile(w.dir, 'result'));
      const buf = await readIf(doneFile(w.dir, 'result'));
      const result = buf === undefined ? undefined : parseResult(buf, rel);
      if (asked && result?.status.kind === 'canceled') {
        ctx.out(`canceled ${id} (completed meanwhile)`);   // by spoold, our request found; or by another bctl cancel
        return EXIT_OK;
      }
      const status = result ? formatStatus(result.status) : 'no result file';
      throw new SpoolError('SPOOL_NOT_FOUND', `job ${id} already finished: ${status}`, { path: sp.rel(w.dir), hint: `bctl inspect ${id} shows it` });
    }
    break;
  }
  throw await noJob(sp, id);
}
