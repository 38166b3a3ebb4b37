// A workerd killed with SIGKILL leaves its job's process group running and its
// directory in --workdir. The next workerd on that --workdir kills the group
// (only if it is still the job's) and removes the directory (leftovers.ts);
// a second workerd on a --workdir in use is refused (lock.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { tmpdir, daemon, until, readIf, queueJob, ROOT, type Daemon } from './lib.js';
import { newId } from '../src/spool/ids.js';
import { parseResult } from '../src/spool/result.js';

let spool = '';
let wd = '';
const procs: Daemon[] = [];
const strays: number[] = [];

test.before(async () => {
  spool = await tmpdir('leftovers');
  wd = `${spool}-wd`;
  procs.push(daemon('spoold', ['-s', spool, '--lease', '2s', '--heartbeat', '400ms']));
  await procs[0]!.waitLog(/started/);
});
test.after(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const pid of strays) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }
  await fsp.rm(spool, { recursive: true, force: true });
  await fsp.rm(wd, { recursive: true, force: true });
});

const workerd = (name: string) => {
  const d = daemon('workerd', ['-s', spool, '--name', name, '--workdir', wd, 'debian-12']);
  procs.push(d);
  return d;
};

/** The live (not zombie) processes of group `pgid`, from /proc. */
function members(pgid: number): number[] {
  return fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((p) => {
    const stat = readIf(`/proc/${p}/stat`);
    if (!stat) return false;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[2]) === pgid && f[0] !== 'Z';
  }).map(Number);
}

/** A job whose first attempt starts a child and waits for ever; a second attempt ends at once. */
async function stuckJob(name: string, mark: string): Promise<{ id: string; pgid: number }> {
  const id = await queueJob(spool, { name, body: `#!/bin/sh\nif [ -e ${mark} ]; then echo again; exit 0; fi\ntouch ${mark}\nsleep 600 &\necho started\nwait\n` });
  await until('the job to start', () => /started/.test(readIf(path.join(spool, 'running', id, 'console.log')) ?? ''));
  const rec = fs.readFileSync(path.join(wd, id, 'pgid'), 'utf8');
  const m = /^(\d+) (\d+)\n$/.exec(rec);
  assert.ok(m, `pgid says "pgid starttime": ${JSON.stringify(rec)}`);
  const pgid = Number(m![1]);
  assert.is(members(pgid).length, 2, 'the script and its sleep run in the job\'s group');
  return { id, pgid };
}

test('a workerd killed with SIGKILL: the next one on its --workdir kills the job it left running and removes its directory; the job runs again, once', async () => {
  const a = workerd('a');
  await a.waitLog(/connected/);
  const mark = `${spool}-mark-1`;
  const { id, pgid } = await stuckJob('orphan', mark);
  a.child.kill('SIGKILL');
  await until('workerd a to die', () => a.child.signalCode !== null);
  assert.is(members(pgid).length, 2, 'the job outlives its workerd');
  const b = workerd('b');
  await b.waitLog(new RegExp(`job ${id} was left running by a workerd that died \\(process group ${pgid}\\): killing it`));
  await b.waitLog(new RegExp(`removed ${wd}/${id}, left by a workerd that died`));
  assert.equal(members(pgid), [], 'the group is gone');
  assert.not.ok(fs.existsSync(path.join(wd, id)), 'its directory is gone');
  // spoold requeues it when the lease runs out; b runs it again, to its end.
  const res = await until('the result', () => readIf(path.join(spool, 'done', 'orphan', id, 'result')), 30_000);
  assert.equal(parseResult(res, 'result').status, { kind: 'exited', code: 0 });
  assert.match(fs.readFileSync(path.join(spool, 'done', 'orphan', id, 'console.log'), 'utf8'), /again/);
  await b.stop();
});

