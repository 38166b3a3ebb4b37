// inspect.ts: bctl inspect ID|DIR: a finished job, by id (done/*/ID) or by its
// directory (a copy rsynced elsewhere works too). By default the result file;
// --console, --script, --job print one of the job's files; --output DIR
// copies its artifacts, alone or beside one of those.
//
// The console is streamed, never read whole (it may be gigabytes). Artifacts
// are copied with lstat: a symlink is copied as a symlink (never followed,
// so a job cannot make us read /etc/shadow through a link), other special
// files are skipped with a warning. Existing files in DIR are never
// overwritten: every target is checked first, and each copy is exclusive
// (COPYFILE_EXCL, symlink(2) fails on EEXIST), so a race still cannot clobber.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseJob } from '../spool/job.js';
import { SpoolError, errno, ioError } from '../spool/errors.js';
import { isId, type RunningFile } from '../spool/paths.js';
import { checkSpool } from '../spool/layout.js';
import { READ_NOFOLLOW } from '../spool/read.js';
import { EXIT_OK } from '../spool/exit.js';
import { flag, readIf, str, usage, type Ctx } from './cli.js';
import { doneFile, noJob, where } from './find.js';

/** The done directory for ID or DIR; SpoolError when there is none. */
async function locate(ctx: Ctx, arg: string): Promise<string> {
  const { sp } = ctx;
  if (isId(arg)) {
    checkSpool(sp);
    const w = await where(sp, arg);
    if (w.state === 'done') return w.dir;
    if (w.state === 'queued') throw new SpoolError('SPOOL_NOT_FOUND', `job ${arg} has not run yet (queued)`, { path: sp.rel(w.file), hint: 'wait until it finished; bctl info shows the queue' });
    if (w.state === 'running') throw new SpoolError('SPOOL_NOT_FOUND', `job ${arg} is still running`, { path: sp.rel(w.dir), hint: `wait until it finished; its console grows in running/${arg}/console.log` });
    // One spoold rejected never ran: named with its bad/ file, as observe and cancel do (found by a tester).
    const never = await noJob(sp, arg);
    if (never.path?.startsWith('bad/')) throw never;
    throw new SpoolError('SPOOL_NOT_FOUND', `no finished job ${arg}`, { path: sp.rel(sp.done), hint: 'ls done/*/ lists the finished jobs, by name; or give a done/NAME/ID directory' });
  }
  let st: fs.Stats;
  try { st = await fsp.stat(arg); } catch (e) {
    if (errno(e) === 'ENOENT') throw new SpoolError('SPOOL_NOT_FOUND', 'neither a job id nor a directory', { path: arg, hint: 'give a job id or a done/NAME/ID directory' });
    throw ioError(e, arg, 'cannot read');
  }
  if (!st.isDirectory() || (await readIf(doneFile(arg, 'result'))) === undefined) {
    throw new SpoolError('SPOOL_NOT_FOUND', 'not a finished job directory (no result file)', { path: arg, hint: 'give a done/NAME/ID directory, or a job id' });
  }
  return arg;
}

/** Stream one file of the job's directory to stdout; a link in its place is not followed (as root, it would print /etc/shadow). */
async function stream(ctx: Ctx, dir: string, f: RunningFile): Promise<void> {
  const file = doneFile(dir, f);
  try {
    // Numeric flags go to open(2) as they are; @types/node types them as a string only.
    await pipeline(fs.createReadStream(file, { flags: READ_NOFOLLOW as unknown as string }), ctx.stdout, { end: false });
  } catch (e) {
    if (errno(e) === 'EPIPE') return;   // `| head`: the reader has seen enough
    if (errno(e) === 'ELOOP') throw new SpoolError('SPOOL_BAD_FILE', 'a symbolic link, not followed', { path: file, hint: 'only spoold writes a job\'s directory; run bctl fsck' });
    if (errno(e) === 'ENOENT') throw new SpoolError('SPOOL_NOT_FOUND', `no ${f} file`, { path: file, hint: 'the directory is incomplete; run bctl fsck' });
    throw ioError(e, file, 'cannot read');
  }
}

