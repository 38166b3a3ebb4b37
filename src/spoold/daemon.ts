// daemon.ts: spoold's heart: workers, dispatch, and each running job's life.
//
// Owns the in-memory view of running/: for each running job, the worker that
// holds it (or the deadline by which one must re-attach), its console stream
// and its artifact receiver. Every change of a job's state goes through
// src/spool/state.ts (claim, requeue, finalize), so the spool stays the truth
// and a restart reconstructs this view from running/ alone (reconcile()).
//
// Timing invariant: LEASE must exceed DEAD_AFTER * heartbeat, so that a worker
// that is merely slow is never declared gone while its connection still lives
// (main.ts checks it).
//
// How it fails: a worker that breaks the protocol loses its connection (its
// job waits for the lease); a job whose artifacts are hostile or corrupt ends
// `failed: ...`; a spool write that fails (disk full, read-only) ends that job
// `failed: ...` when it can, and is logged; the daemon goes on.

import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { claim, finalize, storeResult, publishDone, prepareRunningDirs, isEmpty, requeue, clearLeftover, reject, ownEntry, exists, existsOr, mendLatest } from '../spool/state.js';
import { parseJob, retriesOf, timeoutOf, type ParsedJob } from '../spool/job.js';
import { formatStatus, parseResult, parseStatus, type Result, type Status } from '../spool/result.js';
import { writeStatus, writePrivate, cleanTmp, mkdirSpool, removeTree, removeEntry, FILE_MODE } from '../spool/stage.js';
import { decodeFile, formatHeaders, parseHeaders, parseTime } from '../spool/headers.js';
import { isId, isName, type SpoolPaths } from '../spool/paths.js';
import { receiveArtifacts, compareManifest, formatSums, batchWrites, Flusher } from '../spool/tar.js';
import { T_CONSOLE, T_ARTIFACTS, DEAD_AFTER, KILL_GRACE_MS, sameSecret, ProtocolError, MAX_ARTIFACT_FILES, MAX_ARTIFACT_NAMES, nameBytes, type Frame, type Msg, type ArtifactEntry } from '../spool/protocol.js';
import { errno, SpoolError } from '../spool/errors.js';
import { readRegular, readSpoolFile } from '../spool/read.js';
import { Queue, type Queued } from './queue.js';
import { Budget } from './budget.js';
import { Conn, type ConnOwner } from './conn.js';
import { log, LogOnce } from './log.js';
import { formatDuration } from '../spool/duration.js';
import { artifactBytesIn } from './gc.js';

/**
 * How long, in heartbeats, a connection told not-yours gets no job, unless its
 * workerd reconnects free first (30 s at the default 5 s): twice the silence
 * that ends a connection, for a job's TERM, KILL_GRACE_MS and KILL to end it.
 */
const DISOWNED_HEARTBEATS = 6;

/**
 * spoold's backstop for a worker that stays connected but does not do what
 * it must (stuck(), checkLeases), in heartbeats (5 s by default):
 * - a job it has not ended KILL_GRACE_MS (its TERM, then KILL) plus
 *   OVERDUE_HEARTBEATS (60 s) after its timeout, or plus CANCEL_HEARTBEATS
 *   (30 s) after a cancel was sent to it, and of which nothing came for
 *   DEAD_AFTER heartbeats; once it has ended, console still coming is its
 *   delivery, given LATE_HEARTBEATS (10 minutes) more at most;
 * - a delivery of which nothing came for STALL_HEARTBEATS (2 minutes).
 * Time spoold spends waiting for its own disk does not count, and the clock
 * is the process's monotonic one: a step of the wall clock changes nothing.
 */
const OVERDUE_HEARTBEATS = 12;
const CANCEL_HEARTBEATS = 6;
const LATE_HEARTBEATS = 120;
const STALL_HEARTBEATS = 24;
const mono = (): number => performance.now();

/** How long a job whose end (a result, or a requeue) the spool would not take waits before spoold tries again. */
const RETRY_MS = 2_000;

/** How long a claimed job may sit in running/ unheld before spoold takes it over (adoptOrphans). */
export const ORPHAN_MS = 30_000;

/** Console bytes spoold queues for disk before it stops reading the job's worker: part of the memory bound per job. */
export const CONSOLE_WINDOW = 4 << 20;

/** Where a job's result may fail to be stored (Daemon.storeError). */
const STORE_SITES = ['console', 'artifacts', 'result', 'finalize'] as const;

/**
 * How console.log is opened for appending: created if missing, never through
 * a link, and without blocking: a fifo put in its place hung the open, and
 * four of them every thread of the pool (found by a tester). A fifo with no
 * reader then fails (ENXIO); any other special file fails the check on open.
 */
const APPEND_NOFOLLOW = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/**
 * Console bytes spoold queues for disk, all jobs together, before it stops
 * reading every worker that adds more (the default of --console-buffer): the
 * memory bound holds for the consoles of a whole farm, not per job. Six
 * streaming at once took spoold to 123 MiB with the window alone, and to
 * 98-105 MiB with a budget of two windows; 75-85 MiB with one, and faster
 * (npm run bench, W3-many). One console alone still streams with its window.
 */
export const CONSOLE_BUDGET = CONSOLE_WINDOW;

/** Workers held for the console budget are logged (`held`) at most this often. */
const HELD_LOG_MS = 60_000;

/** workers/NAME is rewritten at most this often per worker (writeWorker). */
export const WORKER_FILE_MS = 1_000;

/** Replacements of one worker name within this long that make a warning (warnIfFlapping). */
const FLAP_MS = 60_000;

/** workerd's longest reconnect backoff (workerd/main.ts BACKOFF_MAX): added to the lease after a restart. */
export const RECONNECT_GRACE_MS = 5_000;

/**
 * What a connection is doing, as dispatch sees it: the id of the job it holds,
 * or why it gets no job now. Any of them keeps dispatchFor away; only a job id
 * has frames, a lease and a workers/NAME entry.
 * - claiming: a job is being renamed into running/ for it (dispatch);
 * - reattaching: its hello holds a job, and reattach has not answered yet;
 * - disowned: told not-yours, its old job may still be dying there (DISOWNED_HEARTBEATS);
 * - spent: --once after its job, or stopping after a release: it takes no more.
 */
type Busy = string | 'claiming' | 'reattaching' | 'disowned' | 'spent';

export interface DaemonOpts {
  heartbeatMs: number;
  leaseMs: number;
  token: Buffer | undefined;
  maxArtifactBytes: number;
  /** Console bytes on their way to disk, all jobs together, before workers are held (--console-buffer; CONSOLE_BUDGET). */
  consoleBuffer: number;
}

type Phase = 'console' | 'artifacts' | 'manifest' | 'finishing';

interface Running {
  id: string;
  job: ParsedJob;
  attempt: number;                 // this attempt's number (job.attempt + 1)
  worker: Conn | undefined;
  deadline: number;                // when detached: re-attach before this, or lose the job
  phase: Phase;
  console: fs.WriteStream | undefined;
  consoleFlush: Flusher | undefined;           // console's early fdatasyncs, once the file is open
  consoleClosing: Promise<void> | undefined;   // a close in progress (closeConsole): a later one waits for it
  artifacts: { sink: ReturnType<typeof receiveArtifacts>['sink']; done: Promise<ArtifactEntry[]>; failed: boolean } | undefined;
  manifest: ArtifactEntry[];         // the parts received so far
  manifestNames: number;             // their nameBytes, against MAX_ARTIFACT_NAMES
  workerName: string | undefined;    // who holds this attempt: only that worker may re-attach
  key: string | undefined;           // this attempt's secret, given to its worker: a re-attach must show it
  artifactError: string | undefined;
  started: Date;
  /** Why its worker handed it back (release), for the requeued line; else its lease ran out. */
  released?: string;
  cancelSent: boolean;
  cancelSentAt: number | undefined;   // mono(): when the cancel went to its worker (stuck())
  cancelRequested: boolean;
  heldAt: number;                     // mono(): when its worker got it, or re-attached (stuck())
  progressAt: number;                 // mono(): when console or artifact bytes, or a manifest part, last came, or our disk took them
  diskWaits: number;                  // waits of ours for the disk under way: no stall of the worker's meanwhile
  ended: boolean;                     // its worker, re-attaching, said the job has ended and been looked over: only its delivery is to come
  exitedAt: number | undefined;       // when its worker first said the job's process exited (ended, or a re-attach that says so; monotonic ms): for good
  /** How it ended, when no worker is to deliver it: its finalize failed and is tried again (settle). */
  ending?: { status: Status; worker: string; started: Date | undefined };
  /** Its result, stored in running/ID and its worker let go, whose move to done/ failed: tried again (republish). */
  stored?: Result;
  consoleFailed: boolean;
  storeError: Error | undefined;   // the spool would not take the artifacts (read-only, EIO, full)
  resetting: Promise<void> | undefined;   // the last removal of an earlier delivery's artifacts (resetArtifacts)
}

