// run.ts: run one job: a fresh directory, script.sh (mode 0500), its own process group.
//
// The job's stdout and stderr both go straight into the local console.log file
// (one fd, O_APPEND), so their bytes keep the order the job wrote them in and
// nothing passes through our event loop; the connection tails that file. The
// console and the exit status stay on local disk until spoold confirms the
// result is stored, so a server that goes away loses nothing.
// Timeout and cancel kill the whole group: SIGTERM, then SIGKILL after
// KILL_GRACE_MS. When the script exits, any process it left behind in its group
// is killed too, so the console is complete and the directory stable.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatStatus, type Status } from '../spool/result.js';
import { artifactNotes } from '../spool/tar.js';

export const KILL_GRACE_MS = 5_000;
export const SCRIPT = 'script.sh';

export interface JobSpec { id: string; name: string; platform: string; attempt: number; timeoutMs: number; network: boolean; script: string }

export class LocalJob {
  readonly dir: string;            // WORKDIR/ID: ours
  readonly jobDir: string;         // WORKDIR/ID/job: the job's, every file in it (but script.sh) is an artifact
  readonly consolePath: string;
  status: string | undefined;      // set once the job has ended
  started = new Date();
  finished: Date | undefined;
  private child: ChildProcess | undefined;
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
      const t = setTimeout(resolve, ms);
      this.wake.push(() => { clearTimeout(t); resolve(); });
    });
  }

  private poke(): void { this.version++; const w = this.wake; this.wake = []; for (const f of w) f(); }

  async start(sandbox: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
    let fd: number | undefined;
    try {
      await fsp.rm(this.dir, { recursive: true, force: true });
      await fsp.mkdir(this.jobDir, { recursive: true, mode: 0o755 });
      fd = fs.openSync(this.consolePath, 'a', 0o644);
      await fsp.writeFile(path.join(this.jobDir, SCRIPT), this.spec.script, { mode: 0o500 });
    } catch (e) {
      if (fd !== undefined) fs.closeSync(fd);
      // Parity: the worker can't write the job's files: the failure is the job's result.
      const why = `cannot write job files in ${this.dir}: ${(e as Error).message}`;
      try { await fsp.mkdir(this.dir, { recursive: true }); await fsp.appendFile(this.consolePath, `workerd: ${why}\n`); } catch { /* nowhere to log it but the status */ }
      this.end({ kind: 'failed', why });
      return;
    }
    const script = path.join(this.jobDir, SCRIPT);
    const jobEnv = {
      ...env, BUILDER_JOB_ID: this.spec.id, BUILDER_JOB_NAME: this.spec.name, BUILDER_PLATFORM: this.spec.platform,
      BUILDER_JOB_DIR: this.jobDir, BUILDER_NETWORK: this.spec.network ? 'yes' : 'no',
    };
    const [cmd, args] = sandbox
      ? ['/bin/sh', ['-c', `${sandbox} "$@"`, 'sandbox', script]]
      : [script, [] as string[]];
    try {
      this.child = spawn(cmd, args, { cwd: this.jobDir, env: jobEnv, detached: true, stdio: ['ignore', fd, fd] });
    } catch (e) {
      fs.closeSync(fd);
      this.end({ kind: 'failed', why: `cannot start the job: ${(e as Error).message}` });
      return;
    }
    fs.closeSync(fd);
    this.started = new Date();
    const child = this.child;
    child.on('error', (e) => {
      void fsp.appendFile(this.consolePath, `workerd: cannot start the job: ${e.message}\n`).finally(() => this.end({ kind: 'failed', why: `cannot start the job: ${e.message}` }));
    });
    child.on('exit', (code, signal) => {
      this.killGroup('SIGKILL');   // stragglers the script left behind
      const status: Status = this.killReason ?? (signal ? { kind: 'signalled', signal: os.constants.signals[signal] ?? 0 } : { kind: 'exited', code: code ?? 0 });
      // Parity: job output that cannot be returned is said in the job's console.
      void artifactNotes(this.jobDir, [SCRIPT])
        .then((notes) => (notes.length > 0 ? fsp.appendFile(this.consolePath, notes.map((n) => `${n}\n`).join('')) : undefined))
        .catch(() => {})
        .finally(() => this.end(status));
    });
    this.timer = setTimeout(() => this.kill({ kind: 'timeout' }), this.spec.timeoutMs);
    this.timer.unref();
  }

  /** Kill the job's process group (timeout, cancel, not-yours): TERM, then KILL. */
  kill(reason: Status): void {
    if (this.status !== undefined || !this.child) { if (this.status === undefined) this.end(reason); return; }
    this.killReason ??= reason;
    this.killGroup('SIGTERM');
    const t = setTimeout(() => this.killGroup('SIGKILL'), KILL_GRACE_MS);
    t.unref();
  }

  private killGroup(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try { process.kill(-pid, sig); } catch { /* the group is gone */ }
  }

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

  async discard(): Promise<void> {
    await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }
}
