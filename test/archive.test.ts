// archive.test.ts: done/ as an archive that plain tools serve and copy.
//
// DESIGN.md promises that done/ can be served by nginx and copied by rsync as
// it is, because a finished job directory is assembled in running/ID and
// renamed into done/NAME/ID in one step. These tests run a real nginx
// (test/realsrv.ts) and a real rsync against a spool that spoold and workerd,
// as built, keep filling, and check what the other side gets byte by byte.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { tmpdir, daemon, until, readIf, run, queueJob, type Daemon } from './lib.js';
import { binary, startNginx, get } from './realsrv.js';
import { isId } from '../src/spool/paths.js';
import { parseResult } from '../src/spool/result.js';

let dir = '';
let spool = '';
let procs: Daemon[] = [];

test.before.each(async () => {
  for (const b of ['nginx', 'rsync']) binary(b);   // fail, not skip, when missing
  dir = await tmpdir('archive');
  spool = path.join(dir, 'spool');
  await fsp.mkdir(spool);
  procs = [];
});
test.after.each(async () => {
  for (const p of procs.reverse()) await p.stop('SIGKILL');
  await fsp.rm(dir, { recursive: true, force: true });
});

const FAST = ['--lease', '2s', '--heartbeat', '400ms'];
function start(name: 'spoold' | 'workerd', args: string[]): Daemon {
  const d = daemon(name, args);
  procs.push(d);
  return d;
}
const spoold = () => start('spoold', ['-s', spool, ...FAST]);
const workerd = (name: string) => start('workerd', ['-s', spool, '--name', name, '--workdir', path.join(dir, `wd-${name}`), 'debian-12']);

const queue = (name: string, body: string): Promise<string> => queueJob(spool, { name, body });

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('nginx serves done/: artifacts, console.log and result arrive byte for byte, a binary artifact matches SHA256SUMS, a job\'s symlink is not followed', async () => {
  spoold();
  workerd('w1');
  const nginx = await startNginx(dir, path.join(spool, 'done'));
  procs.push(nginx.proc);
  // Every byte value in the binary artifact and in the console, so no layer may treat them as text.
  const id = await queue('served', [
    '#!/bin/sh',
    'set -e',
    "printf 'console \\377\\376\\000 bytes\\n'",
    'echo text > notes.txt',
    'mkdir -p bin',
    "LC_ALL=C awk 'BEGIN { for (i = 0; i < 256; i++) printf \"%c\", i }' > bin/all-bytes",
    'head -c 300000 /dev/urandom >> bin/all-bytes',
    'ln -s /etc/passwd escape',
    'ln -s / rootdir',
    '',
  ].join('\n'));
  const dirOf = path.join(spool, 'done', 'served', id);
  await until('the result', () => readIf(path.join(dirOf, 'result')), 30_000);
  await until('done/served/latest', () => fs.existsSync(path.join(spool, 'done', 'served', 'latest')));

  for (const f of ['result', 'console.log', 'job', 'SHA256SUMS', 'artifacts/notes.txt', 'artifacts/bin/all-bytes']) {
    const got = await get(nginx.url(`served/${id}/${f}`));
    assert.is(got.status, 200, `GET ${f}: ${got.status}`);
    assert.ok(got.body.equals(fs.readFileSync(path.join(dirOf, f))), `GET ${f} differs from the file`);
  }
  const blob = await get(nginx.url(`served/${id}/artifacts/bin/all-bytes`));
  assert.is(blob.body.length, 300256);
  assert.ok(blob.body.subarray(0, 256).equals(Buffer.from([...Array(256).keys()])), 'the first 256 bytes are 0..255');
  const sums = (await get(nginx.url(`served/${id}/SHA256SUMS`))).body.toString();
  assert.ok(sums.split('\n').includes(`${sha(blob.body)}  bin/all-bytes`), `SHA256SUMS lists the served bytes:\n${sums}`);
  const consoleLog = await get(nginx.url(`served/${id}/console.log`));
  assert.ok(consoleLog.body.equals(Buffer.from('console \xff\xfe\x00 bytes\n', 'latin1')), `console.log: ${consoleLog.body.toString('hex')}`);
  assert.equal(parseResult((await get(nginx.url(`served/${id}/result`))).body.toString(), 'http').status, { kind: 'exited', code: 0 });

  // latest is a symlink; nginx follows it, and the listing names the job.
  const latest = await get(nginx.url('served/latest/result'));
  assert.ok(latest.body.equals(fs.readFileSync(path.join(dirOf, 'result'))));
  const index = await get(nginx.url('served/'));
  assert.is(index.status, 200);
  assert.match(index.body.toString(), `href="${id}/"`);
  assert.is((await get(nginx.url(`served/${id}/no-such-file`))).status, 404);
  // A job named index.html, nginx's default index, does not hide the listing of done/ (found by a tester).
  const named = await queue('index.html', '#!/bin/sh\ntrue\n');
  await until('the index.html job', () => readIf(path.join(spool, 'done', 'index.html', named, 'result')), 30_000);
  const root = await get(nginx.url(''));
  assert.is(root.status, 200);
  assert.match(root.body.toString(), 'href="index.html/"');
  assert.match(root.body.toString(), 'href="served/"');

  // The job's symlinks arrived as symlinks, and nginx does not follow them out of the spool.
  assert.is(fs.readlinkSync(path.join(dirOf, 'artifacts', 'escape')), '/etc/passwd');
  for (const f of ['escape', 'rootdir/etc/passwd']) {
    const leak = await get(nginx.url(`served/${id}/artifacts/${f}`));
    assert.is.not(leak.status, 200, `GET artifacts/${f} followed the job's symlink`);
    assert.not.match(leak.body.toString(), /root:/);
  }
});