const NO_SPACE = 'no space left on device';
// ENOENT: a spool directory removed under us (tmp/, running/ID/artifacts/), not the worker's doing.
const isStorage = (e: unknown): boolean => /^(ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO|ENOENT)$/.test((e as NodeJS.ErrnoException)?.code ?? '') || isNoSpace(e);
const isNoSpace = (e: unknown): boolean => /ENOSPC|EDQUOT|no space left/i.test(`${(e as NodeJS.ErrnoException)?.code} ${(e as Error)?.message}`);
/** Console bytes given back when the disk is full, so the result and SHA256SUMS fit (finalizeJob). */
export const NO_SPACE_RESERVE = 64 << 10;
/** Connections spoold keeps open at most (daemon.admit), and of them at most this many before their hello. */
export const MAX_CONNECTIONS = 1024;
export const MAX_STRANGERS = 64;

export class Daemon implements ConnOwner {
  readonly heartbeatMs: number;
  readonly token: Buffer | undefined;
  readonly queue: Queue;
  private running = new Map<string, Running>();
  private consoleBudget: Budget;   // console bytes on their way to disk, all jobs together
  private claiming = new Set<string>();     // ids between dispatchFor and running.set
  private workers = new Set<Conn>();
  private busy = new Map<Conn, Busy>();   // no entry: idle
  dropped = new Set<string>();
  stopping = false;
  private timers: NodeJS.Timeout[] = [];
  private workerFileAt = new Map<string, number>();              // when workers/NAME was last written
  private workerFileTimers = new Map<string, NodeJS.Timeout>();   // a rewrite waiting for WORKER_FILE_MS
  private unparsable = new Set<string>();   // running/ID/job files already reported
  private unfinalized = new Map<string, string>();   // running/ID with a result that did not finalize: the error last logged
  /** Called when a job finishes, for schedule state (timer.ts). */
  onFinished: (r: Result, origin: string) => void = () => {};
  /** Whether anything could ever give work to a platform (a schedule or a template): set by main.ts. */
  hasWorkFor: (platform: string) => Promise<boolean> = async () => true;

  constructor(readonly sp: SpoolPaths, readonly opts: DaemonOpts) {
    this.heartbeatMs = opts.heartbeatMs;
    this.token = opts.token;
    this.consoleBudget = new Budget(opts.consoleBuffer);
    this.queue = new Queue(sp, (q) => this.dispatchFor(q.platform));
  }

  start(): void {
    this.timers.push(setInterval(() => void this.checkLeases(), 500));
    this.timers.push(setInterval(() => void this.checkCancels(), 250));
  }

  /** Stop dispatching; close worker connections; running jobs stay in running/ for the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await this.checking;   // a requeue under way ends first
    for (const c of this.workers) c.close('spoold stopping', { t: 'bye', why: 'spoold is stopping; reconnect later' });
    for (const t of this.workerFileTimers.values()) clearTimeout(t);
    for (const r of this.running.values()) await this.closeConsole(r);
  }

  // ---- startup ----------------------------------------------------------

  /** The startup pass over running/ (state.ts lists the crash leftovers and this rule for each). */
  async reconcile(): Promise<void> {
    for (const f of await cleanTmp(this.sp)) log('cleaned', { file: `tmp/${f}`, why: 'staged by a writer that is gone' });
    for (const f of await fsp.readdir(this.sp.workers).catch(() => [] as string[])) {
      await fsp.rm(`${this.sp.workers}/${f}`, { force: true });              // nobody is connected yet
    }
    for (const id of await fsp.readdir(this.sp.running)) await this.reconcileEntry(id, true);
    try {
      for (const { name, id } of await mendLatest(this.sp)) log('mended', { file: `done/${name}/latest`, why: `missing (a crash came before it was made); now points at ${id}` });
    } catch (e) { log('error', { dir: 'done/', why: `cannot mend latest: ${(e as Error).message}` }); }
  }

  /**
   * running/ID/result, parsed. One that does not parse (empty: finalize
   * flushes it after moving it in, so a power loss before the flush may
   * leave it so; or spoiled by hand) records nothing: it is moved to bad/,
   * and the job runs again (reconcileEntry): 'lost'. Undefined when it
   * cannot be told (unreadable, not a regular file) or cannot be moved:
   * finalize then says why at each scan.
   */
  private async runningResult(id: string): Promise<Result | 'lost' | undefined> {
    const file = this.sp.runningFile(id, 'result');
    let why: string;
    try {
      const buf = readRegular(file);
      return Buffer.isBuffer(buf) ? parseResult(buf, `running/${id}/result`) : undefined;
    } catch (e) {
      if (!(e instanceof SpoolError)) return undefined;   // not read (EACCES, EIO): not known
      why = `${e.message}; not a result: the job runs again, this attempt not counted`;
    }
    try {
      const bad = await reject(this.sp, file, why);
      if (bad) log('rejected', { file: `running/${id}/result`, bad: `bad/${bad}`, why });
      return 'lost';
    } catch { return undefined; }
  }

  /**
   * One entry of running/ that this spoold does not hold: at start, every
   * entry; later (adoptOrphans), one a bctl left when it died between its
   * claim and its finalize (a cancel of a queued job, a failed template).
   */
  private async reconcileEntry(id: string, atStart: boolean): Promise<void> {
    if (!isId(id)) { if (atStart) log('warning', { file: `running/${id}`, why: 'not a job id; left alone (remove it by hand)' }); return; }
    const jobFile = this.sp.runningFile(id, 'job');
    let job: ParsedJob;
    try {
      job = parseJob(readRunning(this.sp, id, 'job'), `running/${id}/job`, id);
    } catch (e) {
      if (errno(e) === 'ENOENT') { if (atStart) await this.clearAtStart(id); return; }
      if (!this.unparsable.has(id)) log('error', { file: `running/${id}/job`, why: e instanceof SpoolError ? `${e.message}; fix or remove it by hand` : (e as Error).message });
      this.unparsable.add(id);
      return;
    }
    const hasResult = exists(this.sp.runningFile(id, 'result'));
    const stored = hasResult ? await this.runningResult(id) : undefined;
    const cutShort = stored === 'lost';
    if (hasResult && !cutShort) {
      // Its result is recorded: it must not run again, nor wait for a worker
      // whose lease would requeue it, result and all. Not held either, so the
      // periodic adoptOrphans tries again while the spool will not take it.
      try {
        // (Read again only when it could not be: readRunning says why.)
        const r = stored ?? parseResult(readRunning(this.sp, id, 'result'), `running/${id}/result`);
        await finalize(this.sp, r);
        this.unfinalized.delete(id);
        logFinished(r, atStart ? 'finalize completed after restart' : 'finalize completed at a later scan');
      } catch (e) {
        const why = (e as Error).message;
        if (this.unfinalized.get(id) !== why) log('error', { file: `running/${id}/result`, why: `${why}; tried again at each scan (fix or remove it by hand if it does not parse)` });
        this.unfinalized.set(id, why);
      }
      return;
    }
    this.unfinalized.delete(id);   // its result was removed by hand, if it had one
    const r = this.newRunning(id, job, undefined);
    const lease = readLease(this.sp, id);
    // The job file names the attempt its lease names: a requeue was cut short
    // after rewriting it (state.ts requeue), and that attempt is counted already.
    if (lease.attempt === job.attempt) r.attempt = job.attempt;
    // After a restart a worker needs its reconnect backoff on top of the lease.
    r.workerName = lease.worker;
    r.key = lease.key;
    if (lease.started) r.started = lease.started;   // when it was handed over, before the restart
    r.deadline += RECONNECT_GRACE_MS;
    this.running.set(id, r);
    // Its result was stored and lost (a power loss before spoold flushed it):
    // its worker had been let go and cannot deliver it again, so it runs
    // again at once, the lost attempt not counted against its retries.
    if (cutShort) this.unsent(r, 'its result was lost after its worker had let it go (a power loss before spoold flushed it)');
    // Canceled, and nobody holds it: recorded at once. Without a lease it was
    // never sent (a bctl cancel died after its claim), so no attempt started.
    if (await this.cancelIfAsked(r, lease.worker !== undefined)) return;
    log('waiting', { id, name: job.name, attempt: r.attempt, why: `worker may re-attach within ${this.opts.leaseMs + RECONNECT_GRACE_MS} ms` });
  }

