// state.ts: every state transition of a job, each one rename, in one place.
//
//   submit    tmp/X -> new/ID                commit: the job is queued
//   adopt     new/NAME -> new/ID             a file a person dropped into new/ gets an id
//   claim     new/ID -> running/ID/job       commit: the job is spoold's to dispatch
//   requeue   running/ID/job -> new/ID       attempt = attempts started so far
//   finalize  running/ID/ -> done/NAME/ID/   commit: the job is finished; then latest
//   reject    new/F, schedules/F -> bad/F    with bad/F.why; never deleted
//             and the strays of running/ID/ and done/NAME (ownEntry, sweep):
//             what spoold did not make there is moved aside, never followed
//
// A job is in exactly one of new/ID, running/ID/job and done/NAME/ID at any
// instant, because each move is a rename of the job itself.
//
// Crash leftovers, and who cleans them (reconcile in spoold, on start):
//   running/ID/ without job        requeue or finalize committed, cleanup not done: removed
//   running/ID/job with result     finalize interrupted after the result: finalized
//   running/ID/job, no result      claimed, maybe running: a worker may re-attach
//                                  within the lease, else requeue (attempt+1) or lost;
//                                  a job file whose attempt the lease names too was
//                                  being requeued: that attempt is not counted again
//   tmp/*                          staged by a writer that died before publishing:
//                                  removed on start and by the periodic rescan (cleanTmp)
// BUGS: a job file dropped into new/ with `attempt:` already at the limit is
// run once more before it is recorded lost; the count is advisory for hand edits.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { formatJob, type Job, type ParsedJob } from './job.js';
import { formatResult, type Result } from './result.js';
import { writeAtomic, writeStaged, writeStagedSync, writePrivate, publish, publishSync, fsyncDirQuiet, fsyncPath, replaceSymlink, mkdirSpool, mkdirSpoolStaged, createSpoolFile, removeTree, removeEntry } from './stage.js';
import { errno, ioError, oneLine, SpoolError } from './errors.js';
import { newId } from './ids.js';
import { isId, isName, type SpoolPaths, type RunningFile } from './paths.js';

/** Queue a job: stage it in tmp/, then rename into new/ID. */
export async function submit(sp: SpoolPaths, job: ParsedJob & { id: string }): Promise<void> {
  const target = sp.queued(job.id);
  const staged = await writeStaged(sp, job.id, formatJob(job), target);
  // commit: after this rename the job is queued
  await publish(sp, staged, target);
}

/**
 * submit, with its fsyncs made on the spot rather than in the thread pool:
 * for bctl submit, a one-shot process whose start is its cost (a thread-pool
 * hop per fsync cost it milliseconds). spoold uses submit.
 */
export function submitSync(sp: SpoolPaths, job: ParsedJob & { id: string }): void {
  const target = sp.queued(job.id);
  const staged = writeStagedSync(sp, job.id, formatJob(job), target);
  // commit: after this rename the job is queued
  publishSync(sp, staged, target);
}

/**
 * A file dropped into new/ under a name that is not an id: give it one, the
 * id its own `id:` header names if it has one (`wanted`, checked free by the
 * caller), else a fresh one. Returns the id; undefined if the file vanished,
 * or if `wanted` appeared in new/ meanwhile (link(2) never replaces a file).
 * `committed` is called right after the commit, before anything else can see
 * new/ID (the calls are synchronous), so its log line comes before the job's.
 */
export async function adopt(sp: SpoolPaths, fileName: string, wanted: string | undefined, committed: (id: string) => void): Promise<string | undefined> {
  const from = path.join(sp.new, fileName);
  try {
    if (wanted === undefined) {
      const id = newId();
      fs.renameSync(from, sp.queued(id));   // a fresh id: nothing to replace
      committed(id);
      await fsyncDirQuiet(sp.new);
      return id;
    }
    fs.linkSync(from, sp.queued(wanted));   // commit: the job is queued as new/WANTED
    committed(wanted);
    fs.unlinkSync(from);                    // (a crash before this leaves new/FILE, whose id is now taken: rejected)
    await fsyncDirQuiet(sp.new);
    return wanted;
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'EEXIST') return undefined;
    throw ioError(e, `new/${fileName}`, 'cannot adopt');
  }
}

