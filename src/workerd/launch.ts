// launch.ts: how a job's process is started, in its own session and process
// group, with its console as its output and its variables set.
//
// Two launchers, one interface (Launcher):
//
//   PerlLauncher  a small perl process started once, which forks each job.
//                 Forking workerd itself (a 60-80 MB node process) cost each
//                 job ~1.7 ms of workerd's CPU and ~3.7 ms of the machine's,
//                 against ~1.5 ms of the machine's from perl (npm run bench,
//                 W1): page tables copied, then a fault for each page workerd
//                 wrote before the child's exec. perl is the parent the job
//                 needs: it waits for the job and says how it ended, exit
//                 code or signal, which a shell cannot tell apart
//                 (`exit 137` and SIGKILL are both 137 to `wait`). perl-base
//                 is part of every Debian and Ubuntu system.
//   Standby       without perl (WORKERD_PERL empty, or none on PATH): a shell
//                 forked from workerd before the job arrives, while idle,
//                 which execs the job's script once told where it is.
//
// Either one writes the job's pgid file (leftovers.ts) before the script
// runs, so a workerd that dies leaves nothing the next one cannot find.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PGID, pgidLine } from './leftovers.js';

/** What a launcher needs to know of a job: its directory (WORKDIR/ID) and its names. */
export interface LaunchSpec { dir: string; id: string; name: string; platform: string; network: boolean }

/** How a job's process ended: its exit code, the number of the signal that killed it, or what went wrong (never started, or lost). */
export type ProcEnd = { code: number } | { signal: number } | { error: string };

/** A job's process, however it was started. */
export interface JobProc {
  /**
   * Signal its whole process group (pending until its pid is known); nothing
   * once it has ended: each launcher SIGKILLs what the job left in its group
   * as the job ends, and a signal later might reach a group that took its number.
   */
  kill(sig: NodeJS.Signals): void;
  /** Called once, when the process has ended and its group is killed (and a second call replaces the first's callback). */
  onEnd(cb: (end: ProcEnd) => void): void;
}

export interface Launcher {
  /** Get ready for the next job now, while idle (see each launcher). */
  prepare(): void;
  /** Start the job's process; throws when it cannot (out of processes or descriptors). */
  launch(job: LaunchSpec): JobProc;
  /** What starts jobs, for workerd's log. */
  readonly describe: string;
}

/** A JobProc's bookkeeping, shared by both launchers. */
class Proc implements JobProc {
  pid: number | undefined;
  private pending: NodeJS.Signals[] = [];
  private end: ProcEnd | undefined;
  private cb: ((end: ProcEnd) => void) | undefined;

  started(pid: number): void {
    this.pid = pid;
    for (const s of this.pending.splice(0)) this.kill(s);
  }

  kill(sig: NodeJS.Signals): void {
    if (this.end) return;   // (and process.kill of a group that is gone throws: an exception per job, perf)
    if (this.pid === undefined) { this.pending.push(sig); return; }
    try { process.kill(-this.pid, sig); } catch { /* the group is gone */ }
  }

  ended(end: ProcEnd): void {
    if (this.end) return;
    this.end = end;
    this.cb?.(end);
  }

  onEnd(cb: (end: ProcEnd) => void): void {
    this.cb = cb;
    if (this.end) cb(this.end);
  }
}

// ---- perl ------------------------------------------------------------------

/**
 * The perl launcher's program. It reads jobs from stdin, five NUL-terminated
 * fields each (directory, id, name, platform, network), one at a time:
 * forks, waits, SIGKILLs what the job left in its process group, and says
 * `exit PID code N` or `exit PID signal N`. The
 * child makes a new session, by the setsid system call's number (ARGV[1],
 * SETSID_NR: the POSIX module's size made each fork and exec ~0.2 ms
 * dearer, measured; it is loaded only where the number is not known), says
 * `started PID` (only then does the group
 * a kill is sent to exist: said by the parent after the fork, a cancel at
 * once was lost, found in review), sends its output to the
 * console file, writes its pgid file (leftovers.ts), sets the job's
 * variables, and execs the script as /bin/sh would (one without #! is run
 * by /bin/sh), or the sandbox command line (ARGV[0]) with it:
 * `/bin/sh -c 'COMMAND "$@"' sandbox SCRIPT`. A script whose #! interpreter
 * is missing says so and exits 127; one that cannot be executed says why
 * and exits 126 (127 when missing); a child that cannot set up exits 125.
 * The launcher ignores the signals a terminal or a service manager sends a
 * whole group (workerd decides what happens to the job); the child has them
 * back. It exits when its stdin ends (workerd is gone), or when it cannot
 * write to workerd.
 */
