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
// The ordered stop (workerd first: it hands back a running job; then
// spoold) is made by a watchdog: a shell, in a group of its own too, that
// learns the daemons' pids on its stdin and stops them when that pipe
// closes. stop() closes it; so does our exit, however it comes (SIGKILL, the
// OOM killer, a crash), so the daemons never outlive this script.
const WATCHDOG = [
  's=; w=',
  'while read -r what pid; do case $what in spoold) s=$pid ;; workerd) w=$pid ;; esac; done',
  'if [ -n "$w" ] && kill -TERM "$w" 2>/dev/null; then i=0; while kill -0 "$w" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done; fi',
  '[ -z "$s" ] || kill -TERM "$s" 2>/dev/null',
].join('\n');
const watchdog = spawn('/bin/sh', ['-c', WATCHDOG, `start.mjs watchdog of ${root}`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
watchdog.stdin.on('error', () => {});
await new Promise((resolve) => {
  watchdog.once('spawn', resolve);
  watchdog.once('error', (e) => { console.error(`start: cannot run /bin/sh: ${e.message}`); process.exit(1); });
});
const watch = (name, child) => { if (child.pid) watchdog.stdin.write(`${name} ${child.pid}\n`); return child; };
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
  if (workerd) console.log('start: stopping workerd (it hands back a running job), then spoold; Ctrl-C again to hurry');
  watchdog.stdin.end();   // its stop: workerd (waited for up to 15 s), then spoold
  await exited(spoold);
  process.exit(process.exitCode ?? 0);
};
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => void stop());
/** Stop, or let the stop under way end: stop() exits, so nothing after this runs. */
const halt = async () => { await stop(); await new Promise(() => {}); };
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