/**
 * Claim new/ID for dispatch. False if it is gone (canceled, or claimed by another).
 * Synchronous inside, like stage.ts and for the same reason: it is on the dispatch path.
 *
 * Not flushed: a power loss may undo the claim (the rename is journaled
 * whole: the job is in new/ or in running/, never both), and the job then
 * runs again, as after a lost lease. The next flush on the file system
 * (finalize's, or the journal's own commit within seconds) makes it durable;
 * a flush of new/ per claim cost every dispatch a journal commit.
 */
export async function claim(sp: SpoolPaths, id: string): Promise<boolean> {
  const dir = sp.runningDir(id);
  const existed = await makeRunningDir(sp, id);
  // One that was there holds nothing, or a cancel request for this job (from
  // a requeue, or a bctl cancel that died before its own claim), which this
  // claim honors. Nothing in it is removed before the commit: a bctl cancel
  // may be claiming the job into it right now, and its files are then its own.
  if (existed && exists(sp.runningFile(id, 'job'))) return false;
  try {
    // commit: after this rename the job is claimed; it is in running/ and nowhere else
    fs.renameSync(sp.queued(id), sp.runningFile(id, 'job'));
  } catch (e) {
    try { fs.rmdirSync(dir); } catch { /* not empty or gone: whoever else is there owns it */ }
    if (errno(e) === 'ENOENT') return false;
    throw ioError(e, `new/${id}`, 'cannot claim');
  }
  // The job is claimed whatever this does: a stray that cannot be moved
  // (bad/ unwritable) stays, and finalize's own sweep tries again before it
  // publishes the directory.
  if (existed) await sweep(sp, id, claimJudge).catch(() => {});
  return true;
}

/**
 * Make running/ID (mkdirSpool); whether a directory was there already.
 * Anything else there (a link planted to make spoold claim a job, and sweep,
 * through it: found in review) is a stray: moved aside, and the directory made.
 */
async function makeRunningDir(sp: SpoolPaths, id: string): Promise<boolean> {
  const dir = sp.runningDir(id);
  if (takeReadyDir(dir)) return false;
  for (let tries = 0; ; tries++) {
    try { mkdirSpool(dir); return false; } catch (e) {
      if (errno(e) !== 'EEXIST' || tries > 1) throw ioError(e, sp.rel(dir), 'cannot create');
    }
    // Something is there (mkdir says EEXIST for a link too): a directory, or a stray.
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st?.isDirectory()) return true;
    if (st) await moveAside(sp, dir, st, OWN_DIR);
  }
}

/**
 * Directories made ahead in tmp/, each shaped as finalize leaves running/ID
 * (console.log and SHA256SUMS empty, artifacts/), which a claim renames into
 * place (makeRunningDir): spoold makes them after it has handed a job out,
 * while the worker runs it, rather than on the way from one job to the next.
 * On ext4 without a journal each new inode may cost a search past those
 * freed lately, one by one (perf: find_inode_bit, recently_deleted, a sixth of
 * the machine in W1 of npm run bench); four of them were on that way. Off (none
 * kept) but in spoold.
 */
const readyDirs: string[] = [];
let keepReady = 0;

/** What every running/ID holds from its claim on, and every done/ directory (finalize makes what is missing): name, and whether a directory. */
const READY_SHAPE: ReadonlyArray<readonly ['console.log' | 'SHA256SUMS' | 'artifacts', boolean]> = [['console.log', false], ['SHA256SUMS', false], ['artifacts', true]];

function makeEntry(p: string, dir: boolean): void { if (dir) mkdirSpool(p); else createSpoolFile(p); }

/** Whether p is an empty directory (dir) or an empty regular file, never through a link; false when it is not known. */
export function isEmpty(p: string, dir: boolean): boolean {
  try {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return false;
    return dir ? st.isDirectory() && fs.readdirSync(p).length === 0 : st.isFile() && st.size === 0;
  } catch { return false; }
}

