// orb-build.ts: bctl orb-build NAME OPAM_PACKAGE: a template schedule.
//
// The schedule names the orb-build template and the package instead of a
// script; spoold (or bctl execute) expands templates/orb-build.template.PLATFORM
// for each platform that has one, or only for --platform.

import { EXIT_OK } from '../spool/exit.js';
import { argName, argPlatform, str, usage, warnDropped, type Ctx } from './cli.js';
import { whenOf, writeNewSchedule } from './schedule.js';
import { templateFile, templatePlatforms } from '../spool/template.js';

export const ORB_TEMPLATE = 'orb-build';

// opam package names (and NAME.VERSION): no blanks, no '#', nothing a header value cannot hold.
const OPAM_RE = /^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,199}$/;

export async function orbBuild(ctx: Ctx): Promise<number> {
  const [nameArg, pkg] = ctx.args as [string, string];
  const name = argName(nameArg);
  if (!OPAM_RE.test(pkg)) usage(`bad opam package ${JSON.stringify(pkg.slice(0, 60))}; write a package name like hello or hello.1.0`);
  const p = str(ctx, 'platform');
  const platform = p === undefined ? undefined : argPlatform(p);
  const when = whenOf(ctx, 'UTC', false);
  await writeNewSchedule(ctx.sp, {
    name, platform, timeout: undefined, retries: undefined, priority: 0, network: true,   // orb-build fetches opam, orb and sources: it needs the network under --sandbox
    template: ORB_TEMPLATE, vars: { OPAM_PACKAGE: pkg }, body: '', schedule: when, tz: 'UTC',
  }, undefined, ctx.warn);
  // Found by a new user: with no template in the spool, the schedule fired and
  // queued nothing, said only in spoold's log. spoold may read more template
  // directories (--templates), so this warns and does not refuse.
  const have = await templatePlatforms([ctx.sp.templates], ORB_TEMPLATE);
  if (platform === undefined ? have.length === 0 : !have.includes(platform)) {
    // builder-spool(5), TEMPLATES: with a platform, each firing records a job failed for want of its template; without, it queues nothing.
    const outcome = platform === undefined ? 'each firing queues nothing (spoold logs why)' : `each firing records a job failed: no template in done/${name}/`;
    ctx.warn(`warning: no ${ctx.sp.rel(ctx.sp.templates)}/${templateFile(ORB_TEMPLATE, platform ?? '*')}: unless spoold reads one from its --templates, ${outcome}; copy one in, e.g. from builder's templates/`);
  }
  if (platform !== undefined) warnDropped(ctx, platform, 'the schedule does not fire');
  return EXIT_OK;
}