interface Copy { from: string; to: string; kind: 'dir' | 'file' | 'link' }

/** Plan the copy of src into dst: every entry, by lstat; nothing followed. */
async function plan(ctx: Ctx, src: string, dst: string, out: Copy[]): Promise<void> {
  for (const e of (await fsp.readdir(src, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const from = path.join(src, e.name);
    const to = path.join(dst, e.name);
    if (e.isSymbolicLink()) out.push({ from, to, kind: 'link' });
    else if (e.isDirectory()) { out.push({ from, to, kind: 'dir' }); await plan(ctx, from, to, out); }
    else if (e.isFile()) out.push({ from, to, kind: 'file' });
    else ctx.warn(`${from}: not a file, directory or symlink; skipped`);
  }
}

async function copyArtifacts(ctx: Ctx, dir: string, dest: string): Promise<void> {
  const src = doneFile(dir, 'artifacts');
  try {
    if (!(await fsp.lstat(src)).isDirectory()) throw new SpoolError('SPOOL_BAD_FILE', 'artifacts is not a directory', { path: src, hint: 'run bctl fsck' });
  } catch (e) {
    if (e instanceof SpoolError) throw e;
    throw ioError(e, src, 'cannot read artifacts');
  }
  const at = await fsp.stat(dest).catch(() => undefined);
  if (at && !at.isDirectory()) throw new SpoolError('SPOOL_EXISTS', 'not a directory', { path: dest, hint: 'give an empty or new directory to --output' });
  const copies: Copy[] = [];
  await plan(ctx, src, dest, copies);
  for (const c of copies) {
    try {
      const st = await fsp.lstat(c.to);
      if (!(c.kind === 'dir' && st.isDirectory())) {
        throw new SpoolError('SPOOL_EXISTS', 'exists; not overwritten', { path: c.to, hint: 'give an empty or new directory to --output' });
      }
    } catch (e) {
      if (e instanceof SpoolError) throw e;
      if (errno(e) !== 'ENOENT') throw ioError(e, c.to, 'cannot check');
    }
  }
  await fsp.mkdir(dest, { recursive: true }).catch((e) => { throw ioError(e, dest, 'cannot create'); });
  for (const c of copies) {
    try {
      if (c.kind === 'dir') await fsp.mkdir(c.to).catch((e) => { if (errno(e) !== 'EEXIST') throw e; });
      else if (c.kind === 'link') await fsp.symlink(await fsp.readlink(c.from), c.to);
      else await fsp.copyFile(c.from, c.to, fs.constants.COPYFILE_EXCL);
    } catch (e) {
      if (errno(e) === 'EEXIST') throw new SpoolError('SPOOL_EXISTS', 'appeared while copying; not overwritten', { path: c.to, hint: 'give an empty or new directory to --output' });
      throw ioError(e, c.to, 'cannot copy');
    }
  }
}

export async function inspect(ctx: Ctx): Promise<number> {
  // One view on standard output (two would run together there); --output,
  // which writes elsewhere, goes with any of them (DESIGN.md's synopsis).
  const views = ['console', 'script', 'job'].filter((f) => flag(ctx, f));
  if (views.length > 1) usage(`give one of --console, --script, --job (got ${views.map((w) => `--${w}`).join(' ')}); --output may go with it`);
  const dir = await locate(ctx, ctx.args[0]!);
  const output = str(ctx, 'output');
  if (output !== undefined) await copyArtifacts(ctx, dir, output);
  if (flag(ctx, 'console')) await stream(ctx, dir, 'console.log');
  else if (flag(ctx, 'job')) await stream(ctx, dir, 'job');
  else if (flag(ctx, 'script')) {
    const file = doneFile(dir, 'job');
    const buf = await readIf(file);
    if (buf === undefined) throw new SpoolError('SPOOL_NOT_FOUND', 'no job file', { path: file, hint: 'the directory is incomplete; run bctl fsck' });
    ctx.stdout.write(parseJob(buf, file).body);
  } else if (output === undefined) await stream(ctx, dir, 'result');   // with --output alone, the copy is all that was asked
  return EXIT_OK;
}
