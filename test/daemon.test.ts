// End to end: spoold and workerd as built, real processes, sockets and signals.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { tmpdir, daemon, until, readIf, sleep, type Daemon } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { submission, makeJob, formatJob } from '../src/spool/job.js';
import { submit } from '../src/spool/state.js';
import { newId } from '../src/spool/ids.js';
import { parseResult, formatResult } from '../src/spool/result.js';
import { MAX_FILE } from '../src/spool/headers.js';
import { MAX_FRAME } from '../src/spool/protocol.js';

let spool = '';
let procs: Daemon[] = [];

test.before.each(async () => { spool = await tmpdir('daemon'); procs = []; });
/** Kill the process groups of jobs a SIGKILLed workerd left running (their scripts live in SPOOL-wd). */
function killStrayJobs(): void {
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    if (cmd.includes(`${spool}-wd/`)) { try { process.kill(-Number(pid), 'SIGKILL'); } catch { /* not a group leader, or gone */ } }
  }
}

test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  killStrayJobs();
  await fsp.rm(spool, { recursive: true, force: true });
  await fsp.rm(`${spool}-wd`, { recursive: true, force: true });
});

const FAST = ['--lease', '2s', '--heartbeat', '400ms'];
function spoold(extra: string[] = []): Daemon {
  const fast = extra.includes('--lease') ? FAST.slice(2) : FAST;
  const d = daemon('spoold', ['-s', spool, ...fast, ...extra]);
  procs.push(d);
  return d;
}
function workerd(name: string, extra: string[] = [], platform = 'debian-12'): Daemon {
  const d = daemon('workerd', ['-s', spool, '--name', name, '--workdir', `${spool}-wd/${name}`, ...extra, platform]);
  procs.push(d);
  return d;
}

async function queue(name: string, body: string, extra: Partial<{ timeout: number; retries: number; platform: string }> = {}): Promise<string> {
  const id = newId();
  const sp = new SpoolPaths(spool);
  await fsp.mkdir(sp.tmp, { recursive: true });
  await fsp.mkdir(sp.new, { recursive: true });
  await submit(sp, submission({ name, platform: extra.platform ?? 'debian-12', timeout: extra.timeout, retries: extra.retries, body, id }));
  return id;
}

const doneDir = (name: string, id: string) => path.join(spool, 'done', name, id);
async function result(name: string, id: string, ms = 20_000) {
  const text = await until(`result of ${name}/${id}`, () => readIf(path.join(doneDir(name, id), 'result')), ms);
  return parseResult(text, 'result');
}
/** The exit code of a daemon expected to exit by itself soon; an error if it is still running after 10 s. */
const exitCode = async (d: Daemon) => (await until(`${d.child.spawnargs[1]} to exit`, () => (d.child.exitCode === null ? undefined : { code: d.child.exitCode }), 10_000)).code;
/** Worker w1 silent (SIGSTOP) past its lease while it runs `body`: the job (no retries) is recorded lost; w1 is still stopped. */
async function awayUntilLost(name: string, body: string, args: string[] = []): Promise<{ w: Daemon; id: string }> {
  const id = await queue(name, body, { retries: 0 });
  const w = workerd('w1', args);
  await w.waitLog(new RegExp(`running ${id}`));   // said as it hands the job to its process, which runs on without it
  w.child.kill('SIGSTOP');
  assert.equal((await result(name, id)).status, { kind: 'lost' });
  return { w, id };
}
/** running/ID/, made by hand in a spool a spoold made and stopped, for the leftovers of a crash. */
async function leftoverDir(id: string): Promise<string> {
  const s = spoold();
  await s.waitLog(/started/);
  await s.stop('SIGTERM');
  const dir = path.join(spool, 'running', id);
  fs.mkdirSync(dir);
  return dir;
}
const sha = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

// Found in review: JSON writes each control character of a script as 6
// bytes, so a job file under the 1 MiB limit made a job message over the
// 4 MiB frame limit; the send threw, and the job and its worker were stuck
// for good. The job message may now take MAX_JOB_MSG (8 MiB).
test('a job file at the size limit whose script is all control characters runs (its job message, JSON-escaped, is 6 MiB)', async () => {
  spoold();
  workerd('w1');
  const pad = '\x1b'.repeat(MAX_FILE - 1000);
  const id = await queue('escapes', `#!/bin/sh\n: '${pad}'\necho ran \${#BUILDER_JOB_ID}\n`);
  assert.ok(JSON.stringify(pad).length > MAX_FRAME, 'the script alone is over the data frame limit once escaped');
  const r = await result('escapes', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(path.join(doneDir('escapes', id), 'console.log'), 'utf8'), 'ran 36\n');
});

