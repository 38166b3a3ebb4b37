// Hostile spool input: what people and scripts may drop into new/ and schedules/.
// Each bad file ends in bad/ beside a .why (or is ignored with a log line), and
// nothing else is touched: a good job queued beside them still runs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tmpdir, daemon, until, drop, sleep, queueJob, bctl, readIf, run, BIN, type Daemon } from './lib.js';
import { newId } from '../src/spool/ids.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';

let spool = '';
let procs: Daemon[] = [];
test.before.each(async () => { spool = await tmpdir('hostile-spool'); procs = []; await ensureSpool(new SpoolPaths(spool)); });
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  await fsp.rm(spool, { recursive: true, force: true });
  await fsp.rm(`${spool}-wd`, { recursive: true, force: true });
});

const good = (name: string) => `name: ${name}\nplatform: debian-12\n\n#!/bin/sh\necho fine\n`;
function whys(): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(path.join(spool, 'bad'))) if (f.endsWith('.why')) out.set(f.slice(0, -4), fs.readFileSync(path.join(spool, 'bad', f), 'utf8'));
  return out;
}

test('bad files in new/ go to bad/ with a .why naming the file, the line and the fix; a good job still runs', async () => {
  const passwd = fs.readFileSync('/etc/passwd');
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/);
  await drop(spool, 'new', 'nul', Buffer.from('name: x\nplatform: debian-12\n\n#!/bin/sh\necho \0\n'));
  await drop(spool, 'new', 'huge', Buffer.concat([Buffer.from('name: x\nvar.X: '), Buffer.alloc(10 << 20, 0x61), Buffer.from('\n\nbody\n')]));
  await drop(spool, 'new', 'latin1', Buffer.from([...Buffer.from('name: caf'), 0xe9, ...Buffer.from('\nplatform: debian-12\n\necho\n')]));
  await drop(spool, 'new', 'escape', 'name: ../../etc/passwd\nplatform: debian-12\n\n#!/bin/sh\necho\n');
  await drop(spool, 'new', 'noblank', 'name: x\nplatform: debian-12\n#!/bin/sh\necho\n');
  await drop(spool, 'new', 'leadblank', '\nname: x\nplatform: debian-12\n\n#!/bin/sh\necho\n');
  await drop(spool, 'new', 'midblank', 'name: x\n\nplatform: debian-12\n\n#!/bin/sh\necho\n');
  await drop(spool, 'new', 'typo', 'name: x\nplatfrom: debian-12\n\n#!/bin/sh\necho\n');
  await drop(spool, 'new', 'crlf', 'name: x\r\nplatform: debian-12\r\n\r\necho\r\n');
  await drop(spool, 'new', 'tmpl', 'name: x\nplatform: debian-12\ntemplate: greet\n');
  fs.symlinkSync('/etc/passwd', path.join(spool, 'new', 'link'));
  fs.mkdirSync(path.join(spool, 'new', 'adir'));
  await drop(spool, 'new', '.hidden', 'not a job');
  await drop(spool, 'new', 'ok', good('survivor'));
  const w = await until('twelve rejections', () => { const m = whys(); return m.size >= 12 ? m : undefined; }, 20_000);
  const byFile = (f: string) => [...w.entries()].find(([k]) => k.startsWith(`new.${f}.`))?.[1] ?? '';
  assert.match(byFile('nul'), /new\/nul:5: NUL byte/);
  assert.match(byFile('huge'), /over the limit/);
  assert.match(byFile('latin1'), /new\/latin1:1: file is not valid UTF-8/);
  assert.match(byFile('leadblank'), /new\/leadblank:1: blank line before the header 'name' \(line 2\); the headers end at the first blank line/);
  assert.match(byFile('midblank'), /new\/midblank:2: blank line before the header 'platform' \(line 3\)/);
  assert.match(byFile('escape'), /new\/escape:1: bad job name/);
  assert.match(byFile('noblank'), /new\/noblank:3: .*blank line between the headers and the script/);
  assert.match(byFile('typo'), /new\/typo:2: unknown header 'platfrom'; known: /);
  assert.match(byFile('crlf'), /carriage return/);
  assert.match(byFile('tmpl'), /new\/tmpl:3: a queued job carries its script: a template is expanded when a schedule fires or by bctl execute, not in new\/; put the script after a blank line/);
  assert.match(byFile('link'), /not a regular file \(a symlink\)/);
  assert.match(byFile('adir'), /not a regular file/);
  await until('the good job ran', () => fs.existsSync(path.join(spool, 'done', 'survivor')), 20_000);
  assert.ok(fs.existsSync(path.join(spool, 'new', '.hidden')), 'dot files are ignored');
  assert.ok(fs.lstatSync(path.join(spool, 'bad', [...fs.readdirSync(path.join(spool, 'bad'))].find((f) => f.startsWith('new.link.') && !f.endsWith('.why'))!)).isSymbolicLink(), 'the symlink moved, not its target');
  assert.equal(fs.readFileSync('/etc/passwd'), passwd, 'the symlink target is untouched');
  assert.ok(s.child.exitCode === null, 'spoold keeps running');
  assert.match(s.log(), /rejected file=new\/typo/);
});

