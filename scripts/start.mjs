#!/usr/bin/env node
// start.mjs: `npm start`, builder's embedded default. Runs spoold on ./spool,
// one local workerd for this host's platform, submits examples/hello.sh, and
// says where its result is. Stays up (Ctrl-C stops the worker, then spoold), so you can
// go on submitting with bctl -s spool ... in another terminal.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const spool = path.join(root, 'spool');
const bin = (n) => path.join(root, 'dist', 'bin', n === 'bctl' ? 'bctl.cjs' : `${n}.js`);   // bctl is one bundle (scripts/bundle-bctl.mjs)
if (!fs.existsSync(bin('spoold'))) {
  console.error('start: dist/ is missing; run `npm ci` (or `npm run build`) first');
  process.exit(1);
}

/** This host's platform name: ID-VERSION_ID from os-release (debian-12), else the OS name (freebsd). */
function platform() {
  try {
    const osr = Object.fromEntries(fs.readFileSync('/etc/os-release', 'utf8').split('\n')
      .map((l) => /^([A-Z_]+)=("?)(.*)\2$/.exec(l)).filter(Boolean).map((m) => [m[1], m[3]]));
    if (osr.ID && osr.VERSION_ID) return `${osr.ID}-${osr.VERSION_ID}`.replace(/[^A-Za-z0-9._+-]/g, '-');
  } catch { /* not Linux */ }
  return os.platform();
}

// A closed terminal fails our writes (EIO) as SIGHUP comes: the stop goes on without them.
for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
const p = platform();
const tag = (name, child) => {
  child.stderr.on('data', (b) => { for (const l of b.toString().split('\n')) if (l) console.log(`[${name}] ${l}`); });
  return child;
};
// The daemons run in process groups of their own: Ctrl-C reaches this script
// only, which stops the worker first (it hands back a running job) and
// spoold after it, as an operator would.
const daemon = (name, args) => tag(name, spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'inherit', 'pipe'], detached: true }));
const exited = (child) => new Promise((r) => { if (child.exitCode !== null || child.signalCode !== null) r(); else child.once('exit', () => r()); });
// A watchdog for when this script dies without its stop (SIGKILL, the OOM
// killer): a shell, in a group of its own too, that learns on its stdin the
// daemons' pids and which of them stop() has signalled already, and, when that
// pipe closes with no `quit`, goes on as stop() does: workerd first (it hands
// back a running job; a second SIGTERM would make it give the job up, so one
// signalled already is only waited for), then spoold.
const WATCHDOG = [
  's=; w=; tw=; ts=',
  'while read -r what pid; do case $what in spoold) s=$pid ;; workerd) w=$pid ;; termed-workerd) tw=1 ;; termed-spoold) ts=1 ;; quit) exit 0 ;; esac; done',
  'if [ -n "$w" ]; then',
  '  [ -n "$tw" ] || kill -TERM "$w" 2>/dev/null',
  '  i=0; while kill -0 "$w" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done',
  'fi',
  '[ -z "$s" ] || [ -n "$ts" ] || kill -TERM "$s" 2>/dev/null',
].join('\n');
const watchdog = spawn('/bin/sh', ['-c', WATCHDOG, `start.mjs watchdog of ${root}`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
watchdog.on('error', () => {});        // without it, the stop on exit below still covers every end but SIGKILL
watchdog.stdin.on('error', () => {});
const watch = (name, child) => { if (child.pid) watchdog.stdin.write(`${name} ${child.pid}\n`); return child; };
/** Signal a daemon for the ordered stop, telling the watchdog first (it must not signal it again). */
const term = (name, child) => { watchdog.stdin.write(`termed-${name}\n`); child.kill('SIGTERM'); };
const spoold = watch('spoold', daemon('spoold', ['-s', spool]));
let workerd;
let stopping = 0;   // when the stop began
const stop = async () => {
  // A second Ctrl-C: do not wait for the job to be handed back. Not a signal
  // in the same second: npm forwards the one Ctrl-C to a script run as its
  // child, and a workerd signalled twice gives up its job.
  if (stopping) {
    if (Date.now() - stopping > 1000) { workerd?.kill('SIGTERM'); spoold.kill('SIGTERM'); }
    return;
  }
  stopping = Date.now();
  if (workerd) {
    console.log('start: stopping workerd (it hands back a running job), then spoold; Ctrl-C again to hurry');
    term('workerd', workerd);
    await Promise.race([exited(workerd), new Promise((r) => setTimeout(r, 15_000).unref())]);
  }
  term('spoold', spoold);
  await exited(spoold);
  watchdog.stdin.end('quit\n');
  process.exit(process.exitCode ?? 0);
};
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => void stop());
/** Stop, or let the stop under way end: stop() exits, so nothing after this runs. */
const halt = async () => { await stop(); await new Promise(() => {}); };
// In process groups of their own, the daemons would outlive this script (a
// crash): whatever ends it has them stopped, in order, by the watchdog, whose
// pipe closes as we exit; only without one are they signalled here, at once
// (two signals would make workerd give up its job).
process.on('exit', () => {
  if (watchdog.pid !== undefined && watchdog.exitCode === null) return;
  for (const c of [workerd, spoold]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
});
// Until this spoold says it started (a spool with a spoold already running has
// its socket too: this one then exits 1 and nothing is submitted to the other).
const started = await new Promise((resolve) => {
  let seen = '';
  const onData = (b) => { seen += b; if (/spoold: started /.test(seen)) { spoold.stderr.off('data', onData); resolve(true); } };
  spoold.stderr.on('data', onData);
  spoold.once('exit', () => resolve(false));
  setTimeout(() => resolve(false), 30_000).unref();
});
if (stopping) await halt();   // Ctrl-C meanwhile
if (!started) {
  console.error(`start: spoold did not start (${spoold.exitCode === null ? 'no word from it in 30 s' : `it exited ${spoold.exitCode}`}); see its lines above`);
  process.exitCode = 1;
  await halt();
}
spoold.on('exit', (code) => { if (!stopping) { console.error(`start: spoold exited ${code}`); process.exitCode = 1; void stop(); } });
// Queued before the worker joins, which spoold would otherwise warn has nothing to do.
let id;
try {
  id = execFileSync(process.execPath, [bin('bctl'), '-s', spool, 'submit', p, path.join(root, 'examples', 'hello.sh'), '--name', 'hello'], { encoding: 'utf8' }).trim();
} catch (e) {
  if (!e.signal) { console.error('start: bctl submit failed (its message is above)'); process.exitCode = 1; }   // else Ctrl-C: stop() is under way
  await halt();
}
console.log(`start: submitted examples/hello.sh as job ${id} for platform ${p}`);
workerd = watch('workerd', daemon('workerd', ['-s', spool, '--name', 'local', p]));
workerd.on('exit', (code) => { if (!stopping) { console.error(`start: workerd exited ${code}; see its lines above`); process.exitCode = 1; void stop(); } });
const result = path.join(spool, 'done', 'hello', id, 'result');
const t0 = Date.now();
const poll = setInterval(() => {
  if (fs.existsSync(result)) {
    clearInterval(poll);
    console.log(`\nstart: the sample job finished; its result (${path.relative(root, result)}):\n`);
    console.log(fs.readFileSync(result, 'utf8'));
    console.log(`Look at:
  ls -R spool/done/hello/latest/                the whole result: job, result, console.log, artifacts/, SHA256SUMS
  node dist/bin/bctl.cjs -s spool info           schedules, queues, running jobs, workers
  node dist/bin/bctl.cjs -s spool inspect ${id} --console
  echo 'echo more' | node dist/bin/bctl.cjs -s spool submit ${p} - --wait

spoold and workerd keep running; Ctrl-C stops them.`);
  } else if (Date.now() - t0 > 60_000) {
    clearInterval(poll);
    console.error('start: no result after 60 s; see the spoold and workerd lines above');
    process.exitCode = 1;
    void stop();
  }
}, 100);