/** Everything wrong with one copied done/NAME/ID directory of a job queued by the rsync test. */
function problems(copy: string, name: string, id: string): string[] {
  const d = path.join(copy, name, id);
  const out: string[] = [];
  const read = (f: string) => { try { return fs.readFileSync(path.join(d, f)); } catch { out.push(`${name}/${id}/${f} missing`); return undefined; } };
  const result = read('result');
  const consoleLog = read('console.log');
  read('job');
  const sums = read('SHA256SUMS');
  if (!fs.existsSync(path.join(d, 'artifacts')) || !fs.lstatSync(path.join(d, 'artifacts')).isDirectory()) out.push(`${name}/${id}/artifacts/ missing`);
  if (result) {
    try {
      const r = parseResult(result.toString(), `${name}/${id}/result`);
      if (r.id !== id || r.status.kind !== 'exited' || r.status.code !== 0) out.push(`${name}/${id}/result: ${result}`);
    } catch (e) { out.push(`${name}/${id}/result unparsable: ${(e as Error).message}`); }
  }
  if (consoleLog && consoleLog.toString() !== `job ${id}\n`) out.push(`${name}/${id}/console.log: ${JSON.stringify(consoleLog.toString())}`);
  if (sums) {
    const listed = new Map<string, string>();
    for (const line of sums.toString().split('\n').filter(Boolean)) {
      const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
      if (!m) { out.push(`${name}/${id}/SHA256SUMS: bad line ${JSON.stringify(line)}`); continue; }
      listed.set(m[2]!, m[1]!);
    }
    const want = ['deep/er/noise.bin', 'id.txt', 'seq.txt'];
    const onDisk: string[] = [];
    const walk = (rel: string) => {
      let names: string[];
      try { names = fs.readdirSync(path.join(d, 'artifacts', rel)); } catch { return; }
      for (const n of names) {
        const r = rel ? `${rel}/${n}` : n;
        const st = fs.lstatSync(path.join(d, 'artifacts', r));
        if (st.isDirectory()) walk(r); else onDisk.push(r);
      }
    };
    walk('');
    if (JSON.stringify(onDisk.sort()) !== JSON.stringify(want)) out.push(`${name}/${id}/artifacts holds ${onDisk.join(' ')}`);
    if (JSON.stringify([...listed.keys()].sort()) !== JSON.stringify(want)) out.push(`${name}/${id}/SHA256SUMS lists ${[...listed.keys()].join(' ')}`);
    for (const [f, h] of listed) {
      let b: Buffer | undefined;
      try { b = fs.readFileSync(path.join(d, 'artifacts', f)); } catch { continue; }
      if (sha(b) !== h) out.push(`${name}/${id}/artifacts/${f} does not match SHA256SUMS`);
    }
    const idTxt = readIf(path.join(d, 'artifacts', 'id.txt'));
    if (idTxt !== undefined && idTxt !== `${id}\n`) out.push(`${name}/${id}/artifacts/id.txt is another job's: ${idTxt}`);
  }
  return out;
}