test('bad schedules go to bad/ with a .why; good ones fire; spoold goes on', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  await drop(spool, 'schedules', 'badcron', 'platform: debian-12\nschedule: 61 * * * *\n\n#!/bin/sh\necho\n');
  await drop(spool, 'schedules', 'badtz', 'platform: debian-12\nschedule: @daily\ntz: Mars/Olympus\n\n#!/bin/sh\necho\n');
  await drop(spool, 'schedules', 'mismatch', 'name: other\nplatform: debian-12\nschedule: @daily\n\n#!/bin/sh\necho\n');
  await drop(spool, 'schedules', 'nul', Buffer.from('platform: debian-12\nschedule: @daily\n\n\0\n'));
  fs.symlinkSync('/etc/passwd', path.join(spool, 'schedules', 'link'));
  await drop(spool, 'schedules', 'fine', 'platform: debian-12\nschedule: never\n\n#!/bin/sh\necho\n');
  const w = await until('five rejections', () => { const m = whys(); return m.size >= 5 ? m : undefined; }, 20_000);
  const byFile = (f: string) => [...w.entries()].find(([k]) => k.startsWith(`schedules.${f}.`))?.[1] ?? '';
  assert.match(byFile('badcron'), /schedules\/badcron:2: bad schedule '61 \* \* \* \*'/);
  assert.match(byFile('badtz'), /schedules\/badtz:3: unknown time zone 'Mars\/Olympus'/);
  assert.match(byFile('mismatch'), /differs from the file name/);
  assert.match(byFile('nul'), /NUL byte/);
  assert.match(byFile('link'), /not a regular file/);
  assert.ok(fs.existsSync(path.join(spool, 'schedules', 'fine')));
  assert.ok(s.child.exitCode === null);
});

test('a job file dropped under any name is queued under its own id: header when that id is free, refused when taken', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  const id = '01a21e3b-171c-7029-81fc-d19acecbf8cd';
  await drop(spool, 'new', 'mine', `id: ${id}\n${good('withid')}`);
  // Both at once: adopt links the file to its id, then unlinks its first name (a test that looked between the two failed under load).
  await until('adopted under its id, its first name gone', () => fs.existsSync(path.join(spool, 'new', id)) && !fs.existsSync(path.join(spool, 'new', 'mine')));
  await drop(spool, 'new', 'again', `id: ${id}\n${good('withid')}`);
  const why = await until('duplicate refused', () => whys().get([...whys().keys()].find((k) => k.startsWith('new.again.')) ?? ''));
  assert.match(why, new RegExp(`new/again: id ${id} is taken by another job; remove the id: header`));
  assert.ok(fs.existsSync(path.join(spool, 'new', id)), 'the first stays queued');
  // An id finished under another name is taken too: one id, one job.
  const old = '01a21e3b-171c-7029-81fc-d19acecbf8ce';
  fs.mkdirSync(path.join(spool, 'done', 'elsewhere', old), { recursive: true });
  await drop(spool, 'new', 'othername', `id: ${old}\n${good('withid')}`);
  const why2 = await until('taken under another name', () => whys().get([...whys().keys()].find((k) => k.startsWith('new.othername.')) ?? ''));
  assert.match(why2, new RegExp(`new/othername: id ${old} is taken by another job`));
  assert.ok(!fs.existsSync(path.join(spool, 'new', old)));
});

