// bctl fsck end to end: silent on a sound spool made by bctl and by hand,
// one line per planted violation otherwise, and quiet about the leftovers
// spoold cleans while spoold (its lock) is there.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { bctl, tmpdir, FIXTURES } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';
import { formatJob, submission } from '../src/spool/job.js';
import { formatResult } from '../src/spool/result.js';
import { newId } from '../src/spool/ids.js';
import { claim } from '../src/spool/state.js';
import { takeLock } from '../src/spool/lock.js';
import { mkdirSpool } from '../src/spool/stage.js';

let spool = '';
let sp: SpoolPaths;
const cleanup: Array<() => Promise<void>> = [];

test.before.each(async () => {
  spool = await tmpdir('bctl-fsck');
  sp = new SpoolPaths(spool);
  const dir = spool;
  cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }));
  await ensureSpool(sp);
});
test.after.each(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const OK = path.join(FIXTURES, 'ok.sh');
const sum = (s: string) => createHash('sha256').update(s).digest('hex');

/** A finished job as spoold leaves it: done/NAME/ID with every file, and latest. */
async function doneJob(name = 'hello'): Promise<{ id: string; dir: string }> {
  const id = newId();
  const queued = new Date('2026-01-01T00:00:00Z');
  const job = submission({ name, platform: 'debian-12', body: '#!/bin/sh\ntrue\n', id, queued });
  const dir = sp.doneDir(name, id);
  await fsp.mkdir(path.join(dir, 'artifacts', 'sub'), { recursive: true });
  await fsp.chmod(sp.doneName(name), 0o2775);   // as spoold makes it, whatever the umask
  await fsp.writeFile(path.join(dir, 'job'), formatJob(job));
  await fsp.writeFile(path.join(dir, 'result'), formatResult({ id, name, platform: 'debian-12', worker: 'w1', attempt: 1, queued, started: queued, finished: new Date('2026-01-01T00:00:02Z'), status: { kind: 'exited', code: 0 } }));
  await fsp.writeFile(path.join(dir, 'console.log'), 'ok\n');
  await fsp.writeFile(path.join(dir, 'artifacts', 'a.txt'), 'a\n');
  await fsp.writeFile(path.join(dir, 'artifacts', 'sub', 'b.txt'), 'b\n');
  await fsp.symlink('a.txt', path.join(dir, 'artifacts', 'link'));   // links inside artifacts/ are fine
  await fsp.writeFile(path.join(dir, 'SHA256SUMS'), `${sum('a\n')}  a.txt\n${sum('b\n')}  sub/b.txt\n`);
  await fsp.rm(sp.latest(name), { force: true });
  await fsp.symlink(id, sp.latest(name));
  return { id, dir };
}

/** A sound spool: made with bctl (schedules, queue, a canceled job, a dropped platform) and by hand (a done job, bad/). */
async function soundSpool(): Promise<void> {
  const ok = async (args: string[]) => { const r = await bctl(spool, args); assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`); return r.stdout.trim(); };
  await ok(['schedule', 'nightly', 'debian-12', OK]);
  await ok(['orb-build', 'orb', 'hello', '--platform', 'sparc']);
  await bctl(spool, ['execute', 'orb']);   // template missing: recorded failed in done/orb/
  const [a] = (await ok(['submit', 'debian-12', OK, OK])).split('\n');
  await ok(['cancel', a!]);
  await ok(['drop-platform', 'sparc']);
  await doneJob();
  await fsp.writeFile(path.join(sp.bad, 'new.x.1'), 'junk\n');
  await fsp.writeFile(path.join(sp.bad, 'new.x.1.why'), 'new/x:1: junk\n');
}

async function fsck(): Promise<{ code: number | null; lines: string[]; stderr: string }> {
  const r = await bctl(spool, ['fsck']);
  return { code: r.code, lines: r.stdout.split('\n').filter((l) => l !== ''), stderr: r.stderr };
}

test('fsck is silent and exits 0 on a sound spool', async () => {
  await soundSpool();
  const r = await fsck();
  assert.equal(r.lines, []);
  assert.is(r.stderr, '');
  assert.is(r.code, 0);
});

test('fsck reports each planted violation on its own line, naming the path and the fix', async () => {
  await soundSpool();
  const plant: Array<[RegExp, () => Promise<unknown>]> = [];
  const p = (re: RegExp, f: () => Promise<unknown>) => plant.push([re, f]);

  // new/
  p(/^bctl fsck: new\/junk: line 1: expected 'key: value'.*; fix it, or let spoold move it to bad\/$/, () => fsp.writeFile(path.join(sp.new, 'junk'), 'junk\n'));
  const mismatched = newId();
  p(new RegExp(`^bctl fsck: new/${mismatched}: line 1: id \\S+ differs from the file name`), async () => {
    const job = submission({ name: 'm', platform: 'p', body: 'true\n', id: newId() });
    await fsp.writeFile(sp.queued(mismatched), formatJob(job));
  });
  // one owner per state
  let twice = '';
  p(/^bctl fsck: new\/(\S+): job \S+ is also in done\/hello\/\S+; a job has one state/, async () => {
    const { id, dir } = await doneJob();
    twice = id;
    await fsp.copyFile(path.join(dir, 'job'), sp.queued(id));
  });
  // running/
  const leftover = newId();
  p(new RegExp(`^bctl fsck: running/${leftover}: no job file \\(left by a crash\\); start spoold`), async () => mkdirSpool(sp.runningDir(leftover)));
  // Found by a tester: bctl cancel run by root under umask 022 made done/NAME 2755, and spoold, the spool's user, could store no more results of NAME.
  // The spool is root's here, as the test is: root writes anywhere, which hid this
  // (found by a tester), but the spool's group, whose members run bctl and spoold, cannot.
  p(/^bctl fsck: done\/locked: owned by uid 0, group \d+, mode 2755: the spool's group \(\d+\) cannot write it, so bctl run by its members, or spoold run as one, cannot store results there; chmod 2775 done\/locked$/, async () => {
    await fsp.mkdir(sp.doneName('locked'));
    await fsp.chmod(sp.doneName('locked'), 0o2755);
  });

  // done/NAME/ID contents
  let noConsole = '';
  p(/^bctl fsck: done\/hello\/(\S+)\/console\.log: missing; create it empty/, async () => { const { id, dir } = await doneJob(); noConsole = id; await fsp.rm(path.join(dir, 'console.log')); });
  p(/^bctl fsck: done\/hello\/\S+\/result: line 10: bad status 'finished'/, async () => {
    const { dir } = await doneJob();
    await fsp.writeFile(path.join(dir, 'result'), fs.readFileSync(path.join(dir, 'result'), 'utf8').replace('status: exited 0', 'status: finished'));
  });
  p(/^bctl fsck: done\/hello\/\S+\/artifacts: not a directory/, async () => {
    const { dir } = await doneJob();
    await fsp.rm(path.join(dir, 'artifacts'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'artifacts'), '');
  });
  p(/^bctl fsck: done\/hello\/\S+\/artifacts\/a\.txt: sha256 [0-9a-f]{64} differs from SHA256SUMS/, async () => {
    const { dir } = await doneJob();
    await fsp.writeFile(path.join(dir, 'artifacts', 'a.txt'), 'tampered\n');
  });
  p(/^bctl fsck: done\/hello\/\S+\/artifacts\/extra\.bin: not listed in SHA256SUMS/, async () => {
    const { dir } = await doneJob();
    await fsp.writeFile(path.join(dir, 'artifacts', 'extra.bin'), 'x');
  });
  p(/^bctl fsck: done\/hello\/\S+\/SHA256SUMS: lists gone\.txt, which is not a file under artifacts\//, async () => {
    const { dir } = await doneJob();
    await fsp.appendFile(path.join(dir, 'SHA256SUMS'), `${sum('gone\n')}  gone.txt\n`);
  });
  p(/^bctl fsck: done\/hello\/\S+\/SHA256SUMS: lists link, which is a symlink/, async () => {
    const { dir } = await doneJob();
    await fsp.appendFile(path.join(dir, 'SHA256SUMS'), `${sum('a\n')}  link\n`);
  });
  // latest
  p(/^bctl fsck: done\/other\/latest: points to "01[0-9a-f-]+", not a job directory in done\/other; point it at the newest job/, async () => {
    await doneJob('other');
    await fsp.rm(sp.latest('other'));
    await fsp.symlink(newId(), sp.latest('other'));
  });
  p(/^bctl fsck: done\/nolatest\/latest: missing; point it at the newest job: ln -sfn 01[0-9a-f-]{34} done\/nolatest\/latest$/, async () => {
    await doneJob('nolatest');
    await fsp.rm(sp.latest('nolatest'));
  });
  // Found by a new user: with every job of the name pruned, fsck said to point latest at "the newest job".
  p(/^bctl fsck: done\/pruned\/latest: points to "01[0-9a-f-]+", not a job directory in done\/pruned; no job of pruned is left: rm done\/pruned\/latest$/, async () => {
    const { dir } = await doneJob('pruned');
    await fsp.rm(dir, { recursive: true });
  });
  // tmp/, schedules/, state/, bad/
  p(/^bctl fsck: tmp\/stale\.123: staged write never published \(spoold is not running\); remove it \(spoold removes it at its next start if the process that wrote it is gone, or once it is an hour old\)$/, () => fsp.writeFile(path.join(sp.tmp, 'stale.123'), 'x'));
  p(/^bctl fsck: schedules\/broken: line 2: unknown header 'platfrom'/, () => fsp.writeFile(sp.schedule('broken'), 'name: broken\nplatfrom: x\n\ntrue\n'));
  p(/^bctl fsck: state\/nightly: line 1: unknown header 'fried'/, () => fsp.writeFile(sp.scheduleState('nightly'), 'fried: 2026-01-01T00:00:00Z\n'));
  p(/^bctl fsck: bad\/lonely: no \.why beside it; write why it was set aside into bad\/lonely\.why$/, () => fsp.writeFile(path.join(sp.bad, 'lonely'), 'x'));
  // modes and symlinks
  p(/^bctl fsck: schedules\/nightly: world-writable \(mode 666\); chmod o-w schedules\/nightly$/, () => fsp.chmod(sp.schedule('nightly'), 0o666));
  p(/^bctl fsck: schedules\/linked: unexpected symlink; only done\/NAME\/latest and files inside artifacts\/ may be symlinks/, () => fsp.symlink('/etc/passwd', sp.schedule('linked')));
  // A link in place of a done job's console.log or artifacts/: said once, not also as 'not a regular file' (found by a tester).
  for (const f of ['console.log', 'artifacts']) {
    p(new RegExp(`^bctl fsck: done/linked-${f.replace('.', '')}/\\S+/${f.replace('.', '\\.')}: unexpected symlink`), async () => {
      const { dir } = await doneJob(`linked-${f.replace('.', '')}`);
      await fsp.rm(path.join(dir, f), { recursive: true });
      await fsp.symlink('/etc', path.join(dir, f));
      if (f === 'artifacts') await fsp.writeFile(path.join(dir, 'SHA256SUMS'), '');
    });
  }

  p(/^bctl fsck: done\/foreign: owned by uid 12345, group 12345, mode 2775: the spool's group \(\d+\) cannot write it, so bctl run by its members, or spoold run as one, cannot store results there; chgrp \d+ done\/foreign && chmod 2775 done\/foreign$/, async () => {
    await fsp.mkdir(sp.doneName('foreign'));
    await fsp.chmod(sp.doneName('foreign'), 0o2775);
    await fsp.chown(sp.doneName('foreign'), 12345, 12345);
  });
  for (const [, f] of plant) await f();
  // A 0755 templates/ is sound (spoold only reads it): no line (below).
  await fsp.chmod(sp.templates, 0o755);
  // What spoold set aside in bad/ as it was, a link too, beside its .why, is no problem (a daily fsck would fail for ever).
  await fsp.symlink('/etc/passwd', path.join(sp.bad, 'new.alink.1'));
  await fsp.writeFile(path.join(sp.bad, 'new.alink.1.why'), 'new/alink is not a regular file (a symlink)\n');
  const r = await fsck();
  assert.is(r.code, 1);
  assert.is(r.stderr, '');
  const unmatched = [...r.lines];
  for (const [re] of plant) {
    const i = unmatched.findIndex((l) => re.test(l));
    assert.ok(i >= 0, `expected a line matching ${re} in:\n${r.lines.join('\n')}`);
    unmatched.splice(i, 1);
  }
  assert.equal(unmatched, [], 'no other lines');
  assert.ok(twice !== '' && noConsole !== '');
});

test('fsck leaves tmp/ and running/ leftovers to a running spoold (lock held)', async () => {
  await soundSpool();
  const leftover = newId();
  mkdirSpool(sp.runningDir(leftover));
  await fsp.writeFile(path.join(sp.tmp, 'staging.1'), 'x');
  const before = await fsck();
  assert.is(before.lines.length, 2, before.lines.join('\n'));
  const release = await takeLock(sp, () => {}, false);
  cleanup.push(release);
  const during = await fsck();
  assert.equal(during.lines, []);
  assert.is(during.code, 0);
});

test('fsck checks a claimed job in running/ and a broken one', async () => {
  await soundSpool();
  const id = fs.readdirSync(sp.new)[0]!;
  assert.ok(await claim(sp, id));
  assert.equal((await fsck()).lines, [], 'a claimed job with its job file is sound');
  fs.writeFileSync(sp.runningFile(id, 'job'), 'name: x\n');
  const r = await fsck();
  assert.is(r.code, 1);
  assert.equal(r.lines.length, 1);
  assert.match(r.lines[0]!, new RegExp(`^bctl fsck: running/${id}/job: .*missing header 'platform'|^bctl fsck: running/${id}/job: .*no script`));
});

test('a fifo or a link where a spool file belongs is reported by fsck and info, not waited on', async () => {
  await soundSpool();
  const id = fs.readdirSync(sp.new)[0]!;
  assert.ok(await claim(sp, id));
  fs.rmSync(sp.runningFile(id, 'job'));
  execFileSync('mkfifo', [sp.runningFile(id, 'job')]);
  fs.symlinkSync('/dev/zero', sp.runningFile(id, 'lease'));
  execFileSync('mkfifo', [path.join(sp.state, 'fifo')]);
  const r = await bctl(spool, ['fsck'], { timeoutMs: 10_000 });
  assert.is(r.code, 1);
  assert.match(r.stdout, new RegExp(`^bctl fsck: running/${id}/job: not a regular file \\(a fifo\\); remove it; spool files are plain files$`, 'm'));
  assert.match(r.stdout, /^bctl fsck: state\/fifo: not a regular file/m);
  const { id: doneId, dir } = await doneJob('fifo');
  fs.rmSync(path.join(dir, 'result'));
  execFileSync('mkfifo', [path.join(dir, 'result')]);
  const d = await bctl(spool, ['fsck'], { timeoutMs: 10_000 });
  assert.equal(d.stdout.split('\n').filter((l) => l.includes(`done/fifo/${doneId}/result`)), [`bctl fsck: done/fifo/${doneId}/result: not a regular file (a fifo); remove it; spool files are plain files`], 'reported once');
  const i = await bctl(spool, ['info', '--json'], { timeoutMs: 10_000 });
  assert.ok(i.code !== null, 'info returned');
  const errors = JSON.parse(i.stdout).errors.map((e: { file: string }) => e.file);
  assert.ok(errors.includes(`running/${id}/job`), JSON.stringify(errors));
  // Nor is a huge file read whole: it is over the limit spoold applies.
  fs.writeFileSync(path.join(sp.new, 'huge'), Buffer.alloc(2 << 20, 0x61));
  const h = await bctl(spool, ['info', '--json'], { timeoutMs: 10_000 });
  assert.match(JSON.stringify(JSON.parse(h.stdout).errors), /new\/huge: file is 2097152 bytes, over the limit of 1048576/);
});

test('a bad/ that is itself a link elsewhere is reported, though links inside bad/ are not', async () => {
  await soundSpool();
  const elsewhere = `${spool}-elsewhere`;
  fs.mkdirSync(elsewhere);
  fs.rmSync(sp.bad, { recursive: true });
  fs.symlinkSync(elsewhere, sp.bad);
  const r = await fsck();
  fs.rmSync(elsewhere, { recursive: true, force: true });
  assert.is(r.code, 1);
  assert.ok(r.lines.some((l) => /^bctl fsck: bad: unexpected symlink/.test(l)), r.lines.join('\n'));
});

test('fsck of a directory that is no spool fails', async () => {
  const r = await bctl(path.join(spool, 'nope'), ['fsck']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^bctl: .*nope: no spool here \(ENOENT\)/);
  fs.writeFileSync(path.join(spool, 'nope'), 'x');
  fs.mkdirSync(path.join(spool, 'other'));
  fs.writeFileSync(path.join(spool, 'other', 'notes.txt'), 'x');
  const o = await bctl(path.join(spool, 'other'), ['fsck']);
  assert.is(o.code, 1);
  assert.match(o.stderr, /^bctl: .*other: not a spool: none of new\/, running\/, done\/, schedules\/ in it/);
  assert.is(o.stdout, '');
});


// Found by a tester: a file name holding an escape sequence and a newline
// reached the terminal raw from fsck and info (one cleared the screen, the
// other split a problem over two lines); a platforms/ file under no
// platform's name ("debian-12 ", pasted) dropped nothing, and fsck said nothing.
test('fsck and info print odd file names on one line, escaped; a platforms/ file named for no platform is reported', async () => {
  await soundSpool();
  const evil = 'evil\x1b[2J\nname';
  fs.writeFileSync(path.join(sp.new, evil), 'name: x\nplatfrom: d\n\n#!/bin/sh\n');
  fs.writeFileSync(path.join(sp.platforms, 'debian-12 '), '');
  const r = await bctl(spool, ['fsck']);
  assert.is(r.code, 1);
  assert.not.match(r.stdout, /\x1b/);
  assert.match(r.stdout, /^bctl fsck: new\/evil\\x1b\[2J\\nname: .*unknown header 'platfrom'.*$/m);
  assert.match(r.stdout, /^bctl fsck: platforms\/debian-12 : not a platform name, so it drops no platform; rename it to the platform it should drop, or remove it$/m);
  const i = await bctl(spool, ['info']);
  assert.not.match(i.stdout, /\x1b/);
  assert.match(i.stdout, /^ {2}new\/evil\\x1b\[2J\\nname(:\d+)?: .*platfrom/m);
});

test.run();
