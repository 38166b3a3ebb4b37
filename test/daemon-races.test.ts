// Races inside spoold that an end-to-end test cannot time: the Daemon class
// in this process, on a real spool in a temporary directory, driven step by
// step (its timers are not started), with fake worker connections. Each test
// is a defect found in review; each fails on the code before its fix.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, until, sleep } from './lib.js';
import { Daemon, ORPHAN_MS } from '../src/spoold/daemon.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';
import { submission, parseJob } from '../src/spool/job.js';
import { submit, claim, finalize } from '../src/spool/state.js';
import { formatResult, parseResult } from '../src/spool/result.js';

type Spool = SpoolPaths;
type D = Daemon;
/** The daemon's private state, which these tests drive. */
interface Inside { running: Map<string, { deadline: number; attempt: number; resetting: Promise<void> | undefined }>; checkLeases(): Promise<void> }
const inside = (d: D) => d as unknown as Inside;

let root = '';
let daemons: D[] = [];
test.before.each(async () => { root = await tmpdir('races'); daemons = []; });
test.after.each(async () => {
  for (const d of daemons) await d.stop();
  await fsp.rm(root, { recursive: true, force: true });
});

/**
 * Make finalize fail until unblock: a directory with a file where the job's
 * done/NAME/ID goes (rename(2) says ENOTEMPTY). A file in place of done/NAME,
 * which these tests used before, is now a stray that finalize moves aside.
 */
function block(sp: Spool, name: string, id: string): void {
  fs.mkdirSync(sp.doneDir(name, id), { recursive: true });
  fs.writeFileSync(path.join(sp.doneDir(name, id), 'in-the-way'), 'in the way\n');
}
const unblock = (sp: Spool, name: string, id: string): void => fs.rmSync(sp.doneDir(name, id), { recursive: true });

async function spool(): Promise<{ sp: Spool; d: D }> {
  const sp = new SpoolPaths(path.join(root, 'spool'));
  await ensureSpool(sp);
  const d = new Daemon(sp, { heartbeatMs: 60_000, leaseMs: 60_000, token: undefined, maxArtifactBytes: 1 << 30, consoleBuffer: 4 << 20 });
  daemons.push(d);
  return { sp, d };
}

/** A job queued in new/ (retries as given), then claimed as a spoold that died after dispatching it would leave it. */
async function claimed(sp: Spool, name: string, retries?: number): Promise<string> {
  const job = submission({ name, platform: 'p', body: '#!/bin/sh\ntrue\n', retries });
  await submit(sp, job);
  assert.ok(await claim(sp, job.id));
  return job.id;
}

/** A connection that said hello for platform p; what spoold sends it is kept. */
function worker(d: D, name = 'w1') {
  const sent: Array<{ t: string; id?: string }> = [];
  const c = { hello: true, closed: false, platform: 'p', name, peer: '', since: new Date(), once: false, send: (m: { t: string }) => { sent.push(m); }, close() { this.closed = true; } };
  d.addConnection(c as never);
  return { c, sent };
}

/** Run f with the clock ahead by ms (adoptOrphans looks at how old a job file is). */
async function later<T>(ms: number, f: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => now() + ms;
  try { return await f(); } finally { Date.now = now; }
}

const resultIn = (sp: Spool, name: string, id: string) => {
  try { return parseResult(fs.readFileSync(path.join(sp.doneDir(name, id), 'result')), 'result'); } catch { return undefined; }
};

test('a job being requeued slowly is not taken over by adoptOrphans meanwhile, and is dispatched from new/ after', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'busy');
  await d.reconcile();                               // waits for its worker
  const r = inside(d).running.get(id)!;
  r.deadline = 0;                                    // whose lease runs out
  r.resetting = sleep(300);                          // a removal of its artifacts the requeue waits for (a busy disk)
  const requeueing = inside(d).checkLeases();
  await sleep(50);                                   // inside the requeue
  await later(ORPHAN_MS + 1000, () => d.adoptOrphans());
  await requeueing;
  assert.ok(fs.existsSync(sp.queued(id)), 'requeued into new/');
  assert.not.ok(inside(d).running.has(id), 'not held as running while it is in new/');
  const w = worker(d);
  d.dispatchAll();
  await until('the job dispatched', () => w.sent.find((m) => m.t === 'job' && m.id === id));
});