const PERL = String.raw`# workerd: job launcher (launch.ts)
use strict; use warnings; no warnings 'exec';
my $sandbox = $ARGV[0] // '';
my $setsid = $ARGV[1] // '';
require POSIX if $setsid eq '';
$SIG{$_} = 'IGNORE' for qw(INT TERM HUP QUIT);
$SIG{PIPE} = 'DEFAULT';
$| = 1;
print "ready $$\n";
$/ = "\0";
for (;;) {
  my @f;
  while (@f < 5) { my $x = <STDIN>; exit 0 unless defined $x && chomp $x; push @f, $x; }
  my $pid = fork;
  if (!defined $pid) { my $e = "$!"; $e =~ s/\n/ /g; print "error cannot fork: $e\n"; next; }
  job(@f) if $pid == 0;
  my $r;
  do { $r = waitpid($pid, 0) } while ($r == -1 && $!{EINTR});
  my $st = $?;
  kill('KILL', -$pid);   # what the job left running in its group
  print(($st & 127) ? "exit $pid signal " . ($st & 127) . "\n" : "exit $pid code " . ($st >> 8) . "\n");
}
sub job {
  my ($dir, $id, $name, $platform, $network) = @_;
  $/ = "\n";
  $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP QUIT PIPE);
  # A session of its own, not only a group: a group in the launcher's session
  # is not orphaned, and a job's SIGTSTP (or a tool's) then stopped it until
  # its timeout (found in review).
  if (($setsid eq '' ? POSIX::setsid() : syscall($setsid)) != $$) { print STDERR "workerd: cannot make the job's session: $!\n"; exit(125); }
  print "started $$\n";   # by the child, once its group exists: a kill sent to it from now on reaches the job
  open(STDIN, '<', '/dev/null') or exit(125);
  open(STDOUT, '>>', "$dir/console.log") or exit(125);
  open(STDERR, '>&', \*STDOUT) or exit(125);
  my $start = '-';
  if (open(my $s, '<', '/proc/self/stat')) { my $l = <$s> // ''; $l =~ s/^.*\) //s; $start = (split / /, $l)[19] // '-'; }
  my $p;   # written over, not truncated first: the spare's (run.ts) keeps its block
  unless ((open($p, '+<', "$dir/pgid") or open($p, '>', "$dir/pgid")) and print $p "$$ $start\n" and truncate($p, tell $p) and close $p) {
    print STDERR "workerd: cannot write $dir/pgid: $!\n"; exit(125);
  }
  @ENV{qw(BUILDER_JOB_ID BUILDER_JOB_NAME BUILDER_PLATFORM BUILDER_NETWORK BUILDER_JOB_DIR)} = ($id, $name, $platform, $network, "$dir/job");
  unless (chdir "$dir/job") { print STDERR "workerd: cannot enter $dir/job: $!\n"; exit(127); }
  my $script = "$dir/job/script.sh";
  if ($sandbox ne '') {
    exec { '/bin/sh' } '/bin/sh', '-c', "$sandbox \"\$@\"", 'sandbox', $script;
    print STDERR "workerd: cannot run /bin/sh: $!\n"; exit(127);
  }
  if (open(my $s, '<', $script)) {
    my $l = <$s> // '';
    if ($l =~ /^#! *([^ \t\n]*)/ and not -x $1) {
      print STDERR "workerd: cannot run the script: its #! interpreter $1 is not found or not executable\n"; exit(127);
    }
  }
  exec { $script } $script;
  exec { '/bin/sh' } '/bin/sh', $script if $!{ENOEXEC};
  my $code = $!{ENOENT} ? 127 : 126;
  print STDERR "workerd: cannot run $script: $!\n";
  exit($code);
}
`;

/**
 * setsid(2)'s system call number on this machine, for the perl launcher's
 * syscall(); undefined where it is not known here (the launcher then loads
 * POSIX for it). Linux's tables: x86_64 112; i386 and arm 66; arm64 and
 * riscv64 157 (the generic table).
 */
const SETSID_NR: number | undefined = process.platform !== 'linux' ? undefined
  : ({ x64: 112, ia32: 66, arm: 66, arm64: 157, riscv64: 157 } as Partial<Record<string, number>>)[process.arch];

/** How long a new perl launcher may take to say it is ready before workerd does without it. */
const READY_MS = 10_000;

export class PerlLauncher implements Launcher {
  private child: ChildProcess | undefined;
  private buf = '';
  private current: Proc | undefined;
  readonly describe: string;

