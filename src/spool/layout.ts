// layout.ts: create the spool's directories on first use, with sane modes.
//
// Directories are 2775 (setgid, group-writable for the builder group, world
// readable so nginx can serve done/); nothing is world-writable. Creating an
// existing directory is a no-op, so every program may call ensureSpool().

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { SpoolPaths } from './paths.js';
import { DIR_MODE } from './stage.js';
import { ioError, errno } from './errors.js';

export async function ensureSpool(sp: SpoolPaths): Promise<void> {
  // A whole spool, the usual case, is found with a stat(2) of each directory,
  // a tenth of what trying to make each costs through the thread pool (~2 ms
  // for bctl submit); on a whole spool the loop below makes and changes nothing.
  const dirs = sp.dirs();
  if (dirs.every((d) => fs.statSync(d, { throwIfNoEntry: false })?.isDirectory() === true)) return;
  for (const [i, dir] of dirs.entries()) {
    const root = i === 0;
    try {
      const made = await fsp.mkdir(dir, { mode: DIR_MODE, recursive: root });
      // mkdir's mode is masked by the umask, so set it; but only on what we
      // made: an existing spool keeps the mode its owner chose, and a member
      // of the spool's group (bctl) may not chmod it (EPERM).
      if (!root || made !== undefined) await fsp.chmod(dir, DIR_MODE);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw ioError(e, dir, 'cannot create spool directory');
    }
  }
}
