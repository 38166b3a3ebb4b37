// run.ts: run one job: a fresh directory, script.sh (mode 0500), its own process group.
//
// The job's process is started by a launcher (launch.ts). The job's
// stdout and stderr both go straight into the local console.log file
// (one fd, O_APPEND), so their bytes keep the order the job wrote them in and
// nothing passes through our event loop; the connection tails that file. The
// console and the exit status stay on local disk until spoold confirms the
// result is stored, so a server that goes away loses nothing.
// Timeout and cancel kill the whole group: SIGTERM, then SIGKILL after
// KILL_GRACE_MS. When the script exits, any process it left behind in its group
// is killed too, so the console is complete and the directory stable.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { formatStatus, type Status } from '../spool/result.js';
import { artifactNotes } from '../spool/tar.js';
import { KILL_GRACE_MS } from '../spool/protocol.js';
import type { JobProc, Launcher } from './launch.js';
import { PGID } from './leftovers.js';


/** The longest wait setTimeout takes as it is (2^31-1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A job directory with at most this many entries is removed synchronously (discard). */
const SMALL_TREE = 100;

export const SCRIPT = 'script.sh';

export interface JobSpec { id: string; name: string; platform: string; attempt: number; timeoutMs: number; network: boolean; script: string; key?: string }

export class LocalJob {
  readonly dir: string;            // WORKDIR/ID: ours
  readonly jobDir: string;         // WORKDIR/ID/job: the job's, every file in it (but script.sh) is an artifact
  readonly consolePath: string;
  status: string | undefined;      // set once the job has ended
  processExited = false;           // its process has exited: status follows once its files are looked over
  disowned = false;                // spoold said not-yours: it is killed, its result goes nowhere
  started = new Date();
  finished: Date | undefined;
  private proc: JobProc | undefined;
  private killReason: Status | undefined;
  private timer: NodeJS.Timeout | undefined;
  private exited: Promise<void>;
  private onEnd: () => void = () => {};
  private wake: Array<() => void> = [];

  constructor(readonly spec: JobSpec, workdir: string) {
    this.dir = path.join(workdir, spec.id);
    this.jobDir = path.join(this.dir, 'job');
    this.consolePath = path.join(this.dir, 'console.log');
    this.exited = new Promise((r) => { this.onEnd = r; });
  }

  /** Resolves when the job has ended and `status` is set. */
  get ended(): Promise<void> { return this.exited; }

  /** Bumped on every sign of news (console grew, job ended): see changed(). */
  version = 0;