  private constructor(private readonly perl: string, private readonly sandbox: string | undefined) {
    this.describe = `jobs are started by ${perl}`;
  }

  /**
   * A launcher running `perl`, once it has said it is ready; otherwise why
   * not (perl missing, broken, or too slow), for workerd to use a Standby.
   */
  static async start(perl: string, sandbox: string | undefined): Promise<PerlLauncher | string> {
    const l = new PerlLauncher(perl, sandbox);
    const ready = l.spawn();
    const why = await Promise.race([ready, new Promise<string>((r) => setTimeout(r, READY_MS, `it did not start within ${READY_MS / 1000} s`).unref())]);
    if (why) { l.child?.kill('SIGKILL'); return `${perl}: ${why}`; }
    return l;
  }

  /** Start perl; resolves with '' once it says ready, or with why it did not. */
  private spawn(): Promise<string> {
    return new Promise((resolve) => {
      let c: ChildProcess;
      try {
        // Its stderr is a pipe of ours, not workerd's own: inherited, it kept the
        // stderr of whoever started workerd open after workerd was killed, as
        // long as its job ran (a test waiting for that close hung).
        c = spawn(this.perl, ['-e', PERL, '--', this.sandbox ?? '', String(SETSID_NR ?? '')], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      } catch (e) { resolve((e as Error).message); return; }
      this.child = c;
      this.buf = '';
      c.on('error', (e) => resolve(e.message));
      c.stdin!.on('error', () => {});   // EPIPE from one that died: its exit says what happened
      c.stderr!.setEncoding('utf8');
      c.stderr!.on('data', (s: string) => { for (const l of s.split('\n')) if (l) process.stderr.write(`workerd: launcher: ${l}\n`); });
      c.stdout!.setEncoding('latin1');
      c.stdout!.on('data', (s: string) => {
        this.buf += s;
        for (let i; (i = this.buf.indexOf('\n')) >= 0;) {
          const line = this.buf.slice(0, i);
          this.buf = this.buf.slice(i + 1);
          if (line.startsWith('ready ')) resolve(''); else this.said(line);
        }
      });
      // 'close', not 'exit': the last lines it wrote are read by then.
      c.once('close', (code, sig) => {
        const why = `exited ${sig ?? code}`;
        resolve(`it ${why}`);
        if (this.child === c) this.child = undefined;
        // A job it held has no parent to say how it ended: it is ended here, killed, so that nothing of it runs on unaccounted.
        const p = this.current;
        this.current = undefined;
        if (p) { p.kill('SIGKILL'); p.ended({ error: `the job's launcher (${this.perl}, pid ${c.pid}) ${why}, so the job was killed` }); }
      });
    });
  }

  private said(line: string): void {
    const p = this.current;
    if (!p) return;
    const m = /^(started|exit) (\d+)(?: (code|signal) (\d+))?$/.exec(line);
    if (line.startsWith('error ')) { this.current = undefined; p.ended({ error: `cannot start the job: ${line.slice(6)}` }); return; }
    if (!m) return;
    if (m[1] === 'started') { p.started(Number(m[2])); return; }
    this.current = undefined;
    p.ended(m[3] === 'signal' ? { signal: Number(m[4]) } : { code: Number(m[4]) });
  }

  /** A launcher that was killed while idle is started again (its readiness is not awaited: a job sent meanwhile waits in its pipe). */
  prepare(): void { if (!this.child) void this.spawn(); }

  launch(job: LaunchSpec): JobProc {
    this.prepare();
    const c = this.child;
    if (!c || this.current) throw new Error(this.current ? 'its launcher is busy with another job' : `cannot start ${this.perl}`);
    const p = new Proc();
    this.current = p;
    c.stdin!.write([job.dir, job.id, job.name, job.platform, job.network ? 'yes' : 'no'].map((f) => `${f}\0`).join(''));
    return p;
  }
}

// ---- standby ---------------------------------------------------------------

/**
 * The shell a standby runs: it waits for two lines (the job's id, name,
 * platform and network, all checked names; then the directory, whole), sends
 * its own output to the console file, exports the job's environment and
 * execs the job's script (its absolute path, so $0 is that) in its
 * directory. exec keeps the pid, so the standby's process group is the job's.
 * $1 is the sandbox command line (workerd --sandbox), or empty, as for perl.
 * A standby that never got its job exits 125.
 */
const STANDBY_SH = [
  'read -r id name platform network || exit 125',
  'IFS= read -r dir || exit 125',
  'exec </dev/null >>"$dir/console.log" 2>&1',
  'export BUILDER_JOB_ID="$id" BUILDER_JOB_NAME="$name" BUILDER_PLATFORM="$platform" BUILDER_NETWORK="$network" BUILDER_JOB_DIR="$dir/job"',
  'cd "$dir/job" || exit 127',
  String.raw`if [ -n "$1" ]; then exec /bin/sh -c "$1 \"\$@\"" sandbox "$dir/job/script.sh"; fi`,
  // The shell's own word for a missing #! interpreter names the script ("script.sh: not found").
  'IFS= read -r l <"$dir/job/script.sh"; case $l in "#!"*) i=${l#??}; i=${i#"${i%%[! ]*}"}; i=${i%%[ \t]*};'
    + ' [ -x "$i" ] || { echo "workerd: cannot run the script: its #! interpreter $i is not found or not executable" >&2; exit 127; } ;; esac',
  'exec "$dir/job/script.sh"',
].join('\n');

/**
 * A job process started before its job arrives: `sh` waiting on a pipe, in
 * its own session. Forking workerd costs milliseconds (see PerlLauncher), so
 * it is done while idle, after a job ends, instead of between receiving a
 * job and starting it. One standby at a time; it exits when workerd goes
 * away (its pipe closes).
 */
export class Standby implements Launcher {
  private ready: ChildProcess | undefined;
  private readyPgid = '';   // its pgid line (leftovers.ts), read while idle rather than as the job starts
  readonly describe: string;