test('a finished job copied back into new/ under its own id goes to bad/ saying how to run it again; the worker goes on', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/);
  await drop(spool, 'new', 'first', good('rerun'));
  const latest = path.join(spool, 'done', 'rerun', 'latest');
  const id = await until('the first run', () => { try { return fs.readlinkSync(latest); } catch { return undefined; } }, 20_000);
  await drop(spool, 'new', id, fs.readFileSync(path.join(spool, 'done', 'rerun', id, 'job')));
  const why = await until('the copy refused', () => whys().get([...whys().keys()].find((k) => k.startsWith(`new.${id}.`)) ?? ''), 20_000);
  assert.match(why, new RegExp(`new/${id}: job ${id} has finished already \\(done/rerun/${id}\\); to run it again, put a copy into new/ under another name, without its id: header`));
  assert.ok(!fs.existsSync(path.join(spool, 'new', id)));
  await drop(spool, 'new', 'next', good('afterwards'));
  await until('the worker takes the next job', () => fs.existsSync(path.join(spool, 'done', 'afterwards', 'latest')), 20_000);
  assert.equal(fs.readdirSync(path.join(spool, 'done', 'rerun')).sort(), [id, 'latest'].sort(), 'the finished job is untouched');
  assert.not.match(s.log(), /cannot finalize/);
});

test('a fifo or a link in running/ID/ (job, result, lease) hangs nothing: spoold starts, names the file, and runs other jobs', async () => {
  const ids = ['01a22045-dff8-700e-8fbb-48b8f7705a49', '01a22045-dff8-700e-8fbb-48b8f7705a4a', '01a22045-dff8-700e-8fbb-48b8f7705a4b'];
  const job = (id: string) => `id: ${id}\nname: held\nplatform: debian-12\n\n#!/bin/sh\necho\n`;
  for (const id of ids) fs.mkdirSync(path.join(spool, 'running', id));
  execFileSync('mkfifo', [path.join(spool, 'running', ids[0]!, 'job')]);
  fs.writeFileSync(path.join(spool, 'running', ids[1]!, 'job'), job(ids[1]!));
  execFileSync('mkfifo', [path.join(spool, 'running', ids[1]!, 'result')]);
  fs.writeFileSync(path.join(spool, 'running', ids[2]!, 'job'), job(ids[2]!));
  execFileSync('mkfifo', [path.join(spool, 'running', ids[2]!, 'lease')]);
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/, 10_000);
  assert.match(s.log(), new RegExp(`error file=running/${ids[0]}/job why="running/${ids[0]}/job: not a regular file \\(a fifo\\); fix or remove it by hand"`));
  assert.match(s.log(), new RegExp(`running/${ids[1]}/result: not a regular file`));
  assert.match(s.log(), new RegExp(`waiting id=${ids[2]}`));
  await drop(spool, 'new', 'ok', good('survivor'));
  await until('a new job still runs', () => fs.existsSync(path.join(spool, 'done', 'survivor')), 20_000);
});

test('a bad file with a 250-byte name, or a newline in its name, goes to bad/ too, with a one-line .why', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  const long = 'x'.repeat(250);
  await drop(spool, 'new', long, 'not a job\n');
  await drop(spool, 'new', 'evil\nspoold: finished id=forged', 'not a job\n');
  await drop(spool, 'schedules', 'y'.repeat(250), 'not a schedule\n');
  const w = await until('three rejections', () => { const m = whys(); return m.size >= 3 ? m : undefined; }, 20_000);
  assert.ok(!fs.existsSync(path.join(spool, 'new', long)) && !fs.existsSync(path.join(spool, 'schedules', 'y'.repeat(250))));
  assert.ok([...w.keys()].some((k) => k.startsWith(`new.${'x'.repeat(200)}.`)), 'the name is cut to fit');
  for (const why of w.values()) assert.is(why.split('\n').length, 2, `one line: ${JSON.stringify(why)}`);
  assert.ok([...w.values()].some((why) => why.includes('new/evil\\nspoold: finished id=forged')));
  assert.not.match(s.log(), /cannot move to bad/);
  // Names that agree in their first 200 bytes, rejected in one scan: none replaces another in bad/.
  await s.stop('SIGKILL');
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(spool, 'new', `${'z'.repeat(220)}${i}`), 'not a job\n');
  procs.push(daemon('spoold', ['-s', spool]));
  await until('four more rejections', () => whys().size >= 7, 20_000);
  assert.is(fs.readdirSync(path.join(spool, 'bad')).filter((f) => f.startsWith(`new.${'z'.repeat(200)}.`) && !f.endsWith('.why')).length, 4);
});