  /**
   * Wait until there may be more console bytes, or the job ended, or ms passed.
   * `since` is the version the caller saw before it last looked: news that came
   * while it looked resolves at once instead of being missed.
   */
  changed(since: number, ms: number): Promise<void> {
    if (this.version !== since) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => { clearTimeout(t); resolve(); };
      // A wait that times out takes its waker back: a job silent for hours
      // piled up five a second (9.7 MB an hour, found by a soak test).
      const t = setTimeout(() => { const i = this.wake.indexOf(wake); if (i >= 0) this.wake.splice(i, 1); resolve(); }, ms);
      this.wake.push(wake);
    });
  }

  private poke(): void { this.version++; const w = this.wake; this.wake = []; for (const f of w) f(); }

  /**
   * Write the job's files and have the launcher start its process. The
   * files are written synchronously: a few small calls, each of which would
   * otherwise be a thread-pool round trip on the path to the job's start.
   */
  start(launcher: Launcher): void {
    const script = path.join(this.jobDir, SCRIPT);
    try {
      // A leftover of this job (workerd died, the job came back) is moved aside
      // and removed in the thread pool: it may be a large tree.
      if (fs.lstatSync(this.dir, { throwIfNoEntry: false })) {
        const old = `${this.dir}.old.${Date.now()}`;
        fs.renameSync(this.dir, old);
        void fsp.rm(old, { recursive: true, force: true }).catch(() => {});
      }
      // Created here (a spare has it already) so the connection can tail it at once; the job's process appends to it.
      if (!this.reuseSpare()) {
        fs.mkdirSync(this.jobDir, { recursive: true, mode: 0o755 });
        fs.writeFileSync(this.consolePath, '', { mode: 0o644, flag: 'a' });
      }
      fs.writeFileSync(script, this.spec.script, { mode: 0o500 });
    } catch (e) {
      // Parity: the worker can't write the job's files: the failure is the job's result.
      const why = `cannot write job files in ${this.dir}: ${(e as Error).message}`;
      try { fs.mkdirSync(this.dir, { recursive: true }); fs.appendFileSync(this.consolePath, `workerd: ${why}\n`); } catch { /* nowhere to log it but the status */ }
      this.end({ kind: 'failed', why });
      return;
    }
    let proc: JobProc;
    try {
      proc = launcher.launch({ dir: this.dir, id: this.spec.id, name: this.spec.name, platform: this.spec.platform, network: this.spec.network });
    } catch (e) {
      this.end({ kind: 'failed', why: `cannot start the job: ${(e as Error).message}` });
      return;
    }
    this.proc = proc;
    this.started = new Date();
    proc.onEnd((end) => {
      // (What the script left running in its group is killed by now: the launcher does it.)
      this.processExited = true;
      this.poke();                 // spoold is told now (main.ts pump): looking over a large tree may take a while
      if ('error' in end) {
        try { fs.appendFileSync(this.consolePath, `workerd: ${end.error}\n`); } catch { /* the status says it */ }
        this.end({ kind: 'failed', why: end.error });
        return;
      }
      if (this.disowned) { this.end(this.killReason ?? { kind: 'canceled' }); return; }   // its result goes nowhere: no notes
      const status: Status = this.killReason ?? ('signal' in end ? { kind: 'signalled', signal: end.signal } : { kind: 'exited', code: end.code });
      // Parity: job output that cannot be returned is said in the job's console.
      void artifactNotes(this.jobDir, [SCRIPT])
        .then(({ notes, entries }) => {
          if (notes.length === 0) { this.smallTree = entries <= SMALL_TREE; this.leftNothing = entries === 0; }
          return notes.length > 0 ? fsp.appendFile(this.consolePath, notes.map((n) => `${n}\n`).join('')) : undefined;
        })
        .catch(() => {})
        .finally(() => this.end(status));
    });
    this.armTimeout(Date.now() + this.spec.timeoutMs);
  }

  /**
   * Kill the job at `deadline`. setTimeout waits at most 2^31-1 ms (~24.8
   * days) and fires at once for more, while a job may have up to 366 days:
   * a longer wait is taken in steps.
   */
  private armTimeout(deadline: number): void {
    const left = deadline - Date.now();
    this.timer = left > MAX_TIMER_MS
      ? setTimeout(() => this.armTimeout(deadline), MAX_TIMER_MS)
      : setTimeout(() => this.kill({ kind: 'timeout' }), Math.max(0, left));
    this.timer.unref();
  }

  /** Kill the job's process group (timeout, cancel, not-yours): TERM, then KILL. */
  kill(reason: Status): void {
    if (this.status !== undefined || !this.proc) { if (this.status === undefined) this.end(reason); return; }
    this.killReason ??= reason;
    this.killGroup('SIGTERM');
    const t = setTimeout(() => this.killGroup('SIGKILL'), KILL_GRACE_MS);
    t.unref();
  }

  /** SIGKILL the job's process group now (workerd exits at once: no grace, no later timer). */
  killNow(): void { if (this.status === undefined) this.killGroup('SIGKILL'); }

  private killGroup(sig: NodeJS.Signals): void { this.proc?.kill(sig); }

  private end(s: Status): void {
    if (this.status !== undefined) return;
    if (this.timer) clearTimeout(this.timer);
    this.status = formatStatus(s);
    this.finished = new Date();
    this.onEnd();
    this.poke();
  }

  /** The console file grew (fs.watch) or may have. */
  notify(): void { this.poke(); }

  /**
   * The job left at most SMALL_TREE entries, all of them returned (a skipped
   * one, such as an unreadable directory, may hide a tree the count misses).
   */
  private smallTree = false;

  /** The job left nothing to return (but its script): its delivery has no tar stream (main.ts). */
  leftNothing = false;

  /**
   * Remove the job's directory. A few entries go at once, synchronously (the
   * thread pool's removal cost a job of `true` ~4 ms of workerd's time); a
   * tree of many, or of unknown size, goes in the thread pool, so that the
   * event loop never stalls on it. Of a small tree, the directories and
   * workerd's own files stay, emptied, as the spare the next job starts in
   * (reuseSpare); only what the job made goes.
   */
  async discard(): Promise<void> {
    try {
      // Into a free spare slot; with both taken, or on any failure, the directory goes below.
      const free = this.smallTree ? this.spares().find((p) => !fs.lstatSync(p, { throwIfNoEntry: false })) : undefined;
      if (free) {
        // The job's directory and console go, always: a process of the job
        // that left its group (setsid: a build daemon) keeps them as its cwd
        // and stdout, and must not reach the next job through them (found in
        // review: its output and files landed in the next job's).
        emptySmall(this.dir, (e) => e.name === PGID && e.isFile());
        // New ones for the next job, made now, while idle, rather than as it starts.
        fs.mkdirSync(this.jobDir, { mode: 0o755 });
        fs.writeFileSync(this.consolePath, '', { mode: 0o644, flag: 'wx' });
        fs.renameSync(this.dir, free);
        return;
      }
    } catch { /* the removal below */ }
    await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }

  /**
   * Start in a directory a small job left (discard) instead of a
   * new one: WORKDIR/.spare or .spare.1, holding workerd's pgid file (written over at
   * the start) and a job/ and console.log that discard made new, for this
   * job, while idle. On ext4 without a journal every new inode is looked for
   * past those freed in the last minutes, one by one (perf: find_inode_bit,
   * recently_deleted, a sixth of the machine's time in W1 of npm run
   * bench). The job's own directory and console are never a past job's
   * (discard says why). Taken only as discard left it, and made fresh again
   * (mode 0755). False when there is none to take.
   */
  /** The paths of the spare slots (SPARES) beside this job's directory. */
  private spares(): string[] { return SPARES.map((n) => path.join(path.dirname(this.dir), n)); }

  private reuseSpare(): boolean {
    const spare = this.spares().find((p) => fs.lstatSync(p, { throwIfNoEntry: false }));
    if (!spare) return false;
    try {
      fs.renameSync(spare, this.dir);
    } catch { return false; }
    try {
      const uid = process.getuid?.();
      const ok = (p: string, dir: boolean): boolean => {
        const st = fs.lstatSync(p);
        return st.uid === uid && (dir ? st.isDirectory() : st.isFile() && st.nlink === 1 && (p !== this.consolePath || st.size === 0));
      };
      if (ok(this.dir, true) && ok(this.jobDir, true) && fs.readdirSync(this.jobDir).length === 0 && ok(this.consolePath, false)
        && fs.readdirSync(this.dir).every((n) => n === 'job' || n === 'console.log' || (n === PGID && ok(path.join(this.dir, n), false)))) {
        fs.chmodSync(this.dir, 0o755);
        fs.chmodSync(this.jobDir, 0o755);
        return true;
      }
    } catch { /* not as discard left it: below */ }
    // Not as discard left it: moved aside for removal, as a leftover of this job would be.
    const old = `${this.dir}.old.${Date.now()}`;
    fs.renameSync(this.dir, old);
    void fsp.rm(old, { recursive: true, force: true }).catch(() => {});
    return false;
  }
}

