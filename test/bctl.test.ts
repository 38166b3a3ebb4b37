// bctl end to end: the built bctl against a fresh spool per test, no daemon.
// Covers the command line (usage, help, exit statuses) and the verbs that
// write the spool: schedule, orb-build, unschedule, reschedule, execute,
// submit, drop-platform, undrop-platform, cancel; info's output; and the
// documentation of every verb and flag in man/bctl.1.
// inspect and fsck have their own files (bctl-inspect, bctl-fsck).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { bctl, run, BIN, FIXTURES, ROOT, tmpdir, until, readIf, drop } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { parseJob, parseSchedule, EXECUTE_PRIORITY } from '../src/spool/job.js';
import { parseResult } from '../src/spool/result.js';
import { parseScheduleState, formatScheduleState, emptyState } from '../src/spool/schedstate.js';
import { claim, finalize, reject } from '../src/spool/state.js';
import { isId, DIRS } from '../src/spool/paths.js';
import { MAX_FILE } from '../src/spool/headers.js';
import { COMMANDS, GLOBAL_FLAGS, main } from '../src/bctl/main.js';
import { Readable, Writable } from 'node:stream';

let spool = '';
let sp: SpoolPaths;
const cleanup: string[] = [];

test.before.each(async () => {
  spool = await tmpdir('bctl');
  sp = new SpoolPaths(spool);
  cleanup.push(spool);
});
test.after.each(async () => {
  for (const d of cleanup.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

const OK = path.join(FIXTURES, 'ok.sh');
const EXIT3 = path.join(FIXTURES, 'exit3.sh');
const ls = (dir: string): string[] => { try { return fs.readdirSync(dir).sort(); } catch { return []; } };
const firstLine = (s: string): string => s.split('\n')[0]!;

/**
 * bctl's main() in this process, for the many usage checks: the built program
 * only adds `process.exitCode = await main(...)`, which the spawned checks
 * cover, and a spawn costs a quarter second.
 */
async function inProcess(args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
  const code = await main(['-s', spool, ...args], {
    env: { ...process.env }, stdin: Readable.from([Buffer.from(input)]),
    stdout: sink((s) => { stdout += s; }), stderr: sink((s) => { stderr += s; }),
  });
  return { code, stdout, stderr };
}

async function usageFails(args: string[], reason: RegExp, opts: { input?: string; spawn?: boolean } = { spawn: true }): Promise<string> {
  const r = opts.spawn ? await bctl(spool, args, opts.input === undefined ? {} : { input: opts.input }) : await inProcess(args, opts.input);
  assert.is(r.code, 2, `exit 2 for ${args.join(' ')}: ${r.stderr}`);
  assert.match(firstLine(r.stderr), /^bctl: /);
  assert.match(firstLine(r.stderr), reason);
  assert.match(r.stderr.split('\n')[1] ?? '', /^usage: bctl/);
  assert.is(r.stdout, '');
  return r.stderr;
}

/** Usage checks in this process (see inProcess). */
async function usageAll(cases: Array<[string[], RegExp]>): Promise<void> {
  for (const [a, re] of cases) await usageFails(a, re, { spawn: false });
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await bctl(spool, args, input === undefined ? {} : { input });
  assert.is(r.code, 0, `bctl ${args.join(' ')} failed: ${r.stderr}`);
  assert.is(r.stderr, '');
  return r.stdout;
}

/** bctl orb-build ARGS succeeds, with at most the warning that the spool has no template for it. */
async function orbOk(args: string[]): Promise<void> {
  const r = await bctl(spool, ['orb-build', ...args]);
  assert.is(r.code, 0, `bctl orb-build ${args.join(' ')} failed: ${r.stderr}`);
  assert.match(r.stderr, /^(bctl: warning: no templates\/orb-build\.template\.[^:]+: unless spoold reads one from its --templates, [^\n]*\n)?$/);
}

async function fails(args: string[], message: RegExp): Promise<string> {
  const r = await bctl(spool, args);
  assert.is(r.code, 1, `exit 1 for ${args.join(' ')}: ${r.code} ${r.stderr}`);
  assert.match(r.stderr, /^bctl: /);
  assert.match(r.stderr, message);
  return r.stderr;
}

async function info(): Promise<any> {
  return JSON.parse(await ok(['info', '--json']));
}

// ---- command line ------------------------------------------------------------

test('no command, unknown command, unknown flag: one line why, the usage, exit 2', async () => {
  await usageFails([], /no command given/);
  await usageFails(['frobnicate'], /unknown command 'frobnicate'/);
  const e = await usageFails(['schedule', 'a', 'p', OK, '--bogus'], /unknown option --bogus/);
  assert.match(e, /usage: bctl \[-s SPOOL\] schedule NAME PLATFORM SCRIPT/);
  await usageAll([
    [['info', '-x'], /unknown option -x/],
  ]);
  await usageFails(['info', '--period', 'daily'], /unknown option --period/, { spawn: false });   // a flag of another verb
});

// Found by a tester: mri made `--wait=no` an argument (a second job was
// queued from a file named no), and read `-x.sh` as -x -. -s -h, so the help
// was printed, exit 0, and nothing was queued.
test('a value given to a flag that takes none, and a word starting with - that is no flag, are usage errors', async () => {
  await usageFails(['submit', 'debian-12', OK, '--wait=no'], /^bctl: option --wait takes no value \(--wait=no\)$/);
  await usageAll([
    [['info', '--json=yes'], /^bctl: option --json takes no value/],
    [['submit', 'debian-11', '-x.sh'], /^bctl: unknown option -x in -x\.sh \(to name a file that starts with -, write \.\/-x\.sh\)$/],
    [['-x', 'info'], /^bctl: unknown option -x$/],
  ]);
  assert.equal(ls(path.join(spool, 'new')), [], 'nothing queued');
});

// Found by a new user: `-s A --spool B` used A and dropped B without a word,
// `--frob info` said "no command given", and `-s/dir` was read as flags.
test('a flag given as -s and as --spool, an unknown flag before the command, and -sDIR are usage errors that say so', async () => {
  await usageAll([
    [['--spool', '/tmp', 'info'], /^bctl: --spool given more than once$/],   // after the -s SPOOL every call here starts with
    [['--frob', 'info'], /^bctl: unknown option --frob$/],
    [['--versio'], /^bctl: unknown option --versio$/],
    [[`-s${spool}`, 'info'], new RegExp(`^bctl: option -s takes its value as the next argument: write -s ${spool}$`)],
    // --job takes a value in observe-latest but none in inspect: the command's own flags decide (found in review).
    [['inspect', '--job', '-s/tmp/x', 'ID'], /^bctl: option -s takes its value as the next argument: write -s \/tmp\/x$/],
  ]);
  // A command flag before the command, whose value is a command's name, is still that flag's value (found in review).
  assert.match(await ok(['--name', 'info', 'submit', 'debian-12', OK]), /^[0-9a-f-]{36}\n$/);
});

test('missing and extra arguments exit 2 and name what is missing', async () => {
  await usageAll([
    [['schedule', 'a', 'p'], /missing SCRIPT/],
    [['unschedule'], /missing NAME/],
    [['unschedule', 'a', 'b'], /too many arguments/],
    [['info', 'extra'], /too many arguments/],
    [['submit', 'p'], /missing SCRIPT/],
    [['cancel'], /missing ID/],
  ]);
});

test('string flags refuse an empty value and repetition', async () => {
  await usageAll([
    [['schedule', 'a', 'p', OK, '--period'], /--period needs a value/],
    [['drop-platform', 'x', '--reason', ''], /^bctl: --reason needs a value TEXT \(none was given, or an empty one\)$/],
    [['schedule', 'a', 'p', OK, '--period', 'daily', '--period', 'weekly'], /--period given more than once/],
  ]);
});

test('-s needs a value', async () => {
  const r = await run(process.execPath, [BIN('bctl'), 'info', '-s']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^bctl: --spool needs a value/);
  for (const args of [['--spool'], ['-s']]) {   // and no command: the missing value is what to fix first
    const n = await run(process.execPath, [BIN('bctl'), ...args]);
    assert.is(n.code, 2);
    assert.is(n.stderr, 'bctl: --spool needs a value SPOOL (none was given, or an empty one)\nusage: bctl [-s SPOOL] COMMAND [ARGS...]; bctl --help lists the commands\n');
  }
  const t = await run(process.execPath, [BIN('bctl'), '-s', 'info']);   // the flag took the command
  assert.is(t.code, 2);
  assert.match(t.stderr, /^bctl: --spool needs a value SPOOL before the command \(it took 'info'\)\n/);
});

test('--help and -h print the usage of bctl and of every command on stdout, exit 0', async () => {
  for (const args of [['--help'], ['-h']]) {
    const r = await bctl(spool, args);
    assert.is(r.code, 0);
    assert.is(r.stderr, '');
    assert.match(r.stdout, /^usage: bctl/);
    for (const c of COMMANDS) assert.ok(r.stdout.includes(`  ${c.name} `), `bctl --help lists ${c.name}`);
  }
  for (const [i, c] of COMMANDS.entries()) {
    for (const h of [i % 2 === 0 ? '--help' : '-h']) {
      const args = [c.name, h, 'even', 'with', '--bad', 'arguments'];
      const r = i < 2 ? await bctl(spool, args) : await inProcess(args);   // the spawned ones prove the wiring
      assert.is(r.code, 0, `${c.name} ${h}`);
      assert.is(r.stderr, '');
      assert.ok(r.stdout.startsWith(`usage: bctl [-s SPOOL] ${c.name}`), r.stdout);
      for (const f of c.flags) assert.ok(r.stdout.includes(`--${f.name}`), `${c.name} --help shows --${f.name}`);
    }
  }
  // Flags that exclude each other show so (found by a new user).
  assert.match((await inProcess(['inspect', '--help'])).stdout, /^usage: bctl \[-s SPOOL\] inspect ID\|DIR \[--console \| --script \| --job\] \[--output DIR\]\n/);
  assert.equal(ls(spool), [], 'help writes nothing');
});

test('the spool comes from -s, else $BUILDER_SPOOL', async () => {
  const r = await run(process.execPath, [BIN('bctl'), 'schedule', 'envjob', 'debian-12', OK], { env: { BUILDER_SPOOL: spool } });
  assert.is(r.code, 0, r.stderr);
  assert.ok(fs.existsSync(sp.schedule('envjob')));
  const other = await tmpdir('bctl-other');
  cleanup.push(other);
  const r2 = await run(process.execPath, [BIN('bctl'), '--spool', other, 'schedule', 'flagjob', 'debian-12', OK], { env: { BUILDER_SPOOL: spool } });
  assert.is(r2.code, 0, r2.stderr);
  assert.ok(fs.existsSync(path.join(other, 'schedules', 'flagjob')));
  assert.not.ok(fs.existsSync(sp.schedule('flagjob')));
});

// ---- schedule, orb-build ------------------------------------------------------

test('schedule writes schedules/NAME that the daemon parser accepts, daily by default', async () => {
  assert.is(await ok(['schedule', 'hello', 'debian-12', OK]), '');
  const text = fs.readFileSync(sp.schedule('hello'), 'utf8');
  const s = parseSchedule(text, 'schedules/hello', 'hello');
  assert.is(s.platform, 'debian-12');
  assert.is(s.schedule, '@daily');
  assert.is(s.tz, 'UTC');
  assert.is(s.body, fs.readFileSync(OK, 'utf8'));
  assert.equal(ls(sp.tmp), [], 'nothing left in tmp/');
  assert.is(fs.statSync(sp.schedule('hello')).mode & 0o002, 0, 'not world-writable');
});

test('schedule with --cron, --tz, --timeout, --retries, and --period', async () => {
  await ok(['schedule', 'c', 'debian-12', OK, '--cron', '30 2 * * 1-5', '--tz', 'Europe/Berlin', '--timeout', '1h30m', '--retries', '0']);
  const s = parseSchedule(fs.readFileSync(sp.schedule('c')), 'c', 'c');
  assert.is(s.schedule, '30 2 * * 1-5');
  assert.is(s.tz, 'Europe/Berlin');
  assert.is(s.timeout, 5_400_000);
  assert.is(s.retries, 0);
  for (const p of ['hourly', 'weekly', 'never']) {
    await ok(['schedule', `p-${p}`, 'debian-12', OK, '--period', p]);
    assert.is(parseSchedule(fs.readFileSync(sp.schedule(`p-${p}`)), 'x', `p-${p}`).schedule, p === 'never' ? 'never' : `@${p}`);
  }
  // Blanks around a cron expression (pasted) are dropped, and a tab inside is a blank (a tester got exit 1 and a header error).
  for (const [n, cron, want] of [['c-pasted', ' 0 0 * * * ', '0 0 * * *'], ['c-named', '@daily ', '@daily'], ['c-tab', '0 0\t* *  *', '0 0 * * *']] as const) {
    await ok(['schedule', n, 'debian-12', OK, '--cron', cron]);
    assert.is(parseSchedule(fs.readFileSync(sp.schedule(n)), 'x', n).schedule, want);
  }
});

test('schedule reads the script from standard input for -', async () => {
  await ok(['schedule', 'fromstdin', 'debian-12', '-'], '#!/bin/sh\necho from stdin\n');
  assert.is(parseSchedule(fs.readFileSync(sp.schedule('fromstdin')), 'x', 'fromstdin').body, '#!/bin/sh\necho from stdin\n');
});

test('bad names, periods, cron expressions, zones and durations are usage errors; nothing is written', async () => {
  await usageAll([
    [['schedule', '../evil', 'debian-12', OK], /bad job name "\.\.\/evil"/],
    [['schedule', '.x', 'debian-12', OK], /bad job name "\.x"/],
    [['schedule', 'latest', 'debian-12', OK], /bad job name/],
    [['schedule', 'a', '../p', OK], /bad platform/],
    [['schedule', 'a', 'debian-12', OK, '--period', 'monthly'], /bad period 'monthly'/],
    [['schedule', 'a', 'debian-12', OK, '--cron', '61 * * * *'], /'61 \* \* \* \*'.*; write @hourly, @daily, @weekly, never, or 5 cron fields/],
    [['schedule', 'a', 'debian-12', OK, '--cron', '* * *'], /'\* \* \*'.*; write @hourly/],
    [['schedule', 'a', 'debian-12', OK, '--cron', '@fortnightly'], /'@fortnightly'.*; write @hourly/],
    [['schedule', 'a', 'debian-12', OK, '--tz', 'Mars/Olympus'], /unknown time zone 'Mars\/Olympus'/],
    [['schedule', 'a', 'debian-12', OK, '--timeout', '5x'], /bad timeout "5x"/],
    [['schedule', 'a', 'debian-12', OK, '--timeout', '0s'], /bad timeout/],
    [['schedule', 'a', 'debian-12', OK, '--retries', '-1'], /bad retries '-1'/],
    [['schedule', 'a', 'debian-12', OK, '--period', 'daily', '--cron', '0 * * * *'], /--period and --cron exclude each other/],
  ]);
  assert.equal(ls(sp.schedules), []);
});

test('schedule of an existing name fails and leaves the file alone', async () => {
  await ok(['schedule', 'twice', 'debian-12', OK]);
  const edited = fs.readFileSync(sp.schedule('twice'), 'utf8').replace('@daily', '@hourly   # edited by hand');
  fs.writeFileSync(sp.schedule('twice'), edited);
  const e = await fails(['schedule', 'twice', 'debian-12', EXIT3], /schedules\/twice: schedule twice exists/);
  assert.match(e, /bctl unschedule twice/);
  assert.is(e.trim().split('\n').length, 1);
  assert.is(fs.readFileSync(sp.schedule('twice'), 'utf8'), edited);
  assert.equal(ls(sp.tmp), [], 'the staged copy is removed');
});

test('schedule of a missing or unusable script fails naming the file', async () => {
  await fails(['schedule', 'a', 'debian-12', '/nonexistent/x.sh'], /\/nonexistent\/x\.sh: no such script/);
  await fails(['schedule', 'a', 'debian-12', '-'], /stdin: the script is empty/);
  const crlf = path.join(spool, 'crlf.sh');
  fs.writeFileSync(crlf, '#!/bin/sh\r\necho\r\n');
  await fails(['schedule', 'a', 'debian-12', crlf], /crlf\.sh:1: carriage return/);
  assert.not.ok(fs.existsSync(sp.schedule('a')));
});

test('schedule over the state a schedule removed by hand left: a never schedule is said to start afresh, not to run at once', async () => {
  await ok(['schedule', 'zz', 'debian-12', OK, '--period', 'daily']);
  fs.writeFileSync(sp.scheduleState('zz'), formatScheduleState({ ...emptyState(), fired: new Date('2026-01-01T00:00:00Z') }));
  fs.rmSync(sp.schedule('zz'));
  const r = await bctl(spool, ['schedule', 'zz', 'debian-12', OK, '--period', 'never']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, 'bctl: removed state/zz, left by an earlier schedule zz removed by hand, so that this one starts afresh\n');
});

test('orb-build writes a template schedule without body or platform; it warns when the spool has no template', async () => {
  const bare = await bctl(spool, ['orb-build', 'hello-orb', 'hello']);
  assert.is(bare.code, 0, bare.stderr);
  assert.is(bare.stderr, "bctl: warning: no templates/orb-build.template.*: unless spoold reads one from its --templates, each firing queues nothing (spoold logs why); copy one in, e.g. from builder's templates/\n");
  // With a platform, each firing records a failed job (found by a tester: the warning said it queued nothing).
  const one = await bctl(spool, ['orb-build', 'nope-orb', 'hello', '--platform', 'nope']);
  assert.is(one.code, 0, one.stderr);
  assert.is(one.stderr, "bctl: warning: no templates/orb-build.template.nope: unless spoold reads one from its --templates, each firing records a job failed: no template in done/nope-orb/; copy one in, e.g. from builder's templates/\n");
  fs.mkdirSync(sp.templates, { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'templates', 'orb-build.template.freebsd'), path.join(sp.templates, 'orb-build.template.freebsd-14'));
  const text = fs.readFileSync(sp.schedule('hello-orb'), 'utf8');
  const s = parseSchedule(text, 'x', 'hello-orb');
  assert.is(s.template, 'orb-build');
  assert.equal(s.vars, { OPAM_PACKAGE: 'hello' });
  assert.is(s.platform, undefined);
  assert.is(s.body, '');
  assert.is(s.schedule, '@daily');
  assert.is(s.network, true, 'an orb build downloads its sources, also in a sandbox');
  await ok(['orb-build', 'weekly-orb', 'mirage.4.5.0', '--period', 'weekly', '--platform', 'freebsd-14']);   // a template for it: no warning
  const w = parseSchedule(fs.readFileSync(sp.schedule('weekly-orb')), 'x', 'weekly-orb');
  assert.is(w.platform, 'freebsd-14');
  assert.is(w.schedule, '@weekly');
  await usageFails(['orb-build', 'bad', 'a package'], /bad opam package/);
  await usageFails(['orb-build', 'bad', 'x # y'], /bad opam package/, { spawn: false });
  await fails(['orb-build', 'hello-orb', 'other'], /exists/);
});

// ---- unschedule, reschedule ---------------------------------------------------

test('unschedule removes the schedule, its state and its queued instances, and prints their ids', async () => {
  await ok(['schedule', 'gone', 'debian-12', OK]);
  await ok(['schedule', 'stays', 'debian-12', OK]);
  const ids = (await ok(['execute', 'gone'])).trim().split('\n');
  const other = (await ok(['execute', 'stays'])).trim();
  const oneoff = (await ok(['submit', 'debian-12', OK, '--name', 'gone'])).trim();
  await drop(spool, 'new', 'broken', 'this is not a job\n');
  assert.ok(fs.existsSync(sp.scheduleState('gone')));
  const out = (await ok(['unschedule', 'gone'])).trim().split('\n').sort();
  assert.equal(out, [...ids, oneoff].sort());
  assert.not.ok(fs.existsSync(sp.schedule('gone')));
  assert.not.ok(fs.existsSync(sp.scheduleState('gone')));
  assert.equal(ls(sp.new), [other, 'broken'].sort());
  assert.ok(fs.existsSync(sp.schedule('stays')));
});

test('unschedule of a missing schedule fails; of a broken one succeeds', async () => {
  await fails(['unschedule', 'nosuch'], /schedules\/nosuch: no schedule nosuch/);
  await drop(spool, 'schedules', 'broken', 'name: broken\nplatfrom: x\n');
  await ok(['unschedule', 'broken']);
  assert.not.ok(fs.existsSync(sp.schedule('broken')));
  await usageFails(['unschedule', '../evil'], /bad job name/);
});

test('reschedule sets next: in the state and keeps the other fields', async () => {
  await ok(['schedule', 'r', 'debian-12', OK]);
  fs.mkdirSync(sp.state, { recursive: true });
  fs.writeFileSync(sp.scheduleState('r'), formatScheduleState({ ...emptyState(), fired: new Date('2026-01-01T00:00:00Z'), lastStatus: 'exited 0' }));
  await ok(['reschedule', 'r', '2030-06-01T12:00:00+02:00']);
  const st = parseScheduleState(fs.readFileSync(sp.scheduleState('r')), 'state/r');
  assert.is(st.next?.toISOString(), '2030-06-01T10:00:00.000Z');
  assert.is(st.fired?.toISOString(), '2026-01-01T00:00:00.000Z');
  assert.is(st.lastStatus, 'exited 0');
  const j = await info();
  assert.is(j.schedules[0].next, '2030-06-01T10:00:00Z');
  assert.is(j.schedules[0].due, false);
});

test('reschedule --period rewrites the schedule header and keeps the body', async () => {
  await ok(['schedule', 'r', 'debian-12', OK, '--timeout', '10m']);
  await ok(['reschedule', 'r', '2030-06-01T12:00:00Z', '--period', 'hourly']);
  const s = parseSchedule(fs.readFileSync(sp.schedule('r')), 'x', 'r');
  assert.is(s.schedule, '@hourly');
  assert.is(s.timeout, 600_000);
  assert.is(s.body, fs.readFileSync(OK, 'utf8'));
});

test('a bad period suggests --cron only to schedule, the one command that takes it', async () => {
  assert.is(firstLine(await usageFails(['schedule', 'a', 'debian-12', OK, '--period', 'monthly'], /bad period/)),
    "bctl: bad period 'monthly'; use one of hourly, daily, weekly, never (or --cron EXPR)");
  assert.is(firstLine(await usageFails(['reschedule', 'a', '2030-06-01T12:00:00Z', '--period', 'yearly'], /bad period/)),
    "bctl: bad period 'yearly'; use one of hourly, daily, weekly, never");
  assert.is(firstLine(await usageFails(['orb-build', 'a', 'hello', '--period', 'monthly'], /bad period/)),
    "bctl: bad period 'monthly'; use one of hourly, daily, weekly, never");
});

test('reschedule refuses a time that is not RFC 3339, a bad period and a missing schedule', async () => {
  await ok(['schedule', 'r', 'debian-12', OK]);
  for (const t of ['tomorrow', '2030-06-01', '2030-02-30T00:00:00Z', '2030-06-01T25:00:00Z', '2030-06-01T12:00:00', '1700000000', '1969-12-31T00:00:00Z']) {
    await usageFails(['reschedule', 'r', t], /bad time NEXT/, { spawn: false });
  }
  await usageFails(['reschedule', 'r', '2030-06-01T12:00:00Z', '--period', 'monthly'], /bad period/);
  await fails(['reschedule', 'nosuch', '2030-06-01T12:00:00Z'], /no schedule nosuch/);
  assert.not.ok(fs.existsSync(sp.scheduleState('r')));
});

// ---- execute, submit ----------------------------------------------------------

test('execute queues the schedule ahead of the queue and records the firing', async () => {
  const before = (await ok(['submit', 'debian-12', OK, EXIT3])).trim().split('\n');
  await ok(['schedule', 'now', 'debian-12', OK]);
  const id = (await ok(['execute', 'now'])).trim();
  assert.ok(isId(id));
  const job = parseJob(fs.readFileSync(sp.queued(id)), 'x', id);
  assert.is(job.priority, EXECUTE_PRIORITY);
  assert.is(job.origin, 'execute');
  assert.is(job.name, 'now');
  const q = (await info()).queues['debian-12'].map((x: any) => x.id);
  assert.equal(q, [id, ...before], 'the executed job comes first though it was queued last');
  const st = parseScheduleState(fs.readFileSync(sp.scheduleState('now')), 'x');
  assert.is(st.lastId, id);
  assert.ok(st.fired !== undefined);
  await fails(['execute', 'nosuch'], /no schedule nosuch/);
});

test('execute --platform, and templates from --templates and $BUILDER_TEMPLATES', async () => {
  await orbOk(['orb', 'hello']);
  // spoold may have the template from its --templates: said, for bctl needs the same (found by a tester).
  await fails(['execute', 'orb'], /no platform has template orb-build; .*; if spoold reads templates from its --templates directory, give bctl the same --templates \(or \$BUILDER_TEMPLATES\)\n$/);
  const tdir = await tmpdir('bctl-templates');
  cleanup.push(tdir);
  fs.writeFileSync(path.join(tdir, 'orb-build.template.freebsd-14'), '#!/bin/sh\nopam install %%OPAM_PACKAGE%% # %%PLATFORM%%\n');
  fs.writeFileSync(path.join(tdir, 'orb-build.template.debian-12'), '#!/bin/sh\nopam install %%OPAM_PACKAGE%%\n');
  const ids = (await ok(['execute', 'orb', '--templates', tdir])).trim().split('\n');
  assert.is(ids.length, 2);
  const jobs = ids.map((i) => parseJob(fs.readFileSync(sp.queued(i)), 'x', i));
  assert.equal(jobs.map((j) => j.platform), ['debian-12', 'freebsd-14']);
  assert.is(jobs[1]!.body, '#!/bin/sh\nopam install hello # freebsd-14\n');
  const r = await bctl(spool, ['execute', 'orb', '--platform', 'freebsd-14'], { env: { BUILDER_TEMPLATES: tdir } });
  assert.is(r.code, 0, r.stderr);
  assert.is(parseJob(fs.readFileSync(sp.queued(r.stdout.trim())), 'x').platform, 'freebsd-14');
  // Found by a new user: a --templates directory that is not there was taken silently.
  await usageFails(['execute', 'orb', '--templates', `${tdir}-missing`], new RegExp(`^bctl: --templates ${tdir}-missing: not a directory$`));
  await usageFails(['execute', 'orb', '--templates', '/etc/passwd/t'], /^bctl: --templates \/etc\/passwd\/t: not a directory$/);   // ENOTDIR: it exited 1 with the errno
  const env = await bctl(spool, ['execute', 'orb'], { env: { BUILDER_TEMPLATES: `${tdir}/orb-build.template.debian-12` } });
  assert.is(env.code, 2);
  assert.match(env.stderr, /^bctl: \$BUILDER_TEMPLATES .*: not a directory$/m);
});

test('execute --platform refuses a platform the schedule does not run on, and queues nothing', async () => {
  await ok(['schedule', 'fixed', 'debian-12', OK, '--period', 'never']);
  await fails(['execute', 'fixed', '--platform', 'debain-12'], /^bctl: schedules\/fixed: schedule fixed does not run on platform debain-12; it runs on debian-12 only\n$/);
  assert.equal(ls(sp.new), []);
  assert.not.ok(fs.existsSync(sp.scheduleState('fixed')), 'no firing recorded');
  const id = (await ok(['execute', 'fixed', '--platform', 'debian-12'])).trim();
  assert.is(parseJob(fs.readFileSync(sp.queued(id)), 'x', id).platform, 'debian-12');
  // A template schedule: only a platform that has the template.
  await orbOk(['orb', 'hello']);
  const tdir = await tmpdir('bctl-templates');
  cleanup.push(tdir);
  fs.writeFileSync(path.join(tdir, 'orb-build.template.freebsd-14'), '#!/bin/sh\nopam install %%OPAM_PACKAGE%%\n');
  await fails(['execute', 'orb', '--templates', tdir, '--platform', 'debian-12'],
    /schedule orb does not run on platform debian-12; it runs on the platforms with a template orb-build: freebsd-14; add templates\/orb-build\.template\.debian-12/);
  assert.equal(ls(sp.new), [id]);
  assert.equal(ls(sp.done), [], 'nothing recorded as failed either');
});

test('execute of a template that is missing records the instance failed and exits 1', async () => {
  await orbOk(['orb', 'hello', '--platform', 'sparc']);
  const r = await bctl(spool, ['execute', 'orb']);
  assert.is(r.code, 1);
  const id = r.stdout.trim();
  assert.ok(isId(id));
  assert.match(r.stderr, new RegExp(`^bctl: ${id} \\(sparc\\) failed at once: .*no template orb-build\\.template\\.sparc`));
  const res = parseResult(fs.readFileSync(path.join(sp.doneDir('orb', id), 'result')), 'x');
  assert.is(res.status.kind, 'failed');
  assert.equal(ls(sp.new), []);
  // A directory where the template belongs is said as such, not as a missing template.
  fs.mkdirSync(path.join(sp.templates, 'orb-build.template.sparc'), { recursive: true });
  const d = await bctl(spool, ['execute', 'orb']);
  assert.is(d.code, 1);
  assert.match(d.stderr, /failed at once: .*templates\/orb-build\.template\.sparc: not a regular file \(a directory\); put the template there as a plain file/);
});

test('submit of several scripts queues one job each, ids printed in order and in queue order', async () => {
  const ids = (await ok(['submit', 'debian-12', OK, EXIT3, OK, '--timeout', '90s', '--retries', '1'])).trim().split('\n');
  assert.is(ids.length, 3);
  assert.ok(ids.every(isId));
  assert.equal([...ids].sort(), ids, 'ids sort in submission order');
  assert.equal(ls(sp.new), [...ids].sort());
  const jobs = ids.map((i) => parseJob(fs.readFileSync(sp.queued(i)), `new/${i}`, i));
  assert.equal(jobs.map((j) => j.name), ['ok.sh', 'exit3.sh', 'ok.sh']);
  assert.is(jobs[1]!.body, fs.readFileSync(EXIT3, 'utf8'));
  assert.ok(jobs.every((j) => j.origin === 'submit' && j.timeout === 90_000 && j.retries === 1 && j.platform === 'debian-12' && j.attempt === 0));
  const q = (await info()).queues['debian-12'].map((x: any) => x.id);
  assert.equal(q, ids);
});

test('submit from standard input, --name and --priority', async () => {
  const id = (await ok(['submit', 'debian-12', '-'], '#!/bin/sh\necho piped\n')).trim();
  const j = parseJob(fs.readFileSync(sp.queued(id)), 'x', id);
  assert.is(j.name, 'stdin');
  assert.is(j.body, '#!/bin/sh\necho piped\n');
  const lo = (await ok(['submit', 'debian-12', OK, '--name', 'later', '--priority', '-5'])).trim();
  const hi = (await ok(['submit', 'debian-12', OK, '--name', 'urgent', '--priority', '5'])).trim();
  const hj = parseJob(fs.readFileSync(sp.queued(hi)), 'x', hi);
  assert.is(hj.name, 'urgent');
  assert.is(hj.priority, 5);
  assert.is(parseJob(fs.readFileSync(sp.queued(lo)), 'x', lo).priority, -5);
  assert.equal((await info()).queues['debian-12'].map((x: any) => x.id), [hi, id, lo]);
  const odd = path.join(spool, '-my script!.sh');
  fs.writeFileSync(odd, '#!/bin/sh\ntrue\n');
  const oid = (await ok(['submit', 'debian-12', odd])).trim();
  assert.is(parseJob(fs.readFileSync(sp.queued(oid)), 'x', oid).name, 'my_script_.sh');
});

test('submit of more than 1 MiB from standard input says by how much to cut it, headers counted; of far more, that it is over the limit, without a wrong size', async () => {
  const near = await bctl(spool, ['submit', 'debian-12', '-'], { input: Buffer.alloc(1_100_000, 0x23) });
  assert.is(near.code, 1);
  assert.match(near.stderr, /^bctl: stdin: the job file would be \d+ bytes, over the limit of 1048576; shorten the script by \d+ bytes or more \(the file holds it and its headers\)\n$/);
  const r = await bctl(spool, ['submit', 'debian-12', '-'], { input: Buffer.alloc(5_000_000, 0x23) });
  assert.is(r.code, 1);
  assert.is(r.stderr, 'bctl: stdin: the script is over the limit of 1048576 bytes; keep job scripts small; fetch large inputs from the script\n');
  assert.is(r.stdout, '');
  assert.equal(ls(sp.new), []);
});

test('the default job name is the script file name made a name, as bctl(1) says', async () => {
  const dir = await tmpdir('bctl-scripts');
  cleanup.push(dir);
  const cases: Array<[string, string]> = [
    ['my build (1).sh', 'my_build__1_.sh'], ['.hidden.sh', 'hidden.sh'], ['--x.sh', 'x.sh'], ['-.-', 'job'],
    ['latest', 'job'], ['caf\u00e9', 'caf_'], [`${'a'.repeat(70)}.sh`, 'a'.repeat(64)],
  ];
  for (const [file, name] of cases) {
    fs.writeFileSync(path.join(dir, file), '#!/bin/sh\ntrue\n');
    const id = (await ok(['submit', 'debian-12', path.join(dir, file)])).trim();
    assert.is(parseJob(fs.readFileSync(sp.queued(id)), 'x', id).name, name, file);
  }
});

test('submit refuses stdin twice, bad values, and queues nothing when a script is missing', async () => {
  await usageAll([
    [['submit', 'debian-12', '-', '-'], /standard input \(-\) can be read only once/],
    [['submit', 'debian-12', OK, '--priority', '1001'], /bad priority/],
    [['submit', 'debian-12', OK, '--priority', '-1001'], /bad priority '-1001'/],
    [['submit', 'debian-12', OK, '--name', '.x'], /bad job name/],
    [['submit', '../p', OK], /bad platform/],
  ]);
  await fails(['submit', 'debian-12', OK, '/nonexistent.sh'], /nonexistent\.sh: no such script/);
  assert.equal(ls(sp.new), []);
});

test('a script within 1 MiB whose job or schedule file would be over it is refused, and nothing is written', async () => {
  // The job file is the script and ~130 bytes of headers: find out how many.
  const dir = await tmpdir('bctl-scripts');
  cleanup.push(dir);
  const small = path.join(dir, 'near.sh');
  fs.writeFileSync(small, '#!/bin/sh\n');
  const id0 = (await ok(['submit', 'debian-12', small])).trim();
  const overhead = fs.statSync(sp.queued(id0)).size - fs.statSync(small).size;
  fs.rmSync(sp.queued(id0));
  const script = (n: number) => fs.writeFileSync(small, '#!/bin/sh\n' + '#'.repeat(n - 10));
  script(MAX_FILE - overhead);   // exactly at the limit: spoold takes it
  const id = (await ok(['submit', 'debian-12', small])).trim();
  assert.is(fs.statSync(sp.queued(id)).size, MAX_FILE);
  fs.rmSync(sp.queued(id));
  script(MAX_FILE - overhead + 1);
  await fails(['submit', 'debian-12', small], new RegExp(`near\\.sh: the job file would be ${MAX_FILE + 1} bytes, over the limit of ${MAX_FILE}; shorten the script by 1 bytes`));
  assert.equal(ls(sp.new), []);
  // A script over the limit by itself says how much to cut too (found by a new user), headers
  // counted: the cut it asked for fell short of them (found by another).
  script(MAX_FILE + 100);
  await fails(['submit', 'debian-12', small], new RegExp(`near\\.sh: the job file would be ${MAX_FILE + 100 + overhead} bytes, over the limit of ${MAX_FILE}; shorten the script by ${100 + overhead} bytes or more`));
  script(MAX_FILE - 76);   // the tester's near.sh: the schedule file fits, its jobs do not
  await fails(['schedule', 'big', 'debian-11', small, '--period', 'never'], /near\.sh: the job file of each run would be \d+ bytes, over the limit of 1048576/);
  script(MAX_FILE);
  await fails(['schedule', 'big', 'debian-11', small], /near\.sh: the schedule file would be \d+ bytes, over the limit of 1048576/);
  assert.equal(ls(sp.schedules), []);
  // A schedule written by hand that fits, but whose job would not: execute queues nothing.
  await drop(spool, 'schedules', 'big', `platform: debian-11\nschedule: never\n\n#!/bin/sh\n${'#'.repeat(MAX_FILE - 76)}`);
  await fails(['execute', 'big'], new RegExp(`schedules/big: the job file for debian-11 would be \\d+ bytes, over the limit of ${MAX_FILE}`));
  assert.equal(ls(sp.new), []);
  assert.equal(ls(sp.done), []);
  assert.not.ok(fs.existsSync(sp.scheduleState('big')), 'no firing recorded');
});

/** A connected worker of debian-12, as spoold writes it in workers/ (submit --wait looks for one). */
function connected(): void {
  for (const d of DIRS) fs.mkdirSync(path.join(spool, d), { recursive: true });
  fs.writeFileSync(sp.worker('w'), 'name: w\nplatform: debian-12\nconnected: 2026-01-01T00:00:00Z\npeer: unix\njob:\nseen: 2026-01-01T00:00:09Z\n');
}

test('submit --wait waits for each result, prints ID STATUS, exits 0 only if all exited 0', async () => {
  connected();
  for (const [code, want] of [[0, 0], [3, 1]] as const) {
    const waiting = bctl(spool, ['submit', 'debian-12', OK, '--name', `w${code}`, '--wait']);
    const id = await until('the job in new/', () => ls(sp.new)[0]);
    const job = parseJob(fs.readFileSync(sp.queued(id)), 'x', id);
    assert.ok(await claim(sp, id));
    await finalize(sp, { id, name: job.name, platform: job.platform, worker: 'w', attempt: 1, queued: job.queued!, started: new Date(), finished: new Date(), status: { kind: 'exited', code } });
    const r = await waiting;
    assert.is(r.code, want, r.stderr);
    assert.is(r.stdout, `${id}\n${id} exited ${code}\n`);
  }
});

// Found by a new user: --wait on a mistyped or dropped platform waited for
// ever without a word.
test('submit --wait says when its job may wait for ever: no worker of the platform is connected, or it is dropped', async () => {
  connected();
  const typo = await bctl(spool, ['submit', 'debain-12', OK, '--wait'], { timeoutMs: 3000 });
  assert.is(typo.stderr, 'bctl: waiting, but no worker of platform debain-12 is connected now (bctl info lists the workers): the job waits for one\n');
  await ok(['drop-platform', 'debian-12']);
  const dropped = await bctl(spool, ['submit', 'debian-12', OK, '--wait'], { timeoutMs: 3000 });
  assert.is(dropped.stderr, 'bctl: warning: platform debian-12 is dropped: the job waits in new/ until bctl undrop-platform debian-12\n', 'said once, at once');
});

test('schedule, submit and execute on a dropped platform take the work and say that it waits (robur refused it; a new user would not guess)', async () => {
  await ok(['drop-platform', 'ubuntu-20.04']);
  const warn = (what: string) => `bctl: warning: platform ubuntu-20.04 is dropped: ${what} until bctl undrop-platform ubuntu-20.04\n`;
  const s = await bctl(spool, ['schedule', 'onub', 'ubuntu-20.04', OK]);
  assert.is(s.code, 0);
  assert.is(s.stderr, warn('the schedule does not fire'));
  const j = await bctl(spool, ['submit', 'ubuntu-20.04', OK, OK]);
  assert.is(j.code, 0);
  assert.is(j.stderr, warn('its jobs wait in new/'));
  const e = await bctl(spool, ['execute', 'onub']);
  assert.is(e.code, 0);
  assert.is(e.stderr, warn(`job ${e.stdout.trim()} waits in new/`));
  await ok(['undrop-platform', 'ubuntu-20.04']);
  assert.is((await bctl(spool, ['submit', 'ubuntu-20.04', OK])).stderr, '', 'undropped: no word');
});

test('submit --wait does not wait for ever for a job taken out of new/ or rejected to bad/: it says so and exits 1', async () => {
  connected();
  // Taken out of the queue by hand: the other job is still waited for.
  const waiting = bctl(spool, ['submit', 'debian-12', OK, EXIT3, '--name', 'w', '--wait']);
  const [gone, other] = await until('both jobs in new/', () => { const l = ls(sp.new); return l.length === 2 ? l : undefined; });
  fs.rmSync(sp.queued(gone!));
  const job = parseJob(fs.readFileSync(sp.queued(other!)), 'x', other);
  assert.ok(await claim(sp, other!));
  await finalize(sp, { id: other!, name: job.name, platform: job.platform, worker: 'w', attempt: 1, queued: job.queued!, started: new Date(), finished: new Date(), status: { kind: 'exited', code: 0 } });
  const r = await waiting;
  assert.is(r.code, 1, r.stderr);
  assert.is(r.stdout, `${gone}\n${other}\n${other} exited 0\n`);
  assert.is(r.stderr, `bctl: ${gone} is gone: it is neither queued, running nor done; it was taken out of new/ (bctl info lists the queue)\n`);
  // Rejected by spoold (reject() is what spoold does with a job it cannot take).
  const waiting2 = bctl(spool, ['submit', 'debian-12', OK, '--wait']);
  const id = await until('the job in new/', () => ls(sp.new)[0]);
  const bad = await reject(sp, sp.queued(id), `new/${id}: rejected for the test`);
  const r2 = await waiting2;
  assert.is(r2.code, 1, r2.stderr);
  assert.is(r2.stdout, `${id}\n`);
  assert.is(r2.stderr, `bctl: ${id} is gone: it is neither queued, running nor done; spoold rejected it to bad/${bad}, and bad/${bad}.why says why\n`);
});

// ---- info ---------------------------------------------------------------------

test('info --json has schedules, queues, running, workers, dropped; unparsable files are listed, not fatal', async () => {
  await ok(['schedule', 'a', 'debian-12', OK, '--cron', '0 3 * * *']);
  await orbOk(['orb', 'hello', '--period', 'never']);
  await drop(spool, 'schedules', 'broken', 'name: broken\nplatfrom: x\n');
  const [id1, id2] = (await ok(['submit', 'debian-12', OK, EXIT3])).trim().split('\n');
  const fid = (await ok(['submit', 'freebsd-14', OK])).trim();
  assert.ok(await claim(sp, id1!));
  fs.writeFileSync(sp.runningFile(id1!, 'lease'), 'worker: w1\nstarted: 2026-01-01T00:00:00.000Z\nattempt: 1\n');
  fs.mkdirSync(sp.workers, { recursive: true });
  fs.writeFileSync(sp.worker('w1'), `name: w1\nplatform: debian-12\nconnected: 2026-01-01T00:00:00Z\npeer: unix\njob: ${id1}\nseen: 2026-01-01T00:00:09Z\n`);
  fs.writeFileSync(sp.worker('w2'), 'name: w2\nplatform: freebsd-14\npeer: 127.0.0.1:5555\njob:\nseen: 2026-01-01T00:00:08Z\n');
  await ok(['drop-platform', 'sparc', '--reason', 'no hardware left']);

  const j = await info();
  assert.equal(Object.keys(j).sort(), ['dropped', 'errors', 'queues', 'running', 'schedules', 'workers']);
  assert.equal(j.schedules.map((s: any) => s.name), ['a', 'orb']);
  const a = j.schedules[0];
  assert.equal({ ...a }, { name: 'a', platform: 'debian-12', template: null, schedule: '0 3 * * *', tz: 'UTC', next: '1970-01-01T00:00:00Z', due: true, overdue: false, held: false, lastStatus: null, lastId: null });
  assert.is(j.schedules[1].platform, null);
  assert.is(j.schedules[1].next, null);
  assert.equal(Object.keys(j.queues).sort(), ['debian-12', 'freebsd-14']);
  assert.equal(j.queues['debian-12'].map((q: any) => q.id), [id2]);
  assert.equal(j.queues['freebsd-14'].map((q: any) => q.id), [fid]);
  assert.is(j.queues['debian-12'][0].name, 'exit3.sh');
  assert.equal(j.running, [{ id: id1, name: 'ok.sh', platform: 'debian-12', worker: 'w1', started: '2026-01-01T00:00:00.000Z', attempt: 1, cancelRequested: false }]);
  assert.equal(j.workers, [
    { name: 'w1', platform: 'debian-12', connected: '2026-01-01T00:00:00Z', peer: 'unix', job: id1, seen: '2026-01-01T00:00:09Z' },
    { name: 'w2', platform: 'freebsd-14', peer: '127.0.0.1:5555', job: null, seen: '2026-01-01T00:00:08Z' },
  ]);
  const human = await ok(['info']);
  assert.match(human, new RegExp(`^ {2}w1 +debian-12 +2026-01-01T00:00:00Z +${id1} +2026-01-01T00:00:09Z +unix$`, 'm'));
  assert.match(human, /^ {2}w2 +freebsd-14 +- +- +2026-01-01T00:00:08Z +127\.0\.0\.1:5555$/m);
  assert.match(human, new RegExp(`^ {2}${id1} +ok\\.sh +debian-12 +w1 +2026-01-01T00:00:00\\.000Z$`, 'm'));
  // A worker no file in workers/ names is away (found by a tester: info showed it as if it held the job).
  fs.rmSync(sp.worker('w1'));
  assert.match(await ok(['info']), new RegExp(`^ {2}${id1} +ok\\.sh +debian-12 +w1 \\(away\\) +2026-01-01T00:00:00\\.000Z$`, 'm'));
  assert.is(j.dropped.length, 1);
  assert.is(j.dropped[0].platform, 'sparc');
  assert.is(j.dropped[0].reason, 'no hardware left');
  assert.ok(!Number.isNaN(new Date(j.dropped[0].dropped).getTime()));
  assert.is(j.errors.length, 1);
  assert.is(j.errors[0].file, 'schedules/broken');
  assert.match(j.errors[0].error, /schedules\/broken:2: unknown header 'platfrom'/);
  // A file that cannot be read is named as under `file`, relative to the spool (it was the absolute path).
  fs.symlinkSync('/etc/passwd', sp.schedule('linked'));
  const linked = (await info()).errors.find((e: any) => e.file === 'schedules/linked');
  assert.is(linked?.error, 'schedules/linked: not a regular file (a symbolic link); remove it; spool files are plain files');
  // One spoold's user cannot read: Node's own words name it relative to the spool too (found by a tester).
  fs.writeFileSync(sp.schedule('secret'), 'name: secret\nplatform: p\n\ntrue\n', { mode: 0o600 });
  fs.chmodSync(spool, 0o755);   // made 0700 by mkdtemp: the other user must get in
  const nobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN('bctl'), '-s', spool, 'info', '--json'], { encoding: 'utf8' });
  const secret = JSON.parse(nobody.stdout).errors.find((e: any) => e.file === 'schedules/secret');
  assert.match(secret?.error ?? nobody.stderr, /^schedules\/secret: cannot read: EACCES: permission denied, open 'schedules\/secret'; /);
  assert.not.match(secret.error, new RegExp(spool));
});

test('info marks a schedule overdue when its due time passed without a firing', async () => {
  await ok(['schedule', 'late', 'debian-12', OK, '--period', 'hourly']);
  // It fired three hours ago (state written as spoold would), and spoold has been down since.
  fs.mkdirSync(sp.state, { recursive: true });
  fs.writeFileSync(sp.scheduleState('late'), `fired: ${new Date(Date.now() - 3 * 3600_000).toISOString()}\n`);
  await ok(['schedule', 'fresh', 'debian-12', OK, '--period', 'hourly']);
  const j = await info();
  const late = j.schedules.find((s: any) => s.name === 'late');
  const fresh = j.schedules.find((s: any) => s.name === 'fresh');
  assert.is(late.overdue, true);
  assert.is(fresh.overdue, false, 'a schedule that never ran, written just now, is due, not overdue');
  assert.match(await ok(['info']), /^ {2}late +debian-12 +@hourly +\S+ \(overdue\)/m);
  // Found by a new user: one written minutes ago that never fired (spoold down, its platform dropped) showed "now" for ever.
  const ago = new Date(Date.now() - 5 * 60_000);
  fs.utimesSync(sp.schedule('fresh'), ago, ago);
  assert.is((await info()).schedules.find((s: any) => s.name === 'fresh').overdue, true);
  assert.match(await ok(['info']), /^ {2}fresh +debian-12 +@hourly +now \(overdue\)/m);
});

test('info prints aligned sections for people: now, never, (template), workers, dropped, errors', async () => {
  await ok(['schedule', 'a', 'debian-12', OK]);
  await orbOk(['orb', 'hello', '--period', 'never']);
  await ok(['schedule', 'later', 'debian-12', OK]);
  await ok(['reschedule', 'later', '2031-01-01T00:00:00Z']);
  await drop(spool, 'new', 'junk', 'junk\n');
  const id = (await ok(['submit', 'debian-12', OK])).trim();
  await ok(['drop-platform', 'sparc']);
  const out = await ok(['info']);
  const lines = out.split('\n');
  assert.ok(lines.includes('schedules:'));
  assert.match(out, /^ {2}NAME +PLATFORM +SCHEDULE +NEXT +LAST$/m);
  assert.match(out, /^ {2}a +debian-12 +@daily +now +-$/m);
  assert.match(out, /^ {2}later +debian-12 +@daily +2031-01-01T00:00:00Z +-$/m);
  assert.match(out, /^ {2}orb +\(template\) +never +never +-$/m);
  assert.match(out, new RegExp(`^  debian-12 +${id} +ok\\.sh +0 +submit +0 +\\S+$`, 'm'));
  assert.match(out, /^running:\n {2}\(none\)$/m);
  assert.match(out, /^workers:\n {2}\(none\)$/m);
  assert.match(out, /^ {2}sparc +\S+Z +-$/m);
  assert.match(out, /^errors:\n {2}new\/junk:1: expected 'key: value'/m);
  // columns line up: the header's NEXT starts where each row's NEXT does
  const sched = lines.slice(lines.indexOf('schedules:') + 1, lines.indexOf('queued:'));
  const col = sched[0]!.indexOf('NEXT');
  for (const l of sched.slice(1)) assert.ok(/\S/.test(l[col]!) && l[col - 1] === ' ', l);
});

test('info on a directory that is no spool fails with exit 1', async () => {
  const r = await run(process.execPath, [BIN('bctl'), '-s', path.join(spool, 'nope'), 'info']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^bctl: .*nope: no spool here/);
  // An existing directory with other things in it, and none of a spool's directories.
  const other = path.join(spool, 'other');
  fs.mkdirSync(path.join(other, 'src'), { recursive: true });
  fs.writeFileSync(path.join(other, 'README'), 'x');
  for (const args of [['info'], ['submit', 'debian-12', OK], ['drop-platform', 'sparc']]) {
    const o = await bctl(other, args);
    assert.is(o.code, 1, `${args[0]}: ${o.stderr}`);
    assert.match(o.stderr, /^bctl: .*other: not a spool: none of new\/, running\/, done\/, schedules\/ in it, and it is not empty; give the spool with -s DIR/);
    assert.is(o.stdout, '');
  }
  assert.equal(ls(other), ['README', 'src']);
  // A project with a templates/ directory (builder's own checkout has one) is no spool either.
  fs.mkdirSync(path.join(other, 'templates'));
  assert.match((await bctl(other, ['info'])).stderr, /other: not a spool/);
  // Found by a tester: bctl(1)'s orb-build example, run in a spool not used yet, as it is written.
  const fresh = path.join(spool, 'fresh');
  fs.mkdirSync(fresh);
  const o = await bctl(fresh, ['orb-build', 'hello', 'hello', '--period', 'weekly']);
  assert.is(o.code, 0, o.stderr);
  fs.copyFileSync(path.join(ROOT, 'templates', 'orb-build.template.debian-12'), path.join(fresh, 'templates', 'orb-build.template.debian-12'));
  const x = await bctl(fresh, ['execute', 'hello', '--platform', 'debian-12']);
  assert.is(x.code, 0, x.stderr);
  assert.is(ls(path.join(fresh, 'new')).length, 1);
});

test('a missing spool directory is never made: every verb says no spool here and exits 1', async () => {
  const typo = path.join(spool, 'nonexist2');
  const id = '01a00000-0000-7000-8000-000000000000';
  for (const args of [
    ['submit', 'debian-12', OK], ['schedule', 'a', 'debian-12', OK], ['orb-build', 'a', 'hello'], ['drop-platform', 'sparc'],
    ['unschedule', 'foo'], ['undrop-platform', 'foo'], ['cancel', id], ['execute', 'foo'], ['reschedule', 'foo', '2030-01-01T00:00:00Z'],
    ['info'], ['fsck'], ['observe', id], ['observe-latest'], ['inspect', id],
  ]) {
    const r = await bctl(typo, args);
    assert.is(r.code, 1, `${args[0]}: ${r.stderr}`);
    assert.is(r.stderr, `bctl: ${typo}: no spool here (ENOENT); give the spool with -s DIR or $BUILDER_SPOOL\n`, args[0]);
    assert.is(r.stdout, '');
    assert.not.ok(fs.existsSync(typo), `${args[0]} made ${typo}`);
  }
});

test('an empty directory is a spool not used yet: verbs that only read or remove leave it empty, writing ones fill it', async () => {
  const id = '01a00000-0000-7000-8000-000000000000';
  await fails(['unschedule', 'foo'], /no schedule foo/);
  await fails(['undrop-platform', 'foo'], /platform foo is not dropped/);
  await fails(['cancel', id], new RegExp(`no job ${id}`));
  await fails(['execute', 'foo'], /no schedule foo/);
  await fails(['reschedule', 'foo', '2030-01-01T00:00:00Z'], /no schedule foo/);
  assert.match(await ok(['info']), /^schedules:\n {2}\(none\)$/m);
  assert.equal(ls(spool), [], 'nothing made');
  await ok(['submit', 'debian-12', OK]);
  assert.equal(ls(spool), [...DIRS].sort());
});

// ---- drop-platform, undrop-platform -------------------------------------------

test('drop-platform writes the marker once; undrop-platform removes it once', async () => {
  await ok(['drop-platform', 'sparc']);
  const text = fs.readFileSync(sp.platform('sparc'), 'utf8');
  assert.match(text, /^dropped: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\nby: \S+\n$/);
  await fails(['drop-platform', 'sparc'], /platforms\/sparc: platform sparc is already dropped/);
  assert.is(fs.readFileSync(sp.platform('sparc'), 'utf8'), text);
  assert.equal((await info()).dropped.map((d: any) => d.platform), ['sparc']);
  await ok(['undrop-platform', 'sparc']);
  assert.not.ok(fs.existsSync(sp.platform('sparc')));
  await fails(['undrop-platform', 'sparc'], /platform sparc is not dropped/);
  await usageFails(['drop-platform', '../etc'], /bad platform/);
  await usageFails(['undrop-platform', '.x'], /bad platform/, { spawn: false });
});

// Found by a tester writing spool files by hand: builder-spool(5) says only
// a marker's name counts, and spoold drops the platform for a directory or a
// link; info listed it dropped and also as an error.
test('info lists a platform dropped by a directory or a link of its name, and reports no error for it', async () => {
  await ok(['drop-platform', 'sparc']);
  fs.mkdirSync(sp.platform('mips'));
  fs.symlinkSync('/nonexistent', sp.platform('arm64'));
  const i = await info();
  assert.equal(i.dropped.map((d: any) => d.platform).sort(), ['arm64', 'mips', 'sparc']);
  assert.equal(i.errors, []);
});

// ---- cancel -------------------------------------------------------------------

test('cancel of a queued job finalizes it as canceled in done/NAME/ID', async () => {
  const [id, other] = (await ok(['submit', 'debian-12', OK, EXIT3])).trim().split('\n') as [string, string];
  assert.is(await ok(['cancel', id]), `canceled ${id} (was queued)\n`);
  const dir = sp.doneDir('ok.sh', id);
  const res = parseResult(fs.readFileSync(path.join(dir, 'result')), 'x');
  assert.is(res.status.kind, 'canceled');
  assert.is(res.id, id);
  assert.is(fs.readlinkSync(sp.latest('ok.sh')), id);
  assert.equal(ls(sp.new), [other]);
  assert.equal(ls(sp.running), []);
  await fails(['cancel', id], new RegExp(`job ${id} already finished: canceled`));
  // Found by a tester: run by root under umask 022, it made done/NAME 2755, where spoold, the spool's user, could store no more.
  const r = await run('/bin/sh', ['-c', 'umask 022; exec "$@"', 'sh', process.execPath, BIN('bctl'), '-s', spool, 'cancel', other]);
  assert.is(r.code, 0, r.stderr);
  for (const d of [sp.doneName('exit3.sh'), sp.doneDir('exit3.sh', other)]) assert.is(fs.statSync(d).mode & 0o7777, 0o2775, d);
  // Found by a new user: its empty console.log and SHA256SUMS were 0644 under that umask; spoold's are 0664.
  for (const f of ['console.log', 'SHA256SUMS', 'result']) assert.is(fs.statSync(path.join(sp.doneDir('exit3.sh', other), f)).mode & 0o777, 0o664, f);
});

test('cancel of a running job leaves the request for spoold', async () => {
  const id = (await ok(['submit', 'debian-12', OK])).trim();
  assert.ok(await claim(sp, id));
  const out = await ok(['cancel', id]);
  assert.match(out, new RegExp(`^cancel of ${id} requested`));
  assert.match(readIf(sp.runningFile(id, 'cancel')) ?? '', /^canceled: /);
  assert.ok(fs.existsSync(sp.runningFile(id, 'job')), 'the job stays where it is');
  assert.is((await info()).running[0].cancelRequested, true);
});

test('cancel of an unknown id fails; of a malformed one is a usage error', async () => {
  await fails(['cancel', '01a00000-0000-7000-8000-000000000000'], /no job 01a00000-0000-7000-8000-000000000000/);
  await usageFails(['cancel', 'not-an-id'], /bad job id/);
  await usageFails(['cancel', '../../etc/passwd'], /bad job id/, { spawn: false });
});

// ---- documentation ------------------------------------------------------------

test('man/bctl.1 documents every verb, every flag, the environment and the exit statuses', () => {
  const man = fs.readFileSync(path.join(ROOT, 'man', 'bctl.1'), 'utf8');
  for (const c of COMMANDS) {
    assert.match(man, new RegExp(`^\\.It Cm ${c.name.replace(/-/g, '\\\\?-')}\\b`, 'm'), `verb ${c.name}`);
    for (const f of [...c.flags, ...GLOBAL_FLAGS]) {
      assert.ok(man.includes(`Fl \\-${f.name}`), `flag --${f.name}`);
      if (f.short) assert.ok(man.includes(`Fl ${f.short}`), `flag -${f.short}`);
    }
  }
  for (const v of ['BUILDER_SPOOL', 'BUILDER_TEMPLATES']) assert.match(man, new RegExp(`^\\.It Ev ${v}$`, 'm'));
  assert.match(man, /^\.Sh EXIT STATUS$/m);
  for (const n of ['0', '1', '2']) assert.match(man, new RegExp(`^\\.It ${n}$`, 'm'));
});

test('man/bctl.1 is clean under mandoc -Tlint', () => {
  const r = spawnSync('mandoc', ['-Tlint', '-W', 'warning', path.join(ROOT, 'man', 'bctl.1')], { encoding: 'utf8' });
  if (r.error) throw r.error;
  assert.is(r.stdout + r.stderr, '');
  assert.is(r.status, 0);
});

test.run();
