// layout.ts: create the spool's directories on first use, with sane modes.
//
// Directories are 2775 (setgid, group-writable for the builder group, world
// readable so nginx can serve done/); nothing is world-writable. Creating an
// existing directory is a no-op, so every program may call ensureSpool().

import fsp from 'node:fs/promises';
import { DIRS, type SpoolPaths } from './paths.js';
import { DIR_MODE } from './stage.js';
import { ioError, errno } from './errors.js';

export async function ensureSpool(sp: SpoolPaths): Promise<void> {
  for (const d of ['', ...DIRS]) {
    const dir = d === '' ? sp.root : `${sp.root}/${d}`;
    try {
      const made = await fsp.mkdir(dir, { mode: DIR_MODE, recursive: d === '' });
      // mkdir's mode is masked by the umask, so set it; but only on what we
      // made: an existing spool keeps the mode its owner chose, and a member
      // of the spool's group (bctl) may not chmod it (EPERM).
      if (d !== '' || made !== undefined) await fsp.chmod(dir, DIR_MODE);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw ioError(e, dir, 'cannot create spool directory');
    }
  }
}