test('a workerd killed with SIGKILL whose parent has not reaped it (a zombie) leaves a lock the next workerd takes at once', async () => {
  // Its parent execs a sleep that never reaps it; the lock's time is pushed
  // an hour ahead, so it could not go stale while we wait (13 s, then exit 78).
  const zwd = `${wd}-zombie`;
  const parent = spawn('sh', ['-c', `"$0" "$@" 2>/dev/null & echo $! ; exec sleep 120`, process.execPath, path.join(ROOT, 'dist', 'bin', 'workerd.js'), '-s', spool, '--name', 'z1', '--workdir', zwd, 'debian-12'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = Number(await new Promise<string>((r) => parent.stdout.once('data', (b) => r(String(b).trim()))));
  try {
    await until('its lock', () => readIf(path.join(zwd, 'workerd.pid'))?.trim() === String(pid), 10_000);
    process.kill(pid, 'SIGKILL');
    await until('a zombie', () => /^\d+ \(.*\) Z /s.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1')), 5_000);
    const later = new Date(Date.now() + 3_600_000);
    fs.utimesSync(path.join(zwd, 'workerd.lock'), later, later);
    const next = daemon('workerd', ['-s', spool, '--name', 'z2', '--workdir', zwd, 'debian-12']);
    procs.push(next);
    await next.waitLog(/connected/, 20_000);
    assert.is(readIf(path.join(zwd, 'workerd.pid'))?.trim(), String(next.child.pid));
    await next.stop();
  } finally {
    parent.kill('SIGKILL');
    await fsp.rm(zwd, { recursive: true, force: true });
  }
});

test('a second workerd on a --workdir in use is refused, and harms nothing there; a group that is no longer the job\'s is not killed', async () => {
  const a = workerd('c');
  await a.waitLog(/connected/);
  const { id, pgid } = await stuckJob('busy', `${spool}-mark-2`);
  const twin = workerd('d');
  await until('the second workerd to exit', () => twin.child.exitCode !== null, 10_000);
  assert.is(twin.child.exitCode, 78);
  assert.match(twin.log(), new RegExp(`workerd: ${wd}/workerd.lock: another workerd \\(pid ${a.child.pid}\\) uses --workdir ${wd}; give each workerd its own --workdir`));
  assert.is(members(pgid).length, 2, 'workerd c\'s job still runs');
  assert.ok(fs.existsSync(path.join(wd, id, 'pgid')), 'and keeps its directory');
  // c stops (SIGTERM: it kills its job and hands it back). A leftover whose
  // group number now belongs to something else (the kernel reuses numbers):
  // that process must live.
  await a.stop();
  assert.equal(members(pgid), []);
  assert.equal(fs.readdirSync(wd).filter((n) => n.startsWith('workerd.')), [], 'a workerd that stopped leaves neither its lock nor its pid file');
  const other = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
  strays.push(other.pid!);
  const fake = newId();
  await fsp.mkdir(path.join(wd, fake, 'job'), { recursive: true });
  await fsp.writeFile(path.join(wd, fake, 'pgid'), `${other.pid} 1\n`);
  const b = workerd('e');
  await b.waitLog(new RegExp(`removed ${wd}/${fake}, left by a workerd that died`));
  await b.waitLog(/connected/);
  assert.match(b.log(), new RegExp(`process group ${other.pid}, which job ${fake} ran in, runs, but is not the job's any more or cannot be checked: not killed`));
  assert.not.match(b.log(), /killing it/);
  assert.equal(members(other.pid!), [other.pid], 'the unrelated group lives');
  await b.stop();
});

test('a workerd whose --workdir lock is removed under it kills its job and exits 75', async () => {
  const a = workerd('f');
  await a.waitLog(/connected/);
  const { pgid } = await stuckJob('locked', `${spool}-mark-3`);
  await fsp.rm(path.join(wd, 'workerd.lock'), { recursive: true, force: true });
  await until('workerd to exit', () => a.child.exitCode !== null, 10_000);
  assert.is(a.child.exitCode, 75);
  assert.match(a.log(), new RegExp(`lost the lock of --workdir ${wd} \\(.*\\); exiting so that no two workerds share it`));
  await until('its job to die', () => members(pgid).length === 0, 5_000);
});

test.run();
