// main.ts: workerd's command line and its conversation with spoold.
//
//   workerd [-s SPOOL | --connect SOCKET|HOST:PORT] [--name NAME] [--once]
//           [--sandbox CMD] [--token-file F] [--workdir DIR] PLATFORM
//
// One job at a time. The connection may come and go (spoold restarts, an SSH
// tunnel drops): the job keeps running, its console and status stay on local
// disk, and on reconnecting the hello says which job we hold; spoold answers
// resume (send the console from its offset, then artifacts and status),
// done (already stored: forget it) or not-yours (kill it, forget it).
// Reconnects back off from 100 ms to 5 s.
//
// Exit status with --once (workerd.8): 0 a job ran and its result was
// delivered; 75 the server is gone or took the job back; 78 bad configuration
// (token, name or platform refused, platform dropped); 2 bad usage.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { daemonArgs } from '../spool/argv.js';
import { FrameReader, encodeMsg, dataHeader, KILL_GRACE_MS, PROTOCOL_VERSION, MAX_FRAME, MAX_JOB_MSG, MAX_MANIFEST_PART, DEAD_AFTER, T_CONSOLE, T_ARTIFACTS, type Msg, type ArtifactEntry } from '../spool/protocol.js';
import { versionLine } from '../spool/version.js';
import { packArtifacts, type LentBuffers } from '../spool/tar.js';
import { SpoolPaths, isName, isId, NAME_RULE } from '../spool/paths.js';
import { EXIT_CONFIG, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE } from '../spool/exit.js';
import { LocalJob, SCRIPT } from './run.js';
import { makeLauncher, type Launcher } from './launch.js';
import { cleanLeftovers } from './leftovers.js';
import { takeWorkdirLock } from '../spool/lock.js';
import { SpoolError } from '../spool/errors.js';
import { makeDirs } from '../spool/layout.js';
import { readTokenFile } from '../spool/read.js';

const USAGE = `usage: workerd [-s SPOOL | --connect SOCKET|HOST:PORT] [--name NAME] [--once]
               [--sandbox CMD] [--token-file FILE] [--workdir DIR] PLATFORM
       workerd --version

Connect to spoold, serve jobs of PLATFORM one at a time. See workerd(8).
`;
const CHUNK = 1 << 20;
// Bytes queued on the socket before the pump waits for it to drain, so the next read overlaps the send.
const SEND_WINDOW = 4 << 20;
// The console pump's read buffers (CHUNK each): its send window, SEND_WINDOW as well.
const SEND_BUFFERS = SEND_WINDOW / CHUNK;
// Empty reads, a millisecond apart, before the console pump waits on fs.watch again.
const POLL_READS = 5;
// How long a job that has printed nothing yet, and is quiet after the first
// polls (POLL_READS), is waited for before its console is watched (one that
// has printed is watched as soon as it is quiet): most jobs of a burst of short ones end first, and
// their end wakes the pump without a watcher (perf of W1: making and closing
// one per job was ~6% of workerd). Bytes written meanwhile are read when the
// wait is over. (Without those polls a job's first bytes waited for it: W3,
// which prints at once, lost ~6%.)
const FIRST_WATCH_MS = 20;
const MANIFEST_PART_BYTES = 48 << 10;   // JSON of one manifest part: room to spare under MAX_CONTROL (64 KiB)
const BACKOFF_MIN = 100;
const BACKOFF_MAX = 5_000;
const ONCE_CONNECT_TRIES = 5;
/** A connection that lasts this long resets the backoff; one dropped sooner counts as a failed try. */
const STABLE_MS = 10_000;

function say(line: string): void { process.stderr.write(`workerd: ${line}\n`); }
// A log reader that goes away costs the log, not the worker (spoold's log.ts says why).
process.stderr.on('error', () => {});

function usage(msg: string): never {
  process.stderr.write(`workerd: ${msg}\n${USAGE}`);
  process.exit(EXIT_USAGE);
}

type Target = { path: string } | { host: string; port: number };