/** Keep `n` ready directories from now on (prepareRunningDirs makes them); 0 removes them (a spoold that stops). */
export function keepRunningDirs(n: number): void {
  keepReady = n;
  while (readyDirs.length > n) try { fs.rmSync(readyDirs.pop()!, { recursive: true, force: true }); } catch { /* the tmp/ cleaner's */ }
}

/** Make ready directories up to the number kept; quietly fewer when the spool will not take them. */
export function prepareRunningDirs(sp: SpoolPaths): void {
  while (readyDirs.length < keepReady) {
    const d = sp.staging('running');
    try {
      mkdirSpool(d);
      for (const [f, dir] of READY_SHAPE) makeEntry(path.join(d, f), dir);
    } catch {
      try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* the tmp/ cleaner's */ }
      return;
    }
    readyDirs.push(d);
  }
}

/**
 * Rename a ready directory to `dir`: true when done. rename(2) replaces an
 * empty directory there, which says nothing a claim needs (claim); anything
 * else there (a directory with something in it, a link) fails it, and the
 * caller's rule for what is there applies, the ready one kept.
 */
function takeReadyDir(dir: string): boolean {
  for (let ready; (ready = readyDirs.pop()) !== undefined;) {
    try { fs.renameSync(ready, dir); return true; } catch (e) {
      if (errno(e) === 'ENOENT' && !fs.existsSync(ready)) continue;   // removed from tmp/ meanwhile: the next one
      readyDirs.push(ready);
      return false;
    }
  }
  return false;
}

/** The commit of a claim whose running/ID/ already exists (cancelQueued). */
async function claimInto(sp: SpoolPaths, id: string): Promise<boolean> {
  try {
    // commit: after this rename the job is claimed
    await fsp.rename(sp.queued(id), sp.runningFile(id, 'job'));
  } catch (e) {
    if (errno(e) === 'ENOENT') return false;
    throw ioError(e, `new/${id}`, 'cannot claim');
  }
  await fsyncDirQuiet(sp.new);
  return true;
}

/**
 * Put a running job back into new/ with `attempt` attempts recorded.
 * The attempt's leftovers are removed before the commit, and the directory
 * after it only with rmdir: the moment the job is in new/ a waiting worker may
 * claim it into a new running/ID/, which a recursive remove here would destroy.
 * A cancel request stays (and so does the directory, for it): one that came
 * as the lease ran out is honored by the next claim, which keeps it.
 * The lease goes only after the commit: until then it names the attempt that
 * ran, and a job file already rewritten with that same attempt tells a restart
 * that this requeue was cut short, so that it does not count the attempt again
 * (spoold's reconcile). It goes in the same tick as the commit, before anything
 * in spoold can claim the job again and write a new one.
 * `committed` is called right after the commit, before anything can claim it
 * (the rename is synchronous), so a log line of it comes before the claim's.
 */
export async function requeue(sp: SpoolPaths, id: string, job: Job, attempt: number, committed: () => void = () => {}): Promise<void> {
  const jobFile = sp.runningFile(id, 'job');
  const lease = sp.runningFile(id, 'lease');
  for (const f of await fsp.readdir(sp.runningDir(id)).catch(() => [] as string[])) {
    if (f !== 'job' && f !== 'cancel' && f !== 'lease') await removeTree(`${sp.runningDir(id)}/${f}`);
  }
  await writeAtomic(sp, jobFile, formatJob({ ...job, id, attempt }));
  // commit: after this rename the job is queued again
  try { fs.renameSync(jobFile, sp.queued(id)); } catch (e) { throw ioError(e, `running/${id}/job`, 'cannot requeue'); }
  try { fs.rmSync(lease, { force: true }); } catch { /* the rmdir below leaves the directory, and the next claim's lease replaces it */ }
  committed();
  await fsyncDirQuiet(sp.new);
  await fsp.rmdir(sp.runningDir(id)).catch(() => {});   // ENOTEMPTY: a cancel request, or claimed again already; that claim owns it
}