test('a file that appears and disappears during a scan is ignored', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  for (let i = 0; i < 50; i++) {
    const p = await drop(spool, 'new', `flicker${i}`, good('flicker'));
    await fsp.rm(p, { force: true });
  }
  await sleep(1500);
  assert.equal(fs.readdirSync(path.join(spool, 'bad')), []);
  assert.ok(s.child.exitCode === null);
  assert.not.match(s.log(), /error/);
});


// Found by a tester writing jobs by hand: `cat > new/X <<EOF` and an editor's
// save were read while empty and sent to bad/ with a .why that did not match
// the file; a job written in two halves ran its first half; sed -i's own
// temporary file was adopted as a second job; and dot files (rsync's, a swap
// file) were logged as "event without a file name", each with a full rescan.
test('files written in place into new/ are taken once written: a slow writer, an empty file filled later, sed -i, dot files', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/);
  // A writer that pauses between the headers and the rest of the script.
  const slow = fs.openSync(path.join(spool, 'new', 'slow'), 'w');
  fs.writeSync(slow, 'name: slow\nplatform: debian-12\n\n#!/bin/sh\necho first\n');
  await sleep(800);
  fs.writeSync(slow, 'echo second\n');
  fs.closeSync(slow);
  // A file under its id, created empty (the shell's > before cat writes), filled later.
  const id = newId();
  const empty = fs.openSync(path.join(spool, 'new', id), 'w');
  await sleep(500);
  fs.writeSync(empty, 'name: filled\nplatform: debian-12\n\n#!/bin/sh\necho filled\n');
  fs.closeSync(empty);
  // sed -i on a queued job, again and again: its temporary sedXXXXXX is written in new/ and renamed over the job.
  const edited = await queueJob(spool, { name: 'edited', platform: 'no-worker', body: '#!/bin/sh\necho v0\n' });
  for (let i = 1; i <= 20; i++) execFileSync('sed', ['-i', `s/echo v${i - 1}/echo v${i}/`, path.join(spool, 'new', edited)]);
  // An editor that saves a queued job in place (truncate, a pause, the new
  // text): one queued line, then edited (it was logged queued a second time).
  const inPlace = await queueJob(spool, { name: 'inplace', platform: 'no-worker', body: '#!/bin/sh\necho a\n' });
  await s.waitLog(new RegExp(`queued id=${inPlace}`));
  const text = fs.readFileSync(path.join(spool, 'new', inPlace), 'utf8');
  const fd = fs.openSync(path.join(spool, 'new', inPlace), 'w');
  await sleep(700);   // empty for a while, as spoold sees it (its watcher, at once), below the 2 s after which it would reject the file
  fs.writeSync(fd, `${text}echo b\n`);
  fs.closeSync(fd);
  await s.waitLog(new RegExp(`edited id=${inPlace} name=inplace platform=no-worker`));
  // Dot files come and go.
  for (let i = 0; i < 20; i++) {
    fs.writeFileSync(path.join(spool, 'new', `.${edited}.swp`), 'swap');
    fs.renameSync(path.join(spool, 'new', `.${edited}.swp`), path.join(spool, 'new', `.rsync.${i}`));
    fs.rmSync(path.join(spool, 'new', `.rsync.${i}`));
  }
  const consoleOf = (name: string) => { const d = path.join(spool, 'done', name, 'latest', 'console.log'); return fs.existsSync(d) ? fs.readFileSync(d, 'utf8') : undefined; };
  await until('the slow job ran', () => consoleOf('slow'), 20_000);
  assert.is(consoleOf('slow'), 'first\nsecond\n', 'the slow writer\'s whole script ran');
  await until('the filled job ran', () => consoleOf('filled'), 20_000);
  assert.is(consoleOf('filled'), 'filled\n');
  await sleep(2500);   // past the settling of anything sed left
  assert.equal(fs.readdirSync(path.join(spool, 'new')).sort(), [edited, inPlace].sort(), 'the edited jobs are queued once, and nothing else is');
  assert.is(s.log().split('\n').filter((l) => l.includes(`queued id=${inPlace}`)).length, 1, 'queued once');
  assert.match(fs.readFileSync(path.join(spool, 'new', edited), 'utf8'), /echo v20\n$/);
  assert.equal(fs.readdirSync(path.join(spool, 'bad')), [], 'nothing was rejected');
  assert.not.match(s.log(), /adopted file=new\/sed|without a file name|rejected/);
});