class Worker {
  job: LocalJob | undefined;
  private sock: net.Socket | undefined;
  /** The spoold of the current connection takes an `ended` message (its welcome said so); an older one would take it for a protocol violation. */
  private takesEnded = false;
  private heartbeatMs = 5_000;
  private lastRx = 0;
  private pumps: Promise<void> = Promise.resolve();
  private pumpFor: { sock: net.Socket; j: LocalJob } | undefined;   // the pump running or queued last
  private watcher: fs.FSWatcher | undefined;
  private connectFailures = 0;
  /** Set when we close the connection to come back free (not-yours): the reconnect is immediate. */
  private fresh = false;
  /** Set by SIGTERM and SIGINT: no new connection for a job to come. */
  exiting = false;
  ranOne = false;
  constructor(readonly target: Target, readonly name: string, readonly platform: string, readonly opts: { once: boolean; sandbox?: string; token?: string; workdir: string },
    private readonly launcher: Launcher) {}

  run(): void { this.connect(); }

  private connect(): void {
    const sock = 'path' in this.target ? net.createConnection(this.target.path) : net.createConnection(this.target.port, this.target.host);
    this.sock = sock;
    const reader = new FrameReader(MAX_JOB_MSG);
    let welcomed = false;
    let welcomedAt = 0;
    let hb: NodeJS.Timeout | undefined;
    sock.setNoDelay(true);
    let held: string | undefined;   // the job this connection's hello said we hold
    sock.on('connect', () => {
      this.lastRx = Date.now();
      const j = this.job;
      held = j?.spec.id;
      const hello: Msg = { t: 'hello', v: PROTOCOL_VERSION, name: this.name, platform: this.platform,
        ...(this.opts.token ? { token: this.opts.token } : {}),
        ...(this.opts.once ? { once: true } : {}),
        keys: true,
        ...(j ? { holding: { id: j.spec.id, name: j.spec.name, attempt: j.spec.attempt, finished: j.status !== undefined, ...(j.spec.key ? { key: j.spec.key } : {}) } } : {}) };
      sock.write(encodeMsg(hello));
    });
    sock.on('data', (chunk: Buffer) => {
      this.lastRx = Date.now();
      let frames;
      try { frames = reader.push(chunk); } catch (e) { say(`protocol error from spoold: ${(e as Error).message}`); sock.destroy(); return; }
      for (const f of frames) {
        if (f.type !== 1) { say('unexpected data frame from spoold'); sock.destroy(); return; }
        const m = f.msg;
        if (m.t === 'welcome') {
          welcomed = true;
          welcomedAt = Date.now();
          this.takesEnded = m.ended === true;
          this.heartbeatMs = m.heartbeatMs > 0 ? m.heartbeatMs : 5_000;
          say(`connected to ${describe(this.target)} as ${this.name} for ${this.platform}`);
          if (!this.job) this.launcher.prepare();
          hb = setInterval(() => {
            if (Date.now() - this.lastRx > DEAD_AFTER * this.heartbeatMs) { say('spoold is silent; reconnecting'); sock.destroy(); return; }
            this.send(sock, { t: 'ping' });
          }, this.heartbeatMs);
        } else this.onMsg(sock, m, held);
      }
    });
    let error: Error | undefined;
    sock.on('error', (e) => { error = e; /* close follows */ });
    sock.on('close', () => {
      if (hb) clearInterval(hb);
      if (this.sock === sock) this.sock = undefined;
      // A connection spoold drops soon after its welcome (it cannot store our
      // result, say) counts as a failure too, so such retries back off.
      const fresh = this.fresh;
      this.fresh = false;
      if (fresh) { /* closed by us, to be free again (not-yours): no failure */ }
      else if (!welcomed || Date.now() - welcomedAt < STABLE_MS) this.connectFailures++;
      else this.connectFailures = 0;
      const n = this.connectFailures;
      if (!welcomed && (n & (n - 1)) === 0) say(`cannot reach spoold at ${describe(this.target)}: ${error?.message ?? 'connection closed before the welcome'}; retrying (${n} ${n === 1 ? 'try' : 'tries'} so far)`);
      if (this.opts.once && !this.job && this.ranOne) process.exit(EXIT_OK);
      if (this.opts.once && !this.job && this.connectFailures >= ONCE_CONNECT_TRIES) {
        say(`cannot reach spoold at ${describe(this.target)}; giving up (--once)`);
        process.exit(EXIT_TEMPFAIL);
      }
      const delay = fresh ? 0 : this.connectFailures === 0 ? BACKOFF_MIN : Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** Math.min(this.connectFailures, 6)) * (0.5 + Math.random() / 2);
      if (welcomed && !fresh) say(`lost spoold; reconnecting${this.job ? ` (keeping job ${this.job.spec.id})` : ''}`);
      setTimeout(() => this.connect(), delay);
    });
  }

  private send(sock: net.Socket, m: Msg): void { if (!sock.destroyed) sock.write(encodeMsg(m)); }

  /** Stopping: set when SIGTERM came after the job ended; exit once it is delivered. */
  exitAfterDelivery = false;

  /** Hand an unfinished job back (stopping); resolves once the message is flushed, or at once without a connection. */
  release(j: LocalJob, why: string): Promise<void> {
    const sock = this.sock;
    this.job = undefined;
    if (!sock || sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      sock.write(encodeMsg({ t: 'release', id: j.spec.id, why }), () => resolve());
      setTimeout(resolve, 1000).unref();
    });
  }

  private onMsg(sock: net.Socket, m: Msg, held: string | undefined): void {
    switch (m.t) {
      case 'ping': return;
      case 'bye':
        say(`spoold says: ${m.why}`);
        if (m.code === 'token' || m.code === 'name' || m.code === 'platform' || m.code === 'version') process.exit(EXIT_CONFIG);
        return;
      case 'idle':
        // A dropped platform is a pause (machines serviced), not a bad
        // configuration: --once waits for its one job like any workerd, so
        // an undrop finds its workers there.
        say(`no work: ${m.why}`);
        return;
      case 'job': {
        if (this.job) { say(`spoold sent job ${m.id} while we hold ${this.job.spec.id}; dropping the connection`); sock.destroy(); return; }
        if (this.exiting || this.exitAfterDelivery || (this.opts.once && this.ranOne)) {
          // Stopping, or --once and done: not started here; spoold queues it again at once.
          say(`not starting job ${m.id}: this workerd is stopping; handing it back`);
          this.send(sock, { t: 'release', id: m.id, why: 'the worker is stopping; the job was not started', unstarted: true });
          return;
        }
        if (!isId(m.id) || !isName(m.name) || !isName(m.platform)) { say('spoold sent a malformed job'); sock.destroy(); return; }
        const j = new LocalJob(m, this.opts.workdir);
        this.job = j;
        j.start(this.launcher);
        say(`running ${m.id} name=${m.name} attempt=${m.attempt}`);   // after: its process has the job (the away tests stop workerd here)
        void j.ended.then(() => say(`finished ${m.id} status=${j.status}`));
        this.pump(sock, j, 0);
        return;
      }
      case 'resume':
        if (this.job?.spec.id !== m.id) { sock.destroy(); return; }
        this.job.disowned = false;          // an earlier connection's not-yours no longer holds
        say(`re-attached to ${m.id}; sending the console from byte ${m.consoleOffset}`);
        this.pump(sock, this.job, m.consoleOffset);
        return;
      case 'cancel':
        if (this.job?.spec.id === m.id) { say(`canceling ${m.id}`); this.job.kill({ kind: 'canceled' }); }
        return;
      case 'not-yours': {
        // The answer to our hello's job. spoold gives this connection no job
        // while ours may still be dying here; once it is gone, a new
        // connection, made at once, says we are free.
        if (m.id !== held) return;
        const j = this.job?.spec.id === m.id ? this.job : undefined;
        say(`job ${m.id} is no longer ours (${m.why})${j ? '; killing it' : ''}`);
        if (j) { j.disowned = true; j.kill({ kind: 'canceled' }); }
        void (j ? j.ended : Promise.resolve()).then(() => {
          // A newer connection answers for the job now (a resume after a restart): it decides.
          if (sock !== this.sock) return;
          const forgotten = j ? this.forget(j) : Promise.resolve();
          if (this.opts.once) { void forgotten.then(() => process.exit(EXIT_TEMPFAIL)); return; }
          if (this.exiting || this.exitAfterDelivery) { void forgotten.then(() => process.exit(EXIT_OK)); return; }
          // Free now; its directory goes in the background.
          if (sock.destroyed || this.job) return;
          this.fresh = true;
          sock.destroy();
        });
        return;
      }
      case 'done':
        if (this.job?.spec.id === m.id) {
          const j = this.job;
          say(`delivered ${m.id}`);
          this.ranOne = true;
          void this.forget(j).then(() => { if (this.opts.once || this.exitAfterDelivery) process.exit(EXIT_OK); });
        }
        return;
      default:
        say(`unexpected message ${m.t} from spoold`);
        sock.destroy();
    }
  }

  /** Watch the console file for growth; false if it cannot be watched (the pump then polls). */
  private watch(j: LocalJob): boolean {
    if (this.watcher) return true;
    try { this.watcher = fs.watch(j.consolePath, () => j.notify()); this.watcher.on('error', () => {}); return true; } catch { return false; /* polling covers it */ }
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private async forget(j: LocalJob): Promise<void> {
    this.unwatch();
    if (this.job === j) this.job = undefined;
    // After what else has arrived: spoold sends the next job right behind `done`,
    // and its start should not wait for this removal.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await j.discard();
  }

  /**
   * Send the console from `offset`, then (once the job ended) artifacts,
   * manifest and status: one pump per connection and job. Pumps run one
   * after the other: the pump of a connection that just dropped notices
   * within 200 ms, and a reconnect with its resume can come sooner. (Found
   * in the read-only spool test: the new connection's pump was dropped as a
   * duplicate while the old one was still waking up, and the job's result
   * was never sent.)
   */
  private pump(sock: net.Socket, j: LocalJob, offset: number): void {
    if (this.pumpFor?.sock === sock && this.pumpFor.j === j) return;
    const mine = this.pumpFor = { sock, j };
    this.pumps = this.pumps.then(() => this.pumpNow(sock, j, offset))
      .catch((e: Error) => { say(`cannot send job ${j.spec.id}: ${e.message}`); sock.destroy(); })
      .finally(() => { if (this.pumpFor === mine) this.pumpFor = undefined; });
  }

  private async pumpNow(sock: net.Socket, j: LocalJob, offset: number): Promise<void> {
    const alive = () => !sock.destroyed && this.sock === sock && this.job === j;
    // Console bytes are read into a few reused buffers: see ReadBuffers.
    const bufs = new ReadBuffers(SEND_BUFFERS, CHUNK, sock);
    // Read synchronously: a console read is a copy from the page cache (the
    // job wrote it just now), where each thread-pool round trip of an async
    // read cost more than the copy and came three times on every job's way
    // from its exit to its delivery (W1 of npm run bench).
    let fh: number | undefined;
    try {
      // No console file: the job's files could not be written (run.ts); its status says so.
      try { fh = fs.openSync(j.consolePath, 'r'); } catch { fh = undefined; }
      let pos = offset;
      let unwatchable = false;
      let idleReads = 0;            // empty reads in a row since the last bytes (or the start: a job's first bytes are polled for, as later ones)
      let waitedFirst = false;      // FIRST_WATCH_MS waited (or no longer wanted: the job printed), once per pump
      let saidEnded = !this.takesEnded;   // a pump runs for the current connection only (alive()), which was welcomed before its job or resume
      while (fh !== undefined) {
        const buf = await bufs.take();
        if (!buf || !alive()) return;
        if (!saidEnded && j.processExited && !j.disowned) { this.send(sock, { t: 'ended', id: j.spec.id }); saidEnded = true; }
        const endedBefore = j.status !== undefined;
        const seen = j.version;
        const bytesRead = fs.readSync(fh, buf, 0, CHUNK, pos);
        if (bytesRead > 0) {
          pos += bytesRead;
          idleReads = 0;
          waitedFirst = true;   // a job that prints is watched as soon as it is quiet: a wait then stalled W3's console by 20 ms
          // The job is writing: the next reads find bytes without being woken,
          // and the watcher would only cost, an event for each of the job's
          // writes (a job printing 100 MB made up to 7,600, ~150 ms of CPU).
          this.unwatch();
          // The buffer is the socket's until written; the callback gives it back.
          this.sendData(sock, T_CONSOLE, buf.subarray(0, bytesRead), () => bufs.give(buf));
          continue;
        }
        bufs.give(buf);
        if (endedBefore) break;          // the job had ended before this read found nothing: console complete
        // Caught up with a job that was just writing: look again in a
        // millisecond, a few times, before going back to the watcher.
        if (idleReads++ < POLL_READS && !this.watcher) { await j.changed(seen, 1); continue; }
        // Quiet: watch again. A watcher started after the read would miss
        // a write made in between, so read once more before waiting on it.
        // (A job whose process has exited writes no more: its end wakes us.)
        if (!this.watcher && !unwatchable && !j.processExited) {
          if (!waitedFirst) { waitedFirst = true; await j.changed(seen, FIRST_WATCH_MS); continue; }
          unwatchable = !this.watch(j);
          continue;
        }
        await j.changed(seen, 200);
      }
      if (fh !== undefined) fs.closeSync(fh);
      fh = undefined;
      if (!alive()) return;
      // A job that left nothing (run.ts looked when it ended) sends no tar
      // stream, which spoold's receiver takes as no artifacts: its three
      // messages leave in one write, without a walk of its directory and a
      // tar packer made and run for an end-of-archive block.
      if (j.leftNothing) sock.cork();
      this.send(sock, { t: 'artifacts', id: j.spec.id });
      let files: ArtifactEntry[] = [];
      if (!j.leftNothing) {
        // Notes were already appended to the console when the job ended (run.ts); here they only go to stderr (each says workerd: already).
        // File bytes come in the same reused buffers as the console; each goes back once sent.
        const { stream, manifest } = packArtifacts(j.jobDir, [SCRIPT], (note) => process.stderr.write(`${note}\n`), bufs);
        manifest.catch(() => {});
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          if (!alive()) { stream.destroy(); return; }
          const lent = bufs.owner(chunk);
          if (lent) this.sendData(sock, T_ARTIFACTS, chunk, () => bufs.give(lent));   // lent buffers are CHUNK <= MAX_FRAME
          else for (let o = 0; o < chunk.length; o += MAX_FRAME) await this.sendData(sock, T_ARTIFACTS, chunk.subarray(o, o + MAX_FRAME));
        }
        files = await manifest;
        if (!alive()) return;
      }
      // In parts, each under spoold's MAX_CONTROL.
      let part: ArtifactEntry[] = [];
      let bytes = 0;
      for (const f of files) {
        const n = JSON.stringify(f).length + 1;
        if (part.length > 0 && (bytes + n > MANIFEST_PART_BYTES || part.length >= MAX_MANIFEST_PART)) {
          this.send(sock, { t: 'manifest', id: j.spec.id, files: part, more: true });
          part = [];
          bytes = 0;
        }
        part.push(f);
        bytes += n;
      }
      this.send(sock, { t: 'manifest', id: j.spec.id, files: part, more: false });
      this.send(sock, { t: 'finished', id: j.spec.id, status: j.status!, started: j.started.toISOString(), finished: (j.finished ?? new Date()).toISOString() });
      if (j.leftNothing) sock.uncork();
      // The next job's process is forked now, while spoold stores this result:
      // the fork holds our event loop for milliseconds, which must not delay
      // this job's delivery nor the next job's start.
      if (!this.opts.once) this.launcher.prepare();
    } catch (e) {
      say(`cannot send job ${j.spec.id}: ${(e as Error).message}`);
      sock.destroy();
    } finally {
      bufs.release();
      if (fh !== undefined) try { fs.closeSync(fh); } catch { /* closed */ }
    }
  }

  /**
   * Send one data frame. With `written`, the caller waits through that callback
   * (called once the payload is handed to the kernel, or the socket is gone)
   * and no promise is made; without, the promise resolves at once unless
   * SEND_WINDOW bytes are queued, then once they drain.
   */
  private sendData(sock: net.Socket, type: typeof T_CONSOLE | typeof T_ARTIFACTS, data: Buffer, written?: () => void): Promise<void> {
    // Corked, the header and the payload leave in one writev, not two writes.
    sock.cork();
    sock.write(dataHeader(type, data.length));
    const ok = written ? sock.write(data, () => written()) : sock.write(data);
    sock.uncork();
    if (written || ok || sock.writableLength < SEND_WINDOW) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { sock.off('drain', done); sock.off('close', done); resolve(); };
      sock.on('drain', done);
      sock.on('close', done);
    });
  }
}

