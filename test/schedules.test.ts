// Schedules, templates and platforms end to end: spoold's timer, bctl, hand edits.
// Times are made near with bctl reschedule rather than waiting for real periods.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, bctl, until, drop, sleep, readIf, type Daemon } from './lib.js';
import { parseJob, formatJob, makeJob, submission } from '../src/spool/job.js';
import { newId, idTime } from '../src/spool/ids.js';

let spool = '';
let procs: Daemon[] = [];
let s: Daemon;
test.before.each(async () => {
  spool = await tmpdir('schedules');
  procs = [];
  s = start();
  await s.waitLog(/started/);
});
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, `${spool}-wd`, `${spool}-scripts`]) await fsp.rm(d, { recursive: true, force: true });
});
function start(): Daemon { const d = daemon('spoold', ['-s', spool, '--lease', '2s', '--heartbeat', '400ms']); procs.push(d); return d; }
function worker(platform: string, name = `w-${platform}`): Daemon {
  const d = daemon('workerd', ['-s', spool, '--name', name, '--workdir', `${spool}-wd/${name}`, platform]);
  procs.push(d);
  return d;
}
async function script(body: string): Promise<string> {
  await fsp.mkdir(`${spool}-scripts`, { recursive: true });
  const p = path.join(`${spool}-scripts`, `s${Math.random().toString(36).slice(2)}.sh`);
  await fsp.writeFile(p, body);
  return p;
}
async function ok(args: string[]): Promise<string> {
  const r = await bctl(spool, args);
  assert.is(r.code, 0, `bctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const queued = (name: string) => fs.readdirSync(path.join(spool, 'new')).filter((f) => parseJob(fs.readFileSync(path.join(spool, 'new', f)), f, f).name === name);
const doneIds = (name: string) => { try { return fs.readdirSync(path.join(spool, 'done', name)).filter((f) => f !== 'latest'); } catch { return []; } };
const state = (name: string) => readIf(path.join(spool, 'state', name)) ?? '';
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

test('a new schedule runs at once, then not again until its period; reschedule runs it at the given time', async () => {
  worker('debian-12');
  await ok(['schedule', 'nightly', 'debian-12', await script('#!/bin/sh\necho built\n'), '--period', 'daily']);
  await until('first run', () => doneIds('nightly').length === 1);
  await sleep(1500);
  assert.is(doneIds('nightly').length, 1, 'a daily schedule runs once, not again right away');
  assert.match(state('nightly'), /^fired: /m);
  await until('last status recorded', () => /last-status: exited 0/.test(state('nightly')));
  const at = Date.now() + 2000;
  await ok(['reschedule', 'nightly', iso(at)]);
  await until('rescheduled run', () => doneIds('nightly').length === 2, 10_000);
  const second = doneIds('nightly').sort()[1]!;
  const job = parseJob(fs.readFileSync(path.join(spool, 'done', 'nightly', second, 'job')), 'job', second);
  assert.ok(job.queued!.getTime() >= Math.floor(at / 1000) * 1000, `queued at ${job.queued!.toISOString()}, not before ${iso(at)}`);
  assert.is(job.origin, 'schedule');
  // The next due time is the next midnight (UTC) after the firing, not now.
  const info = JSON.parse(await ok(['info', '--json']));
  const next = new Date(info.schedules[0].next);
  assert.ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 86400_000, `next run ${info.schedules[0].next}`);
  assert.is(next.toISOString().slice(11), '00:00:00.000Z');
  assert.is(info.schedules[0].lastStatus, 'exited 0');
});

test('at most one queued instance per name: a due schedule whose last instance still waits does not queue a second', async () => {
  await ok(['schedule', 'waits', 'nobody-serves-this', await script('#!/bin/sh\necho\n'), '--period', 'hourly']);
  await until('first instance', () => queued('waits').length === 1);
  // spoold records the firing in state/waits just after it queues the job; a
  // reschedule read before that record would be overwritten by it (bctl.1 BUGS).
  await until('the firing recorded', () => /^fired: /m.test(state('waits')));
  await ok(['reschedule', 'waits', iso(Date.now() + 500)]);
  await s.waitLog(/skipped name=waits/, 10_000);
  assert.is(queued('waits').length, 1);
});

test('after downtime a missed run fires once, and the period counts from that firing', async () => {
  await s.stop('SIGTERM');
  await fsp.mkdir(path.join(spool, 'schedules'), { recursive: true });
  await drop(spool, 'schedules', 'hourly', 'platform: nobody\nschedule: @hourly\n\n#!/bin/sh\necho\n');
  // Last fired three years ago: some 26,000 hourly runs were missed.
  await drop(spool, 'state', 'hourly', `fired: ${iso(Date.now() - 3 * 365 * 86400_000)}\n`);
  s = start();
  await until('one catch-up instance', () => queued('hourly').length === 1);
  await sleep(1500);
  assert.is(queued('hourly').length, 1, 'missed runs fire once');
  const info = JSON.parse(await ok(['info', '--json']));
  const next = new Date(info.schedules.find((x: { name: string }) => x.name === 'hourly').next).getTime();
  assert.ok(next > Date.now() && next <= Date.now() + 3600_000, 'next run within the hour');
});

test('a firing recorded in 2030 (the clock was ahead, and was set back) does not hold the schedule until then', async () => {
  await s.stop('SIGTERM');
  await drop(spool, 'schedules', 'ahead', 'platform: nobody\nschedule: @hourly\n\n#!/bin/sh\necho\n');
  await drop(spool, 'state', 'ahead', 'fired: 2030-01-01T00:00:00Z\n');
  s = start();
  await s.waitLog(/warning name=ahead why="state\/ahead says it last fired at 2030-01-01T00:00:00.000Z, over 3 hours from now: the clock was set back since\? that firing is recorded as made now"/);
  const firedNow = () => { const f = /^fired: (\S+)$/m.exec(state('ahead'))?.[1]; return f && !f.startsWith('2030') ? f : undefined; };
  const fired = await until('state/ahead rewritten', firedNow);
  assert.ok(Math.abs(new Date(fired).getTime() - Date.now()) < 60_000, `fired: ${fired} is now`);
  const info = JSON.parse(await ok(['info', '--json']));
  const next = new Date(info.schedules.find((x: { name: string }) => x.name === 'ahead').next).getTime();
  assert.ok(next > Date.now() && next <= Date.now() + 3600_000, `next run within the hour, not in 2030: ${new Date(next).toISOString()}`);
  assert.is(queued('ahead').length, 0, 'and not at once either: that firing was a run');
});

test('spoold killed between queueing a schedule\'s job and recording the firing: the firing is recorded, not repeated, whether the job is running or done', async () => {
  await s.stop('SIGTERM');
  // The state of a firing spoold did not live to record: both schedules were
  // last fired two days ago (so due now), and each firing's job, queued up to
  // an hour ago, has been taken by a worker: one still runs, one is done.
  const firedBefore = iso(Date.now() - 2 * 86400_000);
  // Within today (UTC), or the @daily firing due at midnight would be due again:
  // this test failed every night from 00:00 to 01:00.
  const dayStart = Math.floor(Date.now() / 86400_000) * 86400_000;
  const queuedAt = Math.max(Date.now() - 3600_000, Math.min(dayStart + 1000, Date.now() - 500));
  const ids = { run: newId(queuedAt), fin: newId(queuedAt) };
  for (const name of ['run', 'fin'] as const) {
    await drop(spool, 'schedules', name, 'platform: nobody\nschedule: @daily\n\n#!/bin/sh\necho\n');
    await drop(spool, 'state', name, `fired: ${firedBefore}\n`);
    const job = formatJob(makeJob({ ...submission({ name, platform: 'nobody', body: '#!/bin/sh\necho\n' }), id: ids[name], queued: new Date(queuedAt), origin: 'schedule' }));
    const dir = name === 'run' ? path.join(spool, 'running', ids[name]) : path.join(spool, 'done', name, ids[name]);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'job'), job);
  }
  s = start();
  await s.waitLog(new RegExp(`fired name=run id=${ids.run}`), 10_000);
  await s.waitLog(new RegExp(`fired name=fin id=${ids.fin}`), 10_000);
  await until('both firings recorded', () => state('run').includes(`last-id: ${ids.run}`) && state('fin').includes(`last-id: ${ids.fin}`));
  await sleep(1500);
  assert.equal(queued('run'), [], 'no second instance of the running one');
  assert.equal(queued('fin'), [], 'no second instance of the finished one');
  assert.match(state('fin'), new RegExp(`fired: ${idTime(ids.fin).toISOString().slice(0, 19)}`), 'the firing is dated by its job');
});

test('a schedule with no recorded firing fires at once, though older jobs of its name (an earlier schedule\'s) are in done/', async () => {
  await s.stop('SIGTERM');
  const old = newId(Date.now() - 3600_000);
  const dir = path.join(spool, 'done', 'again', old);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'job'), formatJob(makeJob({ ...submission({ name: 'again', platform: 'nobody', body: '#!/bin/sh\necho\n' }), id: old, queued: idTime(old), origin: 'schedule' })));
  await drop(spool, 'schedules', 'again', 'platform: nobody\nschedule: @daily\n\n#!/bin/sh\necho\n');
  s = start();
  await until('a new instance', () => queued('again').length === 1, 10_000);
  assert.not.match(s.log(), /fired name=again/);
  const since = /^since: (\S+)$/m.exec(state('again'))?.[1];
  assert.ok(since && Date.parse(since) <= idTime(queued('again')[0]!).getTime(), `since: ${since} is on record, no later than the instance`);
});

test('spoold killed during a new schedule\'s first firing: the job queued since it began is that firing\'s, recorded and not repeated', async () => {
  await s.stop('SIGTERM');
  // As spoold leaves it when killed after queueing the first firing's job
  // (now done) but before recording it: since: only. An older job of the
  // name, an earlier schedule's, is before since: and not this firing's.
  const since = Date.now() - 3600_000;
  const older = newId(since - 60_000);
  const first = newId(since + 5);
  for (const id of [older, first]) {
    const dir = path.join(spool, 'done', 'first', id);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'job'), formatJob(makeJob({ ...submission({ name: 'first', platform: 'nobody', body: '#!/bin/sh\necho\n' }), id, queued: idTime(id), origin: 'schedule' })));
  }
  await drop(spool, 'schedules', 'first', 'platform: nobody\nschedule: @daily\n\n#!/bin/sh\necho\n');
  await drop(spool, 'state', 'first', `since: ${new Date(since).toISOString()}\n`);
  s = start();
  await s.waitLog(new RegExp(`fired name=first id=${first}`), 10_000);
  await until('the firing recorded', () => state('first').includes(`last-id: ${first}`));
  await sleep(1500);
  assert.equal(queued('first'), [], 'no second instance');
  assert.match(state('first'), new RegExp(`^since: ${new Date(since).toISOString()}$`, 'm'), 'since: is kept');
});

test('spoold killed with SIGKILL the moment a worker takes a new schedule\'s first job: after the restart it has run once', async () => {
  // The claim comes before the firing is recorded, so the kill usually lands
  // between them (the window the job's since: covers); the test holds either way.
  worker('p1');
  await s.waitLog(/worker joined/);
  const w = fs.watch(path.join(spool, 'running'));
  const claimed = new Promise<void>((resolve) => w.on('change', () => { s.child.kill('SIGKILL'); resolve(); }));
  await drop(spool, 'schedules', 'once', 'platform: p1\nschedule: @daily\n\n#!/bin/sh\nsleep 1; echo ran\n');
  await claimed;
  w.close();
  await s.stop('SIGKILL');
  assert.match(state('once'), /^since: /m, 'since: was written before the job was queued');
  s = start();
  await until('the job done', () => doneIds('once').length === 1, 15_000);
  await sleep(2000);
  assert.is(doneIds('once').length, 1, 'ran once');
  assert.equal(queued('once'), [], 'no second instance');
});

test('bctl unschedule while spoold fires the schedule: neither its state nor a queued job outlives it', async () => {
  // The race the man page audit found (2 in 16): spoold fires on what it read
  // before the schedule was removed and writes state/NAME or queues a job after
  // bctl has removed them.
  const sh = await script('#!/bin/sh\necho\n');
  const names = Array.from({ length: 24 }, (_, i) => `race${i}`);
  for (const [i, n] of names.entries()) {
    await ok(['schedule', n, 'nobody', sh, '--period', 'hourly']);
    await sleep((i % 16) * 6);   // the unschedule lands at a different moment of the firing each time
    await ok(['unschedule', n]);
  }
  await sleep(1500);
  for (const n of names) {
    assert.is(state(n), '', `no state/${n}`);
    assert.equal(queued(n), [], `no queued ${n}`);
  }
});

test('a broken schedule dated in the future still goes to bad/ once settled, without spinning', async () => {
  const f = path.join(spool, 'schedules', 'future');
  fs.writeFileSync(f, 'platform: debian-12\nschedule: 61 * * * *\n\n#!/bin/sh\necho\n');
  fs.utimesSync(f, new Date('2099-01-01'), new Date('2099-01-01'));
  await until('rejected', () => fs.readdirSync(path.join(spool, 'bad')).some((b) => b.startsWith('schedules.future.') && b.endsWith('.why')), 10_000);
  assert.not.match(s.log(), /TimeoutOverflowWarning/);
});

test('a template schedule without platform runs on every platform that has the template, each with its own result; a missing variable is that job\'s failed result', async () => {
  await drop(spool, 'templates', 'greet.template.alpha', '#!/bin/sh\necho "%%WHO%% on %%PLATFORM%%"\n');
  await drop(spool, 'templates', 'greet.template.beta', '#!/bin/sh\necho "%%WHO%% on %%PLATFORM%% (beta)"\n');
  await drop(spool, 'templates', 'greet.template.gamma', '#!/bin/sh\necho "%%WHOM%%"\n');
  worker('alpha');
  worker('beta');
  await drop(spool, 'schedules', 'greet', 'template: greet\nvar.WHO: builder\nschedule: never\n');
  // One template is broken: execute queues the good instances, records the bad one as failed, and exits 1.
  const ex = await bctl(spool, ['execute', 'greet']);
  assert.is(ex.code, 1);
  assert.match(ex.stderr, /gamma/);
  await until('alpha and beta done, gamma failed', () => doneIds('greet').length === 3, 20_000);
  const consoles = doneIds('greet').map((id) => ({ r: fs.readFileSync(path.join(spool, 'done', 'greet', id, 'result'), 'utf8'), c: fs.readFileSync(path.join(spool, 'done', 'greet', id, 'console.log'), 'utf8') }));
  assert.ok(consoles.some((x) => x.c === 'builder on alpha\n' && /platform: alpha/.test(x.r)));
  assert.ok(consoles.some((x) => x.c === 'builder on beta (beta)\n' && /platform: beta/.test(x.r)));
  const gamma = consoles.find((x) => /platform: gamma/.test(x.r))!;
  assert.match(gamma.r, /status: failed: .*greet\.template\.gamma: template uses %%WHOM%% but the job has no var\.WHOM/);
  assert.ok(s.child.exitCode === null, 'spoold is fine');
});

test('a schedule\'s last status counts jobs no worker finished: a template failing at a firing, a job canceled while queued', async () => {
  await drop(spool, 'templates', 'broken.template.nobody', '#!/bin/sh\necho "%%MISSING%%"\n');
  await drop(spool, 'schedules', 'tfail', 'template: broken\nplatform: nobody\nschedule: @daily\n');
  await until('the failed firing recorded', () => /^last-status: failed: .*%%MISSING%%/m.test(state('tfail')) || undefined, 10_000);
  assert.match(state('tfail'), /^last-failure: /m);
  await drop(spool, 'schedules', 'cq', 'platform: nobody\nschedule: @daily\n\n#!/bin/sh\necho\n');
  const [id] = await until('its job queued', () => { const q = queued('cq'); return q.length === 1 ? q : undefined; }, 10_000);
  await until('its firing recorded', () => state('cq').includes(`last-id: ${id}`) || undefined);   // else spoold's write may come after ours
  await ok(['cancel', id!]);
  assert.match(state('cq'), /^last-status: canceled$/m);
  assert.match(await ok(['info']), /^\s*cq\s.*\scanceled$/m, 'bctl info shows it as LAST');
});

test('drop-platform stops dispatch, sets schedules aside and tells workers why; undrop restores it; a worker restart does not revive it', async () => {
  await ok(['drop-platform', 'sparc', '--reason', 'hardware gone']);
  const w = worker('sparc');
  await w.waitLog(/no work: platform sparc is dropped/);
  await ok(['schedule', 'sparcjob', 'sparc', await script('#!/bin/sh\necho sparc\n'), '--period', 'hourly']);
  const id = (await ok(['submit', 'sparc', await script('#!/bin/sh\necho one-off\n')])).trim();
  await sleep(1500);
  assert.is(queued('sparcjob').length, 0, 'the schedule is set aside');
  assert.ok(fs.existsSync(path.join(spool, 'new', id)), 'the queued job waits');
  assert.ok(fs.existsSync(path.join(spool, 'schedules', 'sparcjob')), 'the schedule is kept');
  await w.stop('SIGKILL');
  const w2 = worker('sparc', 'w-sparc-2');
  await w2.waitLog(/no work: platform sparc is dropped/);
  assert.ok(fs.existsSync(path.join(spool, 'new', id)), 'a restarted worker does not revive the platform');
  await ok(['undrop-platform', 'sparc']);
  await until('the queued job ran', () => fs.readdirSync(path.join(spool, 'done')).some((n) => doneIds(n).includes(id)), 15_000);
  await until('the schedule fires again', () => doneIds('sparcjob').length === 1, 15_000);
});

test('hand edits take effect: a written schedule fires within a second, a broken edit goes to bad/ once settled (2 s), a deleted one stops', async () => {
  worker('debian-12');
  await drop(spool, 'schedules', 'byhand', 'platform: debian-12\nschedule: @daily\n\n#!/bin/sh\necho by hand\n');
  await until('hand-written schedule ran', () => doneIds('byhand').length === 1, 20_000);   // a cold workerd and a whole job on a slow machine
  await drop(spool, 'schedules', 'byhand', 'platform: debian-12\nschedule: 0 25 * * *\n\n#!/bin/sh\necho by hand\n');
  const why = await until('bad edit rejected', () => fs.readdirSync(path.join(spool, 'bad')).find((f) => f.startsWith('schedules.byhand.') && f.endsWith('.why')), 5_000);
  assert.match(fs.readFileSync(path.join(spool, 'bad', why), 'utf8'), /schedules\/byhand:2: bad schedule '0 25 \* \* \*': hour field '25'/);
  await drop(spool, 'schedules', 'gone', 'platform: debian-12\nschedule: never\n\n#!/bin/sh\necho\n');
  await s.waitLog(/scheduled name=gone/, 5_000);
  await fsp.rm(path.join(spool, 'schedules', 'gone'));
  await s.waitLog(/unscheduled name=gone/, 5_000);
  assert.ok(s.child.exitCode === null);
});

test('a schedule written in place, slowly (an editor, cat > file), is not taken for a broken one while it is written', async () => {
  worker('debian-12');
  for (const name of ['fresh', 'fresh2']) {
    // Written straight into schedules/: first nothing, then the headers, then the script.
    const fd = fs.openSync(path.join(spool, 'schedules', name), 'w');
    await sleep(400);
    fs.writeSync(fd, 'platform: debian-12\nschedule: @daily\n');
    await sleep(400);
    fs.writeSync(fd, '\n#!/bin/sh\necho written slowly\n');
    fs.closeSync(fd);
  }
  await until('both ran', () => doneIds('fresh').length === 1 && doneIds('fresh2').length === 1, 20_000);
  assert.equal(fs.readdirSync(path.join(spool, 'bad')), []);
  assert.is(fs.readFileSync(path.join(spool, 'done', 'fresh', doneIds('fresh')[0]!, 'console.log'), 'utf8'), 'written slowly\n');
});

test('spoold warns about a worker whose platform has no job, schedule or template', async () => {
  worker('typo-platform');
  await s.waitLog(/warning worker=w-typo-platform platform=typo-platform why="no queued job, schedule or template/);
});

// Found by a new user: a schedule removed by hand leaves its state/NAME (on
// purpose: an editor may save by moving the file away), and a bctl schedule
// under that name then did not run at once; bctl unschedule refused to
// remove that state ("no schedule").
test('bctl schedule under the name of a schedule removed by hand runs at once, saying it removed the old state; unschedule removes what such a schedule left', async () => {
  worker('debian-12');
  const sh = await script('#!/bin/sh\necho hi\n');
  await ok(['schedule', 'again', 'debian-12', sh, '--period', 'hourly']);
  await until('first run recorded', () => doneIds('again').length === 1 && /^last-status: exited 0$/m.test(state('again')));
  fs.rmSync(path.join(spool, 'schedules', 'again'));
  await s.waitLog(/unscheduled name=again/);
  const r = await bctl(spool, ['schedule', 'again', 'debian-12', sh, '--period', 'hourly']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, 'bctl: removed state/again, left by an earlier schedule again removed by hand, so that this one runs at once\n');
  await until('second run, at once, recorded', () => doneIds('again').length === 2 && /^last-status: exited 0$/m.test(state('again')), 10_000);
  fs.rmSync(path.join(spool, 'schedules', 'again'));
  const u = await bctl(spool, ['unschedule', 'again']);
  assert.is(u.code, 0, u.stderr);
  assert.match(u.stderr, /^bctl: no schedule again \(removed by hand\); removing what it left: state\/again and its jobs waiting in new\/$/m);
  assert.not.ok(fs.existsSync(path.join(spool, 'state', 'again')));
  const none = await bctl(spool, ['unschedule', 'again']);
  assert.is(none.code, 1);
  assert.match(none.stderr, /no schedule again/);
});

// Found in review: a firing whose state/NAME could not be written (here a
// directory stands in its place) was not recorded, so the schedule was due
// again at once, for ever: an @hourly job ran 88 times in 6 s.
test('a schedule whose state/NAME cannot be written fires once in its period, not again and again', async () => {
  worker('debian-12');
  fs.mkdirSync(path.join(spool, 'state', 'stuck'));
  await drop(spool, 'schedules', 'stuck', 'platform: debian-12\nschedule: @hourly\n\n#!/bin/sh\necho once\n');
  await until('first run', () => doneIds('stuck').length === 1);
  await s.waitLog(/error file=state\/stuck why=".*spoold keeps the state in memory and writes it at each rescan until it can/);
  await sleep(2000);
  assert.is(doneIds('stuck').length, 1, 'fired once in its hour');
  assert.is(queued('stuck').length, 0);
  // Mended as the message says: the state is written at the next rescan, and the schedule does not fire again.
  fs.rmdirSync(path.join(spool, 'state', 'stuck'));
  await until('the state written', () => /^fired: /m.test(state('stuck')), 10_000);
  await sleep(1000);
  assert.is(doneIds('stuck').length, 1, 'still once in its hour');
  assert.is(s.log().match(/error file=state\/stuck/g)?.length, 1, 'the failing write was logged once');
});

// Found in review: the skip of a schedule whose last instance still waits
// counted every platform, so a template schedule whose job waited on one
// platform (no worker there) queued nothing on the others either.
test('a template schedule whose instance still waits on one platform fires on the others all the same', async () => {
  await drop(spool, 'templates', 'tw.template.idle-plat', '#!/bin/sh\necho idle\n');
  await drop(spool, 'templates', 'tw.template.busy-plat', '#!/bin/sh\necho busy\n');
  await drop(spool, 'schedules', 'tw', 'template: tw\nschedule: @hourly\n');
  worker('busy-plat');
  await until('first firing: one run, one waiting', () => doneIds('tw').length === 1 && queued('tw').length === 1);
  await ok(['reschedule', 'tw', iso(Date.now() + 1000)]);
  await until('second run on busy-plat', () => doneIds('tw').length === 2, 10_000);
  await s.waitLog(/skipped name=tw platform=idle-plat why="its last instance still waits in new\/"/);
  assert.is(queued('tw').length, 1, 'still one instance waiting on idle-plat, not two');
});

// Found in review: a schedule file spoold could not read (EACCES: spoold
// runs as its own user) threw out of the rescan, so no schedule fired at all,
// and dispatch and the rest of every periodic rescan were skipped.
test('a schedule file spoold cannot read is logged once and holds up no other schedule', async () => {
  await s.stop('SIGTERM');
  const nobody = { uid: 65534, gid: 65534 };
  await drop(spool, 'schedules', 'secret', 'platform: debian-12\nschedule: @hourly\n\n#!/bin/sh\necho hidden\n');
  await drop(spool, 'schedules', 'open', 'platform: debian-12\nschedule: @hourly\n\n#!/bin/sh\necho open\n');
  for (const f of [spool, ...fs.readdirSync(spool, { recursive: true, encoding: 'utf8' }).map((f) => path.join(spool, f))]) fs.lchownSync(f, nobody.uid, nobody.gid);
  fs.chownSync(path.join(spool, 'schedules', 'secret'), 0, 0);
  fs.chmodSync(path.join(spool, 'schedules', 'secret'), 0o600);
  const d = daemon('spoold', ['-s', spool, '--lease', '2s', '--heartbeat', '400ms'], {}, nobody);
  procs.push(d);
  await until('the readable schedule fired', () => queued('open').length === 1);
  await d.waitLog(/error file=schedules\/secret why=".*EACCES.*it is not fired until spoold can read it/);
  await sleep(5500);   // past a periodic rescan
  assert.is(d.log().match(/file=schedules\/secret/g)?.length, 1, 'logged once');
  worker('debian-12');
  await until('the queued job ran (dispatch goes on)', () => doneIds('open').length === 1);
  fs.chownSync(path.join(spool, 'schedules', 'secret'), nobody.uid, nobody.gid);
  await until('made readable, it fires at the next rescan', () => doneIds('secret').length === 1, 10_000);
});


// Found by a tester editing state/NAME by hand: a bad line (a next: in the
// wrong format) was dropped without a word by a running spoold, and after a
// restart the schedule fired at once and its state was written over.
test('a state file broken by a hand edit holds its schedule, logged once and shown held, without being written over by spoold or bctl; fixed, the schedule goes on', async () => {
  const w = worker('debian-12');
  await ok(['schedule', 'kept', 'debian-12', await script('#!/bin/sh\necho kept\n'), '--period', 'hourly']);
  await until('first run recorded', () => doneIds('kept').length === 1 && /^last-status: exited 0$/m.test(state('kept')));
  const good = state('kept');
  const broken = `${good}next: 2026-12-01 10:00\n`;
  await drop(spool, 'state', 'kept', broken);
  await s.waitLog(/error file=state\/kept why="state\/kept:\d+: .*schedule kept is held until state\/kept is fixed, or removed \(it then fires at once\)"/);
  const info = await bctl(spool, ['info']);
  // LAST, which the broken state cannot say, is the newest result of the name (it showed -).
  assert.match(info.stdout, /^ +kept +debian-12 +@hourly +held +exited 0$/m, info.stdout);
  assert.match(info.stdout, /state\/kept:\d+: .*held/);
  // Restarted, spoold holds it too: it neither fires nor writes over the file.
  await s.stop('SIGTERM');
  s = start();
  await s.waitLog(/error file=state\/kept why=.*is held/);
  await sleep(2000);
  assert.is(doneIds('kept').length, 1, 'held: not fired');
  assert.equal(queued('kept'), []);
  assert.is(state('kept'), broken, 'the hand edit is left for the person to fix');
  assert.is(s.log().match(/file=state\/kept/g)?.length, 1, 'logged once');
  // Found in review: bctl reschedule, execute and cancel read such a file as empty and wrote over it.
  const re = await bctl(spool, ['reschedule', 'kept', iso(Date.now() + 60_000)]);
  assert.is(re.code, 1, re.stderr);
  assert.match(re.stderr, /^bctl: state\/kept:\d+: .*schedule kept is held until state\/kept is fixed, or removed/);
  await w.stop('SIGTERM');
  const ex = await bctl(spool, ['execute', 'kept']);
  assert.is(ex.code, 0, ex.stderr);
  assert.match(ex.stderr, /schedule kept is held .*; its jobs above are queued all the same, and it is left as it is/);
  const ca = await bctl(spool, ['cancel', ex.stdout.trim()]);
  assert.is(ca.code, 0, ca.stderr);
  assert.match(ca.stderr, /^bctl: canceled; not recorded: state\/kept:\d+: /);
  assert.is(state('kept'), broken, 'bctl wrote nothing over the hand edit');
  worker('debian-12', 'w-again');
  // Fixed (a good next: a second away), it fires then.
  await drop(spool, 'state', 'kept', `${good}next: ${iso(Date.now() + 1000)}\n`);
  await until('fired at the fixed next:', () => doneIds('kept').length === 2, 10_000);
});

test.run();