/**
 * Finish a job: write its result and move running/ID to done/NAME/ID in one
 * rename, then point done/NAME/latest at it (storeResult, then publishDone).
 * console.log, artifacts/ and SHA256SUMS are created empty when the job left
 * none, so every done directory has the same shape.
 *
 * Before the rename, running/ID is whole and flushed; the flush of done/NAME
 * after it makes the move itself durable. `background` returns without waiting
 * for that last flush (spoold, which tells the worker at once): if a power
 * loss undoes the move, running/ID is still whole, result and all, and
 * reconcile finishes it again.
 */
export async function finalize(sp: SpoolPaths, result: Result, background = false): Promise<string> {
  await storeResult(sp, result);
  return publishDone(sp, result, background);
}

/** Run a step that makes `what`; one that is there already is no error. */
function made(what: string, f: () => void): void {
  try { f(); } catch (e) { if (errno(e) !== 'EEXIST') throw ioError(e, what, 'cannot create'); }
}

/**
 * The first half of finalize: the result into running/ID/ (staged in tmp/
 * and renamed in, so a crash never leaves part of one there), and the
 * directory made whole. From here the result is the spool's: a spoold that
 * restarts finds job and result and finishes the move (reconcile), and a
 * worker may let its copy go. Not flushed yet: a power loss may leave the
 * result empty, and the job then runs again (reconcile sets such a result aside).
 */
export async function storeResult(sp: SpoolPaths, result: Result): Promise<void> {
  const { id } = result;
  // Strays moved aside (a directory as result would fail the rename for
  // ever; a link under another name rode into done/, found by a tester), then
  // what is missing made: an existing console or SHA256SUMS is kept.
  // Mode 0664 whatever the umask (a bctl cancel's), as every file written through tmp/.
  const present = await sweep(sp, id, judgeOwn);
  for (const [f, dir] of READY_SHAPE) {
    if (!present.has(f)) made(`running/${id}/${f}${dir ? '/' : ''}`, () => makeEntry(sp.runningFile(id, f), dir));
  }
  const resultFile = sp.runningFile(id, 'result');
  const staged = await writeStaged(sp, 'result', formatResult(result), resultFile, false);
  await publish(sp, staged, resultFile, false);
  // recursive: whatever is there goes, a directory too, and a link is not followed.
  removeEntry(sp.runningFile(id, 'lease'));
  removeEntry(sp.runningFile(id, 'cancel'));
}

/**
 * The second half of finalize: everything in running/ID flushed at once
 * (the files and the directory, which share the file system's commits: one
 * round of fsyncs on the way to done/), then the rename that publishes it.
 */
export async function publishDone(sp: SpoolPaths, result: Result, background = false): Promise<string> {
  const { id, name } = result;
  const dir = sp.runningDir(id);
  try {
    await Promise.all([sp.runningFile(id, 'result'), sp.runningFile(id, 'console.log'), sp.runningFile(id, 'SHA256SUMS'), dir].map(fsyncPath));
  } catch (e) {
    throw ioError(e, `running/${id}`, 'cannot flush');
  }
  const nameDir = sp.doneName(name);
  // done/NAME or done/NAME/ID as a link would put the result wherever it
  // points, or fail the rename for ever: moved aside, as strays. done/NAME is
  // made only when missing (mkdirSpoolStaged goes through tmp/: not for every job).
  const st = fs.lstatSync(nameDir, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) await moveAside(sp, nameDir, st, OWN_DIR);
  if (!st?.isDirectory()) made(sp.rel(nameDir), () => mkdirSpoolStaged(sp, nameDir));
  const target = sp.doneDir(name, id);
  const tst = fs.lstatSync(target, { throwIfNoEntry: false });
  if (tst && !tst.isDirectory()) await moveAside(sp, target, tst, OWN_DIR);
  try {
    // commit: after this rename the job is finished, whole, in done/
    fs.renameSync(dir, target);
  } catch (e) {
    throw ioError(e, sp.rel(target), 'cannot finalize');
  }
  // A bctl cancel's request that came after the rm above rode along (found by
  // a tester). After the rename none can come: running/ID is gone.
  removeEntry(path.join(target, 'cancel'));
  // The rename and the new latest link share done/NAME: one flush covers both.
  try {
    replaceSymlink(sp, id, sp.latest(name));
  } catch {
    // The job is finished all the same (committed above); only done/NAME/latest
    // is stale (a full disk), and the next finish of NAME mends it.
  }
  const flushed = fsyncDirQuiet(nameDir);
  if (!background) await flushed;
  return target;
}

