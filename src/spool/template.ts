// template.ts: job templates, TEMPLATE.template.PLATFORM, with %%VAR%% replaced.
//
// Templates are read from SPOOL/templates/ and then from any extra directories
// (spoold/bctl --templates DIR, $BUILDER_TEMPLATES); the first match wins.
// %%PLATFORM%% is the platform; every other %%VAR%% comes from the job's
// var.VAR headers. An unknown %%VAR%%, or a var. the template never uses, is an
// error naming the template and the variable: it ends up in that job's result.
// Replacement is one pass and literal: a value is never expanded again, and
// $& or %% in a value stay as they are. A value is one header line (no
// newline, no NUL), which the shipped templates rely on to read it safely.
//
// Template and platform names are checked (paths.ts checkName) before they
// become file names, here as well as by the callers, so '../x' never leaves
// the template directories.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { SpoolError, errno, ioError } from './errors.js';
import { decodeFile } from './headers.js';
import { checkName, checkPlatform, isName } from './paths.js';
import { readRegular } from './read.js';

export const TEMPLATE_VAR = /%%([A-Za-z_][A-Za-z0-9_]*)%%/g;

export function templateFile(template: string, platform: string): string {
  return `${template}.template.${platform}`;
}

/**
 * Find templates/TEMPLATE.template.PLATFORM in dirs; undefined when none has it.
 * dirs[0] is the spool's templates/, which the spool's group writes: a link
 * there is not followed (it would copy a file only spoold may read, its token
 * say, into a job everyone in the group reads). In the other directories,
 * which an administrator keeps, it is.
 */
export async function findTemplate(dirs: string[], template: string, platform: string): Promise<string | undefined> {
  checkName(template, 'template name');
  checkPlatform(platform);
  for (const d of dirs) {
    const p = path.join(d, templateFile(template, platform));
    try {
      const st = await look(dirs, d, p);
      if (st.isFile()) return p;
    } catch (e) {
      if (errno(e) !== 'ENOENT' && errno(e) !== 'ENOTDIR') throw ioError(e, p, 'cannot read template');
    }
  }
  return undefined;
}

/** stat p in template directory d of dirs: without following a link in the spool's own (dirs[0]; findTemplate says why). */
const look = (dirs: string[], d: string, p: string) => (d === dirs[0] ? fsp.lstat(p) : fsp.stat(p));

/** Platforms that have TEMPLATE (any template, when undefined) in any of dirs, sorted. */
export async function templatePlatforms(dirs: string[], template?: string): Promise<string[]> {
  if (template !== undefined) checkName(template, 'template name');
  const platformOf = (n: string): string | undefined => {
    if (template !== undefined) return n.startsWith(`${template}.template.`) ? n.slice(template.length + '.template.'.length) : undefined;
    const i = n.indexOf('.template.');
    return i > 0 ? n.slice(i + '.template.'.length) : undefined;
  };
  const out = new Set<string>();
  for (const d of dirs) {
    let names: string[] = [];
    try { names = await fsp.readdir(d); } catch { continue; }
    for (const n of names) {
      const p = platformOf(n);
      if (p !== undefined && isName(p)) out.add(p);
    }
  }
  return [...out].sort();
}

function list(names: string[], pre: string, post: string): string {
  return names.map((n) => `${pre}${n}${post}`).join(', ');
}

/** Replace %%PLATFORM%% and %%VAR%% in text; SpoolError for a missing or unused variable. */
export function expand(text: string, source: string, platform: string, vars: Record<string, string>): string {
  if (Object.hasOwn(vars, 'PLATFORM')) {
    throw new SpoolError('SPOOL_BAD_VALUE', 'the job sets var.PLATFORM, which is the platform the job runs on', { path: source, hint: 'remove var.PLATFORM; %%PLATFORM%% is always the platform' });
  }
  const used = new Set<string>();
  const missing = new Set<string>();
  const out = text.replace(TEMPLATE_VAR, (_m, v: string) => {
    if (v === 'PLATFORM') return platform;
    if (!Object.hasOwn(vars, v)) { missing.add(v); return ''; }
    used.add(v);
    return vars[v]!;
  });
  if (missing.size > 0) {
    const m = [...missing];
    throw new SpoolError('SPOOL_BAD_VALUE', `template uses ${list(m, '%%', '%%')} but the job has no ${list(m, 'var.', '')}`,
      { path: source, hint: `add ${list(m, 'var.', ': VALUE')} to the schedule` });
  }
  const unused = Object.keys(vars).filter((v) => !used.has(v));
  if (unused.length > 0) {
    throw new SpoolError('SPOOL_BAD_VALUE', `the job sets ${list(unused, 'var.', '')} but the template has no ${list(unused, '%%', '%%')}`,
      { path: source, hint: `remove ${list(unused, 'var.', '')} or fix the spelling` });
  }
  return out;
}

/** Read and expand TEMPLATE for PLATFORM. SpoolError when it is missing, unreadable or does not expand. */
export async function renderTemplate(dirs: string[], template: string, platform: string, vars: Record<string, string>): Promise<string> {
  const file = await findTemplate(dirs, template, platform);
  if (!file) {
    // There, but not a file (a directory): said as such, not as missing (found by a tester).
    for (const d of dirs) {
      const p = path.join(d, templateFile(template, platform));
      const st = await look(dirs, d, p).catch(() => undefined);
      if (st) throw new SpoolError('SPOOL_BAD_FILE', `not a regular file (a ${st.isSymbolicLink() ? 'symbolic link, which is not followed in the spool' : st.isDirectory() ? 'directory' : 'special file'})`, { path: p, hint: 'put the template there as a plain file; keep templates you link to in a --templates directory' });
    }
    throw new SpoolError('SPOOL_NOT_FOUND', `no template ${templateFile(template, platform)}`,
      { path: dirs[0] ?? 'templates', hint: `add templates/${templateFile(template, platform)} or give the job a platform that has one` });
  }
  // Read as every spool file is (readRegular): never through a link swapped in
  // meanwhile, and no more than MAX_FILE bytes (a sparse file of gigabytes was read whole).
  let got: Buffer | { why: string };
  try { got = readRegular(file.startsWith(dirs[0] + path.sep) ? file : await fsp.realpath(file)); } catch (e) { throw ioError(e, file, 'cannot read template'); }
  if (!Buffer.isBuffer(got)) throw new SpoolError('SPOOL_BAD_FILE', got.why, { path: file, hint: 'a template is a plain file of at most 1 MiB' });
  return expand(decodeFile(got, file), file, platform, vars);
}
