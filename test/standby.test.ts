// How workerd starts a job's process (src/workerd/launch.ts): by its perl
// launcher, or, without perl (WORKERD_PERL empty), by a standby shell forked
// before the job arrives. What both must keep true: the job runs in its
// directory with its environment, a script that cannot run says why in its
// console, how it ended (exit code or signal) is told exactly, a launcher
// killed while idle costs nothing, and a workdir with blanks in its name works.
import { test, suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tmpdir, daemon, bctl, until, run, type Daemon } from './lib.js';
import { LocalJob } from '../src/workerd/run.js';
import { newId } from '../src/spool/ids.js';

let spool = '';
let wd = '';
let procs: Daemon[] = [];
const before = async () => { spool = await tmpdir('standby'); wd = `${spool} work dir`; procs = []; };
const after = async () => {
  for (const p of procs) await p.stop('SIGKILL');
  for (const d of [spool, wd]) await fsp.rm(d, { recursive: true, force: true });
};

async function start(env: NodeJS.ProcessEnv, extra: string[] = []): Promise<Daemon> {
  const s = daemon('spoold', ['-s', spool]);
  procs.push(s);
  await s.waitLog(/started/);
  const w = daemon('workerd', ['-s', spool, '--name', 'w1', '--workdir', wd, ...extra, 'debian-12'], env);
  procs.push(w);
  await s.waitLog(/worker joined worker=w1/);
  return w;
}

async function submit(body: string, name = 'sb'): Promise<{ id: string; result: string; console: string }> {
  const r = await bctl(spool, ['submit', 'debian-12', '-', '--name', name, '--wait'], { input: body });
  const id = r.stdout.trim().split('\n')[0]!;
  const dir = path.join(spool, 'done', name, id);
  await until(`result of ${id}`, () => fs.existsSync(path.join(dir, 'result')));
  return { id, result: fs.readFileSync(path.join(dir, 'result'), 'utf8'), console: fs.readFileSync(path.join(dir, 'console.log'), 'utf8') };
}

/** workerd's idle launcher: its child running perl with our program, or sh with the standby's. */
async function launcherPid(w: Daemon, what: RegExp): Promise<number> {
  return until('an idle launcher', async () => {
    const r = await run('pgrep', ['-P', String(w.child.pid), '-f', what.source]);
    const pid = Number(r.stdout.trim().split('\n')[0]);
    return pid > 0 ? pid : undefined;
  });
}

const LAUNCHERS = [
  { name: 'perl', env: {}, log: /jobs are started by \S*perl$/m, ps: /job launcher/ },
  { name: 'standby', env: { WORKERD_PERL: '' }, log: /jobs are started by forking workerd \(WORKERD_PERL is empty\)$/m, ps: /standby/ },
];

