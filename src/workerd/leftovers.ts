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

/**
 * The buffer stat() reads into. readFileSync of a /proc file (size 0 to
 * fstat) allocated 64 KiB for each call, and run.ts reads one per job
 * (pgidLine): just after the standby's fork, when every page workerd writes
 * costs a fault, that was ~0.3 ms of its time per job (W1 of npm run bench).
 * A stat line is under 1.2 KiB (52 numbers and a command name of at most 64 bytes).
 */
const STAT_BUF = Buffer.allocUnsafe(4096);

/** Fields of /proc/PID/stat after the command name (which may hold blanks and parentheses): [0] state, [2] pgrp, [19] starttime. */
function stat(pid: number | 'self'): string[] | undefined {
  let text: string;
  try {
    const fd = fs.openSync(`/proc/${pid}/stat`, 'r');
    try {
      let n = 0;
      for (let r; n < STAT_BUF.length && (r = fs.readSync(fd, STAT_BUF, n, STAT_BUF.length - n, null)) > 0;) n += r;
      // Never so long; if it is, read it the general way rather than cut it.
      text = n < STAT_BUF.length ? STAT_BUF.toString('latin1', 0, n) : fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    } finally { fs.closeSync(fd); }
  } catch { return undefined; }
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
  const now = groups();
  for (const { dir, id } of dirs) {
    const rec = readPgid(dir);
    if (!rec || !lives(rec.pgid, now)) continue;
    if (rec.pgid !== own && isJobs(rec, path.join(workdir, id, 'job'), now)) kill.push({ id, pgid: rec.pgid });
    else say(`process group ${rec.pgid}, which job ${id} ran in, runs, but is not the job's any more or cannot be checked: not killed (if it is the job's: kill -KILL -- -${rec.pgid})`);
  }
  for (const k of kill) {
    say(`job ${k.id} was left running by a workerd that died (process group ${k.pgid}): killing it`);
    signalGroup(k.pgid, 'SIGTERM');
  }
  const living = (list: typeof kill) => { const g = groups(); return list.filter((k) => lives(k.pgid, g)); };
  await until(() => living(kill).length === 0, graceMs);
  const stubborn = living(kill);
  for (const k of stubborn) {
    say(`job ${k.id}'s process group ${k.pgid} outlived SIGTERM by ${graceMs / 1000} s: SIGKILL`);
    signalGroup(k.pgid, 'SIGKILL');
  }
  await until(() => living(stubborn).length === 0, 1_000);   // no process of it still writing into the directory
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

/** The live (not zombie) processes of each process group, from one pass over /proc; undefined where there is no /proc. */
function groups(): Map<number, number[]> | undefined {
  let pids: string[];
  try { pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)); } catch { return undefined; }
  if (!fs.existsSync('/proc/self/stat')) return undefined;
  const out = new Map<number, number[]>();
  for (const p of pids) {
    const f = stat(Number(p));
    if (!f || f[0] === 'Z') continue;
    const g = Number(f[2]);
    const list = out.get(g);
    if (list) list.push(Number(p)); else out.set(g, [Number(p)]);
  }
  return out;
}

/** Some process of group `pgid` runs: by `g` (groups()), or, without /proc, as far as signal 0 can tell. */
function lives(pgid: number, g: Map<number, number[]> | undefined): boolean {
  if (g) return g.has(pgid);
  try { process.kill(-pgid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code !== 'ESRCH'; }
}

/** The group is still the job's: the leader that started then, or a process with the job's directory in its environment. */
function isJobs(rec: { pgid: number; start: string }, jobDir: string, g: Map<number, number[]> | undefined): boolean {
  if (rec.start !== '-' && stat(rec.pgid)?.[19] === rec.start) return true;
  const mark = `BUILDER_JOB_DIR=${jobDir}`;
  return (g?.get(rec.pgid) ?? []).some((p) => {
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
