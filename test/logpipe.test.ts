// The daemons' log reader goes away (a supervisor or `tee` on the other end of
// stderr dies): the daemons go on, quietly. Found when spoold, its stderr pipe
// closed, spun at 100% CPU: each failed log write was logged as an error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BIN, tmpdir, until, queueJob, sleep } from './lib.js';

let dir = '';
const procs: ChildProcess[] = [];
test.after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

const TICK = 100;   // clock ticks per second, as /proc/PID/stat counts them on Linux
/** CPU seconds the process has used (user + system). */
function cpu(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}

/** Start a daemon whose stderr we read until `ready` shows, then close for good. */
async function deafened(args: string[], ready: RegExp): Promise<ChildProcess> {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(c);
  let log = '';
  c.stderr!.on('data', (b) => { log += b; });
  await until(`${ready} in the log`, () => ready.test(log));
  c.stderr!.destroy();
  return c;
}

test('spoold and workerd whose stderr reader is gone go on working, and do not spin', async () => {
  dir = await tmpdir('logpipe');
  const spool = path.join(dir, 'spool');
  const s = await deafened([BIN('spoold'), '-s', spool], /spoold: started/);
  const w = await deafened([BIN('workerd'), '-s', spool, '--name', 'deaf', '--workdir', path.join(dir, 'wd'), 'debian-12'], /connected/);
  for (const name of ['first', 'second']) {   // each logs queued, dispatched, finished; workerd running, finished, delivered
    const id = await queueJob(spool, { name, body: '#!/bin/sh\necho hello\n' });
    await until(`${name} in done/`, () => fs.existsSync(path.join(spool, 'done', name, id, 'result')));
    assert.match(fs.readFileSync(path.join(spool, 'done', name, id, 'result'), 'utf8'), /^status: exited 0$/m);
  }
  // Idle now: a daemon that spins on its failed log writes burns a core; these use next to nothing.
  const before = [cpu(s.pid!), cpu(w.pid!)];
  await sleep(1000);
  const used = [cpu(s.pid!) - before[0]!, cpu(w.pid!) - before[1]!];
  assert.ok(used[0]! < 0.3, `spoold used ${used[0]} s of CPU in an idle second`);
  assert.ok(used[1]! < 0.3, `workerd used ${used[1]} s of CPU in an idle second`);
  assert.is(s.exitCode, null, 'spoold is still running');
  assert.is(w.exitCode, null, 'workerd is still running');
});

test.run();
