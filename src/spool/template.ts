// template.ts: job templates, TEMPLATE.template.PLATFORM, with %%VAR%% replaced.
//
// Templates are read from SPOOL/templates/ and then from any extra directories
// (spoold/bctl --templates DIR, $BUILDER_TEMPLATES); the first match wins.
// %%PLATFORM%% is the platform; every other %%VAR%% comes from the job's
// var.VAR headers. An unknown %%VAR%%, or a var. the template never uses, is an
// error naming the template and the variable: it ends up in that job's result.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { SpoolError, errno } from './errors.js';
import { decodeFile } from './headers.js';
import { isName } from './paths.js';

export const TEMPLATE_VAR = /%%([A-Za-z_][A-Za-z0-9_]*)%%/g;

export function templateFile(template: string, platform: string): string {
  return `${template}.template.${platform}`;
}

/** Find templates/TEMPLATE.template.PLATFORM in dirs; undefined when none has it. */
export async function findTemplate(dirs: string[], template: string, platform: string): Promise<string | undefined> {
  for (const d of dirs) {
    const p = path.join(d, templateFile(template, platform));
    try {
      const st = await fsp.stat(p);
      if (st.isFile()) return p;
    } catch (e) {
      if (errno(e) !== 'ENOENT' && errno(e) !== 'ENOTDIR') throw e;
    }
  }
  return undefined;
}

/** Platforms that have TEMPLATE in any of dirs, sorted. */
export async function templatePlatforms(dirs: string[], template: string): Promise<string[]> {
  const prefix = `${template}.template.`;
  const out = new Set<string>();
  for (const d of dirs) {
    let names: string[] = [];
    try { names = await fsp.readdir(d); } catch { continue; }
    for (const n of names) if (n.startsWith(prefix) && isName(n.slice(prefix.length))) out.add(n.slice(prefix.length));
  }
  return [...out].sort();
}

/** Replace %%PLATFORM%% and %%VAR%% in text; SpoolError for a missing or unused variable. */
export function expand(text: string, source: string, platform: string, vars: Record<string, string>): string {
  const used = new Set<string>();
  const missing: string[] = [];
  const out = text.replace(TEMPLATE_VAR, (_m, v: string) => {
    if (v === 'PLATFORM') return platform;
    const val = vars[v];
    if (val === undefined) { missing.push(v); return ''; }
    used.add(v);
    return val;
  });
  if (missing.length > 0) {
    throw new SpoolError('SPOOL_BAD_VALUE', `template uses %%${missing[0]}%% but the job has no var.${missing[0]}`, { path: source, hint: `add var.${missing[0]}: VALUE to the schedule` });
  }
  const unused = Object.keys(vars).filter((v) => !used.has(v));
  if (unused.length > 0) {
    throw new SpoolError('SPOOL_BAD_VALUE', `the job sets var.${unused[0]} but the template has no %%${unused[0]}%%`, { path: source, hint: `remove var.${unused[0]} or fix its spelling` });
  }
  return out;
}

/** Read and expand TEMPLATE for PLATFORM. SpoolError when it is missing or does not expand. */
export async function renderTemplate(dirs: string[], template: string, platform: string, vars: Record<string, string>): Promise<string> {
  const file = await findTemplate(dirs, template, platform);
  if (!file) {
    throw new SpoolError('SPOOL_NOT_FOUND', `no template ${templateFile(template, platform)}`,
      { path: dirs[0] ?? 'templates', hint: `add templates/${templateFile(template, platform)} or give the job a platform that has one` });
  }
  const text = decodeFile(await fsp.readFile(file), file);
  return expand(text, file, platform, vars);
}
