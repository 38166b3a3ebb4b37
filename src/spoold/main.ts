// main.ts: spoold's command line, lock, listeners, signals.
//
//   spoold [-s SPOOL] [--listen HOST:PORT] [--templates DIR] [--token-file F]
//          [--lease DUR] [--heartbeat DUR] [--max-artifacts BYTES]
//          [--console-buffer BYTES]
//
// Fatal only when the spool cannot be opened or locked; everything else is
// logged and survived. SIGTERM/SIGINT: stop dispatching, close connections,
// release the lock, exit 0; running jobs stay in running/ and are re-attached
// or requeued by the next start.

import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import path from 'node:path';
import { daemonArgs } from '../spool/argv.js';
import { SpoolPaths, isName } from '../spool/paths.js';
import { ensureSpool, linkedDirs } from '../spool/layout.js';
import { onStray, keepRunningDirs } from '../spool/state.js';
import { cleanTmp } from '../spool/stage.js';
import { templatePlatforms } from '../spool/template.js';
import { takeLock } from '../spool/lock.js';
import { isDir, readTokenFile } from '../spool/read.js';
import { parseDuration } from '../spool/duration.js';
import { SpoolError } from '../spool/errors.js';
import { EXIT_FAIL, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE } from '../spool/exit.js';
import { DEAD_AFTER, PROTOCOL_VERSION } from '../spool/protocol.js';
import { versionLine } from '../spool/version.js';
import { Daemon, CONSOLE_BUDGET } from './daemon.js';
import { Conn } from './conn.js';
import { ScheduleTimer } from './timer.js';
import { watchDir, watchNew } from './watch.js';
import { log, LogOnce } from './log.js';

const USAGE = `usage: spoold [-s SPOOL] [--listen HOST:PORT] [--templates DIR] [--token-file FILE]
              [--lease DUR] [--heartbeat DUR] [--max-artifacts BYTES]
              [--console-buffer BYTES]
       spoold --version

Serve the spool SPOOL (default $BUILDER_SPOOL, else /var/spool/builder) to
workers on SPOOL/spoold.sock and, with --listen, on TCP (loopback unless a
host is given). See spoold(8).
`;

const RESCAN_MS = 5_000;
const WATCH_READY_MS = 2_000;   // at most this long for the watchers before the first scan
const READY_DIRS = 4;           // running/ID directories made ahead in tmp/ (state.ts): more than jobs are claimed at once

function usage(msg: string): never {
  process.stderr.write(`spoold: ${msg}\n${USAGE}`);
  process.exit(EXIT_USAGE);
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s) ?? /^()()(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535) throw new Error(`bad --listen '${s}': write HOST:PORT or PORT`);
  return { host: m[1] || m[2] || '127.0.0.1', port: Number(m[3]) };
}