// Found in review: workerd sent a link whose target is over MAX_NAME bytes,
// which spoold refuses, so the job ended failed: such a link is left out
// with a note now, like a path too long.
test('a symlink whose target is over 1024 bytes is left out with a note; the job and its other files are returned', async () => {
  spoold();
  workerd('w1');
  const id = await queue('longlink', '#!/bin/sh\nt=$(head -c 1100 /dev/zero | tr "\\0" x)\nln -s "$t" longlink\nln -s short shortlink\necho kept > kept.txt\n');
  const r = await result('longlink', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  const dir = doneDir('longlink', id);
  assert.equal(fs.readdirSync(path.join(dir, 'artifacts')).sort(), ['kept.txt', 'shortlink']);
  assert.match(fs.readFileSync(path.join(dir, 'console.log'), 'utf8'), /^workerd: skipped longlink: its link target is over 1024 bytes$/m);
});

test('a job runs on a worker of its platform; console, artifacts, SHA256SUMS and result land in done/', async () => {
  const umask = process.umask(0o022);   // the daemons' (inherited): the modes below hold whatever it is
  try { spoold(); workerd('w1'); } finally { process.umask(umask); }
  const id = await queue('hello', '#!/bin/sh\necho out; echo err >&2\necho data > out.txt\nmkdir sub; echo y > sub/y\nln -s /etc/passwd escape\nexit 3\n');
  const r = await result('hello', id);
  assert.is(r.status.kind, 'exited');
  assert.equal(r.status, { kind: 'exited', code: 3 });
  assert.is(r.worker, 'w1');
  assert.is(r.attempt, 1);
  const dir = doneDir('hello', id);
  assert.is(fs.readFileSync(path.join(dir, 'console.log'), 'utf8'), 'out\nerr\n');
  assert.is(fs.readFileSync(path.join(dir, 'artifacts', 'out.txt'), 'utf8'), 'data\n');
  // Modes as builder-spool(5) gives them, whatever spoold's umask (found by a tester: console.log was 0664 less it).
  const mode = (p: string) => fs.statSync(path.join(dir, p)).mode & 0o7777;
  assert.is(mode('console.log'), 0o664);
  assert.is(mode('artifacts/out.txt'), 0o644);
  assert.is(mode('artifacts/sub'), 0o2755, 'an artifact directory is 0755, with the setgid bit of the spool directory it is made in');
  assert.ok(!fs.existsSync(path.join(dir, 'artifacts', 'script.sh')), 'script.sh is not an artifact');
  const link = path.join(dir, 'artifacts', 'escape');
  assert.ok(fs.lstatSync(link).isSymbolicLink(), 'a symlink arrives as a symlink');
  assert.is(fs.readlinkSync(link), '/etc/passwd');
  assert.is(fs.readFileSync(path.join(dir, 'SHA256SUMS'), 'utf8'),
    `${sha(path.join(dir, 'artifacts', 'out.txt'))}  out.txt\n${sha(path.join(dir, 'artifacts', 'sub', 'y'))}  sub/y\n`);
  assert.is(await until('latest', () => { try { return fs.readlinkSync(path.join(spool, 'done', 'hello', 'latest')); } catch { return undefined; } }), id);
  assert.equal(fs.readdirSync(path.join(spool, 'running')), []);
  assert.equal(fs.readdirSync(path.join(spool, 'new')), []);
  const job = fs.readFileSync(path.join(dir, 'job'), 'utf8');
  assert.match(job, /^id: /);
});

test('four consoles streaming at once, together far over spoold --console-buffer, each land whole and unmixed', async () => {
  // 30 MB each at full speed, 120 MB in all, through 64 KiB: spoold holds the
  // workers for its console buffer again and again, and lets them go on.
  const t0 = Date.now();
  const s = spoold(['--console-buffer', '65536']);
  const names = ['c1', 'c2', 'c3', 'c4'];
  for (const n of names) workerd(n);
  const line = (n: string) => `${n} some line of build output 0123456789`;
  const size = 30_000_000;
  const ids = [];
  for (const n of names) ids.push(await queue(`many-${n}`, `#!/bin/sh\nyes '${line(n)}' | head -c ${size}\n`));
  for (const [k, n] of names.entries()) {
    const r = await result(`many-${n}`, ids[k]!, 120_000);
    assert.equal(r.status, { kind: 'exited', code: 0 }, `${n}`);
    const got = fs.readFileSync(path.join(doneDir(`many-${n}`, ids[k]!), 'console.log'), 'latin1');
    assert.is(got.length, size, `${n}: every byte arrived`);
    const whole = `${line(n)}\n`.repeat(Math.ceil(size / (line(n).length + 1))).slice(0, size);
    assert.ok(got === whole, `${n}: its own lines, in order, none from another job`);
  }
  // Workers were held, and that is said once a minute at most, not for every wait.
  const held = (s.log().match(/^spoold: held why="the console buffer \(--console-buffer 65536\) is full: workers wait until the disk takes their consoles"$/gm) ?? []).length;
  assert.ok(held >= 1 && held <= 1 + Math.floor((Date.now() - t0) / 60_000), `logged ${held} times in ${Date.now() - t0} ms`);
});

test('the job sees BUILDER_JOB_ID, BUILDER_JOB_NAME, BUILDER_PLATFORM, its own process group and a fresh directory', async () => {
  spoold();
  workerd('w1');
  const script = '#!/bin/sh\necho "$BUILDER_JOB_ID $BUILDER_JOB_NAME $BUILDER_PLATFORM"\nls -A\nps -o pgid= -p $$ | tr -d " " > pgid\nps -o pid= -p $$ | tr -d " " > pid\nstat -c %a script.sh\n';
  const a = await queue('envtest', script);
  const b = await queue('envtest', script);
  await result('envtest', a);
  await result('envtest', b);
  for (const id of [a, b]) {
    const dir = doneDir('envtest', id);
    const lines = fs.readFileSync(path.join(dir, 'console.log'), 'utf8').split('\n');
    assert.is(lines[0], `${id} envtest debian-12`);
    assert.is(lines[1], 'script.sh', 'the directory holds only the script when the job starts');
    assert.is(lines[2], '500');
    assert.is(fs.readFileSync(path.join(dir, 'artifacts', 'pgid'), 'utf8'), fs.readFileSync(path.join(dir, 'artifacts', 'pid'), 'utf8'), 'the job leads its own process group');
  }
});

test('a job that outlives its timeout is killed with its whole process group and reported as timeout', async () => {
  spoold();
  workerd('w1');
  const id = await queue('slow', '#!/bin/sh\n(sleep 60; echo child-survived > survived) &\necho started\nsleep 60\n', { timeout: 1000 });
  const r = await result('slow', id);
  assert.equal(r.status, { kind: 'timeout' });
  assert.match(fs.readFileSync(path.join(doneDir('slow', id), 'console.log'), 'utf8'), /started/);
  assert.ok(!fs.existsSync(path.join(doneDir('slow', id), 'artifacts', 'survived')));
});

test('a timeout longer than setTimeout can wait (24.8 days) is kept, not cut to nothing', async () => {
  spoold();
  workerd('w1');
  const id = await queue('longtimeout', '#!/bin/sh\necho start\nsleep 1\necho end\n', { timeout: 30 * 86_400_000 });
  assert.equal((await result('longtimeout', id)).status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(path.join(doneDir('longtimeout', id), 'console.log'), 'utf8'), 'start\nend\n');
});

test('a job killed by a signal is reported as signalled N, distinct from an exit code', async () => {
  spoold();
  workerd('w1');
  const id = await queue('sig', '#!/bin/sh\nkill -9 $$\n');
  assert.equal((await result('sig', id)).status, { kind: 'signalled', signal: 9 });
});

test('cancel: a request under running/ID/ kills the job within about a second and the result says canceled', async () => {
  spoold();
  workerd('w1');
  const id = await queue('forever', '#!/bin/sh\necho running\nsleep 600\n');
  await until('the job running', () => readIf(path.join(spool, 'running', id, 'console.log'))?.includes('running'));
  const t0 = Date.now();
  await fsp.writeFile(path.join(spool, 'running', id, 'cancel'), 'canceled by test\n');
  const r = await result('forever', id);
  assert.equal(r.status, { kind: 'canceled' });
  // Within a second or so here; the bound leaves room for a slow disk's fsyncs on the way to done/.
  assert.ok(Date.now() - t0 < 15_000, `canceled after ${Date.now() - t0} ms`);
});

// Found by a tester: the worker's delivery failed on the missing directory,
// and it was told to deliver again, every second, for ever, taking no job.
test('a running job whose running/ID a person removes is let go when it ends: logged forgotten, and its worker takes the next job', async () => {
  const s = spoold();
  workerd('w1');
  const id = await queue('removed', '#!/bin/sh\necho running\nsleep 1.5\necho out > out.txt\n');
  await until('the job running', () => readIf(path.join(spool, 'running', id, 'console.log'))?.includes('running'));
  await fsp.rm(path.join(spool, 'running', id), { recursive: true, force: true });
  await s.waitLog(new RegExp(`forgotten id=${id} name=removed why="running/${id} was removed by hand; its result is dropped"`));
  const next = await queue('next', '#!/bin/sh\ntrue\n');
  assert.equal((await result('next', next)).status, { kind: 'exited', code: 0 });
  assert.not.ok(fs.existsSync(doneDir('removed', id)), 'nothing stored of the removed job');
  assert.not.match(s.log(), /cannot store the result/);
});

test('a worker killed mid-job: its lease runs out, the job is requeued and finished once by another worker', async () => {
  spoold();
  const w1 = workerd('w1');
  const id = await queue('requeue', '#!/bin/sh\necho "attempt on $(hostname)"\nif [ ! -e /tmp/.builder-requeue-$BUILDER_JOB_ID ]; then touch /tmp/.builder-requeue-$BUILDER_JOB_ID; sleep 600; fi\necho second\n');
  await until('job started on w1', () => fs.existsSync(`/tmp/.builder-requeue-${id}`));
  await w1.stop('SIGKILL');
  workerd('w2');
  const r = await result('requeue', id);
  fs.rmSync(`/tmp/.builder-requeue-${id}`, { force: true });
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(r.worker, 'w2');
  assert.is(r.attempt, 2);
  assert.match(fs.readFileSync(path.join(doneDir('requeue', id), 'console.log'), 'utf8'), /second/);
  await until('latest', () => fs.existsSync(path.join(spool, 'done', 'requeue', 'latest')));
  assert.equal(fs.readdirSync(path.join(spool, 'done', 'requeue')).sort(), [id, 'latest'].sort());
});

test('a worker stopped with SIGTERM hands its running job back, and it is requeued at once, not after the lease', async () => {
  const s = spoold(['--lease', '20s']);   // a long lease: only the hand-back can requeue it in time
  const w1 = workerd('w1');
  const id = await queue('handback', '#!/bin/sh\nif [ -e "$BUILDER_JOB_DIR/../../../second-$BUILDER_JOB_ID" ]; then echo second; exit 0; fi\nsleep 600\n');
  await until('running', () => fs.existsSync(path.join(spool, 'running', id, 'lease')));
  await w1.stop('SIGTERM');
  assert.is(w1.child.exitCode, 0);
  assert.match(w1.log(), /killing job .* and handing it back/);
  await until('requeued', () => fs.existsSync(path.join(spool, 'new', id)), 5_000);
  await s.waitLog(new RegExp(`requeued id=${id} name=handback attempt=1 why="released by worker w1: workerd stopped by SIGTERM"`), 2_000);   // the requeue says why: the hand-back, not a lease
  fs.writeFileSync(`${spool}-wd/second-${id}`, '');
  workerd('w2');
  const r = await result('handback', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(r.attempt, 2);
  assert.is(r.worker, 'w2');
});

test('a job whose worker is lost more often than its retries allow is recorded lost', async () => {
  spoold();
  const id = await queue('lostjob', '#!/bin/sh\nsleep 600\n', { retries: 0 });
  const w1 = workerd('w1');
  await until('job running', () => fs.existsSync(path.join(spool, 'running', id, 'lease')));
  await w1.stop('SIGKILL');
  assert.equal((await result('lostjob', id)).status, { kind: 'lost' });
});

// Found in review: a requeue killed after rewriting running/ID/job with the
// attempt it counted, and before moving it to new/, had that attempt counted
// again at the next start, so the job was recorded lost one retry early.
test('a requeue cut short by a crash after its job file was rewritten does not count the attempt twice', async () => {
  const id = newId();
  const dir = await leftoverDir(id);
  // Attempt 1 of 2 (retries 1) ran on w9, whose lease ran out; the requeue had
  // rewritten the job file with attempt 1 when spoold died.
  fs.writeFileSync(path.join(dir, 'job'), formatJob(submission({ name: 'cut', platform: 'debian-12', retries: 1, body: '#!/bin/sh\necho again\n', id, attempt: 1 })));
  fs.writeFileSync(path.join(dir, 'lease'), `worker: w9\nstarted: ${new Date(Date.now() - 60_000).toISOString()}\nattempt: 1\n`);
  const s2 = spoold();
  await s2.waitLog(new RegExp(`waiting id=${id} name=cut attempt=1 `));
  workerd('w1');
  const r = await result('cut', id);
  assert.equal(r.status, { kind: 'exited', code: 0 }, 'the second attempt ran, rather than the job being recorded lost');
  assert.is(r.attempt, 2);
  assert.is(fs.readFileSync(path.join(doneDir('cut', id), 'console.log'), 'utf8'), 'again\n');
});

test('a result stored in running/ before spoold was killed is finalized at the next start, and logged as every finished job is', async () => {
  const id = newId();
  const dir = await leftoverDir(id);
  const queued = new Date(Date.now() - 10_000);
  fs.writeFileSync(path.join(dir, 'job'), formatJob(makeJob({ ...submission({ name: 'half', platform: 'debian-12', body: '#!/bin/sh\ntrue\n' }), id, queued })));
  fs.writeFileSync(path.join(dir, 'result'), formatResult({ id, name: 'half', platform: 'debian-12', worker: 'w9', attempt: 1, queued,
    started: new Date(queued.getTime() + 1000), finished: new Date(queued.getTime() + 4000), status: { kind: 'exited', code: 0 } }));
  const s2 = spoold();
  await s2.waitLog(new RegExp(`finished id=${id} name=half platform=debian-12 worker=w9 status="exited 0" duration=3s(\\d+ms)? why="finalize completed after restart"`), 10_000);
  assert.equal((await result('half', id)).status, { kind: 'exited', code: 0 });
});

test('an empty result in running/ (a power loss before finalize\'s flush) records nothing: it goes to bad/, and the job runs again at once, that attempt not counted', async () => {
  const id = newId();
  const dir = await leftoverDir(id);
  // As storeResult leaves it (the lease retired), with the result lost: its
  // only attempt (retries 0) ran, and counted, it would be recorded lost.
  fs.writeFileSync(path.join(dir, 'job'), formatJob(makeJob({ ...submission({ name: 'cutshort', platform: 'debian-12', retries: 0, body: '#!/bin/sh\necho ran\n' }), id, queued: new Date(), attempt: 0 })));
  fs.writeFileSync(path.join(dir, 'result'), '');
  const s2 = spoold();
  await s2.waitLog(new RegExp(`rejected file=running/${id}/result bad=bad/${id}\\.result\\.\\d+ why=".*not a result: the job runs again, this attempt not counted"`));
  workerd('w1');
  const r = await result('cutshort', id, 8_000);   // at once: not after the lease (60 s) of a worker that let it go
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(path.join(doneDir('cutshort', id), 'console.log'), 'utf8'), 'ran\n');
  assert.ok(fs.readdirSync(path.join(spool, 'bad')).some((n) => n.startsWith(`${id}.result.`) && !n.endsWith('.why')), 'the empty result is kept in bad/');
});

test('after a restart, a result spoold makes without the worker\'s report (artifacts over --max-artifacts) is dated from the lease, not the restart', async () => {
  const s1 = spoold(['--max-artifacts', '1000']);
  workerd('w1');
  const id = await queue('overlimit', '#!/bin/sh\nsleep 2\nhead -c 2000 /dev/zero > big\n');
  await until('running', () => fs.existsSync(path.join(spool, 'running', id, 'lease')));
  await s1.stop('SIGKILL');
  const restarted = Date.now();
  spoold(['--max-artifacts', '1000']);
  const r = await result('overlimit', id);
  assert.equal(r.status, { kind: 'failed', why: 'artifacts rejected: more than the limit of 1000 bytes' });
  assert.ok(r.started && r.started.getTime() < restarted, `started ${r.started?.toISOString()} is before the restart`);
});

test('a worker back after its job was recorded lost (or canceled) while it was away is told not-yours: it kills the job, and --once exits 75', async () => {
  spoold();
  const pidFile = `${spool}-wd/job.pid`;
  const { w, id: lost } = await awayUntilLost('away', `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 600\n`, ['--once']);
  const pid = Number(await until('the job\'s pid', () => readIf(pidFile)?.trim()));   // its process still runs
  w.child.kill('SIGCONT');
  assert.is(await exitCode(w), 75, 'the job was taken back');
  assert.match(w.log(), /no longer ours \(the job finished without this worker's result while it was away \(lost\)\); killing it/);
  await until('the job process killed', () => { try { process.kill(pid, 0); return undefined; } catch { return true; } }, 10_000);
  assert.is(parseResult(fs.readFileSync(path.join(doneDir('away', lost), 'result'), 'utf8'), 'result').status.kind, 'lost', 'the stored result stands');
});

test('a worker told not-yours gets no job until its killed one is gone, then runs the next one (not lost to a dropped connection)', async () => {
  spoold();
  const { w } = await awayUntilLost('away2', '#!/bin/sh\nexec sleep 600\n');
  const next = await queue('next', '#!/bin/sh\necho next ran\n', { retries: 0 });
  w.child.kill('SIGCONT');
  assert.equal((await result('next', next)).status, { kind: 'exited', code: 0 }, 'the next job ran, on the worker that was away');
  assert.not.match(w.log(), /while we hold/);
});

test('a worker whose job ended while it was away, and was recorded lost, comes back free: the next job runs on it', async () => {
  spoold();
  const { w } = await awayUntilLost('ended', '#!/bin/sh\nsleep 1\n');   // the job ends meanwhile; its worker cannot say so
  const next = await queue('next2', '#!/bin/sh\necho next ran\n', { retries: 0 });
  w.child.kill('SIGCONT');
  assert.equal((await result('next2', next)).status, { kind: 'exited', code: 0 }, 'the next job ran');
  assert.is((await result('next2', next)).worker, 'w1');
  assert.not.match(w.log(), /while we hold/);
});

test('a workerd told to stop while it waits to deliver a job that was recorded lost meanwhile exits, and starts nothing', async () => {
  spoold();
  const { w } = await awayUntilLost('stopper', '#!/bin/sh\nsleep 1\n');
  const next = await queue('after', '#!/bin/sh\necho ran\n');
  await sleep(500);                   // the job has ended by now: SIGTERM finds it finished, to deliver
  w.child.kill('SIGTERM');
  w.child.kill('SIGCONT');
  assert.is(await exitCode(w), 0);
  assert.ok(fs.existsSync(path.join(spool, 'new', next)), 'the next job still waits, not started by a stopping worker');
});

// Found when a workerd left from a hand test, whose spoold and spool were
// gone, ignored SIGTERM for good: it waited to deliver an ended job.
test('a workerd whose ended job cannot be delivered waits on SIGTERM, and a second SIGTERM makes it exit 75 at once', async () => {
  const s = spoold();
  const w = workerd('w1');
  const id = await queue('undeliverable', '#!/bin/sh\nsleep 1\n');
  await w.waitLog(new RegExp(`running ${id}`));
  await s.stop('SIGKILL');
  await w.waitLog(new RegExp(`finished ${id}`));
  w.child.kill('SIGTERM');
  await w.waitLog(new RegExp(`SIGTERM: delivering job ${id} first`));
  assert.is(w.child.exitCode, null, 'it waits to deliver');
  w.child.kill('SIGTERM');
  assert.is(await exitCode(w), 75);
  assert.match(w.log(), new RegExp(`SIGTERM again: exiting without delivering or handing back job ${id}`));
});

// Found in review: the second signal's exit left a job that ignores SIGTERM
// running in its own process group, beside the next attempt spoold starts.
test('a second SIGTERM while a job ignores the first kills the job at once, and workerd exits 75', async () => {
  spoold();
  const w = workerd('w1');
  const pidFile = `${spool}-wd/stubborn.pid`;
  const id = await queue('stubborn', `#!/bin/sh\ntrap '' TERM\necho $$ > ${pidFile}\nwhile :; do sleep 0.1; done\n`);
  const pid = Number(await until('the job\'s pid', () => readIf(pidFile)?.trim()));
  w.child.kill('SIGTERM');
  await w.waitLog(new RegExp(`SIGTERM: killing job ${id}`));
  w.child.kill('SIGTERM');
  assert.is(await exitCode(w), 75);
  // Dead: gone, or a zombie its new parent has not reaped yet.
  const dead = () => { try { return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')) || undefined; } catch { return true; } };
  await until('the job killed', dead, 2_000);
});

test('spoold killed with SIGKILL mid-job and restarted: the worker re-attaches, the job runs once and finishes once', async () => {
  const s1 = spoold();
  const w = workerd('w1');
  const marker = `${spool}-runs`;
  const id = await queue('survivor', `#!/bin/sh\necho run >> ${marker}\nfor i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done\necho art > art.txt\n`);
  await until('job running', () => readIf(path.join(spool, 'running', id, 'console.log'))?.includes('tick 1'));
  await s1.stop('SIGKILL');
  await sleep(500);
  const s2 = spoold();
  await s2.waitLog(/reattached id=/);
  const r = await result('survivor', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(marker, 'utf8'), 'run\n', 'the job ran exactly once');
  fs.rmSync(marker, { force: true });
  const console = fs.readFileSync(path.join(doneDir('survivor', id), 'console.log'), 'utf8');
  assert.is(console, [1, 2, 3, 4, 5, 6].map((i) => `tick ${i}\n`).join(''), 'the console is whole, each line once');
  assert.is(fs.readFileSync(path.join(doneDir('survivor', id), 'artifacts', 'art.txt'), 'utf8'), 'art\n');
  assert.match(w.log(), /re-attached/);
});

/** The worker removed its job directories (run.ts discard), whatever their size: only its lock is left. */
async function jobDirsGone(worker: string): Promise<void> {
  const wd = `${spool}-wd/${worker}`;
  const left = () => fs.readdirSync(wd).filter((n) => n !== 'workerd.lock' && n !== 'workerd.pid');
  await until(`${wd} to be empty`, () => left().length === 0, 10_000)
    .catch(() => assert.unreachable(`left in ${wd}: ${left().join(' ')}`));
}

test('a worker that cannot write its job files reports that as the job result', async () => {
  spoold();
  const wd = `${spool}-wd/w1`;
  const w = workerd('w1');
  await w.waitLog(/connected/);
  await fsp.rm(wd, { recursive: true, force: true });
  await fsp.writeFile(wd, 'not a directory');     // the worker's job directories cannot be made
  const id = await queue('nowrite', '#!/bin/sh\necho hi\n');
  const r = await result('nowrite', id);
  assert.is(r.status.kind, 'failed');
  assert.match((r.status as { why: string }).why, /cannot write job files/);
});

test('job output that cannot be read is logged to the console, and the result is stored with what could be read', async () => {
  spoold();
  const w = workerd('w1');
  const id = await queue('unreadable', "#!/bin/sh\nmkfifo pipe\necho ok > fine.txt\nprintf x > \"$(printf 'latin1-\\351')\"\n");
  const r = await result('unreadable', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  const out = fs.readFileSync(path.join(doneDir('unreadable', id), 'console.log'), 'utf8');
  assert.match(out, /^workerd: skipped pipe: not a regular file, directory or symlink$/m);
  assert.match(out, /^workerd: skipped "latin1-\uFFFD": the file name is not UTF-8$/m);
  assert.equal(fs.readdirSync(path.join(doneDir('unreadable', id), 'artifacts')), ['fine.txt']);
  assert.ok(fs.existsSync(path.join(doneDir('unreadable', id), 'artifacts', 'fine.txt')));
  assert.ok(!fs.existsSync(path.join(doneDir('unreadable', id), 'artifacts', 'pipe')));
  assert.match(w.log(), /^workerd: skipped pipe: not a regular file, directory or symlink$/m, 'the same note on the worker\'s stderr, said once');
  await jobDirsGone('w1');
});

test('spoold --max-artifacts: a job leaving more is recorded failed, and the status says why once', async () => {
  spoold(['--max-artifacts', '1000']);
  const w = workerd('w1');
  const id = await queue('toomuch', '#!/bin/sh\nhead -c 2000 /dev/zero > big\n');
  const r = await result('toomuch', id);
  assert.equal(r.status, { kind: 'failed', why: 'artifacts rejected: more than the limit of 1000 bytes' });
  assert.is(r.worker, 'w1');
  assert.ok(r.started && r.started.getTime() <= r.finished.getTime(), 'started: the job did run');
  await until('the worker told', () => /artifacts rejected: more than the limit of 1000 bytes/.test(w.log()) || undefined);
  assert.not.match(w.log(), /artifacts rejected: artifacts rejected/);
});

test('a job that replaces its own directory with a link to /etc returns no artifacts, not /etc', async () => {
  spoold();
  workerd('w1');
  const id = await queue('swap', '#!/bin/sh\necho hi > file\ncd ..\nrm -rf job\nln -s /etc job\n');
  const r = await result('swap', id);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.equal(fs.readdirSync(path.join(doneDir('swap', id), 'artifacts')), []);
  assert.is(fs.readFileSync(path.join(doneDir('swap', id), 'SHA256SUMS'), 'utf8'), '');
  assert.match(fs.readFileSync(path.join(doneDir('swap', id), 'console.log'), 'utf8'), /^workerd: the job's directory job\/ is no longer a directory \(the job replaced it with a link\?\); no files are returned$/m);
  await jobDirsGone('w1');
});

test('a job leaving thousands of artifacts finishes: the manifest travels in parts', async () => {
  spoold();
  workerd('w1');
  const id = await queue('many', '#!/bin/sh\nmkdir -p deep/er\ni=0; while [ $i -lt 3000 ]; do echo $i > deep/er/file-with-a-longish-name-$i.txt; i=$((i+1)); done\n');
  const r = await result('many', id, 60_000);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  const sums = fs.readFileSync(path.join(doneDir('many', id), 'SHA256SUMS'), 'utf8').trim().split('\n');
  assert.is(sums.length, 3000);
  assert.is(fs.readFileSync(path.join(doneDir('many', id), 'artifacts', 'deep', 'er', 'file-with-a-longish-name-2999.txt'), 'utf8'), '2999\n');
  await jobDirsGone('w1');
});

// Found by a new user: a --templates directory that is not there was taken silently.
// In review: one below a file (ENOTDIR) crashed spoold at start.
test('spoold warns at start of a --templates that is not a directory, and runs', async () => {
  const s = spoold(['--templates', '/etc/passwd/templates']);
  await s.waitLog(/warning dir=\/etc\/passwd\/templates why="the template directory given \(--templates or \$BUILDER_TEMPLATES\) is not a directory/);
  await s.waitLog(/started/);
});

test('a second spoold on the same spool exits 1 with a clear message', async () => {
  const s1 = spoold();
  await s1.waitLog(/started/);
  const s2 = daemon('spoold', ['-s', spool]);
  const t0 = Date.now();
  const code = await new Promise<number | null>((r) => s2.child.on('close', (c) => r(c)));
  assert.is(code, 1);
  // At once, not after waiting out the lock's 10 s staleness as for a holder that died (found by a tester; a generous bound, not a measure of speed).
  assert.ok(Date.now() - t0 < 8_000, `exited after ${Date.now() - t0} ms`);
  assert.match(s2.log(), /another spoold holds the spool lock \(pid \d+\)/);
});

// Found in review: a pid file naming a live process that is no spoold (the
// killed holder's pid taken by another process) made a restart exit 1.
test('a spoold killed with SIGKILL whose pid another process took meanwhile is no holder: the restart takes its lock once stale', async () => {
  const s1 = spoold();
  await s1.waitLog(/started/);
  await s1.stop('SIGKILL');
  // Its command line mentions spoold without being one (as `tail -f spoold.log` does; found by a tester).
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', `${spool}/spoold.log`], { stdio: 'ignore' });
  try {
    fs.writeFileSync(path.join(spool, 'spoold.pid'), `${other.pid}\n`);
    const s2 = spoold();
    await s2.waitLog(/started/, 40_000);
    assert.ok(fs.existsSync(`/proc/${other.pid}`), 'the process that took the pid is left alone');
  } finally { other.kill('SIGKILL'); }
});

// Found by a new user: a spoold that could not listen on its --listen port
// exited 1 but left spoold.lock, spoold.pid and spoold.sock behind.
test('a spoold that cannot listen on its --listen address exits 1 and leaves no lock, pid file or socket', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  try {
    const s = daemon('spoold', ['-s', spool, '--listen', `127.0.0.1:${(busy.address() as net.AddressInfo).port}`]);
    const code = await new Promise<number | null>((r) => s.child.on('close', (c) => r(c)));
    assert.is(code, 1);
    assert.match(s.log(), /spoold: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    for (const f of ['spoold.lock', 'spoold.pid', 'spoold.sock']) assert.not.ok(fs.existsSync(path.join(spool, f)), `${f} left behind`);
  } finally { busy.close(); }
});

test('spoold logs an IPv6 --listen address as --listen takes it, in brackets', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '::1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const s = spoold(['--listen', `[::1]:${port}`]);
  await s.waitLog(new RegExp(`started .*socket="spoold\\.sock tcp=\\[::1\\]:${port}"`));
});

test('a spoold whose lock is removed under it stops at once with 75, so that no two claim jobs', async () => {
  const s = spoold();
  await s.waitLog(/started/);
  await fsp.rm(path.join(spool, 'spoold.lock'), { recursive: true, force: true });
  const code = await new Promise<number | null>((r) => s.child.on('close', (c) => r(c)));
  assert.is(code, 75);
  assert.match(s.log(), /spoold: fatal why="spool lock lost: /);
});

test('spoold.pid is replaced, not written through: a link planted there leaves its target alone', async () => {
  await fsp.mkdir(spool, { recursive: true });
  const victim = `${spool}-victim`;
  await fsp.writeFile(victim, 'precious\n');
  try {
    fs.symlinkSync(victim, path.join(spool, 'spoold.pid'));
    const s = spoold();
    await s.waitLog(/started/);
    assert.is(fs.readFileSync(victim, 'utf8'), 'precious\n');
    assert.is(fs.readFileSync(path.join(spool, 'spoold.pid'), 'utf8'), `${s.child.pid}\n`);
  } finally { await fsp.rm(victim, { force: true }); }
});

test('an empty --token-file is refused at start (it would let any worker in); a missing one is named', async () => {
  const empty = `${spool}-token`;
  await fsp.writeFile(empty, '  \n');
  try {
    for (const [file, want] of [[empty, /spoold: --token-file \S+ is empty: put the shared secret in it/], [`${spool}-nonexistent`, /spoold: cannot read --token-file \S+-nonexistent: ENOENT/]] as const) {
      const s = daemon('spoold', ['-s', spool, '--token-file', file]);
      procs.push(s);
      const code = await exitCode(s);
      assert.is(code, 1);
      assert.match(s.log(), want);
    }
    const w = daemon('workerd', ['-s', spool, '--token-file', empty, 'debian-12']);
    procs.push(w);
    const code = await exitCode(w);
    assert.is(code, 78);
    assert.match(w.log(), /--token-file \S+ is empty/);
  } finally { await fsp.rm(empty, { force: true }); }
});

test('two workerds under one name are each told why they were replaced, spoold warns, and jobs still run, each once', async () => {
  const s = spoold();
  await s.waitLog(/started/);
  workerd('twin');
  await s.waitLog(/worker joined worker=twin/);
  const b = daemon('workerd', ['-s', spool, '--name', 'twin', '--workdir', `${spool}-wd/twin-b`, 'debian-12']);
  procs.push(b);
  await s.waitLog(/warning worker=twin why="its connection was replaced 3 times within 60 s: two workerds share this name\? give each its own --name"/, 20_000);
  assert.match(procs.map((p) => p.log()).join(''), /spoold says: replaced by another connection as twin \(from unix\); if that is not this workerd, two share the name: give each its own --name/);
  const marker = `${spool}-marker`;
  const id = await queue('twins', `#!/bin/sh\necho run >> ${marker}\nsleep 1\necho end\n`);
  assert.equal((await result('twins', id, 30_000)).status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(marker, 'utf8'), 'run\n', 'the job ran once');
  await fsp.rm(marker, { force: true });
  const joins = s.log().match(/worker joined worker=twin/g)?.length ?? 0;
  assert.ok(joins < 30, `the two took turns ${joins} times: their backoff slows them`);
});

test('a spool or --workdir under /proc is refused at once (node\'s recursive mkdir spins there for ever)', async () => {
  const s = daemon('spoold', ['-s', '/proc/builder-test/spool']);
  procs.push(s);
  assert.is(await exitCode(s), 1);
  assert.match(s.log(), /spoold: \/proc\/builder-test\/spool: cannot create spool directory: ENOENT/);
  const w = daemon('workerd', ['-s', spool, '--workdir', '/proc/builder-test/wd', 'debian-12']);
  procs.push(w);
  assert.is(await exitCode(w), 78);
  assert.match(w.log(), /cannot create --workdir \/proc\/builder-test\/wd: ENOENT/);
});

test('two workerds under one name while one holds a job: the job runs once and its result is delivered', async () => {
  const s = spoold();
  await s.waitLog(/started/);
  const a = workerd('twin');
  const marker = `${spool}-marker`;
  const id = await queue('busytwin', `#!/bin/sh\necho run >> ${marker}\necho started\nsleep 2\necho end\n`);
  await until('running on the first', () => readIf(path.join(spool, 'running', id, 'console.log'))?.includes('started'));
  const b = daemon('workerd', ['-s', spool, '--name', 'twin', '--workdir', `${spool}-wd/twin-b`, 'debian-12']);
  procs.push(b);
  const r = await result('busytwin', id, 30_000);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(marker, 'utf8'), 'run\n', 'the job ran once');
  assert.ok(a.child.exitCode === null && b.child.exitCode === null, 'neither exits');
  await fsp.rm(marker, { force: true });
});

test('a workerd that cannot reach spoold says so, and keeps trying', async () => {
  const w = workerd('lonely');
  await w.waitLog(/cannot reach spoold at \S+spoold\.sock: connect ENOENT \S+; retrying \(1 try so far\)/, 5_000);
  const s = spoold();
  await s.waitLog(/worker joined worker=lonely/, 15_000);
});

test('a result spoold cannot store (tmp/ removed) is kept by the worker and delivered once tmp/ is back, with backoff, not ~10 tries a second', async () => {
  const s = spoold();
  workerd('w1');
  const id = await queue('notmp', '#!/bin/sh\necho before\nsleep 1\necho after\n');
  await until('running', () => readIf(path.join(spool, 'running', id, 'console.log'))?.includes('before'));
  await fsp.rm(path.join(spool, 'tmp'), { recursive: true, force: true });
  const r = await result('notmp', id, 30_000);
  assert.equal(r.status, { kind: 'exited', code: 0 }, 'a spool that lost tmp/ is not a hostile worker');
  assert.is(fs.readFileSync(path.join(doneDir('notmp', id), 'console.log'), 'utf8'), 'before\nafter\n');
  assert.ok(fs.statSync(path.join(spool, 'tmp')).isDirectory(), 'spoold made tmp/ again');
  const tries = s.log().match(/reattached id=/g)?.length ?? 0;
  assert.ok(tries >= 1 && tries <= 10, `re-delivered ${tries} times`);
  assert.not.match(s.log(), /artifacts rejected/);
});

test('spoold stops cleanly on SIGTERM: lock released, socket removed, running job kept for the next start', async () => {
  const s1 = spoold();
  workerd('w1');
  const id = await queue('kept', '#!/bin/sh\nsleep 2\necho done\n');
  await until('running', () => fs.existsSync(path.join(spool, 'running', id, 'lease')));
  await s1.stop('SIGTERM');
  assert.match(s1.log(), /stopped/, `spoold's log:\n${s1.log()}`);
  assert.is(s1.child.exitCode, 0);
  assert.ok(!fs.existsSync(path.join(spool, 'spoold.sock')));
  assert.ok(fs.existsSync(path.join(spool, 'running', id, 'job')));
  spoold();
  assert.equal((await result('kept', id)).status, { kind: 'exited', code: 0 });
});

test('the worker is let go once the result is in running/; a move to done/ that fails is tried again, and the worker runs its next job meanwhile', async () => {
  const s = spoold();
  workerd('w1');
  const first = await queue('blocked', '#!/bin/sh\nsleep 1; echo first > out.txt\n');
  await until('running', () => fs.existsSync(path.join(spool, 'running', first, 'lease')));
  // Its done/NAME/ID is taken (a directory with a file in it): the rename into done/ fails.
  fs.mkdirSync(doneDir('blocked', first), { recursive: true });
  fs.writeFileSync(path.join(doneDir('blocked', first), 'in-the-way'), 'x\n');
  await s.waitLog(new RegExp(`error id=${first} why="cannot finalize: .*its result is stored in running/${first}, and the move to done/ is tried again every 2 s"`));
  assert.ok(fs.existsSync(path.join(spool, 'running', first, 'result')), 'the result is in running/');
  const second = await queue('next', '#!/bin/sh\necho second\n');
  assert.equal((await result('next', second)).status, { kind: 'exited', code: 0 }, 'the worker ran its next job meanwhile');
  fs.rmSync(doneDir('blocked', first), { recursive: true });
  await s.waitLog(new RegExp(`finished id=${first} name=blocked .*why="finalize completed at a later try"`));
  assert.equal((await result('blocked', first)).status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(path.join(doneDir('blocked', first), 'artifacts', 'out.txt'), 'utf8'), 'first\n');
  assert.ok(!fs.existsSync(path.join(spool, 'running', first)));
  assert.is(s.log().match(new RegExp(`error id=${first} `, 'g'))?.length, 1, 'the error is said once');
});

test('a claim cut short after its ready directory moved in (empty console.log, SHA256SUMS, artifacts/; no job) is cleaned at the next start', async () => {
  const id = newId();
  const dir = await leftoverDir(id);
  fs.writeFileSync(path.join(dir, 'console.log'), '');
  fs.writeFileSync(path.join(dir, 'SHA256SUMS'), '');
  fs.mkdirSync(path.join(dir, 'artifacts'));
  const s = spoold();
  await s.waitLog(new RegExp(`cleaned dir=running/${id} `));
  assert.ok(!fs.existsSync(dir));
});

test('a SIGTERM while spoold starts stops it cleanly once started: exit 0, lock released, socket removed', async () => {
  // A thousand held jobs to reconcile make the start take a while.
  const s0 = spoold();
  await s0.waitLog(/started/);
  await s0.stop('SIGTERM');
  for (let i = 0; i < 1000; i++) {
    const id = newId();
    fs.mkdirSync(path.join(spool, 'running', id));
    fs.writeFileSync(path.join(spool, 'running', id, 'job'), formatJob(makeJob({ ...submission({ name: 'held', platform: 'nowhere', body: 'true\n' }), id, queued: new Date(), attempt: 1 })));
  }
  const s = spoold();
  for (const end = Date.now() + 10_000; !fs.existsSync(path.join(spool, 'spoold.lock')) && Date.now() < end;) await sleep(2);
  assert.not.match(s.log(), /started/, 'the signal comes before spoold has started');
  s.child.kill('SIGTERM');
  await new Promise((r) => s.child.once('close', r));
  assert.is(s.child.exitCode, 0, s.log());
  assert.match(s.log(), /stopping signal=SIGTERM[\s\S]*stopped/);
  assert.ok(!fs.existsSync(path.join(spool, 'spoold.sock')), 'socket removed');
  assert.ok(!fs.existsSync(path.join(spool, 'spoold.lock')), 'lock released');
});

test('dispatch follows priority, then queue order, per platform', async () => {
  spoold();
  const ids = [await queue('order', '#!/bin/sh\necho 1\n'), await queue('order', '#!/bin/sh\necho 2\n')];
  const other = await queue('order', '#!/bin/sh\necho other\n', { platform: 'freebsd' });
  await sleep(300);
  workerd('w1');
  for (const id of ids) await result('order', id);
  const started = ids.map((id) => parseResultFile(id).started!.getTime());
  assert.ok(started[0]! <= started[1]!);
  await sleep(300);
  assert.ok(fs.existsSync(path.join(spool, 'new', other)), 'a job of another platform waits');
});
function parseResultFile(id: string) { return parseResult(fs.readFileSync(path.join(doneDir('order', id), 'result'), 'utf8'), 'r'); }

test.run();