/**
 * A fixed set of read buffers for the pump: console reads, and artifact reads
 * lent to packArtifacts. A buffer handed to the socket stays the socket's until
 * its write callback; take() waits for one to come back. Reusing them is the point: a fresh 1 MiB buffer per read cost a
 * page fault per 4 KiB touched, and on a VM where faults are expensive that was
 * most of workerd's CPU time for a chatty job (a copy per read, as before, was
 * worse). Their number is also the send window: at most count x size bytes
 * queued on the socket, so a slow spoold slows the pump, not our memory.
 */
class ReadBuffers implements LentBuffers {
  private free: Buffer[] = [];
  private made = 0;
  private all = new Map<ArrayBufferLike, Buffer>();
  private waiting: Array<() => void> = [];
  private closed = false;
  private released = false;
  private readonly onClose = () => { this.closed = true; for (const w of this.waiting.splice(0)) w(); };
  constructor(private readonly count: number, private readonly size: number, private readonly sock: net.Socket) {
    // A socket that closes may not call back every queued write: wake the taker, who checks alive().
    this.closed = sock.destroyed;
    sock.once('close', this.onClose);
  }
  /** A free buffer; undefined once the socket is closed. */
  async take(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      const b = this.free.pop() ?? (this.made < this.count ? this.make() : undefined);
      if (b) return b;
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }
  /**
   * Made when first needed, from the buffers earlier pumps left (SPARE): a job
   * that prints nothing needs one, and allocating all of them for every job
   * cost ~2 ms of page faults per job in W1 of npm run bench.
   */
  private make(): Buffer {
    this.made++;
    // size is far above Buffer.poolSize, so each buffer has an ArrayBuffer of its own: owner() relies on it.
    const b = SPARE.pop() ?? Buffer.allocUnsafe(this.size);
    this.all.set(b.buffer, b);
    return b;
  }
  /** The buffer `chunk` is a view of, if it is one of ours. */
  owner(chunk: Buffer): Buffer | undefined { return this.all.get(chunk.buffer); }
  give(b: Buffer): void {
    if (this.released) { if (SPARE.length < this.count) SPARE.push(b); return; }
    this.free.push(b);
    this.waiting.shift()?.();
  }
  /** The pump is done: its buffers, now and as the socket gives them back, wait for the next job's. */
  release(): void {
    this.released = true;
    this.sock.off('close', this.onClose);   // one pump a job on a connection that lives for many
    for (const b of this.free.splice(0)) this.give(b);
  }
}

