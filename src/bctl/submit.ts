// submit.ts: bctl submit PLATFORM SCRIPT... : one-off jobs, one per SCRIPT,
// queued in the order given (ids from one process increase, so the queue
// order is the command-line order), one id printed a line.
//
// Every script is read and every job built (and checked to fit the size limit
// with its headers) before the first is queued, so a missing or too large
// second script queues nothing. --wait then polls done/NAME/ID/result
// (finalize renames the whole directory, so a result there is a whole result);
// it needs no word with spoold, and waits as long as the jobs take, but not
// for a job that left the queue without finishing (taken out of new/ by hand,
// or moved to bad/ by spoold): that one is reported and makes the exit 1.

import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { submission, formatJob, MAX_RETRIES, type ParsedJob } from '../spool/job.js';
import { exists, submitSync } from '../spool/state.js';
import { parseResult, isSuccess, formatStatus } from '../spool/result.js';
import { NAME_MAX, isName, type SpoolPaths } from '../spool/paths.js';
import { EXIT_FAIL, EXIT_OK } from '../spool/exit.js';
import { argDuration, argInt, argName, argPlatform, checkFits, flag, headerMap, list, readIf, readScript, str, usage, warnDropped, type Ctx } from './cli.js';
import { doneFile, rejectedFile } from './find.js';
import { ensureSpool } from '../spool/layout.js';

export const WAIT_POLL_MS = 100;
/** How long --wait lets a job wait in new/ before it looks for why it might wait for ever. */
const WARN_AFTER_MS = 1000;

/** A job name from a script's file name: the name charset, or `stdin`, or `job`. */
export function nameFromScript(file: string): string {
  if (file === '-') return 'stdin';
  const n = path.basename(file).replace(/[^A-Za-z0-9._+-]/g, '_').replace(/^[.-]+/, '').slice(0, NAME_MAX);
  return isName(n) ? n : 'job';
}

/** Whether job is queued, running or done: where --wait looks, in the order a job moves. */
function isSomewhere(sp: SpoolPaths, job: ParsedJob & { id: string }): boolean {
  return exists(sp.queued(job.id)) || exists(sp.runningFile(job.id, 'job')) || exists(sp.doneDir(job.name, job.id));
}

export async function submitCmd(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const [platformArg, ...scripts] = ctx.args as [string, ...string[]];
  const platform = argPlatform(platformArg);
  if (scripts.filter((s) => s === '-').length > 1) usage('standard input (-) can be read only once');
  const n = str(ctx, 'name');
  const name = n === undefined ? undefined : argName(n);
  const t = str(ctx, 'timeout');
  const r = str(ctx, 'retries');
  const pr = str(ctx, 'priority');
  const timeout = t === undefined ? undefined : argDuration(t, 'timeout');
  const retries = r === undefined ? undefined : argInt(r, 'retries', 0, MAX_RETRIES);
  const priority = pr === undefined ? 0 : argInt(pr, 'priority', -1000, 1000);

  const jobs: Array<ParsedJob & { id: string }> = [];
  for (const script of scripts) {
    const { body, source } = await readScript(ctx, script);
    const job = submission({ name: name ?? nameFromScript(script), platform, timeout, retries, priority, body });
    checkFits(formatJob(job), 'the job file', source, 'the script');
    jobs.push(job);
  }
  await ensureSpool(sp, { makeRoot: false });
  for (const job of jobs) {
    submitSync(sp, job);
    ctx.out(job.id);
  }
  const dropped = warnDropped(ctx, platform, jobs.length > 1 ? 'its jobs wait in new/' : 'the job waits in new/');
  if (!flag(ctx, 'wait')) return EXIT_OK;

  // Said once, if a job still waits in new/ a second on: by then a worker
  // that just connected has its workers/ file (spoold writes it soon after).
  const began = Date.now();
  let warned = dropped;
  const warnIfStuck = async (job: ParsedJob): Promise<void> => {
    if (warned || Date.now() - began < WARN_AFTER_MS || !exists(sp.queued(job.id!))) return;
    warned = true;
    const why = await whyNoWorker(sp, platform);
    if (why) ctx.warn(`waiting, but ${why}`);
  };

  let status = EXIT_OK;
  for (const job of jobs) {
    const file = doneFile(sp.doneDir(job.name, job.id), 'result');
    let buf: Buffer | undefined;
    let missed = 0;
    while ((buf = await readIf(file)) === undefined) {
      // Gone from new/, running/ and done/ in two looks in a row (one look may
      // fall between the renames of a requeue, running/ back to new/).
      missed = isSomewhere(sp, job) ? 0 : missed + 1;
      if (missed >= 2) break;
      await warnIfStuck(job);
      await sleep(WAIT_POLL_MS);
    }
    if (buf === undefined) {
      const bad = rejectedFile(await list(sp.bad), job.id);
      ctx.warn(`${job.id} is gone: it is neither queued, running nor done; ${bad === undefined
        ? 'it was taken out of new/ (bctl info lists the queue)'
        : `spoold rejected it to bad/${bad}, and bad/${bad}.why says why`}`);
      status = EXIT_FAIL;
      continue;
    }
    const result = parseResult(buf, sp.rel(file));
    ctx.out(`${job.id} ${formatStatus(result.status)}`);
    if (!isSuccess(result.status)) status = EXIT_FAIL;
  }
  return status;
}

/**
 * Why a job of platform may wait for ever, if it looks so now: the platform
 * is dropped, or no worker of it is connected (workers/, as spoold writes it).
 * Found by a new user: --wait on a mistyped platform waited without a word.
 */
async function whyNoWorker(sp: SpoolPaths, platform: string): Promise<string | undefined> {
  if (exists(sp.platform(platform))) return `platform ${platform} is dropped: its jobs wait until bctl undrop-platform ${platform}`;
  for (const w of await list(sp.workers)) {
    if (isName(w) && await workerPlatform(sp, w) === platform) return undefined;
  }
  return `no worker of platform ${platform} is connected now (bctl info lists the workers): the job waits for one`;
}

/** The platform of workers/NAME, undefined when it cannot be read (it may be going). */
async function workerPlatform(sp: SpoolPaths, name: string): Promise<string | undefined> {
  try {
    const buf = await readIf(sp.worker(name));
    return buf && headerMap(buf, `workers/${name}`).platform;
  } catch { return undefined; }
}
