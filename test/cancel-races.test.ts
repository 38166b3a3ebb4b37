// bctl cancel and bctl fsck racing spoold, another bctl, and a job's finish,
// with the real programs (found by a tester running a busy farm).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, until, bctl, sleep, type Daemon } from './lib.js';

let spool = '';
let procs: Daemon[] = [];
test.before.each(async () => { spool = await tmpdir('cancel-races'); procs = []; });
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, `${spool}-wd1`, `${spool}-wd2`, `${spool}.sh`]) await fsp.rm(d, { recursive: true, force: true });
});

async function start(workers: number): Promise<Daemon> {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  for (let i = 1; i <= workers; i++) procs.push(daemon('workerd', ['-s', spool, '--name', `w${i}`, '--workdir', `${spool}-wd${i}`, 'debian-12']));
  for (let i = 1; i <= workers; i++) await s.waitLog(new RegExp(`worker joined worker=w${i}\\b`));
  return s;
}

const submit = async (platform: string, script: string, name: string): Promise<string> => {
  fs.writeFileSync(`${spool}.sh`, script);
  const r = await bctl(spool, ['submit', '--name', name, platform, `${spool}.sh`]);
  assert.is(r.code, 0, r.stderr);
  return r.stdout.trim();
};

test('two bctl cancel of one queued job at once: one cancels it, the other says it is canceled; neither says spoold stops it, nor fails on a vanished directory', async () => {
  await start(0);
  for (let round = 0; round < 12; round++) {
    const id = await submit('nobody-serves-this', '#!/bin/sh\ntrue\n', 'twice');
    const [a, b] = await Promise.all([bctl(spool, ['cancel', id]), bctl(spool, ['cancel', id])]);
    const said = [a, b].map((r) => `${r.code}: ${r.stdout}${r.stderr}`);
    assert.equal(said.filter((x) => x === `0: canceled ${id} (was queued)\n`).length, 1, said.join(' | '));
    const other = said.find((x) => x !== `0: canceled ${id} (was queued)\n`)!;
    assert.ok(other === `0: canceled ${id} (completed meanwhile)\n` || other.startsWith(`1: bctl: done/twice/${id}: job ${id} already finished: canceled;`), other);
    assert.equal(fs.readdirSync(path.join(spool, 'done', 'twice', id)).sort(), ['SHA256SUMS', 'artifacts', 'console.log', 'job', 'result']);
  }
  const fsck = await bctl(spool, ['fsck']);
  assert.is(fsck.code, 0, fsck.stdout + fsck.stderr);
});

test('a cancel request that lands as a job is being finished does not ride into done/', async () => {
  await start(1);
  for (let round = 0; round < 10; round++) {
    const id = await submit('debian-12', '#!/bin/sh\nsleep 0.2\n', 'ride');
    const run = path.join(spool, 'running', id);
    await until('its job running', () => fs.existsSync(path.join(run, 'lease')), 20_000);
    // As bctl cancel writes it, the moment the result is there (finalize then
    // removes the request, flushes, and renames the directory into done/).
    const staged = path.join(spool, 'tmp', `cancel.${process.pid}.${round}`);
    fs.writeFileSync(staged, 'canceled: now\n');
    await new Promise<void>((resolve) => {
      const w = fs.watch(run, (_e, f) => {
        if (f !== 'result') return;
        w.close();
        try { fs.renameSync(staged, path.join(run, 'cancel')); } catch { fs.rmSync(staged); }   // gone already: too late, as bctl finds
        resolve();
      });
    });
    const done = path.join(spool, 'done', 'ride', id);
    await until('finished', () => fs.existsSync(path.join(done, 'result')), 20_000);
    await sleep(50);
    assert.equal(fs.readdirSync(done).sort(), ['SHA256SUMS', 'artifacts', 'console.log', 'job', 'result'], `round ${round}`);
  }
});

test('bctl fsck while jobs move from new/ through running/ to done/ reports no job in two states', async () => {
  await start(2);
  const script = '#!/bin/sh\nsleep 0.2\n';
  for (let i = 0; i < 6; i++) await submit('debian-12', '#!/bin/sh\necho x > a\n', `aa${i}`);   // history that sorts before the stream in done/
  let submitting = true;
  const stream = (async () => { for (let i = 0; i < 30; i++) { await submit('debian-12', script, 'zz'); await sleep(100); } submitting = false; })();
  const said: string[] = [];
  while (submitting) {
    const r = await bctl(spool, ['fsck']);
    said.push(`${r.code}: ${r.stdout}${r.stderr}`);
  }
  await stream;
  assert.ok(said.length >= 5, `fsck ran ${said.length} times`);
  assert.equal(said.filter((x) => x !== '0: '), [], 'fsck found nothing wrong');
});

test.run();