/** Read buffers no pump holds (ReadBuffers.make); all of size CHUNK. */
const SPARE: Buffer[] = [];

function describe(t: Target): string { return 'path' in t ? t.path : `${t.host}:${t.port}`; }

export function parseTarget(s: string): Target {
  if (s.includes('/')) return { path: s };
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535) throw new Error(`bad --connect '${s}': give a socket path or HOST:PORT`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/**
 * Why a --workdir is no place for jobs, or undefined: it must be workerd's own
 * (its user's, writable by no one else). The default is a predictable name in
 * /tmp, which another local user could make first (found by a tester: jobs
 * ran in a directory of mode 0777 that nobody owned).
 */
function workdirUnsafe(dir: string): string | undefined {
  const st = fs.statSync(dir);
  if (!st.isDirectory()) return 'is not a directory';
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return `is owned by uid ${st.uid}, not workerd's (${uid})`;
  if ((st.mode & 0o022) !== 0) return `is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  return undefined;
}

export async function main(argv: string[]): Promise<void> {
  const a = daemonArgs(argv, ['spool', 'connect', 'name', 'sandbox', 'token-file', 'workdir'], ['help', 'once', 'version'], usage);
  if (a.help) { process.stdout.write(USAGE); process.exit(EXIT_OK); }
  if (a.version) { process.stdout.write(versionLine('workerd', PROTOCOL_VERSION)); process.exit(EXIT_OK); }
  const pos = a._.map(String);
  if (pos.length !== 1) usage(pos.length === 0 ? 'missing PLATFORM' : `unexpected argument ${pos[1]}`);
  const platform = pos[0]!;
  if (!isName(platform)) usage(`bad platform '${platform}': use ${NAME_RULE}`);
  if (a.spool && a.connect) usage('give -s SPOOL or --connect, not both');
  let target: Target;
  try {
    target = a.connect ? parseTarget(a.connect) : { path: new SpoolPaths(a.spool ?? process.env.BUILDER_SPOOL ?? '/var/spool/builder').socket };
  } catch (e) { usage((e as Error).message); }
  const name = a.name ?? `${os.hostname().replace(/[^A-Za-z0-9._+-]/g, '-').replace(/^[.-]+/, '') || 'worker'}-${platform}`.slice(0, 64);
  if (!isName(name)) usage(`bad --name '${name}': use ${NAME_RULE}`);
  let token: string | undefined;
  if (a['token-file']) {
    try { token = await readTokenFile(a['token-file']); } catch (e) {
      say((e as Error).message);
      process.exit(EXIT_CONFIG);
    }
  }
  const given = path.resolve(a.workdir ?? path.join(os.tmpdir(), `workerd-${name}`));
  if (given.includes('\n')) usage('--workdir must not contain a newline (the job\'s shell reads it as one line)');
  let workdir: string;
  try { await makeDirs(given, 0o700); workdir = fs.realpathSync(given); } catch (e) {
    say(`cannot create --workdir ${given}: ${(e as Error).message}`);
    process.exit(EXIT_CONFIG);
  }
  const unsafe = workdirUnsafe(workdir);
  if (unsafe) {
    say(`--workdir ${given}${workdir === given ? '' : ` (${workdir})`} ${unsafe}: whoever can write it can read and replace the jobs run there; give workerd a directory of its own (mkdir -m 0700), or let it make one`);
    process.exit(EXIT_CONFIG);
  }
  let w: Worker | undefined;
  try {
    await takeWorkdirLock(workdir, (err) => {
      w?.job?.killNow();   // its own process group would outlive us
      say(`lost the lock of --workdir ${workdir} (${err.message}); exiting so that no two workerds share it`);
      process.exit(EXIT_TEMPFAIL);
    });
  } catch (e) {
    say(e instanceof SpoolError ? e.message : `cannot lock --workdir ${workdir}: ${(e as Error).message}`);
    process.exit(EXIT_CONFIG);
  }
  await cleanLeftovers(workdir, KILL_GRACE_MS, say);
  if (a.sandbox) {
    // What the sandbox is to hide from the job, one absolute path a line
    // (workerd.8): the directory of the socket to spoold (the spool, or the
    // tunnel's end, whose socket a restarted tunnel replaces), or the socket
    // alone when that directory is a shared one (/run), and the token file.
    // A job that reached either could pose as this worker. The launcher,
    // and so the sandbox, inherit it.
    const sock = 'path' in target ? path.resolve(target.path) : undefined;
    const shared = (d: string) => ['/', '/run', '/var/run', '/tmp', '/var/tmp', '/dev/shm'].includes(d);
    const hide = [...(sock ? [shared(path.dirname(sock)) ? sock : path.dirname(sock)] : []), ...(a['token-file'] ? [path.resolve(a['token-file'])] : [])];
    process.env.BUILDER_SANDBOX_HIDE = hide.join('\n');
  }
  // After BUILDER_SANDBOX_HIDE: the launcher, and so every job, inherits it.
  const launcher = await makeLauncher(a.sandbox);
  say(launcher.describe);
  w = new Worker(target, name, platform, { once: !!a.once, ...(a.sandbox ? { sandbox: a.sandbox } : {}), ...(token ? { token } : {}), workdir }, launcher);
  let stopping = false;
  const stop = (sig: string) => {
    // SIGTERM: a job that has ended is delivered first (its result is worth
    // keeping); a running one is killed and handed back with `release`, so
    // spoold requeues it at once instead of waiting out the lease.
    if (stopping) {
      // A second signal while a job is still held (an ended one waiting for a
      // spoold that may be gone for good, or one that will not die): go now.
      // Its lease runs out, and spoold runs it again or records it lost, as
      // for a worker that died.
      if (w.job) {
        w.job.killNow();   // its own process group outlives us: it must not run on beside the next attempt
        say(`${sig} again: exiting without delivering or handing back job ${w.job.spec.id}; spoold runs it again, or records it lost, when its lease runs out`);
        process.exit(EXIT_TEMPFAIL);
      }
      return;
    }
    stopping = true;
    w.exiting = true;
    const j = w.job;
    if (!j) process.exit(EXIT_OK);
    if (j.disowned) { void j.ended.then(() => j.discard()).then(() => process.exit(EXIT_OK)); return; }   // spoold took it back: nothing to hand back
    if (j.status !== undefined) { say(`${sig}: delivering job ${j.spec.id} first`); w.exitAfterDelivery = true; return; }
    say(`${sig}: killing job ${j.spec.id} and handing it back to spoold`);
    j.kill({ kind: 'canceled' });
    void j.ended.then(() => (j.disowned ? undefined : w.release(j, `workerd stopped by ${sig}`))).then(() => j.discard()).then(() => process.exit(EXIT_OK));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  w.run();
}