  /** running/ID without a job file, at start (state.ts clearLeftover). */
  private async clearAtStart(id: string): Promise<void> {
    const dir = `running/${id}`;
    try {
      const done = await clearLeftover(this.sp, id);
      if (done === 'cleaned') log('cleaned', { dir, why: 'no job file (a requeue, or a claim or cancel cut short)' });
      else if (done === 'kept') await this.cancelQueued(id);
      else log('warning', { dir, why: 'no job file, and files spoold did not leave there; left alone (look, then remove it by hand)' });
    } catch (e) { log('error', { dir, why: (e as Error).message }); }
  }

  /** Entries of running/ nobody holds, older than ORPHAN_MS: a writer died mid-transition. */
  async adoptOrphans(): Promise<void> {
    if (this.stopping) return;
    for (const id of await fsp.readdir(this.sp.running).catch(() => [] as string[])) {
      if (!isId(id) || this.running.has(id) || this.unparsable.has(id)) continue;
      const st = await fsp.stat(this.sp.runningFile(id, 'job')).catch(() => undefined);
      if (!st) {
        this.unfinalized.delete(id);
        // A bctl cancel that died before its claim left its request beside a queued job.
        const req = await fsp.stat(this.sp.runningFile(id, 'cancel')).catch(() => undefined);
        if (req && Date.now() - req.ctimeMs >= ORPHAN_MS && existsOr(this.sp.queued(id), false)) await this.cancelQueued(id);
        continue;
      }
      if (Date.now() - st.ctimeMs < ORPHAN_MS || this.running.has(id)) continue;   // ctime: the claim (a rename) sets it
      if (!this.unfinalized.has(id)) log('orphan', { id, why: 'a claimed job nobody holds (its writer died); taking it over' });
      await this.reconcileEntry(id, false);
    }
  }

  private newRunning(id: string, job: ParsedJob, worker: Conn | undefined): Running {
    return {
      id, job, attempt: job.attempt + 1, worker, deadline: Date.now() + this.opts.leaseMs, phase: 'console',
      console: undefined, consoleFlush: undefined, consoleClosing: undefined, artifacts: undefined, artifactError: undefined, key: undefined, started: new Date(), cancelSent: false, cancelSentAt: undefined, cancelRequested: false, heldAt: mono(), progressAt: mono(), diskWaits: 0, ended: false, exitedAt: undefined, consoleFailed: false, storeError: undefined, resetting: undefined,
      manifest: [], manifestNames: 0, workerName: worker?.name,
    };
  }

  // ---- workers ----------------------------------------------------------

  addConnection(c: Conn): void { this.workers.add(c); }

  private refused = { count: 0, loggedAt: 0 };
  /**
   * May a new connection from `peer` be taken? Not past MAX_CONNECTIONS open,
   * nor past MAX_STRANGERS that have not said hello (each may hold a partial
   * frame: a flood of them must not cost spoold its memory or descriptors).
   * A refusal is logged at most once a minute, with a count.
   */
  admit(peer: string): boolean {
    let strangers = 0;
    for (const c of this.workers) if (!c.hello) strangers++;
    const why = this.workers.size >= MAX_CONNECTIONS ? `${MAX_CONNECTIONS} connections are open`
      : strangers >= MAX_STRANGERS ? `${MAX_STRANGERS} connections have not said hello yet` : undefined;
    if (!why) return true;
    this.refused.count++;
    const now = Date.now();
    if (now - this.refused.loggedAt >= 60_000) {
      log('connection refused', { peer, why: `${why}; ${this.refused.count} refused since the last such line (at most one a minute)` });
      this.refused = { count: 0, loggedAt: now };
    }
    return false;
  }

  onHello(c: Conn, h: Extract<Msg, { t: 'hello' }>): void {
    // Holding a job given to this name with a key, without that key: a peer
    // that knows only the name. It replaces no connection and takes nothing.
    const held = h.holding && isId(h.holding.id) ? this.running.get(h.holding.id) : undefined;
    if (held && held.key !== undefined && held.workerName === c.name && !sameKey(held.key, h.holding!.key)) {
      log('refused', { id: held.id, worker: c.name, why: 'it holds the job without its key' });
      c.close(`holding job ${held.id} without its key`, { t: 'bye', why: `job ${held.id} was given to a worker of this name with a key, which this hello does not show`, code: 'protocol' });
      return;
    }
    for (const other of this.workers) {
      // The same workerd, back before its old connection was seen to die, never
      // reads the bye. Two workerds under one name replace each other: each
      // is told why, their backoff slows the turns (a connection dropped soon
      // after its welcome counts as a failed try), and the log says so. Not
      // an exit: a connection under a stolen name must not stop the real worker.
      if (other !== c && other.hello && other.name === c.name) {
        const disowned = this.busy.get(other) === 'disowned';   // the same workerd, back free after not-yours
        other.close(`replaced by a new connection of worker ${c.name}`,
          { t: 'bye', why: `replaced by another connection as ${c.name} (from ${c.peer || 'unix'}); if that is not this workerd, two share the name: give each its own --name` });
        if (!disowned) this.warnIfFlapping(c);
      }
    }
    c.send({ t: 'welcome', v: 1, heartbeatMs: this.heartbeatMs, ended: true });
    log('worker joined', { worker: c.name, platform: c.platform, peer: c.peer, holding: h.holding?.id });
    if (h.holding) {
      this.busy.set(c, 'reattaching');   // it holds a job until reattach says otherwise: no new one meanwhile
      void this.reattach(c, h.holding);
    } else {
      this.writeWorker(c);
      if (this.dropped.has(c.platform)) c.send({ t: 'idle', why: `platform ${c.platform} is dropped (bctl undrop-platform ${c.platform} restores it)` });
      this.dispatchFor(c.platform);
      void this.warnIfIdle(c);
    }
  }

  private async reattach(c: Conn, h: { id: string; name: string; attempt: number; finished: boolean; key?: string }): Promise<void> {
    // A job still being finalized from the previous connection: wait for it, then answer done.
    // One whose result is stored (its move to done/ retried: republish) is the
    // spool's already: the worker, which missed its `done`, lets it go now.
    for (let i = 0; i < 600 && isId(h.id) && this.running.get(h.id)?.phase === 'finishing' && !this.running.get(h.id)?.stored; i++) await sleep(50);
    if (c.closed) return;
    const kept = isId(h.id) ? this.running.get(h.id) : undefined;
    if (kept?.stored && kept.workerName === c.name) { this.letGo(c, h.id); return; }
    if (isId(h.id) && this.running.get(h.id)?.phase === 'finishing') {
      // Still storing after 30 s: no answer yet, so that the worker keeps its result and asks again.
      c.close(`job ${h.id} is still being stored; the worker is to reconnect`);
      return;
    }
    const r = isId(h.id) ? this.running.get(h.id) : undefined;
    // Only the worker that was given this attempt may take it back: same name (as
    // dispatched, or as the lease on disk says after a restart), same platform, its key.
    const givenTo = r !== undefined && r.workerName === c.name && r.job.platform === c.platform && sameKey(r.key, h.key);
    if (r && givenTo && !r.worker && r.attempt === h.attempt && !r.cancelRequested && !r.ending) {
      r.worker = c;
      r.phase = 'console';
      // Once ended, ended for good: a worker that re-attaches does not put off the cap on its delivery (stuck()).
      if (h.finished) { r.ended = true; r.exitedAt ??= mono(); }
      r.progressAt = mono();   // heldAt stays: reconnecting does not put off the backstop (after a restart it counts from the start)
      this.busy.set(c, r.id);
      // The dropped connection's console bytes may still be on their way to
      // disk (detach starts the close): the offset is taken once they are all
      // there, and an error of that close belongs to the old delivery.
      await this.diskWait(r, this.closeConsole(r));
      if (r.worker !== c || c.closed) return;   // settled or left meanwhile
      r.storeError = undefined;        // a new delivery: earlier storage failures may be over
      r.consoleFailed = false;
      r.artifactError = undefined;
      await this.diskWait(r, this.resetArtifacts(r));
      if (r.worker !== c || c.closed) return;
      let offset = 0;
      // A console.log that is no regular file is not ours (ownEntry): the console starts over.
      try { if (await ownEntry(this.sp, r.id, 'console.log')) offset = fs.lstatSync(this.sp.runningFile(r.id, 'console.log')).size; } catch { /* none yet */ }
      c.send({ t: 'resume', id: r.id, consoleOffset: offset });
      log('reattached', { id: r.id, name: r.job.name, worker: c.name, console: offset });
      this.writeWorker(c);
      return;
    }
    const done = isId(h.id) && isName(h.name) && exists(this.sp.doneDir(h.name, h.id));
    const stored = done ? this.storedResult(h.name, h.id) : undefined;
    if (done && h.finished && stored?.worker === c.name) {
      c.send({ t: 'done', id: h.id });     // its result, stored before it heard so
      if (c.once) this.busy.set(c, 'spent'); else this.busy.delete(c);
    } else {
      // A job recorded without this worker's result (lost, canceled while it
      // was away) may still run there: not-yours has it killed.
      const why = done ? `the job finished without this worker's result while it was away (${stored ? formatStatus(stored.status) : 'its result is unreadable'})`
        : r?.cancelRequested ? 'the job was canceled'
        : r?.worker ? 'another connection holds the job'
          : r && !givenTo ? 'the job was given to another worker'
            : 'the job is no longer yours (its lease ran out, it was requeued or finished elsewhere)';
      c.send({ t: 'not-yours', id: h.id, why });
      log('refused', { id: h.id, worker: c.name, why });
      // Its job may still be dying there: no new job on this connection; the
      // worker connects again once it is free (workerd.8). A workerd older
      // than that rule never does: after DISOWNED_HEARTBEATS it gets jobs here anyway.
      this.busy.set(c, 'disowned');
      setTimeout(() => {
        if (this.busy.get(c) !== 'disowned' || c.closed) return;
        this.busy.delete(c);
        this.dispatchFor(c.platform);
      }, DISOWNED_HEARTBEATS * this.heartbeatMs).unref();
    }
    this.writeWorker(c);
    this.dispatchFor(c.platform);
  }

