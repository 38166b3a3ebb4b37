// Crash test: jobs through 2 workers while spoold is killed with SIGKILL at
// random moments and restarted, and workers are killed and restarted at random.
// Seeded: BUILDER_CRASH_SEED=N replays a run; the seed is printed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, sleep, bctl, type Daemon } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { submission } from '../src/spool/job.js';
import { submit } from '../src/spool/state.js';
import { newId } from '../src/spool/ids.js';
import { parseResult } from '../src/spool/result.js';
import { ensureSpool } from '../src/spool/layout.js';

const JOBS = Number(process.env.BUILDER_CRASH_JOBS ?? 300);
const SPOOLD_KILLS = Number(process.env.BUILDER_CRASH_KILLS ?? 20);
const seed = Number(process.env.BUILDER_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));

// mulberry32: small, seedable, good enough to pick moments.
function prng(a: number): () => number {
  return () => {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test(`${JOBS} jobs survive ${SPOOLD_KILLS} SIGKILLs of spoold and random worker kills, each done exactly once`, async () => {
  console.log(`crash test: seed=${seed} (replay with BUILDER_CRASH_SEED=${seed})`);
  const rnd = prng(seed);
  const spool = await tmpdir('crash');
  const runlog = path.join(spool + '-runs');
  const sp = new SpoolPaths(spool);
  await ensureSpool(sp);
  const args = ['-s', spool, '--lease', '2s', '--heartbeat', '400ms'];
  let s: Daemon = daemon('spoold', args);
  const workers: Daemon[] = [];
  const startWorker = (i: number) => { workers[i] = daemon('workerd', ['-s', spool, '--name', `w${i}`, '--workdir', `${spool}-wd/w${i}`, 'debian-12']); };
  startWorker(0);
  startWorker(1);
  const ids: string[] = [];
  let spooldKills = 0;
  let workerKills = 0;
  try {
    await s.waitLog(/started/);
    const script = `#!/bin/sh\necho "$BUILDER_JOB_ID" >> ${runlog}\necho "console of $BUILDER_JOB_ID"\nsleep 0.02\necho "$BUILDER_JOB_ID" > id.txt\n`;
    const submitWave = async (n: number) => {
      for (let i = 0; i < n && ids.length < JOBS; i++) {
        const id = newId();
        await submit(sp, submission({ name: 'crash', platform: 'debian-12', retries: 20, body: script, id }));
        ids.push(id);
      }
    };
    const doneCount = () => { try { return fs.readdirSync(path.join(spool, 'done', 'crash')).filter((n) => n !== 'latest').length; } catch { return 0; } };
    const deadline = Date.now() + 240_000;
    while ((doneCount() < JOBS || spooldKills < SPOOLD_KILLS) && Date.now() < deadline) {
      await submitWave(Math.ceil(JOBS / SPOOLD_KILLS) + 5);
      await sleep(150 + rnd() * 900);
      const r = rnd();
      if (spooldKills < SPOOLD_KILLS || doneCount() < JOBS) {
        if (spooldKills < SPOOLD_KILLS) {
          await s.stop('SIGKILL');
          spooldKills++;
          if (rnd() < 0.3) await sleep(rnd() * 300);
          s = daemon('spoold', args);
        }
        if (r < 0.35) {
          const i = rnd() < 0.5 ? 0 : 1;
          await workers[i]!.stop('SIGKILL');
          workerKills++;
          startWorker(i);
        }
      }
    }
    // Let the last jobs drain with everything up.
    const end = Date.now() + 60_000;
    while (doneCount() < JOBS && Date.now() < end) await sleep(100);
    console.log(`crash test: ${ids.length} jobs, ${spooldKills} spoold kills, ${workerKills} worker kills, ${doneCount()} done`);
    assert.is(ids.length, JOBS);
    assert.is(doneCount(), JOBS, 'every job is in done/');
    const runs = new Map<string, number>();
    for (const l of fs.readFileSync(runlog, 'utf8').split('\n')) if (l) runs.set(l, (runs.get(l) ?? 0) + 1);
    let retried = 0;
    for (const id of ids) {
      const dir = path.join(spool, 'done', 'crash', id);
      const r = parseResult(fs.readFileSync(path.join(dir, 'result'), 'utf8'), `${dir}/result`);
      assert.equal(r.status, { kind: 'exited', code: 0 }, `${id}: ${JSON.stringify(r.status)}`);
      assert.is(fs.readFileSync(path.join(dir, 'artifacts', 'id.txt'), 'utf8'), `${id}\n`);
      assert.is(fs.readFileSync(path.join(dir, 'console.log'), 'utf8'), `console of ${id}\n`, `${id}: console once`);
      const n = runs.get(id) ?? 0;
      assert.ok(n >= 1 && n <= r.attempt, `${id} ran ${n} times but records ${r.attempt} attempts`);
      if (r.attempt > 1) retried++;
    }
    console.log(`crash test: ${retried} jobs needed more than one attempt`);
    await s.stop('SIGTERM');
    for (const w of workers) await w.stop('SIGTERM');
    assert.equal(fs.readdirSync(path.join(spool, 'running')), [], 'nothing left in running/');
    assert.equal(fs.readdirSync(path.join(spool, 'tmp')), [], 'nothing left in tmp/');
    assert.equal(fs.readdirSync(path.join(spool, 'new')), [], 'nothing left in new/');
    const fsck = await bctl(spool, ['fsck']);
    assert.is(fsck.stdout + fsck.stderr, '', 'bctl fsck reports nothing');
    assert.is(fsck.code, 0);
  } finally {
    await s.stop('SIGKILL');
    for (const w of workers) await w?.stop('SIGKILL');
    await fsp.rm(spool, { recursive: true, force: true });
    await fsp.rm(`${spool}-wd`, { recursive: true, force: true });
    await fsp.rm(runlog, { force: true });
  }
});

test.run();
