// bctl inspect end to end: a finished job directory built by hand (job,
// result, console.log, artifacts/ with a subdirectory and a symlink,
// SHA256SUMS), read by id and by directory, and copied with --output.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { bctl, BIN, tmpdir } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';
import { formatJob, submission } from '../src/spool/job.js';
import { formatResult } from '../src/spool/result.js';
import { newId } from '../src/spool/ids.js';
import { submit } from '../src/spool/state.js';

let spool = '';
let sp: SpoolPaths;
const cleanup: string[] = [];

test.before.each(async () => {
  spool = await tmpdir('bctl-inspect');
  sp = new SpoolPaths(spool);
  cleanup.push(spool);
  await ensureSpool(sp);
});
test.after.each(async () => {
  for (const d of cleanup.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

const SCRIPT = '#!/bin/sh\necho building\nmkdir -p sub && echo x > sub/x.txt\n';
// Console bytes as a job wrote them: not valid UTF-8, with a NUL and CRs.
const CONSOLE = Buffer.concat([Buffer.from('building\r\nprogress 50%\r'), Buffer.from([0xff, 0xfe, 0x00, 0x0a]), Buffer.from('done\n')]);

/** done/NAME/ID as spoold leaves it. */
async function doneJob(name = 'hello'): Promise<{ id: string; dir: string }> {
  const id = newId();
  const queued = new Date('2026-01-01T00:00:00Z');
  const job = submission({ name, platform: 'debian-12', body: SCRIPT, id, queued });
  const dir = sp.doneDir(name, id);
  await fsp.mkdir(path.join(dir, 'artifacts', 'sub'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'job'), formatJob(job));
  await fsp.writeFile(path.join(dir, 'result'), formatResult({ id, name, platform: 'debian-12', worker: 'w1', attempt: 1, queued, started: new Date('2026-01-01T00:00:01Z'), finished: new Date('2026-01-01T00:00:03Z'), status: { kind: 'exited', code: 0 } }));
  await fsp.writeFile(path.join(dir, 'console.log'), CONSOLE);
  await fsp.writeFile(path.join(dir, 'artifacts', 'hello.txt'), 'hello\n');
  await fsp.writeFile(path.join(dir, 'artifacts', 'sub', 'x.txt'), 'x\n');
  await fsp.symlink('/etc/passwd', path.join(dir, 'artifacts', 'escape'));
  const sum = (s: string) => createHash('sha256').update(s).digest('hex');
  await fsp.writeFile(path.join(dir, 'SHA256SUMS'), `${sum('hello\n')}  hello.txt\n${sum('x\n')}  sub/x.txt\n`);
  await fsp.symlink(id, sp.latest(name));
  return { id, dir };
}

test('inspect ID prints the result file', async () => {
  const { id, dir } = await doneJob();
  const r = await bctl(spool, ['inspect', id]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, fs.readFileSync(path.join(dir, 'result'), 'utf8'));
  assert.match(r.stdout, /^status: exited 0$/m);
});

test('inspect DIR works on a done directory, also through latest and outside the spool', async () => {
  const { dir } = await doneJob();
  const copy = await tmpdir('bctl-copy');
  cleanup.push(copy);
  await fsp.cp(dir, path.join(copy, 'job1'), { recursive: true, verbatimSymlinks: true });
  for (const d of [dir, sp.latest('hello'), path.join(copy, 'job1')]) {
    const r = await bctl(spool, ['inspect', '--job', d]);
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stdout, fs.readFileSync(path.join(dir, 'job'), 'utf8'));
  }
});

test('inspect --console streams the console bytes unchanged', async () => {
  const { id } = await doneJob();
  // lib.ts's run() decodes stdout as text; compare bytes here.
  const r = await new Promise<Buffer>((resolve, reject) => {
    execFile(process.execPath, [BIN('bctl'), '-s', spool, 'inspect', id, '--console'], { encoding: 'buffer' }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  assert.ok(r.equals(CONSOLE), `got ${r.toString('hex')}`);
});

test('inspect --console and --job do not follow a link put in place of the file (as root it would print /etc/shadow)', async () => {
  const { id, dir } = await doneJob();
  for (const [view, file] of [['--console', 'console.log'], ['--job', 'job']] as const) {
    await fsp.rm(path.join(dir, file));
    await fsp.symlink('/etc/passwd', path.join(dir, file));
    const r = await bctl(spool, ['inspect', id, view]);
    assert.is(r.code, 1, view);
    assert.is(r.stdout, '', `${view}: nothing of the link's target is printed`);
    assert.match(r.stderr, new RegExp(`^bctl: ${dir}/${file.replace('.', '\\.')}: a symbolic link, not followed; only spoold writes a job's directory; run bctl fsck\n$`));
  }
});

test('inspect --script prints the script only; --job the whole job file', async () => {
  const { id, dir } = await doneJob();
  const s = await bctl(spool, ['inspect', id, '--script']);
  assert.is(s.code, 0, s.stderr);
  assert.is(s.stdout, SCRIPT);
  const j = await bctl(spool, ['inspect', id, '--job']);
  assert.is(j.stdout, fs.readFileSync(path.join(dir, 'job'), 'utf8'));
  assert.match(j.stdout, new RegExp(`^id: ${id}\nname: hello\nplatform: debian-12\n`));
});

test('inspect --output copies artifacts, symlinks as symlinks, and never overwrites', async () => {
  const { id } = await doneJob();
  const out = path.join(await tmpdir('bctl-out'), 'new', 'dir');
  cleanup.push(path.dirname(path.dirname(out)));
  const r = await bctl(spool, ['inspect', id, '--output', out]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, '', 'the copy alone prints nothing');
  assert.equal(fs.readdirSync(out).sort(), ['escape', 'hello.txt', 'sub']);
  // Beside a view, as DESIGN.md's synopsis has it: the copy, and the view on standard output.
  const both = path.join(path.dirname(out), 'both');
  const rc = await bctl(spool, ['inspect', id, '--output', both, '--console']);
  assert.is(rc.code, 0, rc.stderr);
  assert.is(rc.stdout, fs.readFileSync(path.join(spool, 'done', 'hello', id, 'console.log'), 'utf8'));
  assert.equal(fs.readdirSync(both).sort(), ['escape', 'hello.txt', 'sub']);
  assert.is(fs.readFileSync(path.join(out, 'hello.txt'), 'utf8'), 'hello\n');
  assert.is(fs.readFileSync(path.join(out, 'sub', 'x.txt'), 'utf8'), 'x\n');
  assert.ok(fs.lstatSync(path.join(out, 'escape')).isSymbolicLink(), 'the link is copied as a link');
  assert.is(fs.readlinkSync(path.join(out, 'escape')), '/etc/passwd');

  // Again into the same directory: refused before anything is copied.
  fs.writeFileSync(path.join(out, 'sub', 'x.txt'), 'mine\n');
  fs.rmSync(path.join(out, 'hello.txt'));
  const again = await bctl(spool, ['inspect', id, '--output', out]);
  assert.is(again.code, 1);
  assert.match(again.stderr, /^bctl: .*escape: exists; not overwritten; give an empty or new directory/);
  assert.is(fs.readFileSync(path.join(out, 'sub', 'x.txt'), 'utf8'), 'mine\n');
  assert.not.ok(fs.existsSync(path.join(out, 'hello.txt')), 'nothing was copied');

  // Into a file: said so (it said "cannot check: ENOTDIR").
  const file = path.join(out, 'sub', 'x.txt');
  const onFile = await bctl(spool, ['inspect', id, '--output', file]);
  assert.is(onFile.code, 1);
  assert.match(onFile.stderr, /^bctl: .*sub\/x\.txt: not a directory; give an empty or new directory to --output/);
});

test('inspect of a missing, queued or malformed job fails with a message; two views are a usage error', async () => {
  const { id } = await doneJob();
  const missing = newId();
  const r1 = await bctl(spool, ['inspect', missing]);
  assert.is(r1.code, 1);
  assert.match(r1.stderr, new RegExp(`^bctl: done: no finished job ${missing}; ls done/\\*/ lists the finished jobs, by name`));
  // One spoold rejected to bad/ is named there, as observe and cancel name it (it said only "no finished job").
  const rejected = newId();
  fs.mkdirSync(sp.bad, { recursive: true });
  fs.writeFileSync(path.join(sp.bad, `new.${rejected}.1764000000000`), 'platfrom: x\n');
  fs.writeFileSync(path.join(sp.bad, `new.${rejected}.1764000000000.why`), "new/x:1: unknown header 'platfrom'\n");
  const rb = await bctl(spool, ['inspect', rejected]);
  assert.is(rb.code, 1);
  assert.match(rb.stderr, new RegExp(`^bctl: bad/new\\.${rejected}\\.1764000000000: job ${rejected} was rejected by spoold: it never ran; bad/new\\.${rejected}\\.1764000000000\\.why says why`));
  const q = submission({ name: 'q', platform: 'debian-12', body: SCRIPT, id: newId() });
  await submit(sp, q as typeof q & { id: string });
  const r2 = await bctl(spool, ['inspect', q.id!]);
  assert.is(r2.code, 1);
  assert.match(r2.stderr, /has not run yet \(queued\)/);
  const r3 = await bctl(spool, ['inspect', path.join(spool, 'nonexistent')]);
  assert.is(r3.code, 1);
  assert.match(r3.stderr, /nonexistent: neither a job id nor a directory/);
  const r4 = await bctl(spool, ['inspect', spool]);
  assert.is(r4.code, 1);
  assert.match(r4.stderr, /not a finished job directory \(no result file\)/);
  const r5 = await bctl(spool, ['inspect', id, '--console', '--job']);
  assert.is(r5.code, 2);
  assert.match(r5.stderr, /^bctl: give one of --console, --script, --job \(got --console --job\); --output may go with it/);
});

test.run();