  /** The result in done/NAME/ID, or undefined when it cannot be read. */
  private storedResult(name: string, id: string): Result | undefined {
    const file = `${this.sp.doneDir(name, id)}/result`;
    try {
      const buf = readSpoolFile(file);
      return buf ? parseResult(buf, this.sp.rel(file)) : undefined;
    } catch { return undefined; }
  }

  private replaced = new Map<string, number[]>();   // when each name's connections were replaced, lately
  /** A name replaced a third time within FLAP_MS is two workerds: say so. */
  private warnIfFlapping(c: Conn): void {
    const now = Date.now();
    const times = (this.replaced.get(c.name) ?? []).filter((t) => now - t < FLAP_MS);
    times.push(now);
    this.replaced.set(c.name, times);
    if (times.length !== 3) return;
    log('warning', { worker: c.name, why: `its connection was replaced 3 times within ${FLAP_MS / 1000} s: two workerds share this name? give each its own --name` });
  }

  /** A worker of a platform nothing serves is probably misnamed: say so once it joins. */
  private async warnIfIdle(c: Conn): Promise<void> {
    const idle = () => !this.queue.peek(c.platform) && !this.busy.has(c) && ![...this.running.values()].some((r) => r.job.platform === c.platform);
    if (!idle() || await this.hasWorkFor(c.platform)) return;
    await this.queue.rescan();   // a job put into new/ just before, whose event has not come yet
    if (!idle()) return;
    log('warning', { worker: c.name, platform: c.platform, why: 'no queued job, schedule or template for this platform; is the platform name right?' });
  }

  onClose(c: Conn, why: string): void {
    this.workers.delete(c);
    const id = this.busy.get(c);
    this.busy.delete(c);
    if (c.hello) {
      log('worker left', { worker: c.name, why, job: id && isId(id) ? id : undefined });
      this.removeWorkerFile(c);
    } else if (!/^connection closed$/.test(why)) {
      log('connection refused', { peer: c.peer, why });
    }
    if (id && isId(id)) {
      const r = this.running.get(id);
      if (r && r.worker === c && r.phase !== 'finishing') this.detach(r);
    }
  }

  /**
   * workers/NAME, the status file bctl info reads: rewritten at most once per
   * WORKER_FILE_MS per worker (a busy worker changes jobs many times a second),
   * with the state at the time of writing, so it may lag that long.
   */
  private writeWorker(c: Conn): void {
    if (!c.hello || this.stopping || this.workerFileTimers.has(c.name)) return;
    const wait = (this.workerFileAt.get(c.name) ?? 0) + WORKER_FILE_MS - Date.now();
    if (wait <= 0) { this.writeWorkerNow(c.name); return; }
    const t = setTimeout(() => { this.workerFileTimers.delete(c.name); this.writeWorkerNow(c.name); }, wait);
    t.unref();
    this.workerFileTimers.set(c.name, t);
  }

  private writeWorkerNow(name: string): void {
    const c = [...this.workers].find((w) => w.hello && !w.closed && w.name === name);
    if (!c || this.stopping) return;
    this.workerFileAt.set(name, Date.now());
    const job = this.busy.get(c);
    const text = formatHeaders([['name', c.name], ['platform', c.platform], ['peer', c.peer.replace(/\s/g, '_') || 'unix'], ['connected', c.since.toISOString()],
      ['job', job && isId(job) ? job : ''], ['seen', new Date().toISOString()]]);
    try { writeStatus(this.sp, this.sp.worker(c.name), text); } catch { /* a status file: the next change tries again */ }
  }

  private removeWorkerFile(c: Conn): void {
    if ([...this.workers].some((w) => w.hello && w.name === c.name)) return;   // reconnected meanwhile
    clearTimeout(this.workerFileTimers.get(c.name));
    this.workerFileTimers.delete(c.name);
    this.workerFileAt.delete(c.name);
    try { fs.rmSync(this.sp.worker(c.name), { force: true }); } catch { /* a status file; reconcile empties workers/ on start */ }
  }

  // ---- dispatch ---------------------------------------------------------

  /** Hand queued jobs of `platform` to its idle workers. */
  dispatchFor(platform: string): void {
    if (this.stopping || this.dropped.has(platform)) return;
    for (const c of this.workers) {
      if (!c.hello || c.closed || c.platform !== platform || this.busy.has(c)) continue;
      let q = this.queue.peek(platform);
      // A job being claimed or run already (its file seen twice, say by the
      // watcher and by checkLeases after a requeue) is not claimed again: the
      // second claim would clear the first one's running/ID, job and all.
      while (q && (this.claiming.has(q.id) || this.running.has(q.id))) { this.queue.remove(q.id); q = this.queue.peek(platform); }
      if (!q) return;
      this.queue.remove(q.id);
      this.claiming.add(q.id);
      this.busy.set(c, 'claiming');
      void this.dispatch(c, q);
    }
  }

  dispatchAll(): void { for (const p of this.queue.platforms()) this.dispatchFor(p); }

  /**
   * Claim new/ID and hold it in `running`; undefined if it is gone (claimed
   * by another, removed), rejected to bad/, or canceled: a cancel request
   * beside it (a bctl cancel that lost the race or died, or one that came as
   * its lease ran out) has it recorded canceled here, never sent. The caller
   * has put the id in `claiming`, and takes it out after.
   */
  private async take(id: string): Promise<Running | undefined> {
    let job: ParsedJob;
    try {
      if (!(await claim(this.sp, id))) return undefined;
    } catch (e) {
      log('error', { id, why: `cannot claim: ${(e as Error).message}` });
      return undefined;
    }
    try {
      // Read as it is now (edited by hand since it was queued, or swapped for a fifo).
      job = parseJob(readRunning(this.sp, id, 'job'), `running/${id}/job`, id);
    } catch (e) {
      await this.rejectClaimed(id, (e as Error).message);   // it never ran: bad/, as in new/
      return undefined;
    }
    const r = this.newRunning(id, job, undefined);
    this.running.set(id, r);
    return (await this.cancelIfAsked(r, false)) ? undefined : r;
  }

  /**
   * A held job that no worker runs (just claimed, or found at start) with a
   * cancel request beside it: recorded canceled, true. `started` says whether
   * it may have run (a lease names a worker); if not, no attempt is counted.
   */
  private async cancelIfAsked(r: Running, started: boolean): Promise<boolean> {
    if (!existsOr(this.sp.runningFile(r.id, 'cancel'), false)) return false;
    if (!started) r.attempt = r.job.attempt;
    r.cancelRequested = true;
    await this.settle(r, { kind: 'canceled' });
    return true;
  }

  /** new/ID with a cancel request beside it (see take), which no worker need come for. */
  private async cancelQueued(id: string): Promise<void> {
    if (this.claiming.has(id) || this.running.has(id)) return;   // being dispatched: take() honors the request
    this.queue.remove(id);
    this.claiming.add(id);
    const r = await this.take(id);
    this.claiming.delete(id);
    if (!r) return;
    this.unsent(r, 'its cancel request was withdrawn');   // gone by the time of the claim
  }

  /** A held job never sent to a worker: queued again at once (checkLeases), its attempt not counted. */
  private unsent(r: Running, why: string): void {
    r.attempt = r.job.attempt;
    r.deadline = 0;
    r.released = why;
  }

