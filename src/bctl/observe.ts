// observe.ts: bctl observe ID, bctl observe-latest [--platform P] [--job NAME].
//
// Prints the job's console as it grows, from its first byte, whether the job
// is queued (we wait), running (we follow running/ID/console.log) or already
// done (we print done/NAME/ID/console.log), then one line `ID STATUS` on
// stderr, and exits 0 for `exited 0`, 1 otherwise. Standard output carries
// the console bytes exactly, so `bctl observe ID > log` is the whole console.
//
// The open console file survives the rename of running/ID to done/NAME/ID
// (same inode), so nothing is printed twice or missed at the finish. If the
// job is requeued (its worker was lost), its next attempt writes a new
// console.log; we say so on stderr and follow the new one from its start.

import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkId, isId, isName } from '../spool/paths.js';
import { parseResult, formatStatus, isSuccess } from '../spool/result.js';
import { parseJob } from '../spool/job.js';
import { SpoolError, errno } from '../spool/errors.js';
import { READ_NOFOLLOW } from '../spool/read.js';
import { checkSpool } from '../spool/layout.js';
import { EXIT_FAIL, EXIT_OK } from '../spool/exit.js';
import { asUsage, argName, argPlatform, list, readIf, str, type Ctx } from './cli.js';
import { where, doneFile, noJob } from './find.js';

const POLL_MS = 100;
const CHUNK = 256 << 10;

export async function observe(ctx: Ctx): Promise<number> {
  const id = asUsage(() => checkId(ctx.args[0]!));
  checkSpool(ctx.sp);
  return follow(ctx, id);
}

export async function observeLatest(ctx: Ctx): Promise<number> {
  const platform = str(ctx, 'platform') === undefined ? undefined : argPlatform(str(ctx, 'platform')!);
  const name = str(ctx, 'job') === undefined ? undefined : argName(str(ctx, 'job')!);
  checkSpool(ctx.sp);
  const id = await latest(ctx, platform, name);
  if (!id) {
    throw new SpoolError('SPOOL_NOT_FOUND', `no job${name ? ` named ${name}` : ''}${platform ? ` for platform ${platform}` : ''} is running or done`,
      { path: ctx.sp.root, hint: 'bctl info lists jobs; drop --job or --platform to widen the search' });
  }
  ctx.warn(`observing ${id}`);
  return follow(ctx, id);
}

/** The newest running job matching the filters, else the newest finished one (ids sort by time). */
async function latest(ctx: Ctx, platform: string | undefined, name: string | undefined): Promise<string | undefined> {
  const { sp } = ctx;
  const matches = (j: { name: string; platform: string }) => (!name || j.name === name) && (!platform || j.platform === platform);
  const running = (await list(sp.running)).filter(isId).sort().reverse();
  for (const id of running) {
    const buf = await readIf(sp.runningFile(id, 'job'));
    if (!buf) continue;
    try { if (matches(parseJob(buf, `running/${id}/job`, id))) return id; } catch { /* fsck reports it */ }
  }
  let best: string | undefined;
  for (const n of (await list(sp.done)).filter(isName)) {
    if (name && n !== name) continue;
    for (const id of (await list(sp.doneName(n))).filter(isId)) {
      if (best !== undefined && id <= best) continue;
      if (platform) {
        const buf = await readIf(doneFile(sp.doneDir(n, id), 'result'));
        try { if (!buf || parseResult(buf, 'result').platform !== platform) continue; } catch { continue; }
      }
      best = id;
    }
  }
  return best;
}

async function follow(ctx: Ctx, id: string): Promise<number> {
  const { sp } = ctx;
  let fh: fsp.FileHandle | undefined;
  let ino = -1;
  let pos = 0;
  let saidQueued = false;
  const buf = Buffer.allocUnsafe(CHUNK);
  const pump = async (): Promise<void> => {
    for (;;) {
      const { bytesRead } = await fh!.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      if (!ctx.stdout.write(Buffer.from(buf.subarray(0, bytesRead)))) {
        await new Promise<void>((r) => { ctx.stdout.once('drain', r); ctx.stdout.once('close', r); });
      }
    }
  };
  const open = async (p: string): Promise<boolean> => {
    // Not through a link put in its place (run as root, it would print any file: found in review).
    try { fh = await fsp.open(p, READ_NOFOLLOW); } catch (e) {
      if (errno(e) === 'ELOOP') throw new SpoolError('SPOOL_BAD_FILE', 'a symbolic link, not followed', { path: sp.rel(p), hint: 'only spoold writes a job\'s directory; run bctl fsck' });
      return false;
    }
    const st = await fh.stat();
    if (!st.isFile()) { await fh.close(); fh = undefined; throw new SpoolError('SPOOL_BAD_FILE', 'not a regular file', { path: sp.rel(p), hint: 'only spoold writes a job\'s directory; run bctl fsck' }); }
    ino = st.ino;
    pos = 0;
    return true;
  };
  const close = async () => { await fh?.close(); fh = undefined; ino = -1; };
  try {
    for (;;) {
      const w = await where(sp, id);
      if (w.state === 'none') {
        throw await noJob(sp, id);
      }
      if (w.state === 'queued') {
        if (fh) { await close(); ctx.warn(`${id} was requeued (its worker was lost); following its next attempt`); }
        else if (!saidQueued) ctx.warn(`${id} is queued; waiting for a worker`);
        saidQueued = true;
        await sleep(POLL_MS * 2);
        continue;
      }
      if (w.state === 'running') {
        const p = sp.runningFile(id, 'console.log');
        if (fh) {
          const st = await fsp.stat(p).catch(() => undefined);
          if (st && st.ino !== ino) { await close(); ctx.warn(`${id} started again; following its new console`); }
        }
        if (!fh && !(await open(p))) { await sleep(POLL_MS); continue; }
        await pump();
        await sleep(POLL_MS);
        continue;
      }
      // done: what is left of the file we follow (the same inode, renamed), or all of it.
      const dir = w.dir;
      const p = doneFile(dir, 'console.log');
      const st = await fsp.stat(p).catch(() => undefined);
      if (fh && st && st.ino !== ino) await close();
      if (fh || (await open(p))) await pump();
      const rb = await readIf(doneFile(dir, 'result'));
      if (!rb) throw new SpoolError('SPOOL_BAD_FILE', 'finished job has no result', { path: sp.rel(dir), hint: 'run bctl fsck' });
      const r = parseResult(rb, sp.rel(doneFile(dir, 'result')));
      process.stderr.write(`${id} ${formatStatus(r.status)}\n`);
      return isSuccess(r.status) ? EXIT_OK : EXIT_FAIL;
    }
  } finally {
    await close();
  }
}


