// lock.ts: one spoold per spool, one workerd per --workdir. The only importer of proper-lockfile.
//
// The lock is a directory (SPOOL/spoold.lock, WORKDIR/workerd.lock), refreshed
// every UPDATE_MS; a holder killed with SIGKILL leaves it behind, and it
// becomes stale after STALE_MS, so a restart right after a crash retries for
// longer than STALE_MS (DEPENDENCIES.md 2). A pid file beside it tells people
// who holds it, and lets a restart take at once a lock whose holder is gone.
// If the lock is taken from us (deleted by hand, or our event loop stalled past
// STALE_MS and another took it) we must stop at once: onLost exits 75.

import lockfile from 'proper-lockfile';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SpoolError, errno } from './errors.js';
import type { SpoolPaths } from './paths.js';
import { readSpoolFile } from './read.js';
import { writeStatus } from './stage.js';

export const STALE_MS = 10_000;
export const UPDATE_MS = 2_000;

/** What a lock guards: a directory, its lock and pid file, and what to say to a second taker. */
interface Site {
  prog: 'spoold' | 'workerd';   // what the holder's command line names (holder)
  root: string;
  lock: string;
  pid: string;
  held: (pid: string) => string;   // "another ... holds ...", naming the holder's pid if known
  hint: string;
  writePid: (text: string) => void;
}

/**
 * What the pid file says of the lock's holder:
 * - gone: no process has its pid, so the lock is a dead holder's;
 * - running: a process of that pid runs and its command line names `prog`
 *   (or there is no /proc to ask, FreeBSD: kill(2) says it all);
 * - gone also when that process is a zombie: the holder, dead, not yet reaped;
 * - unknown: no pid file, or a live process that is no `prog` (the dead
 *   holder's pid taken by another), whose lock
 *   only its staleness can tell about. Never removed: a holder started under
 *   another name must not lose its lock to a guess.
 */
function holder(pidFile: string, prog: string): 'gone' | 'running' | 'unknown' {
  const pid = Number(readPid(pidFile));
  if (!Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return 'unknown';
  try { process.kill(pid, 0); } catch (e) { return errno(e) === 'ESRCH' ? 'gone' : 'running'; }   // EPERM: it runs, as another user
  // A zombie is the holder itself, dead and not yet reaped by its parent (its
  // pid cannot be anyone else's until then): a restart waited 10 s for it,
  // found by a tester whose shell had not reaped the workerd it killed.
  try { if (/^\d+ \(.*\) [ZX] /s.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'))) return 'gone'; } catch { /* no /proc: kill(2) said it runs */ }
  let argv: string[] | undefined;
  try { argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0'); } catch { /* no /proc */ }
  // The program itself among its words (node .../spoold.js, /usr/local/bin/spoold), not a
  // word that only mentions it (tail -f spoold.log, found by a tester).
  return argv === undefined || argv.some((a) => [prog, `${prog}.js`].includes(path.basename(a))) ? 'running' : 'unknown';
}

async function lockSite(site: Site, onLost: (err: Error) => void, waitForStale = true): Promise<() => Promise<void>> {
  // A holder killed with SIGKILL leaves its lock for STALE_MS. When the pid
  // file names a process that no longer exists, the lock is that dead one's:
  // remove it, so a restart after a crash is immediate. (Same host only: the
  // directory is local. BUGS: two started at the same instant after a crash
  // may both remove it; the loser sees its lock compromised and exits 75.)
  const h = holder(site.pid, site.prog);
  if (h === 'gone') {
    await fsp.rm(site.lock, { recursive: true, force: true });
    await fsp.rm(site.pid, { force: true });
  }
  // Waiting for staleness is for a lock whose holder is unknown; one whose
  // holder runs is refused at once (a second spoold waited 13 s in silence,
  // found by a tester), and a dead one's was removed above.
  const wait = waitForStale && h === 'unknown';
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(site.root, {
      lockfilePath: site.lock, stale: STALE_MS, update: UPDATE_MS, realpath: false,
      retries: wait ? { retries: Math.ceil(STALE_MS / 1000) + 3, factor: 1, minTimeout: 1000, maxTimeout: 1000 } : 0,
      onCompromised: onLost,
    });
  } catch (e) {
    if (errno(e) === 'ELOCKED') throw new SpoolError('SPOOL_LOCKED', site.held(readPid(site.pid)), { path: site.lock, hint: site.hint });
    throw e;
  }
  try { site.writePid(`${process.pid}\n`); } catch { /* informational, for people */ }
  return async () => {
    await fsp.rm(site.pid, { force: true }).catch(() => {});
    await release().catch(() => {});
  };
}

export async function takeLock(sp: SpoolPaths, onLost: (err: Error) => void, waitForStale = true): Promise<() => Promise<void>> {
  return lockSite({
    prog: 'spoold', root: sp.root, lock: sp.lock, pid: sp.pid,
    held: (pid) => `another spoold holds the spool lock${pid ? ` (pid ${pid})` : ''}`,
    hint: 'stop it first; a lock left by a crashed spoold expires by itself within 10 seconds',
    // Replaced, never written through: a link planted there must not lead the write outside the spool.
    writePid: (text) => writeStatus(sp, sp.pid, text),
  }, onLost, waitForStale);
}

/**
 * One workerd per --workdir: the directory is its own (workerd cleans up at
 * its start what a workerd that died there left, leftovers.ts).
 */
export async function takeWorkdirLock(dir: string, onLost: (err: Error) => void): Promise<() => Promise<void>> {
  const pid = path.join(dir, 'workerd.pid');
  return lockSite({
    prog: 'workerd', root: dir, lock: path.join(dir, 'workerd.lock'), pid,
    held: (p) => `another workerd${p ? ` (pid ${p})` : ''} uses --workdir ${dir}`,
    hint: 'give each workerd its own --workdir; a lock left by a crashed workerd expires by itself within 10 seconds',
    writePid: (text) => {
      fs.rmSync(pid, { force: true });
      fs.writeFileSync(pid, text, { flag: 'wx' });
      // workerd exits through process.exit wherever it stops; proper-lockfile removes the lock then, this the pid file.
      process.once('exit', () => { if (readPid(pid) === String(process.pid)) fs.rmSync(pid, { force: true }); });
    },
  }, onLost);
}

/** The text of the pid file, '' when there is none or it is not a plain small file (a link, a fifo). */
function readPid(pidFile: string): string {
  try { return readSpoolFile(pidFile)?.toString('utf8').trim() ?? ''; } catch { return ''; }
}

/** True while some spoold holds the lock (for bctl info and fsck). */
export async function isLocked(sp: SpoolPaths): Promise<boolean> {
  try { return await lockfile.check(sp.root, { lockfilePath: sp.lock, stale: STALE_MS, realpath: false }); } catch { return false; }
}