/** A number of bytes given on the command line, at least `min`. */
function byteCount(s: string, opt: string, min: number): number {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${opt} takes a number of bytes${min > 0 ? `, at least ${min}` : ''}, not '${s}'`);
  return n;
}

function linkMessage(linked: string[]): string {
  return `${linked.join(', ')} in the spool ${linked.length > 1 ? 'are symbolic links' : 'is a symbolic link'}: spoold follows no link there (a member of the spool's group could point one anywhere); make ${linked.length > 1 ? 'them directories' : 'it a directory'} and start spoold again`;
}

export async function main(argv: string[]): Promise<void> {
  const a = daemonArgs(argv, ['spool', 'listen', 'templates', 'token-file', 'lease', 'heartbeat', 'max-artifacts', 'console-buffer'], ['help', 'version'], usage);
  if (a.help) { process.stdout.write(USAGE); process.exit(EXIT_OK); }
  if (a.version) { process.stdout.write(versionLine('spoold', PROTOCOL_VERSION)); process.exit(EXIT_OK); }
  if (a._.length > 0) usage(`unexpected argument ${String(a._[0])}`);
  let heartbeatMs = 5_000;
  let leaseMs = 60_000;
  let maxArtifactBytes = 64 * 2 ** 30;
  let consoleBuffer = CONSOLE_BUDGET;
  let listen: { host: string; port: number } | undefined;
  try {
    if (a.heartbeat) heartbeatMs = parseDuration(a.heartbeat, '--heartbeat');
    if (a.lease) leaseMs = parseDuration(a.lease, '--lease');
    if (a['max-artifacts'] !== undefined) maxArtifactBytes = byteCount(a['max-artifacts'], '--max-artifacts', 0);
    if (a['console-buffer'] !== undefined) consoleBuffer = byteCount(a['console-buffer'], '--console-buffer', 1);
    if (a.listen) listen = parseListen(a.listen);
  } catch (e) { usage((e as Error).message); }
  // LEASE must exceed DEAD_AFTER heartbeats (daemon.ts): a live but slow worker keeps its job.
  if (leaseMs <= DEAD_AFTER * heartbeatMs) usage(`--lease must exceed ${DEAD_AFTER} heartbeats (${DEAD_AFTER * heartbeatMs} ms)`);

  const sp = new SpoolPaths(a.spool ?? process.env.BUILDER_SPOOL ?? '/var/spool/builder');
  const extraTemplates = a.templates ?? process.env.BUILDER_TEMPLATES;   // as bctl execute reads them
  const templateDirs = [sp.templates, ...(extraTemplates ? [path.resolve(extraTemplates)] : [])];
  if (extraTemplates && !isDir(extraTemplates)) {
    log('warning', { dir: extraTemplates, why: 'the template directory given (--templates or $BUILDER_TEMPLATES) is not a directory; templates are read from the spool only until it is' });
  }
  // SIGTERM and SIGINT are taken from here on, before the lock: one that comes
  // while spoold starts is acted on once it has started (stop, below). Before, the handlers
  // came last, and a SIGTERM in the first seconds (chokidar's setup, a long
  // reconcile) killed spoold outright, its socket and lock left behind (found
  // under the test suite's load).
  let stopWith: ((sig: string) => void) | undefined;
  let stopEarly: string | undefined;
  // A second one before then (a long reconcile, a lock to wait for) exits at once, as a second Ctrl-C should.
  const onStopSignal = (sig: string) => {
    if (stopWith) stopWith(sig);
    else if (stopEarly) { process.stderr.write(`spoold: ${sig} again while starting: exiting now\n`); process.exit(EXIT_FAIL); }
    else stopEarly = sig;
  };
  process.on('SIGTERM', () => onStopSignal('SIGTERM'));
  process.on('SIGINT', () => onStopSignal('SIGINT'));

  let token: Buffer | undefined;
  let release: () => Promise<void>;
  try {
    if (a['token-file']) token = Buffer.from(await readTokenFile(a['token-file']));
    await ensureSpool(sp);
    const linked = linkedDirs(sp);
    if (linked.length > 0) throw new Error(linkMessage(linked));
    release = await takeLock(sp, (err) => {
      log('fatal', { why: `spool lock lost: ${err.message}; stopping so that no two spoolds claim jobs` });
      process.exit(EXIT_TEMPFAIL);
    });
  } catch (e) {
    process.stderr.write(`spoold: ${e instanceof SpoolError ? e.message : (e as Error).message}\n`);
    process.exit(EXIT_FAIL);
  }

  onStray((file, bad, why) => log('rejected', { file, bad, why }));
  keepRunningDirs(READY_DIRS);
  const d = new Daemon(sp, { heartbeatMs, leaseMs, token, maxArtifactBytes, consoleBuffer });
  const timer = new ScheduleTimer(sp, d, templateDirs);
  d.onFinished = (r) => void timer.finished(r);
  d.hasWorkFor = async (p) => (await templatePlatforms(templateDirs)).includes(p) || timer.serves(p);
  await d.reconcile();

  const misnamed = new LogOnce();   // platforms/ files whose names are no platform's, warned about once
  const readDropped = async () => {
    const all = await fsp.readdir(sp.platforms).catch(() => [] as string[]);
    for (const f of all) {
      if (f.startsWith('.') || isName(f) || !misnamed.first(f)) continue;
      log('warning', { file: `platforms/${f}`, why: 'not a platform name, so it drops no platform: rename it to the platform it should drop, or remove it' });
    }
    const names = new Set(all.filter(isName));
    for (const p of names) if (!d.dropped.has(p)) { d.dropped.add(p); d.announceDropped(p); log('platform dropped', { platform: p }); }
    for (const p of [...d.dropped]) if (!names.has(p)) { d.dropped.delete(p); log('platform undropped', { platform: p }); d.dispatchFor(p); }
  };
  await readDropped();

  const onConn = (sock: net.Socket, peer: string) => {
    if (d.admit(peer)) d.addConnection(new Conn(sock, d, peer));
    else sock.destroy();
  };
  const servers: net.Server[] = [];
  await fsp.rm(sp.socket, { force: true });     // stale from a crash; we hold the lock, so it is ours
  // pauseOnConnect: a connection's socket is remade to read into slabs (conn.ts), before it reads.
  const unix = net.createServer({ pauseOnConnect: true }, (s) => onConn(s, 'unix'));
  await new Promise<void>((res, rej) => { unix.once('error', rej); unix.listen(sp.socket, () => res()); });
  await fsp.chmod(sp.socket, 0o660);
  servers.push(unix);
  if (listen) {
    const tcp = net.createServer({ pauseOnConnect: true }, (s) => onConn(s, `${s.remoteAddress}:${s.remotePort}`));
    try {
      await new Promise<void>((res, rej) => { tcp.once('error', rej); tcp.listen(listen!.port, listen!.host, () => res()); });
    } catch (e) {
      process.stderr.write(`spoold: cannot listen on ${listen.host}:${listen.port}: ${(e as Error).message}\n`);
      unix.close();   // and leave nothing behind: no socket, no lock (found by a new user)
      await fsp.rm(sp.socket, { force: true }).catch(() => {});
      await release().catch(() => {});
      process.exit(EXIT_FAIL);
    }
    servers.push(tcp);
  }

  const wErr = (dir: string) => (e: unknown) => { log('warning', { dir, why: `watcher: ${(e as Error).message}; rescanning` }); void rescan(); };
  const watchers = [
    watchNew(sp.new, (n) => void d.queue.consider(n).catch((e) => log('error', { file: `new/${n}`, why: (e as Error).message })), wErr('new/')),
    watchDir(sp.schedules, () => void timer.rescan(), wErr('schedules/')),
    watchDir(sp.platforms, () => void readDropped().then(() => timer.arm()), wErr('platforms/')),
    watchDir(sp.templates, () => timer.arm(), wErr('templates/')),
    watchDir(sp.state, (n) => timer.stateChanged(n), wErr('state/')),   // bctl reschedule, execute, cancel; and spoold's own writes
  ];
  let scanning = false;
  const rescan = async () => {
    if (scanning) return;
    scanning = true;
    // Each step on its own: one that fails (an unreadable directory) holds up none of the others.
    const step = async (what: string, f: () => unknown) => { try { await f(); } catch (e) { log('error', { why: `${what}: ${(e as Error).message}` }); } };
    try {
      // Swapped for a link meanwhile (linkedDirs): stop before following it anywhere.
      const linked = linkedDirs(sp);
      if (linked.length > 0) { log('fatal', { why: linkMessage(linked) }); process.exit(EXIT_FAIL); }
      // A spool directory removed by hand (tmp/, say, where every write is
      // staged) is made again, rather than failing every write until restart.
      await step('cannot make the spool', () => ensureSpool(sp));
      await step('platforms/', readDropped);
      await step('new/', () => d.queue.rescan());
      await step('schedules/', () => timer.rescan());
      d.dispatchAll();
      await step('running/', () => d.adoptOrphans());
      await step('tmp/', async () => { for (const f of await cleanTmp(sp)) log('cleaned', { file: `tmp/${f}`, why: 'staged by a writer that is gone' }); });
    } finally { scanning = false; }
  };
  // The first scan comes once every watcher is ready, so that a file written
  // meanwhile is seen by one or the other: before, `started` could come while
  // chokidar was still setting up, and a schedule written just then waited for
  // the periodic rescan. A watcher that never gets ready (an error said so)
  // is left to that rescan.
  await Promise.race([Promise.all(watchers.map((w) => w.ready)), sleep(WATCH_READY_MS, undefined, { ref: false })]);
  await rescan();
  d.start();
  const periodic = setInterval(() => void rescan(), RESCAN_MS);
  // As --listen takes it: an IPv6 address in brackets.
  const addr = listen ? ` tcp=${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}` : '';
  log('started', { spool: sp.root, pid: process.pid, socket: sp.rel(sp.socket) + addr });

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log('stopping', { signal: sig });
    clearInterval(periodic);
    timer.stop();
    d.queue.stop();
    await Promise.all(watchers.map((w) => w.close()));
    for (const s of servers) s.close();
    await d.stop();
    keepRunningDirs(0);   // a spoold stopped leaves nothing in tmp/
    await fsp.rm(sp.socket, { force: true }).catch(() => {});
    await release();
    log('stopped');
    process.exit(EXIT_OK);
  };
  stopWith = (sig) => void stop(sig);
  if (stopEarly) stopWith(stopEarly);
  process.on('uncaughtException', (e) => { log('error', { why: `uncaught: ${e.stack ?? e.message}` }); });
  process.on('unhandledRejection', (e) => { log('error', { why: `unhandled: ${(e as Error)?.stack ?? String(e)}` }); });
}

