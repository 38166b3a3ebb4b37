// find.ts: where a job is, by id: queued in new/, held in running/, or
// finished in done/NAME/ID. Read-only; a job may move on while we look
// (each move is a rename), so callers treat the answer as a snapshot.
//
// SpoolPaths has no path for a file inside done/NAME/ID, and `bctl inspect DIR`
// takes such a directory from the command line anyway, so doneFile() is the one
// place bctl names a file inside a done directory.

import fsp from 'node:fs/promises';
import path from 'node:path';
import type { RunningFile, SpoolPaths } from '../spool/paths.js';
import { isName } from '../spool/paths.js';
import { exists } from '../spool/state.js';
import { list, readIf } from './cli.js';
import { parseSchedule, type Schedule } from '../spool/job.js';
import { SpoolError } from '../spool/errors.js';

export type Where =
  | { state: 'queued'; file: string }
  | { state: 'running'; dir: string }
  | { state: 'done'; dir: string; name: string }
  | { state: 'none' };

export function doneFile(dir: string, f: RunningFile): string {
  return path.join(dir, f);
}

/** done/*\/ID directories holding id (normally one; fsck reports more). */
export async function findDone(sp: SpoolPaths, id: string): Promise<Array<{ name: string; dir: string }>> {
  const out: Array<{ name: string; dir: string }> = [];
  for (const name of await list(sp.done)) {
    if (!isName(name)) continue;
    const dir = sp.doneDir(name, id);
    try {
      if ((await fsp.lstat(dir)).isDirectory()) out.push({ name, dir });
    } catch { /* not under this name */ }
  }
  return out;
}

/** The state of job id, checked in the order a job moves (new, running, done). */
export async function where(sp: SpoolPaths, id: string): Promise<Where> {
  if (exists(sp.queued(id))) return { state: 'queued', file: sp.queued(id) };
  if (exists(sp.runningFile(id, 'job'))) return { state: 'running', dir: sp.runningDir(id) };
  const done = await findDone(sp, id);
  if (done.length > 0) return { state: 'done', dir: done[0]!.dir, name: done[0]!.name };
  // It may have moved from new/ to running/ or on to done/ while we looked.
  if (exists(sp.runningFile(id, 'job'))) return { state: 'running', dir: sp.runningDir(id) };
  return { state: 'none' };
}

/** Of the names in bad/, the one spoold gave job `id`'s file when it rejected it from new/. */
export function rejectedFile(names: string[], id: string): string | undefined {
  return names.find((f) => f.startsWith(`new.${id}.`) && !f.endsWith('.why'));
}

/**
 * The error for a job id that is neither queued, running nor done: naming the
 * bad/ file when spoold rejected it there (a job file that did not parse).
 */
export async function noJob(sp: SpoolPaths, id: string): Promise<SpoolError> {
  const bad = rejectedFile(await list(sp.bad).catch(() => [] as string[]), id);   // bad/ unreadable: just "no job"
  return bad === undefined
    ? new SpoolError('SPOOL_NOT_FOUND', `no job ${id}`, { path: sp.root, hint: 'bctl info lists queued and running jobs' })
    : new SpoolError('SPOOL_NOT_FOUND', `job ${id} was rejected by spoold: it never ran`, { path: `bad/${bad}`, hint: `bad/${bad}.why says why` });
}

/** Parse schedules/NAME; SpoolError SPOOL_NOT_FOUND when there is none. */
export async function loadSchedule(sp: SpoolPaths, name: string): Promise<Schedule> {
  const file = sp.schedule(name);
  const buf = await readIf(file);
  if (buf === undefined) {
    throw new SpoolError('SPOOL_NOT_FOUND', `no schedule ${name}`, { path: sp.rel(file), hint: 'see bctl info for the schedules there are' });
  }
  return parseSchedule(buf, sp.rel(file), name);
}
