// leftovers.ts: what a workerd killed with SIGKILL left in its --workdir.
//
// Each job's directory WORKDIR/ID/ holds OWNER, one line "WORKERD_PID PGID":
// the workerd that ran it and the job's process group, written before the job
// is handed its script (run.ts). A workerd that dies without killing its job
// (SIGKILL, the OOM killer, a crash) leaves that group running, while spoold
// runs the job again elsewhere once its lease runs out. So at its start
// workerd looks at every job directory in its --workdir whose workerd is gone:
// it kills the group, if that group is still the job's, and removes the
// directory (its result was never delivered; spoold has run the job again or
// recorded it lost).
//
// The group is the job's only if one of its processes still has the job's id
// in its environment (BUILDER_JOB_ID) or its directory as its working
// directory: a group that has ended gives its number back, and the kernel may
// hand it to any process after that. A directory whose workerd still runs
// (two workerds given one --workdir) is left alone.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isId } from '../spool/paths.js';

export const OWNER = 'owner';

/** A leftover directory of a job: the id, and ".old.N" when start() had moved it aside. */
const LEFTOVER = /^(.{36})(?:\.old\.\d+)?$/;

/** Written by run.ts before the job starts. */
export function ownerLine(pgid: number): string { return `${process.pid} ${pgid}\n`; }

/**
 * Kill what the jobs of dead workerds left running under `workdir`, and
 * remove their directories. Returns when that is done: at most `graceMs`
 * after the first SIGTERM (a group still there then gets SIGKILL).
 */
export async function cleanLeftovers(workdir: string, graceMs: number, say: (line: string) => void): Promise<void> {
  let names: string[];
  try { names = await fsp.readdir(workdir); } catch (e) { say(`cannot list --workdir ${workdir}: ${(e as Error).message}; leftovers of an earlier workerd are not looked for`); return; }
  const found: Array<{ dir: string; id: string; pgid: number | undefined }> = [];
  for (const n of names) {
    const id = LEFTOVER.exec(n)?.[1];
    if (!id || !isId(id)) continue;
    const dir = path.join(workdir, n);
    const owner = readOwner(dir);
    if (owner === undefined) {
      // No OWNER: its workerd died between making the directory and starting
      // the job, or another workerd is in that instant now. Only an old one is removed.
      const st = fs.lstatSync(dir, { throwIfNoEntry: false });
      if (st?.isDirectory() && Date.now() - st.mtimeMs > 60_000) found.push({ dir, id, pgid: undefined });
      continue;
    }
    if (owner.workerd !== process.pid && isWorkerd(owner.workerd)) continue;
    found.push({ dir, id, pgid: owner.pgid });
  }
  if (found.length === 0) return;
  const kill = found.filter((f) => f.pgid !== undefined && groupIsJob(f.pgid, f.id, workdir));
  for (const f of kill) {
    say(`job ${f.id} was left running by a workerd that died (process group ${f.pgid}): killing it`);
    signalGroup(f.pgid!, 'SIGTERM');
  }
  const until = Date.now() + graceMs;
  while (kill.some((f) => groupLives(f.pgid!)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  for (const f of kill) {
    if (!groupLives(f.pgid!)) continue;
    say(`job ${f.id}'s process group ${f.pgid} outlived SIGTERM by ${graceMs / 1000} s: SIGKILL`);
    signalGroup(f.pgid!, 'SIGKILL');
  }
  for (const f of found) {
    try {
      await fsp.rm(f.dir, { recursive: true, force: true });
      say(`removed ${f.dir}, left by a workerd that died`);
    } catch (e) {
      say(`cannot remove ${f.dir}, left by a workerd that died: ${(e as Error).message}; remove it by hand`);
    }
  }
}

function readOwner(dir: string): { workerd: number; pgid: number } | undefined {
  let text: string;
  try { text = fs.readFileSync(path.join(dir, OWNER), 'utf8'); } catch { return undefined; }
  const m = /^(\d+) (\d+)\n$/.exec(text);
  if (!m) return undefined;
  const workerd = Number(m[1]);
  const pgid = Number(m[2]);
  return workerd > 1 && pgid > 1 ? { workerd, pgid } : undefined;
}

/** A running workerd has this pid (its command line names workerd): not a number the kernel gave to something else. */
function isWorkerd(pid: number): boolean {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('workerd'); } catch { return false; }
}

/** The live (not zombie) processes of process group `pgid`. */
function members(pgid: number): number[] {
  const out: number[] = [];
  let pids: string[];
  try { pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)); } catch { return out; }
  for (const p of pids) {
    let stat: string;
    try { stat = fs.readFileSync(`/proc/${p}/stat`, 'latin1'); } catch { continue; }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses; the last ")" ends it.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid && f[0] !== 'Z') out.push(Number(p));
  }
  return out;
}

function groupLives(pgid: number): boolean { return members(pgid).length > 0; }

/** Some process of the group has job `id`'s environment or works in its directory. */
function groupIsJob(pgid: number, id: string, workdir: string): boolean {
  const mark = `BUILDER_JOB_ID=${id}`;
  const home = path.join(workdir, id);
  return members(pgid).some((p) => {
    try { if (fs.readFileSync(`/proc/${p}/environ`, 'latin1').split('\0').includes(mark)) return true; } catch { /* gone, or not ours to read */ }
    try { return fs.readlinkSync(`/proc/${p}/cwd`).startsWith(home); } catch { return false; }
  });
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try { process.kill(-pgid, sig); } catch { /* gone meanwhile */ }
}
