// `npm start` (scripts/start.mjs), the README's first command: spoold, one
// local workerd and the sample job, end to end, and the bctl command it tells
// people to run next. Run from a copy of the script in a temporary checkout
// (dist/, examples/ and node_modules/ linked to ours), so its ./spool is not ours.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ROOT, tmpdir, until, run, readIf } from './lib.js';

let dir = '';
test.after(async () => { if (dir) await fsp.rm(dir, { recursive: true, force: true }); });

test('npm start runs the sample job through spoold and a local workerd, and its hints work', async () => {
  dir = await tmpdir('start');
  await fsp.mkdir(path.join(dir, 'scripts'));
  await fsp.copyFile(path.join(ROOT, 'scripts', 'start.mjs'), path.join(dir, 'scripts', 'start.mjs'));
  for (const d of ['dist', 'examples', 'node_modules']) await fsp.symlink(path.join(ROOT, d), path.join(dir, d));
  // Its own process group, so that the daemons it starts go with it whatever happens.
  const child = spawn(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (b) => { out += b; });
  child.stderr.on('data', (b) => { out += b; });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    // Up to the hints that follow the result: the result comes in a later write than the line before it.
    await until(`the sample job's result in start's output:\n${out}`, () => /the sample job finished[\s\S]*Look at:/.test(out) || child.exitCode !== null, 60_000);
    assert.match(out, /^status: exited 0$/m, out);
    assert.not.match(out, /warning/, 'the first thing a new user sees has no warning (a tester saw spoold warn that the worker had nothing to do)');
    const id = /submitted examples\/hello\.sh as job (\S+)/.exec(out)?.[1];
    assert.ok(id, out);
    assert.ok(fs.existsSync(path.join(dir, 'spool', 'done', 'hello', 'latest', 'console.log')), 'spool/done/hello/latest/ holds the result');
    // The hints it prints, run as printed (from the checkout's directory).
    for (const hint of out.split('\n').filter((l) => /^\s+node dist\/bin\//.test(l)).map((l) => l.trim().split(/\s{2,}/)[0]!)) {
      const r = await run('/bin/sh', ['-c', hint], { cwd: dir });
      assert.is(r.code, 0, `${hint}: ${r.stderr}`);
    }
    // Found by a new user: a second npm start beside the first submitted to the
    // first one's spoold and said "the sample job finished" before its own
    // spoold exited 1.
    const second = await run(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, timeoutMs: 30_000 });
    assert.is(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stderr, /start: spoold did not start \(it exited 1\)/);
    assert.not.match(second.stdout, /submitted|finished/);
    assert.is(fs.readdirSync(path.join(dir, 'spool', 'new')).length, 0, 'the second start submitted nothing');
    // Found by a new user: Ctrl-C (SIGINT to the terminal's process group)
    // reached the daemons too, and the workerd, signalled twice, left its job
    // in running/. Now the worker hands the job back, then spoold stops.
    const long = (await run(process.execPath, [path.join(ROOT, 'dist', 'bin', 'bctl.cjs'), '-s', path.join(dir, 'spool'), 'submit', /for platform (\S+)/.exec(out)![1]!, '-', '--name', 'long'], { input: '#!/bin/sh\necho started\nsleep 60\n' })).stdout.trim();
    await until('the long job runs', () => /started/.test(readIf(path.join(dir, 'spool', 'running', long, 'console.log')) ?? ''), 20_000);
    // Twice within a second, as npm forwards the terminal's one Ctrl-C to a script it runs (found
    // in review; the second after the first was taken, or the two merge into one signal).
    process.kill(-child.pid!, 'SIGINT');
    await until('the stop begun', () => /start: stopping workerd/.test(out), 900);
    process.kill(-child.pid!, 'SIGINT');
    assert.is(await exited, 0, `npm start did not stop cleanly on Ctrl-C:\n${out.slice(-2000)}`);
    assert.ok(fs.existsSync(path.join(dir, 'spool', 'new', long)), `the running job was handed back to new/:\n${out.slice(-2000)}`);
    assert.equal(fs.readdirSync(path.join(dir, 'spool', 'running')), []);
    assert.not.ok(fs.existsSync(path.join(dir, 'spool', 'spoold.sock')), 'spoold stopped');
    // A closed terminal (SIGHUP) stops the daemons too, though they run in process groups of their own (found in review).
    fs.rmSync(path.join(dir, 'spool', 'new', long));   // or the next worker runs its minute first
    const again = spawn(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out2 = '';
    again.stdout.on('data', (b) => { out2 += b; });
    await until('the second start runs its sample job', () => /the sample job finished/.test(out2), 60_000);
    process.kill(again.pid!, 'SIGHUP');
    await until('spoold stopped after SIGHUP', () => !fs.existsSync(path.join(dir, 'spool', 'spoold.sock')), 20_000);
    const noDaemon = () => !fs.readdirSync('/proc').some((p) => /^\d+$/.test(p) && (readIf(`/proc/${p}/cmdline`) ?? '').includes(`${dir}/dist/bin/`));
    await until('no daemon of this checkout left', noDaemon, 20_000);
    // A SIGKILL of start.mjs (the OOM killer, kill -9) runs none of its
    // handlers: its watchdog stops the daemons, spoold cleanly (they ran on).
    const third = spawn(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out3 = '';
    third.stdout.on('data', (b) => { out3 += b; });
    await until('the third start runs its sample job', () => /the sample job finished/.test(out3), 60_000);
    process.kill(third.pid!, 'SIGKILL');
    await until('no daemon of this checkout left after a SIGKILL of start.mjs', noDaemon, 20_000);
    assert.not.ok(fs.existsSync(path.join(dir, 'spool', 'spoold.sock')), 'spoold stopped as on SIGTERM (its socket removed)');
    const watchdogs = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && (readIf(`/proc/${p}/cmdline`) ?? '').includes(`watchdog of ${dir}`));
    await until('no watchdog left: each ended with its start', () => watchdogs().length === 0, 5_000);
    // A SIGKILL during the ordered stop, while workerd waits for a job that
    // traps SIGTERM: the watchdog waits for workerd rather than signal it a
    // second time, which would make it give the job up (found by a tester).
    const fourth = spawn(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out4 = '';
    fourth.stdout.on('data', (b) => { out4 += b; });
    await until('the fourth start runs its sample job', () => /the sample job finished/.test(out4), 60_000);
    const stubborn = (await run(process.execPath, [path.join(ROOT, 'dist', 'bin', 'bctl.cjs'), '-s', path.join(dir, 'spool'), 'submit', /for platform (\S+)/.exec(out)![1]!, '-', '--name', 'stubborn'],
      { input: '#!/bin/sh\ntrap "echo got TERM" TERM\necho started\nwhile :; do sleep 0.2; done\n' })).stdout.trim();
    await until('the stubborn job runs', () => /started/.test(readIf(path.join(dir, 'spool', 'running', stubborn, 'console.log')) ?? ''), 20_000);
    process.kill(-fourth.pid!, 'SIGINT');
    await until('the ordered stop begun', () => /start: stopping workerd/.test(out4), 5_000);
    process.kill(fourth.pid!, 'SIGKILL');
    await until('no daemon left after a SIGKILL during the stop', noDaemon, 40_000);
    assert.ok(fs.existsSync(path.join(dir, 'spool', 'new', stubborn)), 'the job was handed back to new/, not given up');
    assert.equal(fs.readdirSync(path.join(dir, 'spool', 'running')), []);
  } finally {
    // start.mjs and the daemons it started, each in a process group of its own.
    for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      if ((readIf(`/proc/${pid}/cmdline`) ?? '').includes(dir)) { try { process.kill(-Number(pid), 'SIGKILL'); } catch { /* not a leader, or gone */ } }
    }
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* all gone */ }
  }
});

test.run();