  constructor(private readonly sandbox: string | undefined, why: string) {
    this.describe = `jobs are started by forking workerd (${why})`;
  }

  /** Start one now, if none is waiting. */
  prepare(): void {
    if (this.ready && this.ready.exitCode === null && this.ready.signalCode === null) return;
    this.ready = undefined;
    let c: ChildProcess;
    try {
      c = spawn('/bin/sh', ['-c', STANDBY_SH, 'standby', this.sandbox ?? ''], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    } catch { return; }               // out of processes or descriptors: launch() says so, for the job
    c.on('error', () => {});           // one that could not start has no stdin or pid: not kept
    if (!c.stdin || c.pid === undefined) return;
    c.once('exit', () => { if (this.ready === c) this.ready = undefined; });   // killed while idle: launch() makes another
    c.stdin.on('error', () => {});     // EPIPE from one that died: its exit is the job's result
    this.ready = c;
    this.readyPgid = pgidLine(c.pid);
  }

  launch(job: LaunchSpec): JobProc {
    this.prepare();
    const c = this.ready;
    if (!c) throw new Error('cannot start /bin/sh for it (out of processes or file descriptors?)');
    this.ready = undefined;
    const p = new Proc();
    try {
      // The job's process group, before it starts: if we die, the next workerd here kills what it left running (leftovers.ts).
      fs.writeFileSync(path.join(job.dir, PGID), this.readyPgid);
      c.stdin!.end(`${job.id} ${job.name} ${job.platform} ${job.network ? 'yes' : 'no'}\n${job.dir}\n`);
    } catch (e) {
      try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ }
      throw e;
    }
    p.started(c.pid!);
    c.on('error', (e) => p.ended({ error: `cannot start the job: ${e.message}` }));
    const exited = (code: number | null, signal: NodeJS.Signals | null) => {
      p.kill('SIGKILL');   // what the job left running in its group (the perl launcher does this itself)
      p.ended(signal ? { signal: os.constants.signals[signal] ?? 0 } : { code: code ?? 0 });
    };
    // A standby that died before it got the job (killed by someone) has exited already.
    if (c.exitCode !== null || c.signalCode !== null) exited(c.exitCode, c.signalCode);
    else c.on('exit', exited);
    return p;
  }
}

/**
 * The launcher for this workerd: perl's when there is a perl that works
 * ($WORKERD_PERL, else perl on PATH; WORKERD_PERL empty says not to look),
 * else a Standby.
 */
export async function makeLauncher(sandbox: string | undefined, env = process.env): Promise<Launcher> {
  const wanted = env.WORKERD_PERL;
  if (wanted === '') return new Standby(sandbox, 'WORKERD_PERL is empty');
  const perl = wanted ?? onPath('perl', env.PATH ?? '');
  if (!perl) return new Standby(sandbox, 'no perl on PATH');
  const l = await PerlLauncher.start(perl, sandbox);
  return typeof l === 'string' ? new Standby(sandbox, l) : l;
}

function onPath(cmd: string, pathVar: string): string | undefined {
  for (const d of pathVar.split(':')) {
    if (!d) continue;
    const p = path.join(d, cmd);
    try { fs.accessSync(p, fs.constants.X_OK); if (fs.statSync(p).isFile()) return p; } catch { /* next */ }
  }
  return undefined;
}
