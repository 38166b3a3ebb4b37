// undrop-platform.ts: bctl undrop-platform PLATFORM: remove the marker
// platforms/PLATFORM; spoold dispatches to the platform again.

import fsp from 'node:fs/promises';
import { SpoolError, errno, ioError } from '../spool/errors.js';
import { checkSpool } from '../spool/layout.js';
import { EXIT_OK } from '../spool/exit.js';
import { argPlatform, type Ctx } from './cli.js';

export async function undropPlatform(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const platform = argPlatform(ctx.args[0]!);
  checkSpool(sp);
  const target = sp.platform(platform);
  try {
    await fsp.unlink(target);
  } catch (e) {
    if (errno(e) === 'ENOENT') {
      throw new SpoolError('SPOOL_NOT_FOUND', `platform ${platform} is not dropped`, { path: sp.rel(target), hint: 'bctl info lists the dropped platforms' });
    }
    throw ioError(e, sp.rel(target), 'cannot remove');
  }
  return EXIT_OK;
}