  private async dispatch(c: Conn, q: Queued): Promise<void> {
    const r = await this.take(q.id);
    this.claiming.delete(q.id);      // from here running has it (or nobody does)
    if (!r) {
      this.busy.delete(c);
      this.dispatchFor(c.platform);
      return;
    }
    const job = r.job;
    if (c.closed) {           // the worker left while we claimed
      this.unsent(r, `its worker ${c.name} left before the job was sent`);
      this.busy.delete(c);
      return;
    }
    r.worker = c;
    r.workerName = c.name;
    r.key = c.keys ? randomBytes(16).toString('hex') : undefined;
    this.busy.set(c, q.id);
    c.send({ t: 'job', id: q.id, name: job.name, platform: job.platform, attempt: r.attempt, timeoutMs: timeoutOf(job), network: job.network, script: job.body, key: r.key });
    log('dispatched', { id: q.id, name: job.name, platform: job.platform, worker: c.name, attempt: r.attempt });
    // The lease records who holds the job, for people and bctl info, and for
    // a restart, which lets only that worker, showing the key, re-attach. It is
    // not flushed: a claimed job without one is treated as possibly running,
    // and is run again when its lease runs out.
    try {
      writeStatus(this.sp, this.sp.runningFile(q.id, 'lease'),
        formatHeaders([['worker', c.name], ['started', r.started.toISOString()], ['attempt', String(r.attempt)], ...(r.key ? [['key', r.key] as const] : [])]));
    } catch { /* informational: see above */ }
    this.writeWorker(c);
    // While the worker runs it: the next claims' directories (state.ts).
    prepareRunningDirs(this.sp);
  }

  // ---- a running job's frames ------------------------------------------

  onFrame(c: Conn, f: Frame): void | Promise<void> {
    const id = this.busy.get(c);
    const r = id && isId(id) ? this.running.get(id) : undefined;
    // Each console frame is given back to the connection (c.release) once written or dropped: see conn.ts.
    if (f.type === T_CONSOLE) {
      if (!r || r.worker !== c || r.phase !== 'console') throw new ProtocolError('console data without a job in its console phase');
      if (f.data.length > 0) r.progressAt = mono();
      const full = this.writeConsole(r, f.data, () => c.release(f.data));
      return full && this.diskWait(r, full);
    }
    if (f.type === T_ARTIFACTS) {
      if (!r || r.worker !== c || r.phase !== 'artifacts' || !r.artifacts) throw new ProtocolError('artifact data outside an artifact stream');
      if (r.artifacts.failed) return;            // refused already: the rest is dropped, the manifest settles it
      if (f.data.length > 0) r.progressAt = mono();
      artifactBytesIn(f.data.length);
      // Backpressure: the returned promise holds the connection (conn.ts) until
      // the disk has taken the bytes, with one listener at a time.
      if (!r.artifacts.sink.write(f.data)) return this.diskWait(r, drained(r.artifacts.sink, r.artifacts.done));
      return;
    }
    if (f.type !== 1) return;
    const m = f.msg;
    switch (m.t) {
      case 'artifacts':
        if (!r || m.id !== r.id || r.phase !== 'console') throw new ProtocolError(`artifacts for job ${m.id.slice(0, 40)}, which this worker does not hold`);
        return this.beginArtifacts(c, r);
      case 'manifest':
        if (!r || m.id !== r.id || r.phase !== 'artifacts') throw new ProtocolError(`manifest for job ${m.id.slice(0, 40)} outside its artifact stream`);
        if (r.manifest.length + m.files.length > MAX_ARTIFACT_FILES) throw new ProtocolError(`manifest of more than ${MAX_ARTIFACT_FILES} entries`);
        for (const e of m.files) if ((r.manifestNames += nameBytes(e)) > MAX_ARTIFACT_NAMES) throw new ProtocolError(`manifest paths over ${MAX_ARTIFACT_NAMES} bytes in all`);
        // An empty part that is not the last says nothing: it would only keep the stall rule at bay.
        if (m.more && m.files.length === 0) throw new ProtocolError('an empty manifest part with more to come');
        for (const e of m.files) r.manifest.push(e);
        r.progressAt = mono();
        if (m.more) return;
        r.phase = 'manifest';
        // Its files' fsyncs are ours to wait for, not a stall of the worker's (stuck()).
        return this.diskWait(r, this.endArtifacts(c, r, r.manifest));
      case 'ended':
        // The job's process has exited; its delivery (the rest of its console, its artifacts) follows.
        if (!r || m.id !== r.id || r.phase !== 'console') throw new ProtocolError(`ended for job ${m.id.slice(0, 40)}, which this worker does not hold or has begun to deliver`);
        // The first one only: saying it again (after a re-attach, or without end) is no sign of progress.
        if (r.exitedAt === undefined) { r.exitedAt = mono(); r.progressAt = r.exitedAt; }
        return;
      case 'release':
        // The worker is stopping and killed the job unfinished: requeue it now
        // (the attempt counts) rather than when the lease runs out.
        if (!r || m.id !== r.id || r.phase === 'finishing') throw new ProtocolError(`release of job ${m.id.slice(0, 40)}, which this worker does not hold`);
        log('released', { id: r.id, name: r.job.name, worker: c.name, why: m.why });
        this.busy.set(c, 'spent');   // it is stopping: no new job for it
        this.detach(r);
        r.deadline = 0;
        r.released = `released by worker ${c.name}: ${m.why}`;
        if (m.unstarted && r.attempt > 0) r.attempt--;   // never ran: the attempt does not count
        void this.checkLeases();   // queued again now, not at the next tick: a stop may come next
        return;
      case 'finished':
        if (!r || m.id !== r.id) throw new ProtocolError(`finished for job ${m.id.slice(0, 40)}, which this worker does not hold`);
        if (r.phase !== 'manifest') throw new ProtocolError('finished before the artifact manifest');
        return this.finish(c, r, m);
      default:
        throw new ProtocolError(`unexpected message '${m.t}' from a worker`);
    }
  }

  /** Append to the job's console.log; `written` is called once, when the bytes are written or dropped. */
  private writeConsole(r: Running, data: Buffer, written: () => void): Promise<void> | undefined {
    if (r.consoleFailed) { written(); return; }   // the rest of the console has nowhere to go; the result will say so
    if (!r.console) {
      // CONSOLE_WINDOW: the socket is read on while earlier bytes are on their way to disk.
      // With the default 16 KiB every frame stopped the worker for a disk round trip.
      // flush: closing it fsyncs it, on this file's own fd, so a write-back error comes to the 'error' handler below.
      // O_NOFOLLOW: a link put in its place is never written through (ELOOP: a storage error, and the delivery is made again).
      // (Numeric flags go to open(2) as they are; @types/node types them as a string only.)
      const ws = fs.createWriteStream(this.sp.runningFile(r.id, 'console.log'), { flags: APPEND_NOFOLLOW as unknown as string, mode: 0o664, highWaterMark: CONSOLE_WINDOW, flush: true });
      r.console = ws;
      ws.on('error', (e) => {
        r.consoleFailed = true;
        this.storeError(r, 'console', { file: `running/${r.id}/console.log`, why: e.message });
        if (isNoSpace(e)) r.artifactError ??= NO_SPACE; else r.storeError ??= e;
      });
      // Flushed as it grows (tar.ts Flusher): the fsync before the rename into
      // done/ then finds little left. A failed fdatasync fails the stream like
      // a failed write, through the 'error' handler above.
      ws.once('open', (fd: number) => {
        // A fifo or device in its place (one with a reader opens): not ours, and the delivery is made again (ownEntry moves it aside).
        if (!fs.fstatSync(fd).isFile()) { ws.destroy(Object.assign(new Error(`running/${r.id}/console.log is not a regular file`), { code: 'EINVAL' })); return; }
        // 0664 whatever the umask, as every other file of a job (stage.ts FILE_MODE; builder-spool(5)).
        try { fs.fchmodSync(fd, FILE_MODE); } catch { /* a file of another owner: it keeps its mode */ }
        if (r.console !== ws) return;
        r.consoleFlush = new Flusher(
          () => (ws.destroyed ? Promise.resolve() : fdatasync(fd)),
          (e) => { if (!ws.destroyed) ws.destroy(e); });
      });
    }
    r.consoleFlush?.wrote(data.length);
    batchWrites(r.console);
    // Held for whichever is full: this console's window (its drain) or the
    // budget of all (an unawaited wait on it is let go with the others).
    const full = this.consoleBudget.take(data.length);
    if (full && mono() - this.heldLoggedAt >= HELD_LOG_MS) {
      this.heldLoggedAt = mono();
      log('held', { why: `the console buffer (--console-buffer ${this.opts.consoleBuffer}) is full: workers wait until the disk takes their consoles` });
    }
    if (!r.console.write(data, () => { this.consoleBudget.give(data.length); written(); })) return drained(r.console);
    return full;
  }

