// instance.ts: turn a schedule into queued jobs (one per platform).
//
// Used by spoold's schedule timer and by bctl execute, so both queue the same
// thing. A schedule with a platform gives one instance; a template schedule
// without one gives an instance for every platform that has the template.
// An instance whose template is missing or does not expand is still an
// instance: it is recorded in done/ at once with `failed: WHY`, so the error
// sits in that job's result where people look, and nothing crashes.

import { makeJob, type Origin, type ParsedJob, type Schedule } from './job.js';
import { newId } from './ids.js';
import { renderTemplate, templatePlatforms } from './template.js';
import { submit, recordFailed } from './state.js';
import type { SpoolPaths } from './paths.js';
import { SpoolError } from './errors.js';

export interface Instance { id: string; platform: string; job: ParsedJob; error: string | undefined }

export interface InstanceOpts {
  platform?: string | undefined;   // only this one of its platforms (bctl execute --platform)
  origin: Origin;
  priority?: number | undefined;
  templateDirs: string[];          // SPOOL/templates first, then --templates DIR
  now?: Date;
  skip?: ReadonlySet<string>;      // platforms a template schedule does not run on (dropped ones)
  platforms?: string[];            // a template schedule's platforms, when the caller has listed them already
}

/** Build the instances of `s`, without writing anything. */
export async function instances(s: Schedule, o: InstanceOpts): Promise<Instance[]> {
  let platforms: string[];
  if (s.platform !== undefined) platforms = [s.platform];
  else platforms = (o.platforms ?? await templatePlatforms(o.templateDirs, s.template!)).filter((p) => !o.skip?.has(p));
  if (o.platform !== undefined) {
    // Only narrows: a platform the schedule does not run on (a typo) would
    // queue a job that waits for a worker that never comes.
    if (!platforms.includes(o.platform)) {
      const on = s.platform !== undefined ? `runs on ${s.platform} only`
        : `runs on the platforms with a template ${s.template}: ${platforms.length > 0 ? platforms.join(', ') : 'none yet'}`;
      throw new SpoolError('SPOOL_NOT_FOUND', `schedule ${s.name} does not run on platform ${o.platform}`, {
        path: `schedules/${s.name}`,
        hint: s.platform !== undefined ? `it ${on}` : `it ${on}; add templates/${s.template}.template.${o.platform} to run it there`,
      });
    }
    platforms = [o.platform];
  }
  if (platforms.length === 0) {
    throw new SpoolError('SPOOL_NOT_FOUND', `no platform has template ${s.template}`, { path: `schedules/${s.name}`, hint: `add templates/${s.template}.template.PLATFORM, or a platform: header` });
  }
  const out: Instance[] = [];
  for (const platform of platforms) {
    const id = newId(o.now?.getTime());
    let body = s.body;
    let error: string | undefined;
    if (s.template !== undefined) {
      try { body = await renderTemplate(o.templateDirs, s.template, platform, s.vars); } catch (e) {
        if (!(e instanceof SpoolError)) throw e;
        error = e.message;
        body = `#!/bin/sh\n# not run: ${error.replace(/\n/g, ' ')}\nexit 1\n`;
      }
    }
    const job = makeJob({
      ...s, platform, body, id, queued: o.now ?? new Date(), origin: o.origin, attempt: 0,
      priority: o.priority ?? s.priority,
    });
    out.push({ id, platform, job, error });
  }
  return out;
}

/** Queue one instance built by instances(): submit it if good, record it as failed if not. */
export async function queueInstance(sp: SpoolPaths, i: Instance): Promise<void> {
  if (i.error === undefined) await submit(sp, i.job as ParsedJob & { id: string });
  else await recordFailed(sp, i.job as ParsedJob & { id: string }, i.error);
}

/** Queue instances built by instances(), one after the other. */
export async function queueList(sp: SpoolPaths, list: Instance[]): Promise<Instance[]> {
  for (const i of list) await queueInstance(sp, i);
  return list;
}
