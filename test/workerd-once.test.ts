// workerd --once: one job, then an exit status a supervisor (load.sh, systemd) can act on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, bctl, until, type Daemon } from './lib.js';

let spool = '';
let procs: Daemon[] = [];
test.before.each(async () => { spool = await tmpdir('once'); procs = []; });
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, `${spool}-wd`, `${spool}-token`]) await fsp.rm(d, { recursive: true, force: true });
});
const exitOf = (d: Daemon) => new Promise<number | null>((r) => { if (d.child.exitCode !== null) r(d.child.exitCode); else d.child.on('close', (c) => r(c)); });
function once(extra: string[] = [], platform = 'debian-12'): Daemon {
  const d = daemon('workerd', ['-s', spool, '--once', '--name', 'jail1', '--workdir', `${spool}-wd`, ...extra, platform]);
  procs.push(d);
  return d;
}

test('--once runs one job, delivers it and exits 0, whatever the job\'s own status', async () => {
  procs.push(daemon('spoold', ['-s', spool, '--heartbeat', '400ms', '--lease', '2s']));
  await procs[0]!.waitLog(/started/);
  const a = (await bctl(spool, ['submit', 'debian-12', '-', '--name', 'first'], { input: '#!/bin/sh\nexit 3\n' })).stdout.trim();
  const b = (await bctl(spool, ['submit', 'debian-12', '-', '--name', 'second'], { input: '#!/bin/sh\necho two\n' })).stdout.trim();
  const w = once();
  assert.is(await exitOf(w), 0);
  assert.match(fs.readFileSync(path.join(spool, 'done', 'first', a, 'result'), 'utf8'), /status: exited 3/);
  assert.ok(fs.existsSync(path.join(spool, 'new', b)), 'the second job waits for the next worker');
});

test('--once exits 75 when spoold cannot be reached', async () => {
  const w = once();
  assert.is(await exitOf(w), 75);
  assert.match(w.log(), /cannot reach spoold .* giving up \(--once\)/);
});

// Found by a new user: a dropped platform made --once exit 78 (bad
// configuration), which its supervisor does not restart, so after an undrop
// no worker of the platform was left.
test('--once exits 78 on a wrong token; on a dropped platform it waits, and runs its job once undropped', async () => {
  await fsp.writeFile(`${spool}-token`, 'right\n');
  procs.push(daemon('spoold', ['-s', spool, '--token-file', `${spool}-token`]));
  await procs[0]!.waitLog(/started/);
  await fsp.writeFile(`${spool}-token`, 'wrong\n');
  const bad = once(['--token-file', `${spool}-token`]);
  assert.is(await exitOf(bad), 78);
  assert.match(bad.log(), /wrong or missing token/);
  await fsp.writeFile(`${spool}-token`, 'right\n');
  assert.is((await bctl(spool, ['drop-platform', 'debian-12'])).code, 0);
  const id = (await bctl(spool, ['submit', 'debian-12', '-', '--name', 'paused'], { input: '#!/bin/sh\necho resumed\n' })).stdout.trim();
  const waiting = once(['--token-file', `${spool}-token`]);
  await waiting.waitLog(/no work: platform debian-12 is dropped/);
  await new Promise((r) => setTimeout(r, 1500));
  assert.is(waiting.child.exitCode, null, 'a --once workerd waits on a dropped platform');
  assert.ok(fs.existsSync(path.join(spool, 'new', id)), 'and the job waits too');
  assert.is((await bctl(spool, ['undrop-platform', 'debian-12'])).code, 0);
  assert.is(await exitOf(waiting), 0);
  assert.is(fs.readFileSync(path.join(spool, 'done', 'paused', id, 'console.log'), 'utf8'), 'resumed\n');
});

// Found by a tester: the default --workdir is a name in /tmp that another
// local user may make first, and workerd ran its jobs in it.
test('a --workdir another user owns, or that others may write, is refused with 78 before anything runs', async () => {
  procs.push(daemon('spoold', ['-s', spool]));
  await procs[0]!.waitLog(/started/);
  const wd = `${spool}-wd`;
  fs.mkdirSync(wd);
  for (const [mode, owner, why] of [[0o777, 0, /is writable by everyone \(mode 0777\)/], [0o770, 0, /is writable by its group \(mode 0770\)/], [0o700, 65534, /is owned by uid 65534, not workerd's \(0\)/]] as const) {
    fs.chmodSync(wd, mode);
    fs.chownSync(wd, owner, 0);
    const w = once();
    assert.is(await exitOf(w), 78);
    assert.match(w.log(), why);
    assert.match(w.log(), /whoever can write it can read and replace the jobs run there; give workerd a directory of its own/);
    assert.equal(fs.readdirSync(wd), [], 'nothing made there');
  }
  fs.chownSync(wd, 0, 0);
  fs.chmodSync(wd, 0o755);
  const id = (await bctl(spool, ['submit', 'debian-12', '-', '--name', 'mine'], { input: '#!/bin/sh\necho ok\n' })).stdout.trim();
  assert.is(await exitOf(once()), 0, 'its own directory, not group- or world-writable, is taken');
  assert.ok(fs.existsSync(path.join(spool, 'done', 'mine', id, 'result')));
});

test('bad usage exits 2 with the reason', async () => {
  const w = once(['--bogus']);
  assert.is(await exitOf(w), 2);
  assert.match(w.log(), /workerd: unknown option --bogus\nusage: workerd/);
  await until('exited', () => w.child.exitCode !== null);
  // Found by a tester: mri read --once=no as --once and a platform `no`.
  const v = once(['--once=no']);
  assert.is(await exitOf(v), 2);
  assert.match(v.log(), /workerd: option --once takes no value \(--once=no\)\nusage: workerd/);
  const twice = once(['--name', 'a', '--name', 'b']);
  assert.is(await exitOf(twice), 2);
  assert.match(twice.log(), /workerd: --name given more than once/);
  // Found by a tester: mri kept the first of -s A --spool B, silently.
  const both = once(['--spool', `${spool}-other`]);
  assert.is(await exitOf(both), 2);
  assert.match(both.log(), /workerd: --spool given more than once/);
});

test.run();
