// bctl observe and observe-latest against a running spoold and workerd.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { tmpdir, daemon, bctl, until, BIN, type Daemon } from './lib.js';

let spool = '';
let scripts = '';
let procs: Daemon[] = [];
test.before.each(async () => {
  spool = await tmpdir('observe');
  scripts = await tmpdir('observe-scripts');
  procs = [daemon('spoold', ['-s', spool])];
  await procs[0]!.waitLog(/started/);
});
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, scripts, `${spool}-wd`]) await fsp.rm(d, { recursive: true, force: true });
});
const worker = () => procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
async function script(name: string, body: string): Promise<string> {
  const p = path.join(scripts, name);
  await fsp.writeFile(p, body);
  return p;
}
async function submit(file: string): Promise<string> {
  const r = await bctl(spool, ['submit', 'debian-12', file]);
  assert.is(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test('observe follows a job from the queue through its run, prints its whole console, and exits with its status', async () => {
  const id = await submit(await script('ticks', '#!/bin/sh\nfor i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done\nexit 0\n'));
  // The job is still queued (no worker yet): observe waits, and says so.
  const child = spawn(process.execPath, [BIN('bctl'), '-s', spool, 'observe', id], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r = { stdout: '', stderr: '', code: null as number | null };
  child.stdout.on('data', (b) => { r.stdout += b; });
  child.stderr.on('data', (b) => { r.stderr += b; });
  const closed = new Promise<void>((res) => child.on('close', (c) => { r.code = c; res(); }));
  await until('observe waiting', () => r.stderr.includes('is queued'));
  worker();
  await closed;
  assert.is(r.stdout, 'tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
  assert.match(r.stderr, /is queued; waiting for a worker/);
  assert.match(r.stderr, new RegExp(`${id} exited 0\\n$`));
  assert.is(r.code, 0);
  const again = await bctl(spool, ['observe', id]);        // already done: the same bytes, the same status
  assert.is(again.stdout, r.stdout);
  assert.is(again.code, 0);
});

test('observe exits 1 for a job that did not exit 0; observe-latest finds the newest job by name and platform', async () => {
  worker();
  const bad = await submit(await script('fails', '#!/bin/sh\necho failing\nexit 3\n'));
  const r = await bctl(spool, ['observe', bad]);
  assert.is(r.stdout, 'failing\n');
  assert.match(r.stderr, /exited 3/);
  assert.is(r.code, 1);
  const good = await submit(await script('fine', '#!/bin/sh\necho fine\n'));
  await until('done', () => fs.existsSync(path.join(spool, 'done', 'fine', good, 'result')));
  const l = await bctl(spool, ['observe-latest', '--job', 'fails']);
  assert.is(l.stdout, 'failing\n');
  assert.is(l.code, 1);
  const any = await bctl(spool, ['observe-latest', '--platform', 'debian-12']);
  assert.is(any.stdout, 'fine\n');
  assert.is(any.code, 0);
  const none = await bctl(spool, ['observe-latest', '--platform', 'freebsd']);
  assert.is(none.code, 1);
  assert.match(none.stderr, /no job for platform freebsd is running or done/);
});

test('observe does not follow a link put in place of a console.log (as root it would print any file)', async () => {
  worker();
  const id = await submit(await script('linked', '#!/bin/sh\necho mine\n'));
  const dir = path.join(spool, 'done', 'linked', id);
  await until('done', () => fs.existsSync(path.join(dir, 'result')));
  fs.writeFileSync(`${spool}-secret`, 'TOP SECRET\n', { mode: 0o600 });
  fs.rmSync(path.join(dir, 'console.log'));
  fs.symlinkSync(`${spool}-secret`, path.join(dir, 'console.log'));
  const r = await bctl(spool, ['observe', id]);
  fs.rmSync(`${spool}-secret`);
  assert.is(r.code, 1);
  assert.is(r.stdout, '', "nothing of the link's target");
  assert.is(r.stderr, `bctl: done/linked/${id}/console.log: a symbolic link, not followed; only spoold writes a job's directory; run bctl fsck\n`);
});

test('observe of an unknown id exits 1; a malformed id is a usage error', async () => {
  const r = await bctl(spool, ['observe', '01a21e3b-171c-7029-81fc-d19acecbf8cd']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /no job 01a21e3b/);
  const u = await bctl(spool, ['observe', '../x']);
  assert.is(u.code, 2);
  // Rejected by spoold into bad/: said so, with the file that says why (found by a new user; submit --wait did, observe did not).
  const id = '01a21e3b-171c-7029-81fc-d19acecbf8ce';
  fs.mkdirSync(path.join(spool, 'bad'), { recursive: true });
  fs.writeFileSync(path.join(spool, 'bad', `new.${id}.1764300000000`), 'garbage\n');
  fs.writeFileSync(path.join(spool, 'bad', `new.${id}.1764300000000.why`), 'no name: header\n');
  for (const verb of ['observe', 'cancel']) {
    const b = await bctl(spool, [verb, id]);
    assert.is(b.code, 1, verb);
    assert.is(b.stderr, `bctl: bad/new.${id}.1764300000000: job ${id} was rejected by spoold: it never ran; bad/new.${id}.1764300000000.why says why\n`, verb);
  }
});

test.run();