for (const L of LAUNCHERS) {
  const test = suite(`launcher ${L.name}`);
  test.before.each(before);
  test.after.each(after);
  const start_ = (extra: string[] = []) => start(L.env, extra);
  test('the job runs in its own directory, with its environment, in a workdir whose name has blanks', async () => {
    await start_();
    const { id, result, console } = await submit('#!/bin/sh\necho "id=$BUILDER_JOB_ID name=$BUILDER_JOB_NAME platform=$BUILDER_PLATFORM net=$BUILDER_NETWORK"\necho "dir=$(pwd) jobdir=$BUILDER_JOB_DIR"\nread x || echo "stdin is empty"\necho err >&2\n');
    assert.match(result, /^status: exited 0$/m);
    assert.match(console, new RegExp(`^id=${id} name=sb platform=debian-12 net=no$`, 'm'));
    const dir = path.join(wd, id, 'job');
    assert.match(console, new RegExp(`^dir=${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} jobdir=${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    assert.match(console, /^stdin is empty$/m);
    assert.match(console, /^err$/m);
  });

  test('a script that cannot be executed ends exited 127 and says why in its console', async () => {
    await start_();
    const { result, console } = await submit('#!/nonexistent/interpreter\necho never\n', 'badshebang');
    assert.match(result, /^status: exited 127$/m);
    assert.match(console, /^workerd: cannot run the script: its #! interpreter \/nonexistent\/interpreter is not found or not executable$/m);
    assert.not.match(console, /never/);
  });

  test('a launcher killed while idle is replaced; the next job runs, and its exit is its own', async () => {
    const w = await start_();
    await w.waitLog(L.log);
    const first = await launcherPid(w, L.ps);
    process.kill(first, 'SIGKILL');
    await until('the killed launcher is gone', async () => (await run('kill', ['-0', String(first)])).code !== 0);
    const { result, console } = await submit('#!/bin/sh\necho after\nexit 4\n', 'afterkill');
    assert.match(result, /^status: exited 4$/m);
    assert.match(console, /^after$/m);
    // And a new one waits for the next job.
    assert.not.equal(await launcherPid(w, L.ps), first);
  });

  test('--sandbox is a shell command line given the script\'s path as one argument, whatever the workdir is called', async () => {
    // As workerd.8 says: /bin/sh -c 'COMMAND "$@"' sandbox SCRIPT, so assignments and lists work.
    await start_(['--sandbox', 'FOO=bar; export FOO; ulimit -n 256; env SANDBOXED=yes']);
    const { id, result, console } = await submit('#!/bin/sh\necho "sandboxed=$SANDBOXED foo=$FOO script=$0"\n', 'sandboxed');
    assert.match(result, /^status: exited 0$/m);
    assert.ok(console.includes(`sandboxed=yes foo=bar script=${path.join(wd, id, 'job', 'script.sh')}\n`), console);
  });

  test('the script is run by its absolute path ($0), one without #! by /bin/sh', async () => {
    await start_();
    const { id, console } = await submit('#!/bin/sh\necho "script=$0"\n', 'dollar0');
    assert.ok(console.includes(`script=${path.join(wd, id, 'job', 'script.sh')}\n`), console);
    const plain = await submit('echo "plain=$0"\n', 'plain');
    assert.match(plain.result, /^status: exited 0$/m);
    assert.ok(plain.console.includes(`plain=${path.join(wd, plain.id, 'job', 'script.sh')}\n`), plain.console);
  });

  test('how the job ended is told exactly: exit 137 is not SIGKILL, SIGKILL is not exit 137', async () => {
    await start_();
    assert.match((await submit('#!/bin/sh\nexit 137\n', 'exit137')).result, /^status: exited 137$/m);
    assert.match((await submit('#!/bin/sh\nkill -9 $$\n', 'sigkill')).result, /^status: signalled 9$/m);
    assert.match((await submit('#!/bin/sh\nkill -TERM $$\n', 'sigterm')).result, /^status: signalled 15$/m);
  });

  test('a job that stops itself (SIGTSTP) is not stopped: its group is orphaned, in a session of its own', async () => {
    await start_();
    const r = await submit('#!/bin/sh\necho before\nkill -TSTP $$\necho after\n', 'tstp');
    assert.match(r.result, /^status: exited 0$/m);
    assert.is(r.console, 'before\nafter\n');
  });

  test('what the job leaves running in its group is killed as the job ends', async () => {
    await start_();
    const marker = `builder-straggler-${process.pid}-${L.name}`;
    const r = await submit(`#!/bin/sh\nsh -c 'exec sleep 600' ${marker} &\necho "bg=$!"\n`, 'straggler');
    assert.match(r.result, /^status: exited 0$/m);
    const bg = Number(/^bg=(\d+)$/m.exec(r.console)?.[1]);
    assert.ok(bg > 0, r.console);
    // Gone, not a zombie left to someone: kill -0 fails for a pid nobody has.
    await until(`straggler ${bg} gone`, async () => (await run('kill', ['-0', String(bg)])).code !== 0, 5_000);
  });

  test('the job has the signals a shell has (none ignored), and the pgid file names its group', async () => {
    await start_();
    // SIGINT and SIGTERM, which the perl launcher ignores, are the job's again: a job that waits on `sleep` dies of them.
    const r = await submit('#!/bin/sh\ngrep -E "^SigIgn" /proc/self/status\nsh -c \'kill -INT $$; sleep 5\'; echo "int=$?"\ncat "$BUILDER_JOB_DIR/../pgid"; echo "me=$$"\n', 'sigs');
    assert.match(r.console, /^SigIgn:\s+0+$/m);
    assert.match(r.console, /^int=130$/m);
    const pg = /^(\d+) (\d+)$/m.exec(r.console);
    assert.ok(pg, r.console);
    assert.match(r.console, new RegExp(`^me=${pg![1]}$`, 'm'));
  });

  test.run();
}

test('a perl launcher killed while its job runs: the job is killed, recorded failed saying why, and the next job runs', async () => {
  await before();
  try {
    const w = await start({});
    await w.waitLog(/jobs are started by \S*perl$/m);
    const perl = await launcherPid(w, /job launcher/);
    const sub = submit('#!/bin/sh\necho started; sleep 30; echo never\n', 'orphaned');
    await until('the job runs', () => fs.readdirSync(wd).some((d) => fs.existsSync(path.join(wd, d, 'console.log')) && fs.readFileSync(path.join(wd, d, 'console.log'), 'utf8').includes('started')));
    process.kill(perl, 'SIGKILL');
    const { result, console } = await sub;
    assert.match(result, /^status: failed: the job's launcher \(\S*perl, pid \d+\) exited SIGKILL, so the job was killed$/m);
    assert.match(console, /^workerd: the job's launcher .* so the job was killed$/m);
    assert.not.match(console, /never/);
    assert.is((await run('pgrep', ['-f', 'sleep 30'])).stdout.trim(), '', 'the job\'s sleep was killed');
    assert.match((await submit('#!/bin/sh\nexit 3\n', 'next')).result, /^status: exited 3$/m);
  } finally { await after(); }
});

test('a perl that does not work is done without: jobs are started by forking workerd, and run', async () => {
  await before();
  try {
    const w = await start({ WORKERD_PERL: '/bin/false' });
    await w.waitLog(/jobs are started by forking workerd \(\/bin\/false: it exited 1\)$/m);
    assert.match((await submit('#!/bin/sh\nexit 5\n', 'noperl')).result, /^status: exited 5$/m);
  } finally { await after(); }
});

test('each job starts in a fresh, empty directory of mode 0755, also in the spare the job before left, which nothing of that job reaches', async () => {
  await before();
  try {
    await start({});
    // Leaves files and a directory, changes modes, and leaves a process outside its group
    // (setsid: a build daemon) that writes to its console and directory after the job ended.
    await submit('#!/bin/sh\necho a > a.txt; mkdir sub; echo b > sub/b.txt; chmod 700 .\nsetsid sh -c "sleep 1; echo LEAK; echo x > leaked" &\n', 'messy');
    await until('the spare', () => fs.existsSync(path.join(wd, '.spare')));
    assert.equal(fs.readdirSync(path.join(wd, '.spare')).sort(), ['console.log', 'job', 'pgid'], 'the spare: workerd\'s pgid file, and a new job/ and console.log');
    assert.equal(fs.readdirSync(path.join(wd, '.spare', 'job')), []);
    const { id, console } = await submit('#!/bin/sh\nls -A; stat -c "mode=%a" . ..; sleep 2; ls -A\n', 'clean');
    assert.is(console, 'script.sh\nmode=755\nmode=755\nscript.sh\n', 'started empty, and the leftover process wrote nothing here');
    // Delivered, its directory is the spare: no job directory is left behind.
    await until(`job ${id}'s directory gone`, () => !fs.existsSync(path.join(wd, id)));
    assert.equal(fs.readdirSync(wd).filter((n) => /^[0-9a-f]{8}-/.test(n)), []);
    // A burst of jobs leaves no job directory either: each one's goes to a free spare, or is removed.
    const burst = await Promise.all(Array.from({ length: 8 }, () => submit('#!/bin/sh\ntrue\n', 'burst')));
    for (const b of burst) await until(`job ${b.id}'s directory gone`, () => !fs.existsSync(path.join(wd, b.id)));
    const left = fs.readdirSync(wd).filter((n) => /^[0-9a-f]{8}-|^\.spare/.test(n));
    assert.ok(left.every((n) => n === '.spare' || n === '.spare.1'), `left in the workdir: ${left.join(' ')}`);
    // A spare someone put a file into is not used: the job still starts empty.
    await until('the spare again', () => fs.existsSync(path.join(wd, '.spare')));
    fs.writeFileSync(path.join(wd, '.spare', 'planted'), 'x');
    assert.is((await submit('#!/bin/sh\nls -A ..\n', 'clean2')).console, 'console.log\njob\npgid\n');
  } finally { await after(); }
});

test('waiting for console news that does not come keeps nothing: a job silent for hours does not grow workerd', async () => {
  const j = new LocalJob({ id: newId(), name: 'quiet', platform: 'p', attempt: 1, timeoutMs: 1000, network: false, script: '' }, wd);
  for (let i = 0; i < 2_000; i++) await j.changed(j.version, 0);   // the console pump's wait, a thousand times over
  assert.is((j as unknown as { wake: unknown[] }).wake.length, 0, 'wakers of waits that timed out are gone');
  const news = j.changed(j.version, 60_000);
  j.notify();
  await news;   // news still wakes a waiter at once
});

test.run();
