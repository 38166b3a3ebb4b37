// layout.ts: create the spool's directories on first use, with sane modes,
// and tell a spool from a directory that is none.
//
// Directories are 2775 (setgid, group-writable for the builder group, world
// readable so nginx can serve done/); nothing is world-writable. Creating an
// existing directory is a no-op, so every program may call ensureSpool().
// spoold makes a missing spool directory itself (spoold(8)); bctl never does:
// a mistyped -s would make a spool no daemon serves (checkSpool).

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { SpoolPaths } from './paths.js';
import { DIR_MODE } from './stage.js';
import { SpoolError, ioError, errno } from './errors.js';

/**
 * Make the spool's directories that are missing. With makeRoot false (bctl),
 * the spool directory itself must exist and look like a spool (checkSpool);
 * only the directories below it are made.
 */
export async function ensureSpool(sp: SpoolPaths, { makeRoot = true }: { makeRoot?: boolean } = {}): Promise<void> {
  // A whole spool, the usual case, is found with a stat(2) of each directory,
  // a tenth of what trying to make each costs through the thread pool (~2 ms
  // for bctl submit); on a whole spool the loop below makes and changes nothing.
  const dirs = sp.dirs();
  if (dirs.every(isDir)) return;
  if (!makeRoot) checkSpool(sp);
  for (const [i, dir] of dirs.entries()) {
    const root = i === 0;
    if (root && !makeRoot) continue;
    try {
      const made = root ? await makeDirs(dir, DIR_MODE) : await fsp.mkdir(dir, { mode: DIR_MODE });
      // mkdir's mode is masked by the umask, so set it; but only on what we
      // made: an existing spool keeps the mode its owner chose, and a member
      // of the spool's group (bctl) may not chmod it (EPERM).
      if (!root || made !== undefined) await fsp.chmod(dir, DIR_MODE);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw ioError(e, dir, 'cannot create spool directory');
    }
  }
}

/**
 * The spool's directories (not the spool itself) that are symbolic links,
 * relative to the spool. Its directory is writable by the spool's group, so a
 * member of it could swap new/ or tmp/ for a link to anywhere; spoold, which
 * moves, rewrites and removes what it finds there, refuses to run on one.
 */
export function linkedDirs(sp: SpoolPaths): string[] {
  return sp.dirs().slice(1).filter((d) => fs.lstatSync(d, { throwIfNoEntry: false })?.isSymbolicLink()).map((d) => `${sp.rel(d)}/`);
}

function isDir(p: string): boolean {
  return fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;
}

/**
 * SpoolError SPOOL_NOT_FOUND unless sp.root is a spool: an existing directory
 * that has one of new/, running/, done/ and schedules/ (every program that
 * writes the spool makes all four), or that is empty but for lost+found and
 * dot files (a spool not used yet, made by a package or a person). So a
 * mistyped -s, or one that names some other directory, is an error rather
 * than an empty listing, a "no job" or a new spool nobody serves.
 */
export function checkSpool(sp: SpoolPaths): void {
  const hint = 'give the spool with -s DIR or $BUILDER_SPOOL';
  let st: fs.Stats;
  try { st = fs.statSync(sp.root); } catch (e) {
    throw new SpoolError('SPOOL_NOT_FOUND', `no spool here (${errno(e) ?? 'error'})`, { path: sp.root, hint });
  }
  if (!st.isDirectory()) throw new SpoolError('SPOOL_NOT_FOUND', 'no spool here (not a directory)', { path: sp.root, hint });
  if ([sp.new, sp.running, sp.done, sp.schedules].some(isDir)) return;
  let names: string[];
  try { names = fs.readdirSync(sp.root); } catch (e) { throw ioError(e, sp.root, 'cannot list'); }
  if (names.every((n) => n.startsWith('.') || n === 'lost+found')) return;
  throw new SpoolError('SPOOL_NOT_FOUND', 'not a spool: none of new/, running/, done/, schedules/ in it, and it is not empty', { path: sp.root, hint });
}

/**
 * mkdir -p: make dir and its missing parents; the first one made, or
 * undefined when dir was there. Not node's recursive mkdir, which spins for
 * ever at 100% CPU on a path under /proc or /sys, whose mkdir says ENOENT
 * although the parent exists: here a second ENOENT is final.
 */
export async function makeDirs(dir: string, mode: number): Promise<string | undefined> {
  try {
    await fsp.mkdir(dir, { mode });
    return dir;
  } catch (e) {
    if (errno(e) === 'EEXIST' && isDir(dir)) return undefined;
    const parent = path.dirname(dir);
    if (errno(e) !== 'ENOENT' || parent === dir) throw e;
    const first = await makeDirs(parent, mode);
    await fsp.mkdir(dir, { mode });
    return first ?? dir;
  }
}
