// The `ended` message: workerd says its job's process has exited before it
// looks over the job's files and delivers them, so that spoold's backstop
// (daemon.ts stuck()) does not take a slow delivery of a job that ended in
// time for a job that outlived its timeout. End to end: a real workerd against
// a spoold played by the test, and a real spoold against a worker played by
// the test, each on its own socket.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { tmpdir, daemon, until, readIf, sleep, type Daemon } from './lib.js';
import { FakeWorker, packTar, sha256, type JobMsg } from './fakeworker.js';
import { FrameReader, encodeMsg, MAX_FRAME, PROTOCOL_VERSION, T_CONSOLE, T_ARTIFACTS, T_CONTROL, type Msg } from '../src/spool/protocol.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { submission } from '../src/spool/job.js';
import { submit, requestCancel } from '../src/spool/state.js';
import { newId } from '../src/spool/ids.js';
import { parseResult } from '../src/spool/result.js';

let dir = '';
let procs: Daemon[] = [];
let servers: net.Server[] = [];
let fakes: FakeWorker[] = [];

test.before.each(async () => { dir = await tmpdir('ended'); procs = []; servers = []; fakes = []; });
test.after.each(async () => {
  for (const f of fakes) f.destroy();
  for (const p of procs) await p.stop('SIGKILL');
  for (const s of servers) s.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

/**
 * A spoold played by the test: welcomes one workerd (saying `ended: true` or
 * not), hands it one job, and answers its finished with done. Resolves with
 * the messages the worker sent, in order, once it has sent finished.
 */
function fakeSpoold(sockPath: string, takesEnded: boolean, script: string): Promise<Msg[]> {
  return new Promise((resolve, reject) => {
    const got: Msg[] = [];
    const server = net.createServer((s) => {
      const reader = new FrameReader(MAX_FRAME);
      const id = newId();
      s.on('data', (b: Buffer) => {
        let frames;
        try { frames = reader.push(b); } catch (e) { reject(e as Error); return; }
        for (const f of frames) {
          if (f.type !== T_CONTROL) continue;
          if (f.msg.t !== 'ping') got.push(f.msg);
          if (f.msg.t === 'hello') {
            s.write(encodeMsg({ t: 'welcome', v: PROTOCOL_VERSION, heartbeatMs: 1000, ...(takesEnded ? { ended: true } : {}) }));
            s.write(encodeMsg({ t: 'job', id, name: 'fake', platform: 'debian-12', attempt: 1, timeoutMs: 60_000, network: false, script }));
          }
          if (f.msg.t === 'finished') { s.write(encodeMsg({ t: 'done', id })); resolve(got); }
        }
      });
      s.on('error', () => {});
    });
    servers.push(server);
    server.listen(sockPath);
  });
}

test('workerd says ended as its job exits, before its artifacts, to a spoold that takes it; to an older one, never', async () => {
  for (const takes of [true, false]) {
    const spool = path.join(dir, `spool-${takes}`);
    fs.mkdirSync(spool);
    const msgs = fakeSpoold(path.join(spool, 'spoold.sock'), takes, '#!/bin/sh\necho out\necho data > a.txt\nexit 4\n');
    procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', path.join(dir, `wd-${takes}`), 'debian-12']));
    const ts = (await msgs).map((m) => m.t);
    if (takes) {
      assert.equal(ts.filter((t) => t === 'ended'), ['ended'], `said once: ${ts.join(' ')}`);
      assert.ok(ts.indexOf('ended') < ts.indexOf('artifacts'), `before its artifacts: ${ts.join(' ')}`);
    } else {
      assert.not.ok(ts.includes('ended'), `an older spoold is not sent what it does not know: ${ts.join(' ')}`);
    }
    assert.is(ts[ts.length - 1], 'finished');
  }
});

// ---- a real spoold against a worker played by the test --------------------

const HB = 100;   // heartbeats of 100 ms: the backstop's rules come within seconds

async function spooldUp(args = ['--heartbeat', `${HB}ms`, '--lease', '1s']): Promise<string> {
  const spool = path.join(dir, 'spool');
  const d = daemon('spoold', ['-s', spool, ...args]);
  procs.push(d);
  await d.waitLog(/spoold: started/);
  return spool;
}

async function queue(spool: string, name: string, timeoutMs: number): Promise<string> {
  const id = newId();
  await submit(new SpoolPaths(spool), submission({ name, platform: 'evil-1', timeout: timeoutMs, body: '#!/bin/sh\necho\n', id }));
  return id;
}

async function worker(spool: string, name: string): Promise<FakeWorker> {
  const f = await FakeWorker.connect(path.join(spool, 'spoold.sock'));
  fakes.push(f);
  f.hello({ name, keys: true });
  const w = await f.expect('welcome');
  assert.is(w.ended, true, 'spoold says it takes ended');
  f.keepAlive(HB / 2);
  return f;
}

/** A job of `name` queued, and given to a worker of the same name played by the test. */
async function dispatched(spool: string, name: string, timeoutMs: number): Promise<{ id: string; f: FakeWorker; job: JobMsg }> {
  const id = await queue(spool, name, timeoutMs);
  const f = await worker(spool, name);
  const job = await f.expect('job');
  assert.is(job.id, id);
  return { id, f, job };
}

/** Deliver job id as workerd does once it has looked the job's files over: artifacts, manifest, finished `exited 0`; then done. */
async function deliver(f: FakeWorker, id: string, files: Record<string, string> = {}): Promise<void> {
  f.send({ t: 'artifacts', id });
  const entries = Object.entries(files).map(([name, text]) => ({ header: { name, type: 'file' as const, size: Buffer.byteLength(text) }, body: Buffer.from(text) }));
  f.data(T_ARTIFACTS, await packTar(entries));
  f.send({ t: 'manifest', id, files: entries.map((x) => ({ name: x.header.name, type: 'file' as const, size: x.body.length, sha256: sha256(x.body) })) });
  const now = new Date().toISOString();
  f.send({ t: 'finished', id, status: 'exited 0', started: now, finished: now });
  await f.expect('done');
}

const resultOf = async (spool: string, name: string, id: string, ms: number) =>
  parseResult(await until(`result of ${id}`, () => readIf(path.join(spool, 'done', name, id, 'result')), ms), 'result');

test('a job that ended in time, whose delivery comes slowly past the timeout\'s backstop, ends as its worker says', async () => {
  const spool = await spooldUp();
  const { id, f } = await dispatched(spool, 'slowwalk', 1_000);
  f.send({ t: 'ended', id });
  // The backstop would record a job that did not say ended `timeout` 1 s + 5 s
  // + 12 heartbeats (7.2 s) after its dispatch, once quiet for 3 heartbeats:
  // a console byte a second (a workerd looking over a large tree says nothing
  // at all) keeps it under the stall rule (24 heartbeats) only.
  for (let t = 0; t < 10; t++) { f.data(T_CONSOLE, Buffer.from('.')); await sleep(1_000); }
  assert.not.ok(f.closed, `a worker delivering a job that ended is not let go: ${f.bye?.why}`);
  await deliver(f, id, { 'out.txt': 'made\n' });
  const r = await resultOf(spool, 'slowwalk', id, 5_000);
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(fs.readFileSync(path.join(spool, 'done', 'slowwalk', id, 'artifacts', 'out.txt'), 'utf8'), 'made\n');
});

test('a job that said ended may then say nothing while its files are looked over, as long as before it said so', async () => {
  const spool = await spooldUp();
  const { id, f } = await dispatched(spool, 'quietwalk', 60_000);
  f.data(T_CONSOLE, Buffer.from('built\n'));
  f.send({ t: 'ended', id });
  await sleep(4_000);   // 40 heartbeats of nothing but pings: over the stall rule's 24, well before the timeout's backstop
  assert.not.ok(f.closed, `a worker looking over a large tree is not let go: ${f.bye?.why}`);
  await deliver(f, id);
  assert.equal((await resultOf(spool, 'quietwalk', id, 5_000)).status, { kind: 'exited', code: 0 });
});

test('a cancel that comes after the job said ended changes nothing: its files may still be looked over in silence', async () => {
  const spool = await spooldUp();
  const { id, f } = await dispatched(spool, 'latecancel', 60_000);
  f.data(T_CONSOLE, Buffer.from('built\n'));
  f.send({ t: 'ended', id });
  assert.ok(await requestCancel(new SpoolPaths(spool), id), 'the cancel is requested (as bctl cancel does)');
  await f.expect('cancel');
  // A cancel's own limit is 5 s + 6 heartbeats (5.6 s), the stall rule 24 heartbeats (2.4 s) more.
  await sleep(9_000);
  assert.not.ok(f.closed, `a worker looking over a job's files is not let go for a cancel that came after the job: ${f.bye?.why}`);
  await deliver(f, id);
  assert.equal((await resultOf(spool, 'latecancel', id, 5_000)).status, { kind: 'exited', code: 0 });
});

test('a worker that says ended and then streams console without end is let go 120 heartbeats after the backstop, re-attaching or not', async () => {
  const spool = await spooldUp();
  const d = await dispatched(spool, 'flappy', 1_000);
  const { id, job } = d;
  let f = d.f;
  f.send({ t: 'ended', id });
  const t0 = Date.now();
  let lastSwitch = t0;
  let reattaches = 0;
  // Console without end, and a re-attach saying the job ended every 5 s (the cap, 12 s after the backstop's 7.2 s, is 19.2 s away).
  while (!f.closed && Date.now() - t0 < 40_000) {
    f.data(T_CONSOLE, Buffer.from('more\n'));
    await sleep(HB);
    if (Date.now() - lastSwitch < 5_000) continue;
    f.destroy();
    await f.gone;
    const g = await FakeWorker.connect(path.join(spool, 'spoold.sock'));
    fakes.push(g);
    g.hello({ name: 'flappy', keys: true, holding: { id, name: 'flappy', attempt: job.attempt, finished: true, key: job.key } });
    g.keepAlive(HB / 2);
    const m = await g.expectOneOf(['resume', 'bye', 'done', 'not-yours']);
    f = g;
    lastSwitch = Date.now();
    if (m.t !== 'resume') break;
    reattaches++;
    g.send({ t: 'ended', id });
  }
  assert.ok(reattaches >= 3, `re-attached ${reattaches} times`);
  const r = await resultOf(spool, 'flappy', id, 10_000);
  assert.equal(r.status, { kind: 'failed', why: "its console was still coming 12s after the time allowed for the job" });
  // 7.2 s (the backstop) + 12 s (120 heartbeats), give or take a heartbeat or two of checking.
  assert.ok(Date.now() - t0 > 18_000, `not before the cap: after ${Date.now() - t0} ms`);
  assert.match(fs.readFileSync(path.join(spool, 'done', 'flappy', id, 'console.log'), 'utf8'), /^(more\n)+$/);
});

test('a worker back within a long lease, past the cap, with a job that ended meanwhile, delivers it: the cap counts from then', async () => {
  // Heartbeats of 50 ms: the cap of a 1 s job falls 1 s + 5 s + 12 heartbeats + 120 heartbeats (12.6 s) after its dispatch.
  const spool = await spooldUp(['--heartbeat', '50ms', '--lease', '60s']);
  const { id, f, job } = await dispatched(spool, 'longaway', 1_000);
  f.destroy();
  await f.gone;
  await sleep(14_000);   // away past the cap; the job ended meanwhile
  const g = await FakeWorker.connect(path.join(spool, 'spoold.sock'));
  fakes.push(g);
  g.hello({ name: 'longaway', keys: true, holding: { id, name: 'longaway', attempt: job.attempt, finished: true, key: job.key } });
  g.keepAlive(25);
  await g.expect('resume');
  for (let i = 0; i < 30; i++) { g.data(T_CONSOLE, Buffer.from('out\n')); await sleep(50); }   // the rest of its console, over 1.5 s
  assert.not.ok(g.closed, `a worker back within its lease is not let go: ${g.bye?.why}`);
  await deliver(g, id, { 'a.txt': 'x\n' });
  assert.equal((await resultOf(spool, 'longaway', id, 5_000)).status, { kind: 'exited', code: 0 });
});

test('ended for a job the worker does not hold, or after its delivery began, is a protocol violation', async () => {
  const spool = await spooldUp();
  const f = await worker(spool, 'liar');
  f.send({ t: 'ended', id: newId() });
  await f.gone;
  assert.match(f.bye?.why ?? '', /^ended for job \S+, which this worker does not hold or has begun to deliver$/);
  const { id, f: g } = await dispatched(spool, 'late', 60_000);
  g.send({ t: 'artifacts', id });
  g.send({ t: 'ended', id });
  await g.gone;
  assert.match(g.bye?.why ?? '', /which this worker does not hold or has begun to deliver$/);
});

test.run();