/**
 * running/ID/ is spoold's own. An entry of it that is not of the kind spoold
 * makes there (a symbolic link, a directory where a file goes, a fifo) was put
 * there by someone else, and is never followed or written through: it is moved
 * to bad/ beside a .why, and the caller makes the entry afresh. Whether the
 * entry is there, of its kind, after the call.
 */
export async function ownEntry(sp: SpoolPaths, id: string, entry: RunningFile): Promise<boolean> {
  const p = sp.runningFile(id, entry);
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return false;
  const where = judgeOwn(entry, st);
  if (where === undefined) return true;
  await moveAside(sp, p, st, where);
  return false;
}

/**
 * Move a stray (ownEntry, done/NAME, sweep) to bad/, saying what it was and
 * `where` it was found.
 */
async function moveAside(sp: SpoolPaths, p: string, st: fs.Stats | fs.Dirent, where: string): Promise<void> {
  let was = st.isDirectory() ? 'a directory' : st.isFile() ? 'a regular file' : 'a fifo, socket or device';
  if (st.isSymbolicLink()) { try { was = `a symbolic link to ${fs.readlinkSync(p)}`; } catch { was = 'a symbolic link'; } }
  const why = `${sp.rel(p)} was ${was}, ${where}: moved aside unfollowed (only spoold writes in running/ and done/; builder-spool(5))`;
  const bad = await reject(sp, p, why, p);
  if (bad) strayMoved(sp.rel(p), `bad/${bad}`, why);
}

let strayMoved: (file: string, bad: string, why: string) => void = () => {};
/** Be told of each stray moved aside (spoold logs it as `rejected`). */
export function onStray(f: typeof strayMoved): void { strayMoved = f; }

/**
 * Move aside every entry of running/ID/ that `keep` does not keep: after a
 * claim into a running/ID/ that was there before it (only a cancel request,
 * and the lease of a requeue cut short, may be there, as regular files), and
 * before finalize publishes the directory (only the files of a job; a link
 * planted under another name rode into done/, found by a tester).
 */
async function sweep(sp: SpoolPaths, id: string, judge: (name: string, kind: fs.Dirent) => string | undefined): Promise<Set<string>> {
  const kept = new Set<string>();
  if (!fs.lstatSync(sp.runningDir(id), { throwIfNoEntry: false })?.isDirectory()) return kept;   // never read through a link
  // One look at names and kinds (readdir with file types), no stat per entry: finalize does this for every job.
  for (const d of fs.readdirSync(sp.runningDir(id), { withFileTypes: true })) {
    const where = judge(d.name, d);
    if (where === undefined) kept.add(d.name);
    else await moveAside(sp, path.join(sp.runningDir(id), d.name), d, where);
  }
  return kept;
}

/** A stray's `where` (moveAside) in a running/ID/ just claimed into, or undefined for what may be there. */
const claimJudge = (f: string, d: fs.Dirent): string | undefined =>
  f === 'job' || ((f === 'cancel' || f === 'lease') && d.isFile()) ? undefined : 'in the directory of a job spoold had just claimed';

/** The kind of each entry spoold keeps in running/ID/ ('any': removed by finalize whatever it is). */
const OWN_KINDS: ReadonlyMap<string, 'file' | 'dir' | 'any'> = new Map<RunningFile, 'file' | 'dir' | 'any'>([
  ['job', 'file'], ['result', 'file'], ['console.log', 'file'], ['SHA256SUMS', 'file'], ['artifacts', 'dir'], ['lease', 'any'], ['cancel', 'any'],
]);

