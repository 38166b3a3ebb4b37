// lock.ts: one spoold per spool. The only importer of proper-lockfile.
//
// The lock is the directory SPOOL/spoold.lock, refreshed every UPDATE_MS; a
// holder killed with SIGKILL leaves it behind, and it becomes stale after
// STALE_MS, so a restart right after a crash retries for longer than STALE_MS
// (DEPENDENCIES.md 2). spoold.pid beside it tells people who holds it.
// If the lock is taken from us (deleted by hand, or our event loop stalled past
// STALE_MS and another spoold took it) we must stop claiming at once: exit 75.

import lockfile from 'proper-lockfile';
import fsp from 'node:fs/promises';
import { SpoolError, errno } from './errors.js';
import type { SpoolPaths } from './paths.js';
import { EXIT_TEMPFAIL } from './exit.js';
import { readSpoolFile } from './read.js';
import { writeStatus } from './stage.js';

export const STALE_MS = 10_000;
export const UPDATE_MS = 2_000;

/** The pid in spoold.pid, if that process is gone: the lock it left is stale. */
async function deadHolder(sp: SpoolPaths): Promise<number | undefined> {
  const pid = Number(readPid(sp));
  if (!Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return undefined;
  try { process.kill(pid, 0); return undefined; } catch (e) { return errno(e) === 'ESRCH' ? pid : undefined; }
}

export async function takeLock(sp: SpoolPaths, onLost: (err: Error) => void, waitForStale = true): Promise<() => Promise<void>> {
  // A spoold killed with SIGKILL leaves its lock for STALE_MS. When spoold.pid
  // names a process that no longer exists, the lock is that dead spoold's:
  // remove it, so a restart after a crash is immediate. (Same host only: the
  // spool is local. BUGS: two spoolds started at the same instant after a crash
  // may both remove it; the loser sees its lock compromised and exits 75.)
  if (await deadHolder(sp) !== undefined) {
    await fsp.rm(sp.lock, { recursive: true, force: true });
    await fsp.rm(sp.pid, { force: true });
  }
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(sp.root, {
      lockfilePath: sp.lock, stale: STALE_MS, update: UPDATE_MS, realpath: false,
      retries: waitForStale ? { retries: Math.ceil(STALE_MS / 1000) + 3, factor: 1, minTimeout: 1000, maxTimeout: 1000 } : 0,
      onCompromised: (err) => { onLost(err); process.exit(EXIT_TEMPFAIL); },
    });
  } catch (e) {
    if (errno(e) === 'ELOCKED') {
      const pid = readPid(sp);
      throw new SpoolError('SPOOL_LOCKED', `another spoold holds the spool lock${pid ? ` (pid ${pid})` : ''}`,
        { path: sp.lock, hint: 'stop it first; a lock left by a crashed spoold expires by itself within 10 seconds' });
    }
    throw e;
  }
  // Replaced, never written through: a link planted there must not lead the write outside the spool.
  try { writeStatus(sp, sp.pid, `${process.pid}\n`); } catch { /* informational, for people */ }
  return async () => {
    await fsp.rm(sp.pid, { force: true }).catch(() => {});
    await release().catch(() => {});
  };
}

/** The text of spoold.pid, '' when there is none or it is not a plain small file (a link, a fifo). */
function readPid(sp: SpoolPaths): string {
  try { return readSpoolFile(sp.pid)?.toString('utf8').trim() ?? ''; } catch { return ''; }
}

/** True while some spoold holds the lock (for bctl info and fsck). */
export async function isLocked(sp: SpoolPaths): Promise<boolean> {
  try { return await lockfile.check(sp.root, { lockfilePath: sp.lock, stale: STALE_MS, realpath: false }); } catch { return false; }
}
