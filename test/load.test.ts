// Load: 2,000 jobs submitted in a burst by 4 concurrent bctl processes, run by
// 4 workers. Every job is done exactly once; spoold's peak RSS and its open
// file descriptors stay bounded (reported, and checked against generous bounds).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, bctl, sleep, type Daemon } from './lib.js';

const JOBS = 2000;
const SUBMITTERS = 4;
const WORKERS = 4;

test(`${JOBS} jobs from ${SUBMITTERS} concurrent bctl processes through ${WORKERS} workers, each done once, memory and fds bounded`, async () => {
  const spool = await tmpdir('load');
  const scripts = await tmpdir('load-scripts');
  const procs: Daemon[] = [];
  try {
    const s = daemon('spoold', ['-s', spool]);
    procs.push(s);
    await s.waitLog(/started/);
    for (let i = 0; i < WORKERS; i++) procs.push(daemon('workerd', ['-s', spool, '--name', `w${i}`, '--workdir', `${spool}-wd/w${i}`, 'debian-12']));
    const script = path.join(scripts, 'job.sh');
    await fsp.writeFile(script, '#!/bin/sh\necho "$BUILDER_JOB_ID" > id\n');
    let maxFds = 0;
    const fdDir = `/proc/${s.child.pid}/fd`;
    const sampler = setInterval(() => { try { maxFds = Math.max(maxFds, fs.readdirSync(fdDir).length); } catch { /* exiting */ } }, 50);
    const t0 = Date.now();
    const per = JOBS / SUBMITTERS;
    const runs = await Promise.all(Array.from({ length: SUBMITTERS }, () => bctl(spool, ['submit', 'debian-12', ...Array(per).fill(script), '--name', 'load'], { timeoutMs: 120_000 })));
    for (const r of runs) assert.is(r.code, 0, r.stderr);
    const ids = runs.flatMap((r) => r.stdout.trim().split('\n'));
    assert.is(ids.length, JOBS);
    assert.is(new Set(ids).size, JOBS, 'every id is unique');
    const doneDir = path.join(spool, 'done', 'load');
    const count = () => { try { return fs.readdirSync(doneDir).length - 1; } catch { return 0; } };   // minus latest
    const end = Date.now() + 240_000;
    while (count() < JOBS && Date.now() < end) await sleep(200);
    clearInterval(sampler);
    const secs = (Date.now() - t0) / 1000;
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${s.child.pid}/status`, 'utf8'))![1]) / 1024;
    console.log(`load: ${JOBS} jobs in ${secs.toFixed(1)} s (${(JOBS / secs).toFixed(0)} jobs/s); spoold peak RSS ${hwm.toFixed(1)} MiB, peak open fds ${maxFds}`);
    assert.is(count(), JOBS, 'every job is in done/');
    for (const id of ids) {
      assert.is(fs.readFileSync(path.join(doneDir, id, 'artifacts', 'id'), 'utf8'), `${id}\n`);
      assert.match(fs.readFileSync(path.join(doneDir, id, 'result'), 'utf8'), /\nstatus: exited 0\n/);
    }
    assert.equal(fs.readdirSync(path.join(spool, 'new')), []);
    assert.equal(fs.readdirSync(path.join(spool, 'running')), []);
    assert.ok(hwm < 200, `spoold peak RSS ${hwm} MiB`);
    assert.ok(maxFds < 200, `spoold peak fds ${maxFds}`);
  } finally {
    for (const p of procs) await p.stop('SIGKILL');
    await fsp.rm(spool, { recursive: true, force: true });
    await fsp.rm(`${spool}-wd`, { recursive: true, force: true });
    await fsp.rm(scripts, { recursive: true, force: true });
  }
});

test.run();