// Found in review, twice: the requeue removed the request, so the job ran
// again; then, kept, it waited in new/ for a worker of its platform to claim it.
test('a cancel request that comes as the lease runs out is not lost to the requeue: the job is recorded canceled at once, with no worker', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'late-cancel', 2);
  await d.reconcile();
  const r0 = inside(d).running.get(id)!;
  r0.deadline = 0;
  r0.resetting = sleep(100).then(() => fs.writeFileSync(sp.runningFile(id, 'cancel'), 'canceled: now\n'));   // as the requeue begins, before checkCancels sees it
  await inside(d).checkLeases();
  const r = resultIn(sp, 'late-cancel', id);
  assert.equal(r?.status, { kind: 'canceled' });
  assert.is(r?.attempt, 1, 'the attempt whose lease ran out, and no other');
  assert.not.ok(fs.existsSync(sp.queued(id)), 'not left in new/');
  assert.not.ok(fs.existsSync(sp.runningDir(id)));
});

// Found in review: such a request was honored only at a start or a requeue,
// so the job waited in new/ for a worker of its platform.
test('a cancel request left beside a queued job by a bctl cancel that died before its claim is honored by the periodic scan, with no worker', async () => {
  const { sp, d } = await spool();
  const job = submission({ name: 'half-cancel', platform: 'p', body: '#!/bin/sh\ntrue\n' });
  await submit(sp, job);
  fs.mkdirSync(sp.runningDir(job.id));
  fs.writeFileSync(sp.runningFile(job.id, 'cancel'), 'canceled: now\n');
  await d.adoptOrphans();
  assert.ok(fs.existsSync(sp.queued(job.id)), 'a request this fresh may be a bctl cancel at work: left to it');
  await later(ORPHAN_MS + 1000, () => d.adoptOrphans());
  const r = resultIn(sp, 'half-cancel', job.id);
  assert.equal(r?.status, { kind: 'canceled' });
  assert.is(r?.attempt, 0);
  assert.not.ok(fs.existsSync(sp.queued(job.id)));
});

// Found by a tester: such a job was logged 'waiting' for a worker, and its
// result said attempt 1 though it never started.
test('at start, a claimed job with a cancel request and no lease (a bctl cancel killed after its claim) is recorded canceled at once, attempt 0', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'killed-cancel');
  fs.writeFileSync(sp.runningFile(id, 'cancel'), 'canceled: now\n');
  await d.reconcile();
  const r = resultIn(sp, 'killed-cancel', id);
  assert.equal(r?.status, { kind: 'canceled' });
  assert.is(r?.attempt, 0);
  assert.is(r?.worker, '');
});

// Found in review: a job whose artifacts spoold rejected was given a lease
// when its failed result could not be stored, then run again or recorded lost.
test('an end spoold records itself (failed, by its worker) that the spool would not take is tried again, and the worker cannot take the job back', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'rejected');
  await d.reconcile();
  const r = inside(d).running.get(id)!;
  block(sp, 'rejected', id);
  await (d as unknown as { settle(r: unknown, s: unknown, w: string, t: Date): Promise<void> }).settle(r, { kind: 'failed', why: 'artifacts rejected: test' }, 'w1', new Date());
  assert.is(resultIn(sp, 'rejected', id), undefined);
  const w = worker(d, 'w1');
  await logOf(async () => { d.onHello(w.c as never, { t: 'hello', v: 1, name: 'w1', platform: 'p', holding: { id, name: 'rejected', attempt: 1, finished: true } }); await sleep(50); });
  assert.ok(w.sent.some((m) => m.t === 'not-yours'), `spoold answered ${w.sent.map((m) => m.t).join(',')}`);
  unblock(sp, 'rejected', id);
  await later(60_000, () => inside(d).checkLeases());
  const done = resultIn(sp, 'rejected', id);
  assert.equal(done?.status, { kind: 'failed', why: 'artifacts rejected: test' });
  assert.is(done?.worker, 'w1');
});

test('a lost job whose result the spool would not take once is recorded when it will', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'unlucky', 0);
  await d.reconcile();
  block(sp, 'unlucky', id);    // its done/NAME/ID cannot be made
  inside(d).running.get(id)!.deadline = 0;
  await inside(d).checkLeases();
  assert.is(resultIn(sp, 'unlucky', id), undefined);
  unblock(sp, 'unlucky', id);
  await later(60_000, () => inside(d).checkLeases());   // past the retry delay
  assert.equal(resultIn(sp, 'unlucky', id)?.status, { kind: 'lost' });
});