  /** When `held` was last logged (mono()): at most once per HELD_LOG_MS. */
  private heldLoggedAt = -Infinity;

  /** End the console stream: written, fsynced (flush) and closed when this resolves, also if another caller began it. */
  private async closeConsole(r: Running): Promise<void> {
    const ws = r.console;
    if (!ws) { await r.consoleClosing; return; }
    const flush = r.consoleFlush;
    r.console = undefined;
    r.consoleFlush = undefined;
    const closing = (async () => {
      await flush?.settle().catch(() => {});   // the fd must not close under a running fdatasync (its error went to 'error')
      if (ws.destroyed) return;
      // 'close', not end's callback ('finish'): the fsync comes between them.
      await new Promise<void>((resolve) => { ws.once('close', () => resolve()); ws.end(); });
    })();
    r.consoleClosing = closing;
    await closing;
  }

  /**
   * Remove what an earlier delivery of this attempt left (before a new one,
   * or before an end no worker delivers: settle), once its receiver has
   * stopped writing there. Usually there is nothing (a first delivery):
   * that is found with a few synchronous calls; a tree that is there may be
   * large, and goes in the thread pool.
   */
  private resetArtifacts(r: Running): Promise<void> {
    const a = r.artifacts;
    r.artifacts = undefined;
    a?.sink.destroy();
    // Resets run one after the other: a reset begun when the worker left may
    // still wait for its receiver when the worker is back and delivers again,
    // and its removal must not land in the new delivery's directory.
    const before = r.resetting;
    const reset = (async () => {
      await before;
      await a?.done.catch(() => {});
      const dir = this.sp.runningFile(r.id, 'artifacts');
      const sums = this.sp.runningFile(r.id, 'SHA256SUMS');
      // Nothing delivered yet: an empty artifacts/ and SHA256SUMS, as the
      // claim's ready directory has them (state.ts), stay.
      if (!a && isEmpty(dir, true) && isEmpty(sums, false)) return;
      if (existsOr(dir, true)) await removeTree(dir).catch(() => {});
      try { removeEntry(sums); } catch { /* finalize or the next delivery replaces it */ }
    })();
    r.resetting = reset;
    return reset;
  }

  private async beginArtifacts(c: Conn, r: Running): Promise<void> {
    r.phase = 'artifacts';
    r.progressAt = mono();
    // The console is complete (the worker sends it all before `artifacts`):
    // close and fsync it now, while the artifacts stream in, rather than
    // after them on the way to done/ (finish waits for this close).
    void this.closeConsole(r);
    try {
      await this.resetArtifacts(r);
      // The worker left meanwhile (detach): a receiver made now would wait for ever.
      if (r.worker !== c) return;
      const dir = this.sp.runningFile(r.id, 'artifacts');
      if (!(await ownEntry(this.sp, r.id, 'artifacts'))) mkdirSpool(dir);   // an empty one left by the reset is taken as it is
      const rx = receiveArtifacts(dir, this.opts.maxArtifactBytes);
      const a = { ...rx, failed: false };
      a.done.catch(() => { a.failed = true; });
      r.artifacts = a;
    } catch (e) {
      // Nowhere to put them (read-only spool, disk full): drop the stream and
      // decide at `finished` (storeError).
      r.storeError ??= e as Error;
      r.artifacts = { sink: new Writable({ write: (_c, _e, cb) => cb() }) as never, done: Promise.resolve([]), failed: true };
    }
    r.manifest = [];
    r.manifestNames = 0;
  }

  private async endArtifacts(c: Conn, r: Running, announced: ArtifactEntry[]): Promise<void> {
    const a = r.artifacts!;
    a.sink.end();
    if (r.storeError) { await a.done.catch(() => {}); return; }
    try {
      const got = await a.done;
      const diff = compareManifest(announced, got);
      if (diff) r.artifactError ??= `artifacts do not match their manifest: ${diff}`;
      else {
        const sums = formatSums(got);
        // finalize flushes it, and makes an empty one when there is nothing to sum.
        if (sums) await writePrivate(this.sp, this.sp.runningFile(r.id, 'SHA256SUMS'), sums, false);
      }
    } catch (e) {
      const why = (e as Error).message;
      // The worker went away meanwhile (detach destroyed the receiver): not a
      // hostile stream, just an unfinished delivery, which it makes again.
      if (r.worker !== c) return;
      if (isStorage(e)) { r.storeError ??= e as Error; this.storeError(r, 'artifacts', { why: `cannot store artifacts: ${why}` }); return; }
      // A hostile stream: record the job failed and drop the connection.
      r.artifactError ??= `artifacts rejected: ${why}`;
      log('artifacts rejected', { id: r.id, worker: c.name, why });
      await this.settle(r, { kind: 'failed', why: r.artifactError }, c.name, r.started);
      c.close(`artifacts rejected: ${why}`, { t: 'bye', why: `artifacts rejected: ${why}`, code: 'protocol' });
    }
  }

  private async finish(c: Conn, r: Running, m: Extract<Msg, { t: 'finished' }>): Promise<void> {
    const status = parseStatus(m.status);
    if (!status) { c.protocolError(new ProtocolError(`bad status ${JSON.stringify(m.status.slice(0, 60))}`)); return; }
    // From here the job's data is all in: the connection may close without
    // changing its fate (onClose leaves a finishing job alone).
    r.phase = 'finishing';
    // The console's close (begun with the artifacts) flushes it: its failure
    // decides the result as any other storage failure does, so it is awaited first.
    await this.closeConsole(r);
    // The worker's clock says when the job started. Taken only when it is
    // plausible (from a minute before the hand-over to now): a worker host whose
    // clock is at 1970 made a duration that the result's own parser refuses.
    const said = new Date(m.started).getTime();
    const started = said >= r.started.getTime() - 60_000 && said <= Date.now() ? new Date(said) : r.started;
    // Removed by hand, its directory failed our writes (ENOENT): a storage error. (Checked only then: not a syscall per job.)
    if (r.storeError && this.foundNow(r) === 'removed') { this.forgetRemoved(r, c); return; }
    // A full disk is the job's result (`failed: no space left on device`); any
    // other storage failure (read-only spool, EIO) is ours, not the job's: the
    // worker keeps the result and delivers it again once the spool takes it.
    if (r.storeError && isNoSpace(r.storeError)) r.artifactError ??= NO_SPACE;
    const final: Status = r.artifactError ? { kind: 'failed', why: r.artifactError } : status;
    // The worker is let go as soon as the result is the spool's (in
    // running/ID), not once it is flushed and in done/: its next job starts
    // while this one's directory is flushed and published.
    let gone = false;
    const ok = !(r.storeError && !isNoSpace(r.storeError))
      && await this.finalizeJob(r, final, c.name, started, () => { gone = true; this.letGo(c, r.id); });
    if (ok) { if (!gone) this.letGo(c, r.id); } else {
      this.storeError(r, 'result', { why: `cannot store the result${r.storeError ? `: ${r.storeError.message}` : ''}; the worker keeps it and delivers it again` });
      this.detach(r);
      c.close('could not store the result; the worker keeps it and retries');
    }
  }

  /** The worker is gone or must reconnect: wait for it until the lease runs out. */
  private detach(r: Running): void {
    r.phase = 'console';
    r.worker = undefined;
    r.deadline = Date.now() + this.opts.leaseMs;
    void this.resetArtifacts(r);
    void this.closeConsole(r);
  }

  /**
   * Write the result and move the job to done/. False when the spool would
   * not take the result. `stored` is called once the result is the spool's
   * (storeResult): a failure after it (to flush or publish) is not undone,
   * and the job, with its result in running/ID, is left to the periodic
   * scan, which finishes the move (reconcileEntry); true then.
   */
  private async finalizeJob(r: Running, status: Status, worker: string, started: Date | undefined, stored?: () => void): Promise<boolean> {
    await this.closeConsole(r);
    await r.resetting;   // a removal still under way must not reach into done/ nor a new attempt
    if (r.artifacts && status.kind === 'failed') { r.artifacts.sink.destroy(); }
    const result: Result = {
      id: r.id, name: r.job.name, platform: r.job.platform, worker, attempt: r.attempt,
      queued: r.job.queued ?? r.started, started, finished: new Date(), status,
    };
    let isStored = false;
    try {
      if (status.kind === 'failed' && status.why === NO_SPACE) await this.makeRoom(r);
      await storeResult(this.sp, result);
      isStored = true;
      stored?.();
      await publishDone(this.sp, result, true);   // `done` need not wait for done/NAME's flush (finalize says why)
    } catch (e) {
      const now = this.foundNow(r);
      if (now === 'done') {
        // Another writer finalized it first: a bctl cancel finishing the job
        // it had claimed as this spoold started. Its result stands.
        if (this.running.get(r.id) === r) this.running.delete(r.id);
        log('forgotten', { id: r.id, name: r.job.name, why: 'finished meanwhile by another writer (bctl cancel); its result stands' });
        return true;
      }
      if (now === 'removed') { this.forgetRemoved(r, undefined); return true; }
      this.storeError(r, 'finalize', { why: `cannot finalize: ${(e as Error).message}${isStored && stored ? storedWhy(r) : ''}` });
      if (!(isStored && stored)) return false;
      // Its worker was let go: the move is spoold's to finish (checkLeases, republish).
      r.stored = result;
      r.worker = undefined;
      r.deadline = Date.now() + RETRY_MS;
      return true;
    }
    this.published(r, result);
    return true;
  }

