// drop-platform.ts: bctl drop-platform PLATFORM [--reason TEXT]: write the
// marker platforms/PLATFORM. spoold stops dispatching to the platform and
// sets its schedules aside; bctl only writes the marker, staged in tmp/ and
// linked into place so an existing marker (and what it says) is kept.

import os from 'node:os';
import { formatHeaders } from '../spool/headers.js';
import { ensureSpool } from '../spool/layout.js';
import { writeStaged } from '../spool/stage.js';
import { SpoolError } from '../spool/errors.js';
import { EXIT_OK } from '../spool/exit.js';
import { argPlatform, asUsage, fmtTime, publishNew, str, type Ctx } from './cli.js';

function whoami(): string {
  try { return os.userInfo().username; } catch { return String(process.getuid?.() ?? 'unknown'); }
}

export async function dropPlatform(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  const platform = argPlatform(ctx.args[0]!);
  const reason = str(ctx, 'reason');
  const text = asUsage(() => formatHeaders([
    ['dropped', fmtTime(new Date())], ['by', whoami()], ...(reason === undefined ? [] : [['reason', reason.trim()] as [string, string]]),
  ]));
  await ensureSpool(sp, { makeRoot: false });
  const target = sp.platform(platform);
  const staged = await writeStaged(sp, `platform-${platform}`, text, target);
  await publishNew(sp, staged, target, () => new SpoolError('SPOOL_EXISTS', `platform ${platform} is already dropped`,
    { path: sp.rel(target), hint: `see the file for when and why; bctl undrop-platform ${platform} takes it back` }));
  return EXIT_OK;
}