/** A stray's `where` (moveAside) in a running/ID/ spoold holds, or undefined for an entry of the kind spoold keeps there. */
function judgeOwn(f: string, d: Pick<fs.Dirent, 'isFile' | 'isDirectory'>): string | undefined {
  const want = OWN_KINDS.get(f);
  if (want === undefined) return 'where spoold keeps no entry of that name';
  if (want === 'any' || (want === 'file' ? d.isFile() : d.isDirectory())) return undefined;
  return want === 'file' ? 'where spoold keeps a regular file of its own' : OWN_DIR;
}
const OWN_DIR = 'where spoold keeps a directory of its own';

/**
 * done/NAME without `latest`, which a crash between finalize's rename and its
 * new link leaves (a name that runs once gets no next job to set it right):
 * point it at the newest ID there. The names mended, each with its ID.
 */
export async function mendLatest(sp: SpoolPaths): Promise<Array<{ name: string; id: string }>> {
  const mended: Array<{ name: string; id: string }> = [];
  for (const name of await fsp.readdir(sp.done).catch(() => [] as string[])) {
    if (!isName(name) || existsOr(sp.latest(name), true)) continue;   // a dangling link is fsck's to report
    const ids = (await fsp.readdir(sp.doneName(name)).catch(() => [] as string[])).filter(isId).sort();
    const id = ids[ids.length - 1];
    if (id === undefined) continue;
    try { replaceSymlink(sp, id, sp.latest(name)); mended.push({ name, id }); } catch { /* a full disk: the next start tries again, and fsck reports it */ }
  }
  return mended;
}

/**
 * Cancel a job that is still queued: claim it and finalize it as canceled.
 * Its result; undefined if it was not queued. The cancel request is written into running/ID/
 * before the claim: if we die between claim and finalize, spoold finds a
 * claimed job with a cancel request and completes the cancel; if spoold
 * claimed the job first, the request cancels its run.
 */
export async function cancelQueued(sp: SpoolPaths, id: string, job: Job): Promise<Result | undefined> {
  await makeRunningDir(sp, id);
  await writeAtomic(sp, sp.runningFile(id, 'cancel'), `canceled: ${new Date().toISOString()}\n`);
  if (!(await claimInto(sp, id))) return undefined;
  const now = new Date();
  const result: Result = { id, name: job.name, platform: job.platform, worker: '', attempt: job.attempt, queued: job.queued ?? now, started: undefined, finished: now, status: { kind: 'canceled' } };
  await finalize(sp, result);
  return result;
}

/** Ask spoold to cancel a running job: the request is the file running/ID/cancel. */
export async function requestCancel(sp: SpoolPaths, id: string): Promise<boolean> {
  if (!exists(sp.runningFile(id, 'job'))) return false;
  await writeAtomic(sp, sp.runningFile(id, 'cancel'), `canceled: ${new Date().toISOString()}\n`);
  return true;
}

/**
 * Move a file spoold cannot accept to bad/, beside a .why saying why. Returns
 * the bad/ name, DIR.FILE.MS; `as` is the DIR/FILE it is named after, when
 * not where it is (a job claimed from new/ID into running/ID/job).
 */