/**
 * Job directories discard emptied, for the next jobs (reuseSpare); leftovers.ts
 * leaves them be. Two: a job's discard runs after the next job has started
 * (main.ts forget), so the spare it leaves is taken by the job after that,
 * and with one slot a sixth of the discards in W1 of npm run bench found it
 * still taken and removed the directory instead (fs.rm, ~4 ms of workerd's
 * time), while the job after found none.
 */
export const SPARES = ['.spare', '.spare.1'];

/**
 * rm -r of a small tree whose shape we know (discard): one readdir per
 * directory, an unlink per file, an rmdir per directory, and nothing followed
 * (a symlink is a file here). fs.rmSync recursive cost twice as much: an
 * lstat per entry, and an rmdir of each directory first that fails
 * ENOTEMPTY, an exception with its stack trace each (profiled, W1 of npm run
 * bench). Throws on the first failure; discard then leaves the rest to fs.rm.
 */
function removeSmall(dir: string): void {
  emptySmall(dir);
  fs.rmdirSync(dir);
}

/** removeSmall of every entry of dir but those `keep` names (discard keeps workerd's pgid file). */
function emptySmall(dir: string, keep: (e: fs.Dirent) => boolean = () => false): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (keep(e)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) removeSmall(p); else fs.unlinkSync(p);
  }
}