test('at start, a job with its result in running/ is never queued to run again, also when its finalize fails at first', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'stored', 2);
  const now = new Date();
  fs.writeFileSync(sp.runningFile(id, 'result'), formatResult({ id, name: 'stored', platform: 'p', worker: 'w1', attempt: 1, queued: now, started: now, finished: now, status: { kind: 'exited', code: 0 } }));
  block(sp, 'stored', id);
  await d.reconcile();
  assert.not.ok(inside(d).running.has(id), 'not waiting for a worker, whose lease would requeue it');
  const scans = await logOf(async () => { for (let i = 0; i < 3; i++) await later(ORPHAN_MS + 1000, () => d.adoptOrphans()); });
  assert.is(scans, '', 'each scan tries again, and says nothing new');
  unblock(sp, 'stored', id);
  await later(ORPHAN_MS + 1000, () => d.adoptOrphans());
  assert.equal(resultIn(sp, 'stored', id)?.status, { kind: 'exited', code: 0 });
  assert.not.ok(fs.existsSync(sp.queued(id)));
});

test('a job file changed in new/ so that it no longer parses when it is claimed goes to bad/, and its worker gets the next job', async () => {
  const { sp, d } = await spool();
  const job = submission({ name: 'edited', platform: 'p', body: '#!/bin/sh\ntrue\n' });
  await submit(sp, job);
  const next = submission({ name: 'next', platform: 'p', body: '#!/bin/sh\ntrue\n' });
  await submit(sp, next);
  await d.queue.rescan();
  fs.writeFileSync(sp.queued(job.id), 'platform p\n');              // after it was queued
  const w = worker(d);
  d.dispatchAll();
  await until('the next job dispatched', () => w.sent.find((m) => m.t === 'job' && m.id === next.id));
  assert.not.ok(w.sent.some((m) => m.t === 'job' && m.id === job.id));
  const bad = fs.readdirSync(sp.bad).filter((f) => f.startsWith(`new.${job.id}.`));
  assert.is(bad.length, 2, `bad/ holds ${fs.readdirSync(sp.bad).join(', ')}`);
  assert.match(fs.readFileSync(path.join(sp.bad, bad.find((f) => f.endsWith('.why'))!), 'utf8'), /running\/\S+\/job/);
  assert.not.ok(fs.existsSync(sp.runningDir(job.id)), 'nothing left in running/');
});

test('a job whose worker leaves while it is claimed is queued again at once without counting the attempt', async () => {
  const { sp, d } = await spool();
  const job = submission({ name: 'left', platform: 'p', body: '#!/bin/sh\ntrue\n', retries: 0 });
  await submit(sp, job);
  await d.queue.rescan();
  const w = worker(d);
  d.dispatchAll();
  w.c.closed = true;                                  // gone before the claim is done
  await until('held as running', () => inside(d).running.get(job.id));
  await inside(d).checkLeases();
  assert.ok(fs.existsSync(sp.queued(job.id)), 'queued again, not recorded lost');
  assert.is(parseJob(fs.readFileSync(sp.queued(job.id)), 'job', job.id).attempt, 0);
  assert.not.ok(w.sent.some((m) => m.t === 'job'));
});

/** What f makes spoold log (its log goes to stderr). */
async function logOf(f: () => Promise<void>): Promise<string> {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((b: string | Uint8Array) => { out += String(b); return true; }) as typeof process.stderr.write;
  try { await f(); } finally { process.stderr.write = write; }
  return out;
}

// Found by a chaos test: a spoold starting while a bctl cancel finished the
// queued job it had claimed took the job over too; when bctl's finalize came
// first, spoold's failed, and it tried again every 2 s for ever.
test('a job another writer finalizes while spoold tries to record it is let go, and its result stands', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'raced');
  fs.writeFileSync(sp.runningFile(id, 'cancel'), 'canceled: now\n');
  block(sp, 'raced', id);     // spoold's first finalize fails
  await logOf(() => d.reconcile());
  assert.ok(inside(d).running.has(id), 'held, to be tried again');
  unblock(sp, 'raced', id);
  const job = parseJob(fs.readFileSync(sp.runningFile(id, 'job')), 'job', id);
  const theirs = new Date('2001-02-03T04:05:06Z');
  await finalize(sp, { id, name: 'raced', platform: 'p', worker: '', attempt: 0, queued: job.queued!, started: undefined, finished: theirs, status: { kind: 'canceled' } });
  const said = await logOf(() => later(60_000, () => inside(d).checkLeases()));
  assert.match(said, new RegExp(`forgotten id=${id} name=raced`));
  assert.not.ok(inside(d).running.has(id), 'not tried again');
  assert.is(resultIn(sp, 'raced', id)?.finished.toISOString(), theirs.toISOString());
  assert.not.ok(fs.existsSync(sp.runningDir(id)));
});