let rejectMs = 0;
export async function reject(sp: SpoolPaths, file: string, why: string, as = file): Promise<string | undefined> {
  // Cut so that the name, its dot parts and .why fit in 255 bytes (a name may be that long itself).
  const name = Buffer.from(path.basename(as)).subarray(0, 200).toString().replace(/\uFFFD+$/, '');
  // rename(2) replaces: MS is made unique, as cut names of files rejected in one millisecond may agree.
  let base: string;
  do { rejectMs = Math.max(Date.now(), rejectMs + 1); base = `${path.basename(path.dirname(as))}.${name}.${rejectMs}`; } while (exists(path.join(sp.bad, base)));
  const target = path.join(sp.bad, base);
  // The .why is written before the move and published after it: a full disk
  // moves nothing (found by a tester: a stray went to bad/ without its why,
  // for good), and only a crash between the two renames leaves a file there
  // without one, which bctl fsck reports.
  // One line, whatever the file's name holds (a newline would forge a second).
  const staged = await writeStaged(sp, 'why', `${oneLine(why)}\n`, `${target}.why`);
  try {
    await fsp.rename(file, target);
  } catch (e) {
    fs.rmSync(staged, { force: true });
    if (errno(e) === 'ENOENT') return undefined; // gone meanwhile: nothing to reject
    throw ioError(e, sp.rel(file), 'cannot move to bad/');
  }
  try {
    await publish(sp, staged, `${target}.why`);
  } catch (e) {
    throw ioError(e, `bad/${base}.why`, `moved to bad/${base}, but cannot write why`);
  }
  return base;
}

/**
 * Remove running/ID, whose job file is gone: empty (or as a claim's ready
 * directory came, its files empty), or holding a cancel request (see claim)
 * or the lease of a requeue cut short after its commit.
 * A request for a job still queued in new/ID is kept for its claim ('kept').
 * Nothing else is removed, and the directory only with
 * rmdir, so a job that a bctl cancel claims into it meanwhile stays ('not
 * empty', as for files someone else put there).
 */
export async function clearLeftover(sp: SpoolPaths, id: string): Promise<'cleaned' | 'kept' | 'not empty'> {
  const cancel = sp.runningFile(id, 'cancel');
  if (exists(cancel) && exists(sp.queued(id))) return 'kept';
  await fsp.rm(cancel, { force: true });
  await fsp.rm(sp.runningFile(id, 'lease'), { force: true });
  // What a claim's ready directory holds (prepareRunningDirs), while still empty.
  for (const [f, dir] of READY_SHAPE) {
    const p = sp.runningFile(id, f);
    if (isEmpty(p, dir)) await fsp.rm(p, { recursive: true, force: true });
  }
  try {
    await fsp.rmdir(sp.runningDir(id));
  } catch (e) {
    if (errno(e) === 'ENOTEMPTY' || errno(e) === 'EEXIST') return 'not empty';
    if (errno(e) !== 'ENOENT') throw ioError(e, `running/${id}`, 'cannot remove');
  }
  return 'cleaned';
}

/** Whether p exists (lstat: a dangling symlink counts); other errors than ENOENT/ENOTDIR are thrown. */
export function exists(p: string): boolean {
  // throwIfNoEntry: no error made (with its stack trace) for the usual answer; spoold asks ~10 times a job.
  try { return fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined; } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return false;
    throw e;
  }
}

/** exists, with `otherwise` when the answer is not known (EACCES, EIO). */
export function existsOr(p: string, otherwise: boolean): boolean {
  try { return exists(p); } catch { return otherwise; }
}

export { SpoolError };

/** Record a job that cannot run at all (its template is missing): straight to done/ as failed. */
export async function recordFailed(sp: SpoolPaths, job: ParsedJob & { id: string }, why: string): Promise<string> {
  const dir = sp.runningDir(job.id);
  if (await makeRunningDir(sp, job.id)) throw ioError(Object.assign(new Error('it exists'), { code: 'EEXIST' }), sp.rel(dir), 'cannot create');
  const now = new Date();
  const result: Result = { id: job.id, name: job.name, platform: job.platform, worker: '', attempt: job.attempt,
    queued: job.queued ?? now, started: undefined, finished: now, status: { kind: 'failed', why } };
  // The result goes in before the job: a writer that dies after publishing the
  // job leaves job + result, which reconcile finalizes (never runs).
  await writePrivate(sp, sp.runningFile(job.id, 'result'), formatResult(result));
  const staged = await writeStaged(sp, job.id, formatJob(job), sp.runningFile(job.id, 'job'));
  await publish(sp, staged, sp.runningFile(job.id, 'job'));
  return finalize(sp, result);
}
