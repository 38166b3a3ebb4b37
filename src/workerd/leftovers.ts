// leftovers.ts: what a workerd that died left in its --workdir.
//
// One workerd at a time uses a --workdir (lock.ts), so at its start every job
// directory there is a leftover of one that died without cleaning up (SIGKILL,
// the OOM killer, a crash). Its job's process group may still run, while
// spoold runs the job again elsewhere once its lease runs out. Each job
// directory holds PGID, one line "PGID START": the job's process group and its
// leader's start time (/proc/PGID/stat), written before the job is handed its
// script (run.ts). At its start workerd kills each such group that is still
// the job's, then removes the directories: their results were never
// delivered, and spoold has run the jobs again or recorded them lost.
//
// A group is the job's while its leader is the process that started then, or
// while one of its processes has the job's BUILDER_JOB_DIR in its
// environment: a group that has ended gives its number back, and the kernel
// may hand it to any process after that. Linux only (/proc): elsewhere
// nothing is killed, and the log says so.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isId } from '../spool/paths.js';

export const PGID = 'pgid';

/** A job directory: the id, and ".old.N" when start() had moved it aside. */
const LEFTOVER = /^(.{36})(?:\.old\.\d+)?$/;

/** Fields of /proc/PID/stat after the command name (which may hold blanks and parentheses): [0] state, [2] pgrp, [19] starttime. */
function stat(pid: number | 'self'): string[] | undefined {
  let text: string;
  try { text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1'); } catch { return undefined; }
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** The line run.ts writes for a job whose group leader is `pgid`. */
export function pgidLine(pgid: number): string { return `${pgid} ${stat(pgid)?.[19] ?? '-'}\n`; }

/**
 * Kill what the jobs of a dead workerd left running under `workdir`, and
 * remove their directories. Returns when that is done: at most `graceMs`
 * after the first SIGTERM (a group still there then gets SIGKILL).
 */
export async function cleanLeftovers(workdir: string, graceMs: number, say: (line: string) => void): Promise<void> {
  let names: string[];
  try { names = await fsp.readdir(workdir); } catch (e) { say(`cannot list --workdir ${workdir}: ${(e as Error).message}; what an earlier workerd left there is not looked at`); return; }
  const dirs = names.flatMap((n) => { const id = LEFTOVER.exec(n)?.[1]; return id && isId(id) ? [{ dir: path.join(workdir, n), id }] : []; });
  if (dirs.length === 0) return;
  const own = Number(stat('self')?.[2]);
  const kill: Array<{ id: string; pgid: number }> = [];
  for (const { dir, id } of dirs) {
    const rec = readPgid(dir);
    if (!rec || !groupLives(rec.pgid)) continue;
    if (rec.pgid !== own && isJobs(rec, path.join(workdir, id, 'job'))) kill.push({ id, pgid: rec.pgid });
    else say(`process group ${rec.pgid}, which job ${id} ran in, runs, but is not the job's any more or cannot be checked: not killed (if it is the job's: kill -KILL -- -${rec.pgid})`);
  }
  for (const k of kill) {
    say(`job ${k.id} was left running by a workerd that died (process group ${k.pgid}): killing it`);
    signalGroup(k.pgid, 'SIGTERM');
  }
  await until(() => !kill.some((k) => groupLives(k.pgid)), graceMs);
  const stubborn = kill.filter((k) => groupLives(k.pgid));
  for (const k of stubborn) {
    say(`job ${k.id}'s process group ${k.pgid} outlived SIGTERM by ${graceMs / 1000} s: SIGKILL`);
    signalGroup(k.pgid, 'SIGKILL');
  }
  await until(() => !stubborn.some((k) => groupLives(k.pgid)), 1_000);   // no process of it still writing into the directory
  for (const { dir } of dirs) {
    try {
      await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
      say(`removed ${dir}, left by a workerd that died`);
    } catch (e) {
      say(`cannot remove ${dir}, left by a workerd that died: ${(e as Error).message}; remove it by hand`);
    }
  }
}

function readPgid(dir: string): { pgid: number; start: string } | undefined {
  let text: string;
  try { text = fs.readFileSync(path.join(dir, PGID), 'utf8'); } catch { return undefined; }
  const m = /^(\d+) (\d+|-)\n$/.exec(text);
  return m && Number(m[1]) > 1 ? { pgid: Number(m[1]), start: m[2]! } : undefined;
}

/** The live (not zombie) processes of process group `pgid`. */
function members(pgid: number): number[] {
  let pids: string[];
  try { pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)); } catch { return []; }
  return pids.map(Number).filter((p) => { const f = stat(p); return f !== undefined && Number(f[2]) === pgid && f[0] !== 'Z'; });
}

/** Some process of the group runs (signal 0 reaches it; /proc, where there is one, says it is no zombie). */
function groupLives(pgid: number): boolean {
  try { process.kill(-pgid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false; }
  return !fs.existsSync('/proc/self/stat') || members(pgid).length > 0;
}

/** The group is still the job's: the leader that started then, or a process with the job's directory in its environment. */
function isJobs(rec: { pgid: number; start: string }, jobDir: string): boolean {
  if (rec.start !== '-' && stat(rec.pgid)?.[19] === rec.start) return true;
  const mark = `BUILDER_JOB_DIR=${jobDir}`;
  return members(rec.pgid).some((p) => {
    try { return fs.readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(mark); } catch { return false; }
  });
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pgid, sig); } catch { /* gone meanwhile */ }
}

async function until(done: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}