test('rsync of done/ while jobs keep finishing copies only whole job directories', async () => {
  const rsync = binary('rsync');
  spoold();
  await until('spoold made the spool', () => fs.existsSync(path.join(spool, 'done')));   // rsync #0 needs done/
  workerd('w1');
  workerd('w2');
  const names = ['alpha', 'beta', 'gamma', 'delta'];
  const body = [
    '#!/bin/sh',
    'set -e',
    'echo "job $BUILDER_JOB_ID"',
    'echo "$BUILDER_JOB_ID" > id.txt',
    'seq 1 3000 > seq.txt',
    'mkdir -p deep/er',
    'head -c 40000 /dev/urandom > deep/er/noise.bin',
    '',
  ].join('\n');
  const ids: { name: string; id: string }[] = [];
  for (let i = 0; i < 40; i++) { const name = names[i % names.length]!; ids.push({ name, id: await queue(name, body) }); }
  const finished = () => ids.filter(({ name, id }) => fs.existsSync(path.join(spool, 'done', name, id))).length;

  const sizes: number[] = [];
  for (let copyNo = 0; ; copyNo++) {
    const before = finished();
    const copy = path.join(dir, `copy-${copyNo}`);
    const r = await run(rsync, ['-a', `${spool}/done/`, `${copy}/`]);
    // 24 would be "some files vanished": a half-built directory seen and then moved. Only 0 is clean.
    assert.is(r.code, 0, `rsync #${copyNo} exited ${r.code}: ${r.stderr}`);
    let jobs = 0;
    const bad: string[] = [];
    for (const name of fs.readdirSync(copy)) {
      if (!names.includes(name)) { bad.push(`unexpected ${name} in done/`); continue; }
      for (const e of fs.readdirSync(path.join(copy, name))) {
        if (e === 'latest') { if (!fs.lstatSync(path.join(copy, name, e)).isSymbolicLink()) bad.push(`${name}/latest is not a symlink`); continue; }
        if (!isId(e)) { bad.push(`unexpected ${name}/${e}`); continue; }
        jobs++;
        bad.push(...problems(copy, name, e));
      }
    }
    assert.equal(bad, [], `copy #${copyNo} (${jobs} jobs) is not whole`);
    sizes.push(jobs);
    await fsp.rm(copy, { recursive: true });
    if (before === ids.length && copyNo >= 9) break;
    if (copyNo > 2000) throw new Error(`the jobs did not finish: ${finished()} of ${ids.length}; copies held ${sizes.join(' ')}`);
  }
  assert.ok(sizes.length >= 10, `${sizes.length} copies`);
  assert.ok(sizes.some((n) => n > 0 && n < ids.length), `no copy was taken while jobs were finishing: ${sizes.join(' ')}`);
  assert.is(sizes[sizes.length - 1], ids.length, 'the last copy holds every job');
});

test.run();