  /** Job r is in done/: no longer held, its errors forgotten, and said. */
  private published(r: Running, result: Result, why?: string): void {
    if (this.running.get(r.id) === r) this.running.delete(r.id);
    for (const site of STORE_SITES) this.storeErrors.forget(`${r.id} ${site}`);
    logFinished(result, why);
    this.onFinished(result, r.job.origin);
  }

  /** Try again the move to done/ of a result stored in running/ID (finalizeJob). */
  private async republish(r: Running): Promise<void> {
    try {
      // The result written again first: after a failed fsync the kernel may
      // have dropped its pages as written (EIO), and the retry's fsync would
      // then pass for bytes that never reached the disk.
      await storeResult(this.sp, r.stored!);
      await publishDone(this.sp, r.stored!, true);
    } catch (e) {
      const now = this.foundNow(r);
      if (now === 'removed') { this.forgetRemoved(r, undefined); return; }
      if (now !== 'done') {
        this.storeError(r, 'finalize', { why: `cannot finalize: ${(e as Error).message}${storedWhy(r)}` });
        r.deadline = Date.now() + RETRY_MS;
        return;
      }
    }
    this.published(r, r.stored!, 'finalize completed at a later try');
  }

  /**
   * Log a storage error of job r, once per cause at each site until the job
   * is finished: with the spool's disk full, its worker delivers again every
   * second, and each round logged the same four errors (found by a tester).
   */
  private storeError(r: Running, site: typeof STORE_SITES[number], fields: { file?: string; why: string }): void {
    if (this.storeErrors.first(`${r.id} ${site}`, fields.why)) log('error', { id: r.id, ...fields });
  }

  private readonly storeErrors = new LogOnce();

  /**
   * Where job r is, after a write of ours failed: its running/ID still there
   * (or not known: EACCES, EIO), finalized by another writer (running/ID
   * gone, done/NAME/ID there: a bctl cancel finishing the job it had claimed
   * as this spoold started), or removed by hand (in neither).
   */
  private foundNow(r: Running): 'running' | 'done' | 'removed' {
    if (existsOr(this.sp.runningDir(r.id), true)) return 'running';
    const done = this.sp.doneDir(r.job.name, r.id);
    return existsOr(done, false) ? 'done' : existsOr(done, true) ? 'running' : 'removed';
  }

  /**
   * A job whose running/ID a person removed is gone, as a queued one is whose
   * new/ID they remove: it is forgotten, and its worker, if it delivered, is
   * told `done` so that it lets the result go. Storing it anywhere would undo
   * the removal; retrying for ever kept the worker from any other job (found
   * by a tester).
   */
  private forgetRemoved(r: Running, c: Conn | undefined): void {
    if (this.running.get(r.id) === r) this.running.delete(r.id);
    r.artifacts?.sink.destroy();
    void this.closeConsole(r);
    log('forgotten', { id: r.id, name: r.job.name, why: `running/${r.id} was removed by hand; its result is dropped` });
    if (c) this.letGo(c, r.id);
  }

  /** Tell a worker that delivered job `id` to let it go (`done`), and give it its next job. */
  private letGo(c: Conn, id: string): void {
    // A --once worker is spent: it exits after `done`, so it gets no second job.
    if (this.busy.get(c) === id) { if (c.once) this.busy.set(c, 'spent'); else this.busy.delete(c); }
    c.send({ t: 'done', id });
    this.writeWorker(c);
    this.dispatchFor(c.platform);
  }


