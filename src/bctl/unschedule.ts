// unschedule.ts: bctl unschedule NAME: remove schedules/NAME, state/NAME and
// the instances of NAME still waiting in new/.
//
// Instances already running are left to finish (bctl cancel stops them).
// A new/ file that does not parse is skipped: it is not known to be ours, and
// spoold moves it to bad/. Removing a queued file races with spoold claiming
// it; ENOENT then means spoold won and the instance runs, which is harmless.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { errno, ioError } from '../spool/errors.js';
import { parseJob } from '../spool/job.js';
import { checkSpool } from '../spool/layout.js';
import { existsOr } from '../spool/state.js';
import { isId } from '../spool/paths.js';
import { EXIT_OK } from '../spool/exit.js';
import { argName, list, readIf, type Ctx } from './cli.js';
import { loadSchedule } from './find.js';

export async function unschedule(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const name = argName(ctx.args[0]!);
  checkSpool(sp);
  const file = sp.schedule(name);
  // Refuse a missing schedule, unless one removed by hand left its state (and
  // maybe its jobs) behind; a broken one is still removed (that may be why).
  await loadSchedule(sp, name).catch((e) => {
    if ((e as { code?: string }).code !== 'SPOOL_NOT_FOUND') return;
    if (!existsOr(sp.scheduleState(name), false)) throw e;
    ctx.warn(`no schedule ${name} (removed by hand); removing what it left: ${sp.rel(sp.scheduleState(name))} and its jobs waiting in new/`);
  });
  await fsp.rm(file).catch((e) => { if (errno(e) !== 'ENOENT') throw ioError(e, sp.rel(file), 'cannot remove'); });
  await fsp.rm(sp.scheduleState(name), { force: true }).catch((e) => { throw ioError(e, sp.rel(sp.scheduleState(name)), 'cannot remove'); });
  for (const f of await list(sp.new)) {
    if (f.startsWith('.')) continue;   // an editor's swap file, not a job
    // A file a person dropped under another name (not yet given an id) counts too, by its name: header.
    const q = isId(f) ? sp.queued(f) : path.join(sp.new, f);
    const buf = await readIf(q);
    if (buf === undefined) continue;
    let jobName: string;
    try { jobName = parseJob(buf, sp.rel(q), f).name; } catch { continue; }
    if (jobName !== name) continue;
    try {
      await fsp.rm(q);
      ctx.out(f);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw ioError(e, sp.rel(q), 'cannot remove');
    }
  }
  return EXIT_OK;
}
