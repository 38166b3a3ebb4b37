// workerd's standby process (src/workerd/run.ts): the job's shell is started
// before the job arrives. What it must keep true: the job runs in its
// directory with its environment, a script that cannot run says why in its
// console, a standby killed while idle costs nothing, and a workdir with
// blanks in its name works.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, bctl, until, run, type Daemon } from './lib.js';
import { LocalJob } from '../src/workerd/run.js';
import { newId } from '../src/spool/ids.js';

let spool = '';
let wd = '';
let procs: Daemon[] = [];
test.before.each(async () => { spool = await tmpdir('standby'); wd = `${spool} work dir`; procs = []; });
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, wd]) await fsp.rm(d, { recursive: true, force: true });
});

async function start(extra: string[] = []): Promise<Daemon> {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  const w = daemon('workerd', ['-s', spool, '--name', 'w1', '--workdir', wd, ...extra, 'debian-12']);
  procs.push(w);
  await s.waitLog(/worker joined worker=w1/);
  return w;
}

async function submit(body: string, name = 'sb'): Promise<{ id: string; result: string; console: string }> {
  const r = await bctl(spool, ['submit', 'debian-12', '-', '--name', name, '--wait'], { input: body });
  const id = r.stdout.trim().split('\n')[0]!;
  const dir = path.join(spool, 'done', name, id);
  await until(`result of ${id}`, () => fs.existsSync(path.join(dir, 'result')));
  return { id, result: fs.readFileSync(path.join(dir, 'result'), 'utf8'), console: fs.readFileSync(path.join(dir, 'console.log'), 'utf8') };
}

/** The idle shell workerd keeps ready: a child of the worker running sh with our script. */
async function standbyPid(w: Daemon): Promise<number> {
  return until('a standby shell', async () => {
    const r = await run('pgrep', ['-P', String(w.child.pid), '-f', 'standby']);
    const pid = Number(r.stdout.trim().split('\n')[0]);
    return pid > 0 ? pid : undefined;
  });
}

test('the job runs in its own directory, with its environment, in a workdir whose name has blanks', async () => {
  await start();
  const { id, result, console } = await submit('#!/bin/sh\necho "id=$BUILDER_JOB_ID name=$BUILDER_JOB_NAME platform=$BUILDER_PLATFORM net=$BUILDER_NETWORK"\necho "dir=$(pwd) jobdir=$BUILDER_JOB_DIR"\nread x || echo "stdin is empty"\necho err >&2\n');
  assert.match(result, /^status: exited 0$/m);
  assert.match(console, new RegExp(`^id=${id} name=sb platform=debian-12 net=no$`, 'm'));
  const dir = path.join(wd, id, 'job');
  assert.match(console, new RegExp(`^dir=${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} jobdir=${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  assert.match(console, /^stdin is empty$/m);
  assert.match(console, /^err$/m);
});

test('a script that cannot be executed ends exited 127 and says why in its console', async () => {
  await start();
  const { result, console } = await submit('#!/nonexistent/interpreter\necho never\n', 'badshebang');
  assert.match(result, /^status: exited 127$/m);
  assert.match(console, /^workerd: cannot run the script: its #! interpreter \/nonexistent\/interpreter is not found or not executable$/m);
  assert.not.match(console, /never/);
});

test('a standby killed while idle is replaced; the next job runs, and its exit is its own', async () => {
  const w = await start();
  const first = await standbyPid(w);
  process.kill(first, 'SIGKILL');
  await until('the killed standby is gone', async () => (await run('kill', ['-0', String(first)])).code !== 0);
  const { result, console } = await submit('#!/bin/sh\necho after\nexit 4\n', 'afterkill');
  assert.match(result, /^status: exited 4$/m);
  assert.match(console, /^after$/m);
  // And a new one waits for the next job.
  assert.not.equal(await standbyPid(w), first);
});

test('--sandbox is a shell command line given the script\'s path as one argument, whatever the workdir is called', async () => {
  // As workerd.8 says: /bin/sh -c 'COMMAND "$@"' sandbox SCRIPT, so assignments and lists work.
  await start(['--sandbox', 'FOO=bar; export FOO; ulimit -n 256; env SANDBOXED=yes']);
  const { id, result, console } = await submit('#!/bin/sh\necho "sandboxed=$SANDBOXED foo=$FOO script=$0"\n', 'sandboxed');
  assert.match(result, /^status: exited 0$/m);
  assert.ok(console.includes(`sandboxed=yes foo=bar script=${path.join(wd, id, 'job', 'script.sh')}\n`), console);
});

test('the script is run by its absolute path ($0), as before the standby', async () => {
  await start();
  const { id, console } = await submit('#!/bin/sh\necho "script=$0"\n', 'dollar0');
  assert.ok(console.includes(`script=${path.join(wd, id, 'job', 'script.sh')}\n`), console);
});

test('waiting for console news that does not come keeps nothing: a job silent for hours does not grow workerd', async () => {
  const j = new LocalJob({ id: newId(), name: 'quiet', platform: 'p', attempt: 1, timeoutMs: 1000, network: false, script: '' }, wd);
  for (let i = 0; i < 2_000; i++) await j.changed(j.version, 0);   // the console pump's wait, a thousand times over
  assert.is((j as unknown as { wake: unknown[] }).wake.length, 0, 'wakers of waits that timed out are gone');
  const news = j.changed(j.version, 60_000);
  j.notify();
  await news;   // news still wakes a waiter at once
});

test.run();