// Found in review: a stray that could not be moved aside (bad/ unwritable)
// made a claim that had committed look failed, and the job was stranded.
test('a claim into a running/ID/ with a stray it cannot move aside still claims the job; finalize moves the stray once it can', async () => {
  const { sp } = await spool();
  const job = submission({ name: 'strayed', platform: 'p', body: '#!/bin/sh\necho\n' });
  await submit(sp, job);
  const id = job.id!;
  fs.mkdirSync(sp.runningDir(id));
  fs.symlinkSync('/etc', sp.runningFile(id, 'artifacts'));
  fs.rmSync(sp.bad, { recursive: true });
  fs.writeFileSync(sp.bad, 'not a directory\n');   // nowhere to move strays to
  assert.is(await claim(sp, id), true, 'claimed');
  assert.ok(fs.existsSync(sp.runningFile(id, 'job')) && !fs.existsSync(sp.queued(id)));
  assert.ok(fs.lstatSync(sp.runningFile(id, 'artifacts')).isSymbolicLink(), 'the stray stays for now');
  fs.rmSync(sp.bad);
  fs.mkdirSync(sp.bad);
  const now = new Date();
  await finalize(sp, { id, name: 'strayed', platform: 'p', worker: 'w', attempt: 1, queued: now, started: now, finished: now, status: { kind: 'exited', code: 0 } });
  const done = sp.doneDir('strayed', id);
  assert.ok(fs.lstatSync(path.join(done, 'artifacts')).isDirectory(), 'a real artifacts/ in done/');
  assert.ok(fs.readdirSync(sp.bad).some((f) => f.startsWith(`${id}.artifacts.`) && f.endsWith('.why')), 'the stray in bad/ with its why');
});

// Found by a chaos test: a job recorded lost after spoold and its worker were
// killed as it uploaded kept the files that had arrived, with an empty SHA256SUMS.
test('a job recorded lost keeps no half-delivered artifacts', async () => {
  const { sp, d } = await spool();
  const id = await claimed(sp, 'halfway', 0);
  fs.mkdirSync(sp.runningFile(id, 'artifacts'));
  fs.writeFileSync(path.join(sp.runningFile(id, 'artifacts'), 'cut.bin'), 'part of it');
  fs.writeFileSync(sp.runningFile(id, 'SHA256SUMS'), '');
  await d.reconcile();
  inside(d).running.get(id)!.deadline = 0;
  await logOf(() => inside(d).checkLeases());
  assert.equal(resultIn(sp, 'halfway', id)?.status, { kind: 'lost' });
  assert.equal(fs.readdirSync(path.join(sp.doneDir('halfway', id), 'artifacts')), []);
});

// Found by a chaos test: a crash between finalize's rename and the new
// latest link left done/NAME without one for good when NAME ran only once.
test('at start, a done/NAME without latest gets one, pointing at its newest job', async () => {
  const { sp, d } = await spool();
  const ids = [await claimed(sp, 'once'), await claimed(sp, 'once')];
  for (const id of ids) {
    const now = new Date();
    await finalize(sp, { id, name: 'once', platform: 'p', worker: 'w1', attempt: 1, queued: now, started: now, finished: now, status: { kind: 'exited', code: 0 } });
  }
  fs.rmSync(sp.latest('once'));
  const said = await logOf(() => d.reconcile());
  assert.is(fs.readlinkSync(sp.latest('once')), ids.sort()[1]);
  assert.match(said, /mended file=done\/once\/latest/);
});

// Found by a tester: a worker back while its platform's job waited in
// running/ for its worker (a restart) was warned that nothing serves it.
test('a worker that joins while a job of its platform waits in running/ is not warned that it has nothing to do; one of another platform is', async () => {
  const { sp, d } = await spool();
  d.hasWorkFor = async () => false;                  // no schedule or template serves any platform
  await claimed(sp, 'detached');
  await d.reconcile();
  const join = (name: string, platform: string) => logOf(async () => {
    const w = worker(d, name);
    w.c.platform = platform;
    d.onHello(w.c as never, { t: 'hello', v: 1, name, platform });
    await sleep(50);
  });
  assert.not.match(await join('w2', 'p'), /is the platform name right/);
  assert.match(await join('w3', 'q'), /warning worker=w3 platform=q why="no queued job, schedule or template for this platform; is the platform name right\?"/);
  // A job put into new/ just before the worker joins, whose event spoold has not seen yet (no watcher here).
  await submit(sp, submission({ name: 'early', platform: 'r', body: '#!/bin/sh\ntrue\n' }));
  assert.not.match(await join('w4', 'r'), /is the platform name right/);
});

test.run();