  /**
   * The disk is full: give back the partial artifacts and, when the console
   * was what did not fit, its last NO_SPACE_RESERVE bytes, saying so at its end, so that the
   * result, SHA256SUMS and the rename into done/ can still happen.
   */
  private async makeRoom(r: Running): Promise<void> {
    // SHA256SUMS goes with them: it lists them (finalize makes an empty one),
    // and a done/ directory whose sums name missing files is not whole (found
    // by a tester: the console filled the disk, the artifacts came after).
    await removeTree(this.sp.runningFile(r.id, 'artifacts')).catch(() => {});
    await fsp.rm(this.sp.runningFile(r.id, 'SHA256SUMS'), { force: true }).catch(() => {});
    if (!r.consoleFailed) return;   // the artifacts filled the disk: removing them made the room
    const fh = await fsp.open(this.sp.runningFile(r.id, 'console.log'), APPEND_NOFOLLOW & ~fs.constants.O_CREAT).catch(() => undefined);
    if (!fh) return;   // none, or not ours (a link): finalize makes it afresh
    try {
      const st = await fh.stat();
      if (!st.isFile()) return;
      const cut = Math.max(0, st.size - NO_SPACE_RESERVE);
      await fh.truncate(cut).catch(() => {});
      // On a line of its own: after a newline only when the console kept some bytes.
      await fh.appendFile(`${cut > 0 ? '\n' : ''}[spoold: console.log cut here: no space left on device]\n`).catch(() => {});
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /**
   * A job claimed but never sent, whose file does not parse (edited in new/
   * between its queueing and its claim): to bad/, as a bad file in new/ goes.
   */
  private async rejectClaimed(id: string, why: string): Promise<void> {
    try {
      const bad = await reject(this.sp, this.sp.runningFile(id, 'job'), why, this.sp.queued(id));
      if (bad) log('rejected', { file: `running/${id}/job`, bad: `bad/${bad}`, why });
      await clearLeftover(this.sp, id);
    } catch (e) {
      log('error', { file: `running/${id}/job`, why: `${why}; and cannot move it to bad/: ${(e as Error).message}; remove it by hand` });
    }
  }

  // ---- leases and cancels ----------------------------------------------

  /**
   * Record a job whose end no worker will deliver (canceled, lost, or failed
   * by spoold itself, `worker` then naming whose it was). If the spool will
   * not take it now, it stays held with its end, and checkLeases tries again
   * after RETRY_MS.
   */
  private async settle(r: Running, status: Status, worker = '', started?: Date): Promise<void> {
    r.phase = 'finishing';
    // No worker delivered this end, so no artifacts come with it: what an
    // unfinished delivery left (before a crash, say) is not kept half.
    await this.resetArtifacts(r);
    if (await this.finalizeJob(r, status, worker, started)) return;
    r.ending = { status, worker, started };
    r.worker = undefined;
    r.phase = 'console';
    r.deadline = Date.now() + RETRY_MS;
  }

  /** The lease check under way, if any, and whether one was asked for meanwhile (it may have passed the job asked about); stop() lets them end. */
  private checking: Promise<void> | undefined;
  private checkAgain = false;
  private checkLeases(): Promise<void> {
    if (this.checking) { this.checkAgain = true; return this.checking; }
    if (this.stopping) return Promise.resolve();
    this.checking = (async () => {
      do { this.checkAgain = false; await this.checkOnce(); } while (this.checkAgain);
    })().finally(() => { this.checking = undefined; });
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const now = Date.now();
    for (const r of [...this.running.values()]) {
      if (r.stored) { if (r.deadline <= now) await this.republish(r); continue; }
      const stuck = r.worker && r.phase !== 'finishing' ? this.stuck(r) : undefined;
      if (stuck) {
        // Its worker keeps the connection but not its promise: the job ends
        // here, and the worker is told why and let go (a reconnect holding
        // the job is told it is done).
        const c = r.worker!;
        log('overdue', { id: r.id, name: r.job.name, worker: c.name, why: stuck.why });
        c.close(`job ${r.id}: ${stuck.why}`, { t: 'bye', why: `job ${r.id}: ${stuck.why}; spoold records it ${formatStatus(stuck.status)}` });
        await this.settle(r, stuck.status, c.name, r.started);
        continue;
      }
      if (r.worker || r.phase === 'finishing' || r.deadline > now) continue;
      if (r.ending) { await this.settle(r, r.ending.status, r.ending.worker, r.ending.started); continue; }
      if (r.cancelRequested) { await this.settle(r, { kind: 'canceled' }); continue; }
      if (r.attempt > retriesOf(r.job)) { await this.settle(r, { kind: 'lost' }); continue; }
      // Held until the commit (adoptOrphans must not take it meanwhile), and
      // forgotten in the same tick as it: the moment it is in new/ a waiting
      // worker may claim it, and that claim's entry must not be the one deleted.
      r.phase = 'finishing';
      let committed = false;
      try {
        await this.closeConsole(r);
        await r.resetting;
        await requeue(this.sp, r.id, r.job, r.attempt, () => {
          committed = true;
          if (this.running.get(r.id) === r) this.running.delete(r.id);
          log('requeued', { id: r.id, name: r.job.name, attempt: r.attempt, why: r.released ?? 'lease expired: the worker is gone' });
        });
        // A cancel request that came meanwhile was kept (requeue): no worker need come for it.
        if (existsOr(this.sp.runningFile(r.id, 'cancel'), false)) await this.cancelQueued(r.id);
        else await this.queue.consider(r.id);
      } catch (e) {
        if (!committed) { r.phase = 'console'; r.deadline = Date.now() + RETRY_MS; }   // else it is in new/: the next scan queues it
        log('error', { id: r.id, why: `cannot requeue: ${(e as Error).message}` });
      }
    }
  }

  /** Hold `r`'s stall clock while `p`, a wait of ours for the disk, runs (stuck()). */
  private diskWait<T>(r: Running, p: Promise<T>): Promise<T> {
    r.diskWaits++;
    return p.finally(() => { r.diskWaits--; r.progressAt = mono(); });
  }

  /** How a job its connected worker should have ended by now ends here, and why; undefined while all is well. */
  private stuck(r: Running): { status: Status; why: string } | undefined {
    if (r.diskWaits > 0) return undefined;
    const hb = this.opts.heartbeatMs;
    const now = mono();
    const quiet = now - Math.max(r.progressAt, r.worker?.dataAt ?? 0);   // a frame's bytes count as they come, not at its end
    if (r.phase === 'console') {
      const timeout = timeoutOf(r.job);
      const byTimeout = r.heldAt + timeout + KILL_GRACE_MS + OVERDUE_HEARTBEATS * hb;
      const byCancel = r.cancelSentAt === undefined ? Infinity : r.cancelSentAt + KILL_GRACE_MS + CANCEL_HEARTBEATS * hb;
      const end = Math.min(byTimeout, byCancel);
      if (r.exitedAt !== undefined) {
        // It ended (the worker said so): what is left is its delivery, which may
        // be slow (a large tree looked over, a slow link), but not without end:
        // 120 heartbeats past the job's limit, or past when spoold first heard
        // of the end (a worker back from a long absence, within a long lease),
        // once: re-attaching again does not move it. A cancel sent after the
        // job had ended changes nothing.
        const limit = r.cancelSentAt !== undefined && r.cancelSentAt < r.exitedAt ? end : byTimeout;
        if (now > Math.max(limit, r.exitedAt) + LATE_HEARTBEATS * hb) {
          const why = `its console was still coming ${formatDuration(LATE_HEARTBEATS * hb)} after the time allowed for the job`;
          return { status: { kind: 'failed', why }, why };
        }
        // workerd looks the job's files over before it sends the rest, saying
        // nothing meanwhile: as long as a job that has not said ended may take.
        // (One that re-attached saying so has been looked over.)
        if (!r.ended && now <= limit) return undefined;
      } else {
        // Console still coming may be the rest of a job that ended in time (a slow link, an older workerd that does not say ended): not past a cap.
        if (now <= end || (quiet <= DEAD_AFTER * hb && now <= end + LATE_HEARTBEATS * hb)) return undefined;
        return byCancel <= byTimeout
          ? { status: { kind: 'canceled' }, why: `the worker did not stop it within ${formatDuration(byCancel - r.cancelSentAt!)} of the cancel` }
          : { status: { kind: 'timeout' }, why: `it ran ${formatDuration(byTimeout - r.heldAt - timeout)} past its timeout of ${formatDuration(timeout)}, and the worker did not stop it` };
      }
    }
    if (quiet <= STALL_HEARTBEATS * hb) return undefined;
    const why = `its ${r.phase === 'console' ? 'console' : 'artifacts'} stalled: nothing came for ${formatDuration(STALL_HEARTBEATS * hb)}`;
    return { status: { kind: 'failed', why }, why };
  }

  private async checkCancels(): Promise<void> {
    for (const r of [...this.running.values()]) {
      if (r.cancelSent || r.phase === 'finishing') continue;
      if (!existsOr(this.sp.runningFile(r.id, 'cancel'), false)) continue;
      r.cancelRequested = true;
      if (r.worker) {
        r.cancelSent = true;
        r.cancelSentAt = mono();
        r.worker.send({ t: 'cancel', id: r.id });
        log('cancel', { id: r.id, name: r.job.name, worker: r.worker.name });
      } else {
        r.cancelSent = true;
        r.deadline = 0;     // no worker holds it: checkLeases finalizes it as canceled
      }
    }
  }

  /** For tests and info: ids of running jobs. */
  runningIds(): string[] { return [...this.running.keys()]; }

  /** The jobs in running/ this spoold holds or waits for (timer.ts looks for a schedule's instances). */
  runningJobs(): Array<{ id: string; job: ParsedJob }> { return [...this.running.values()].map((r) => ({ id: r.id, job: r.job })); }

  /** Tell connected workers of a newly dropped platform why they get no work. */
  announceDropped(platform: string): void {
    for (const c of this.workers) if (c.hello && c.platform === platform) c.send({ t: 'idle', why: `platform ${platform} is dropped (bctl undrop-platform ${platform} restores it)` });
  }
}


/** Resolve when `w` drains, closes or errors, or `settled` settles; one listener each, removed after. */
function drained(w: NodeJS.EventEmitter, settled?: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => { w.off('drain', done); w.off('close', done); w.off('error', done); resolve(); };
    w.on('drain', done);
    w.on('close', done);
    w.on('error', done);
    settled?.then(done, done);
  });
}

const fdatasync = promisify(fs.fdatasync);

/** The log line of a job whose result is in done/; its duration written as the result writes it. */
function logFinished(r: Result, why?: string): void {
  const duration = formatDuration(r.started ? r.finished.getTime() - r.started.getTime() : 0);
  log('finished', { id: r.id, name: r.name, platform: r.platform, worker: r.worker || undefined, status: formatStatus(r.status), duration, why });
}

/** What becomes of a job whose result is stored and whose move to done/ failed (finalizeJob, republish). */
const storedWhy = (r: Running): string => `; its result is stored in running/${r.id}, and the move to done/ is tried again every ${RETRY_MS / 1000} s`;

/**
 * running/ID/FILE, which people may edit or replace (read.ts readRegular);
 * an Error naming it, saying why it is not read and what to do. ENOENT and
 * other I/O errors are thrown as they are.
 */
function readRunning(sp: SpoolPaths, id: string, file: 'job' | 'result'): Buffer {
  const r = readRegular(sp.runningFile(id, file));
  if (!Buffer.isBuffer(r)) throw new Error(`running/${id}/${file}: ${r.why}; fix or remove it by hand`);
  return r;
}

/**
 * A re-attach shows the attempt's key (workerd has it from the job message),
 * so that a worker name alone, which any peer may claim, does not take a job.
 * An attempt given to a workerd older than keys (no `keys` in its hello), or
 * one whose lease an older spoold wrote, has none: the name then suffices.
 */
function sameKey(want: string | undefined, shown: string | undefined): boolean {
  if (want === undefined) return true;
  const hex = /^[0-9a-f]{32}$/;   // a key spoold did not write matches nothing
  return hex.test(want) && shown !== undefined && sameSecret(Buffer.from(shown), Buffer.from(want));
}

/** The worker, start and attempt that running/ID/lease names, if any (the lease is informational, so it may be missing). */
function readLease(sp: SpoolPaths, id: string): { worker: string | undefined; started: Date | undefined; attempt: number | undefined; key: string | undefined } {
  const file = sp.runningFile(id, 'lease');
  let h = new Map<string, string>();
  try {
    const buf = readSpoolFile(file);
    if (buf) h = new Map(parseHeaders(decodeFile(buf, sp.rel(file)), sp.rel(file)).headers.map((x) => [x.key, x.value]));
  } catch { /* none, or not one spoold wrote */ }
  const w = h.get('worker');
  const s = h.get('started');
  const a = h.get('attempt');
  // A key that is not one spoold writes is kept as it is: sameKey() then lets no worker re-attach.
  return { worker: w && isName(w) ? w : undefined, started: s === undefined ? undefined : parseTime(s), attempt: a && /^[1-9]\d{0,8}$/.test(a) ? Number(a) : undefined, key: h.get('key') };
}