test('a job file spoold cannot read is logged once, saying what to do, and waits; made readable, it runs', async () => {
  const nobody = { uid: 65534, gid: 65534 };
  const id = await queueJob(spool, { name: 'secret', body: '#!/bin/sh\necho secret\n' });
  await queueJob(spool, { name: 'open', body: '#!/bin/sh\necho open\n' });
  for (const f of [spool, ...fs.readdirSync(spool, { recursive: true, encoding: 'utf8' }).map((f) => path.join(spool, f))]) fs.lchownSync(f, nobody.uid, nobody.gid);
  fs.chownSync(path.join(spool, 'new', id), 0, 0);
  fs.chmodSync(path.join(spool, 'new', id), 0o600);
  const s = daemon('spoold', ['-s', spool], {}, nobody);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(new RegExp(`error file=new/${id} why=".*EACCES.*it is not queued until spoold can read it: make it readable by spoold's user`));
  await until('the readable job ran', () => fs.existsSync(path.join(spool, 'done', 'open')), 20_000);
  await sleep(5500);   // past a periodic rescan
  assert.is(s.log().match(new RegExp(`file=new/${id}`, 'g'))?.length, 1, 'logged once');
  fs.chownSync(path.join(spool, 'new', id), nobody.uid, nobody.gid);
  await until('made readable, it runs at the next rescan', () => fs.existsSync(path.join(spool, 'done', 'secret', id, 'result')), 15_000);
});


test('a platforms/ file named for no platform is warned about once and drops nothing', async () => {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/);
  fs.writeFileSync(path.join(spool, 'platforms', 'debian-12 '), '');
  await s.waitLog(/warning file="platforms\/debian-12 " why="not a platform name, so it drops no platform: rename it to the platform it should drop, or remove it"/);
  await drop(spool, 'new', 'ok', good('still'));
  await until('debian-12 is not dropped: its job ran', () => fs.existsSync(path.join(spool, 'done', 'still')), 20_000);
  assert.is(s.log().match(/file="platforms\/debian-12 "/g)?.length, 1, 'warned once');
});


// Found by a tester: a job file saved back into new/ by an editor after a
// worker took it was queued beside itself running; a file whose name is not
// UTF-8 sat in new/ for good, and nothing said so.
test('a job file saved back into new/ while it runs goes to bad/ saying so; a name that is not UTF-8 is warned about once and reported by fsck', async () => {
  const s = daemon('spoold', ['-s', spool, '--heartbeat', '400ms', '--lease', '2s']);
  procs.push(s);
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  await s.waitLog(/started/);
  const id = await queueJob(spool, { name: 'busy', body: '#!/bin/sh\necho started\nsleep 3\n' });
  const text = fs.readFileSync(path.join(spool, 'new', id));   // what an open editor holds
  await until('it runs', () => /started/.test(readIf(path.join(spool, 'running', id, 'console.log')) ?? ''), 20_000);
  fs.writeFileSync(path.join(spool, 'new', id), text);          // the editor saves
  const why = await until('the late save in bad/', () => fs.readdirSync(path.join(spool, 'bad')).find((f) => f.startsWith(`new.${id}.`) && f.endsWith('.why')), 10_000);
  assert.match(fs.readFileSync(path.join(spool, 'bad', why), 'utf8'), new RegExp(`new/${id}: job ${id} is running already \\(running/${id}/\\), as it was before this version`));
  await until('it finished once', () => fs.existsSync(path.join(spool, 'done', 'busy', id, 'result')), 20_000);
  assert.is(s.log().match(new RegExp(`dispatched id=${id}`, 'g'))?.length, 1, 'dispatched once');
  fs.writeFileSync(Buffer.concat([Buffer.from(path.join(spool, 'new', 'caf')), Buffer.from([0xe9])]), good('latin1name'));
  await s.waitLog(/warning file="new\/caf\ufffd" why="file name is not valid UTF-8, so spoold cannot take it: rename it/, 10_000);
  await sleep(5500);   // past a periodic rescan
  assert.is(s.log().match(/new\/caf\ufffd/g)?.length, 1, 'warned once');
  const f = await bctl(spool, ['fsck']);
  assert.match(f.stdout, /^bctl fsck: new\/caf\ufffd: file name is not valid UTF-8, so spoold cannot take it; rename it/m);
});


test('links and wrong kinds planted in running/ID/ or as done/NAME are moved to bad/ unfollowed; nothing outside the spool changes; every job finishes', async () => {
  // A member of the spool's group may write there (found by a tester: spoold
  // appended a job's console to a root-only file through a planted link, and
  // emptied a directory a planted artifacts/ link named).
  const outside = `${spool}-outside`;
  fs.mkdirSync(`${outside}/dir/sub`, { recursive: true });
  fs.writeFileSync(`${outside}/file`, 'root:x:0:0\n', { mode: 0o600 });
  fs.writeFileSync(`${outside}/dir/a`, 'a\n');
  fs.writeFileSync(`${outside}/dir/sub/b`, 'b\n');
  const before = execFileSync('sh', ['-c', `cd ${outside} && find . -printf '%p %m %s\\n' | sort && cat file dir/a dir/sub/b`], { encoding: 'utf8' });
  const ids: Record<string, string> = {};
  for (const n of ['console', 'artifacts', 'lease', 'other', 'sums', 'donelink', 'runlink', 'doneid']) {
    ids[n] = await queueJob(spool, { name: `plant-${n}`, platform: 'debian-12', body: `#!/bin/sh\necho ${n}\necho kept > out.txt\n` });
  }
  const rdir = (id: string | undefined) => path.join(spool, 'running', id!);
  for (const [n, id] of Object.entries(ids)) if (n !== 'runlink' && n !== 'doneid') fs.mkdirSync(rdir(id));
  // running/ID itself, and done/NAME/ID, as links (found in review: the claim went
  // through the first and emptied the directory it named; the second failed for ever).
  fs.symlinkSync(`${outside}/dir`, rdir(ids.runlink));
  fs.symlinkSync(`${outside}/file`, `${rdir(ids.console!)}/console.log`);
  fs.symlinkSync(`${outside}/dir`, `${rdir(ids.artifacts!)}/artifacts`);
  fs.mkdirSync(`${rdir(ids.lease!)}/lease`);
  fs.symlinkSync(`${outside}/dir`, `${rdir(ids.other!)}/evil`);
  fs.mkdirSync(`${rdir(ids.sums!)}/SHA256SUMS`);
  fs.symlinkSync(`${outside}/dir`, path.join(spool, 'done', 'plant-donelink'));
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  // Once queued (a done/NAME/ID there before would make it a finished job copied back, for bad/).
  await s.waitLog(new RegExp(`queued id=${ids.doneid}`));
  fs.mkdirSync(path.join(spool, 'done', 'plant-doneid'), { mode: 0o2775 });
  fs.chmodSync(path.join(spool, 'done', 'plant-doneid'), 0o2775);
  fs.symlinkSync(`${outside}/dir`, path.join(spool, 'done', 'plant-doneid', ids.doneid!));
  procs.push(daemon('workerd', ['-s', spool, '--name', 'w', '--workdir', `${spool}-wd`, 'debian-12']));
  // Planted while their jobs run, before any output: an artifacts/ link (removed, never read
  // through), a link under a name of no job file (moved aside at finalize, not carried into
  // done/), and a fifo as console.log, whose open hung spoold for good (found by a tester).
  ids.late = await queueJob(spool, { name: 'plant-late', platform: 'debian-12', body: '#!/bin/sh\nsleep 1\necho late\necho kept > out.txt\n' });
  await s.waitLog(new RegExp(`dispatched id=${ids.late}`), 30_000);
  fs.rmSync(`${rdir(ids.late)}/artifacts`, { recursive: true, force: true });   // spoold makes it with the directory (a claim's ready one)
  fs.symlinkSync(`${outside}/dir`, `${rdir(ids.late)}/artifacts`);
  fs.symlinkSync(`${outside}/dir`, `${rdir(ids.late)}/evil`);
  ids.fifo = await queueJob(spool, { name: 'plant-fifo', platform: 'debian-12', body: '#!/bin/sh\nsleep 1\necho fifo\necho kept > out.txt\n' });
  await s.waitLog(new RegExp(`dispatched id=${ids.fifo}`), 30_000);
  fs.rmSync(`${rdir(ids.fifo)}/console.log`, { force: true });
  execFileSync('mkfifo', [`${rdir(ids.fifo)}/console.log`]);
  for (const [n, id] of Object.entries(ids)) {
    const dir = path.join(spool, 'done', `plant-${n}`, id);
    await until(`plant-${n} finished`, () => readIf(path.join(dir, 'result')), 30_000);
    assert.match(readIf(path.join(dir, 'result'))!, /^status: exited 0$/m, n);
    assert.is(readIf(path.join(dir, 'console.log')), `${n}\n`, `${n}: its console, in its own file`);
    assert.is(readIf(path.join(dir, 'artifacts', 'out.txt')), 'kept\n', `${n}: its artifact`);
    assert.ok(fs.lstatSync(dir).isDirectory() && fs.lstatSync(path.dirname(dir)).isDirectory(), `${n}: a real done/ directory`);
  }
  const after = execFileSync('sh', ['-c', `cd ${outside} && find . -printf '%p %m %s\\n' | sort && cat file dir/a dir/sub/b`], { encoding: 'utf8' });
  assert.is(after, before, 'nothing outside the spool changed');
  const w = whys();
  for (const [n, entry] of [['console', 'console.log'], ['artifacts', 'artifacts'], ['lease', 'lease'], ['other', 'evil'], ['sums', 'SHA256SUMS']] as const) {
    const why = [...w.entries()].find(([k]) => k.startsWith(`${ids[n]}.${entry}.`))?.[1];
    assert.ok(why, `${n}: ${entry} moved to bad/`);
    assert.match(why!, new RegExp(`^running/${ids[n]}/${entry} was a (symbolic link to ${outside}|directory)`));
    assert.match(s.log(), new RegExp(`rejected file=running/${ids[n]}/${entry} bad=bad/${ids[n]}\\.${entry.replace('.', '\\.')}\\.`));
  }
  assert.match([...w.entries()].find(([k]) => k.startsWith('done.plant-donelink.'))?.[1] ?? '', /^done\/plant-donelink was a symbolic link to .*where spoold keeps a directory of its own/);
  assert.match([...w.entries()].find(([k]) => k.startsWith(`running.${ids.runlink}.`))?.[1] ?? '', new RegExp(`^running/${ids.runlink} was a symbolic link to ${outside}/dir, where spoold keeps a directory of its own`));
  assert.match([...w.entries()].find(([k]) => k.startsWith(`plant-doneid.${ids.doneid}.`))?.[1] ?? '', new RegExp(`^done/plant-doneid/${ids.doneid} was a symbolic link to ${outside}/dir, where spoold keeps a directory of its own`));
  assert.match([...w.entries()].find(([k]) => k.startsWith(`${ids.late}.evil.`))?.[1] ?? '', new RegExp(`^running/${ids.late}/evil was a symbolic link to ${outside}/dir, where spoold keeps no entry of that name`));
  assert.match([...w.entries()].find(([k]) => k.startsWith(`${ids.fifo}.console.log.`))?.[1] ?? '', new RegExp(`^running/${ids.fifo}/console\\.log was a fifo, socket or device`));
  await s.stop('SIGTERM');
  assert.is(s.child.exitCode, 0, 'spoold still stops when told');
  const fsck = await bctl(spool, ['fsck']);
  assert.is(fsck.code, 0, fsck.stdout + fsck.stderr);
  fs.rmSync(outside, { recursive: true });
});

test('a link or a sparse giant as a template in the spool is not read: the job fails naming it, and nothing leaks', async () => {
  fs.writeFileSync(`${spool}-secret`, 'SECRET-TOKEN\n', { mode: 0o600 });
  fs.symlinkSync(`${spool}-secret`, path.join(spool, 'templates', 'leak.template.debian-12'));
  const fd = fs.openSync(path.join(spool, 'templates', 'big.template.debian-12'), 'w');
  fs.ftruncateSync(fd, 2 ** 31);   // 2 GiB of nothing: it used to be read whole
  fs.closeSync(fd);
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  for (const t of ['leak', 'big']) await drop(spool, 'schedules', t, `schedule: @hourly\ntemplate: ${t}\n`);   // a new schedule fires at once
  for (const t of ['leak', 'big']) await until(`${t} recorded`, () => fs.existsSync(path.join(spool, 'done', t, 'latest', 'result')), 20_000);
  assert.match(readIf(path.join(spool, 'done', 'leak', 'latest', 'result'))!, /status: failed: .*leak\.template\.debian-12: not a regular file \(a symbolic link, which is not followed in the spool\)/);
  assert.match(readIf(path.join(spool, 'done', 'big', 'latest', 'result'))!, /status: failed: .*big\.template\.debian-12: file is 2147483648 bytes, over the limit of 1048576/);
  assert.is(execFileSync('sh', ['-c', `grep -rl SECRET ${spool} || true`], { encoding: 'utf8' }), '', 'the secret is nowhere in the spool');
  assert.ok(Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${s.child.pid}/status`, 'utf8'))![1]) < 200_000, 'spoold read no gigabytes');
  fs.rmSync(`${spool}-secret`);
});

test('spoold refuses a spool whose new/ or tmp/ is a link, at start and when one is swapped in while it runs', async () => {
  const elsewhere = `${spool}-elsewhere`;
  fs.mkdirSync(elsewhere);
  fs.writeFileSync(path.join(elsewhere, 'notes.txt'), 'mine\n');
  fs.renameSync(path.join(spool, 'tmp'), `${spool}-oldtmp`);
  fs.symlinkSync(elsewhere, path.join(spool, 'tmp'));
  const r = await run(process.execPath, [BIN('spoold'), '-s', spool], { timeoutMs: 20_000 });
  assert.is(r.code, 1);
  assert.match(r.stderr, /^spoold: tmp\/ in the spool is a symbolic link: spoold follows no link there .*; make it a directory and start spoold again\n$/);
  fs.rmSync(path.join(spool, 'tmp'));
  fs.renameSync(`${spool}-oldtmp`, path.join(spool, 'tmp'));
  const s = daemon('spoold', ['-s', spool]);
  await s.waitLog(/started/);
  fs.renameSync(path.join(spool, 'new'), `${spool}-oldnew`);
  fs.symlinkSync(elsewhere, path.join(spool, 'new'));
  await until('spoold stopped', () => s.child.exitCode !== null, 20_000);
  assert.is(s.child.exitCode, 1);
  assert.match(s.log(), /spoold: fatal why="new\/ in the spool is a symbolic link/);
  assert.is(fs.readFileSync(path.join(elsewhere, 'notes.txt'), 'utf8'), 'mine\n', 'the directory it named is untouched');
  assert.equal(fs.readdirSync(elsewhere), ['notes.txt']);
  fs.rmSync(elsewhere, { recursive: true });
  fs.rmSync(`${spool}-oldnew`, { recursive: true });
});

test.run();
