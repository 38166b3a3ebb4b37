// main.ts: bctl's command line. One table of commands; usage and help text,
// the flag declarations given to mri and the dispatch all come from it, so a
// verb and its documentation cannot drift apart (man/bctl.1 is checked
// against the same table by the tests).
//
// Parsing (DEPENDENCIES.md 6): a non-strict pre-parse with only the global
// flags finds the command, then a strict parse with the global and the
// command's flags. Every flag is declared in `alias`, because mri's strict mode
// knows no other names. mri drops a lone `-` (standard input), so it is
// swapped for a sentinel that no argv string can contain (NUL) and back.
//
// Exit: 0 ok, 1 the operation failed (message names the file and the fix),
// 2 bad usage (one line saying why, then the synopsis, on stderr).

import mri from 'mri';
import { argvProblem, type FlagNames } from '../spool/argv.js';
import type { Readable, Writable } from 'node:stream';
import { versionLine } from '../spool/version.js';
import { SpoolPaths } from '../spool/paths.js';
import { SpoolError } from '../spool/errors.js';
import { EXIT_FAIL, EXIT_OK, EXIT_USAGE } from '../spool/exit.js';
import { UsageError, type Ctx } from './usage.js';

export const DEFAULT_SPOOL = '/var/spool/builder';

export interface Flag { name: string; short?: string; arg?: string; help: string }
export interface Command {
  name: string;
  args: string;            // positionals, as shown in the synopsis
  min: number;
  max: number;             // Infinity for SCRIPT...
  summary: string;
  flags: Flag[];           // a flag with `arg` is a string flag, else a boolean
  oneOf?: string[];        // these flags exclude each other: [--a | --b]
  run: (ctx: Ctx) => Promise<number>;
}

type Verb = (ctx: Ctx) => Promise<number>;
/** Import a verb's module only when it runs (see usage.ts). */
function lazy<K extends string>(load: () => Promise<Record<K, Verb>>, key: K): Verb {
  return async (ctx) => (await load())[key](ctx);
}

const PERIOD: Flag = { name: 'period', arg: 'P', help: 'hourly, daily (the default), weekly or never' };

export const GLOBAL_FLAGS: Flag[] = [
  { name: 'spool', short: 's', arg: 'SPOOL', help: `the spool directory (default: $BUILDER_SPOOL, else ${DEFAULT_SPOOL})` },
  { name: 'help', short: 'h', help: 'print this usage and exit 0' },
  { name: 'version', help: "print bctl's version and exit 0" },
];

// To add a verb: write src/bctl/VERB.ts exporting its run function, add a row here, document it in man/bctl.1.
export const COMMANDS: Command[] = [
  { name: 'schedule', args: 'NAME PLATFORM SCRIPT', min: 3, max: 3, run: lazy(() => import('./schedule.js'), 'schedule'),
    summary: 'write schedules/NAME: run SCRIPT (a file, or - for standard input) on PLATFORM every period',
    flags: [PERIOD, { name: 'cron', arg: 'EXPR', help: "5 cron fields 'min hour dom mon dow' instead of --period" },
      { name: 'tz', arg: 'ZONE', help: 'IANA time zone the schedule is read in (default UTC)' },
      { name: 'timeout', arg: 'DUR', help: 'kill the job after DUR, like 90s, 15m, 1h (default 1h)' },
      { name: 'retries', arg: 'N', help: 're-queue at most N times when a worker is lost (default 2)' }] },
  { name: 'orb-build', args: 'NAME OPAM_PACKAGE', min: 2, max: 2, run: lazy(() => import('./orb-build.js'), 'orbBuild'),
    summary: 'write schedules/NAME: build OPAM_PACKAGE with the orb-build template, on every platform that has one',
    flags: [PERIOD, { name: 'platform', arg: 'P', help: 'only on platform P' }] },
  { name: 'unschedule', args: 'NAME', min: 1, max: 1, run: lazy(() => import('./unschedule.js'), 'unschedule'),
    summary: 'remove schedules/NAME, its state and its queued instances; prints the ids it removed from the queue',
    flags: [] },
  { name: 'reschedule', args: 'NAME NEXT', min: 2, max: 2, run: lazy(() => import('./reschedule.js'), 'reschedule'),
    summary: 'run NAME next at NEXT (RFC 3339), then every period again',
    flags: [{ ...PERIOD, help: 'also change the period of schedules/NAME to P' }] },
  { name: 'execute', args: 'NAME', min: 1, max: 1, run: lazy(() => import('./execute.js'), 'execute'),
    summary: 'queue the schedule NAME now, ahead of the queue; prints one id a line',
    flags: [{ name: 'platform', arg: 'P', help: 'only on platform P' },
      { name: 'templates', arg: 'DIR', help: 'also read templates from DIR (default: $BUILDER_TEMPLATES)' }] },
  { name: 'submit', args: 'PLATFORM SCRIPT...', min: 2, max: Infinity, run: lazy(() => import('./submit.js'), 'submitCmd'),
    summary: 'queue a one-off job per SCRIPT (a file, or - for standard input); prints one id a line',
    flags: [{ name: 'name', arg: 'N', help: "the job name (default: the script's file name, or stdin)" },
      { name: 'timeout', arg: 'DUR', help: 'kill the job after DUR (default 1h)' },
      { name: 'retries', arg: 'N', help: 're-queue at most N times when a worker is lost (default 2)' },
      { name: 'priority', arg: 'N', help: 'higher runs first, -1000 to 1000 (default 0)' },
      { name: 'wait', help: 'wait until every job finished, print "ID STATUS" for each; exit 0 if all exited 0' }] },
  { name: 'info', args: '', min: 0, max: 0, run: lazy(() => import('./info.js'), 'info'),
    summary: 'list schedules, queued jobs, running jobs, workers and dropped platforms',
    flags: [{ name: 'json', help: 'print one JSON object instead' }] },
  { name: 'drop-platform', args: 'PLATFORM', min: 1, max: 1, run: lazy(() => import('./drop-platform.js'), 'dropPlatform'),
    summary: 'write platforms/PLATFORM: spoold stops dispatching to it and sets its schedules aside',
    flags: [{ name: 'reason', arg: 'TEXT', help: 'why, for the marker file' }] },
  { name: 'undrop-platform', args: 'PLATFORM', min: 1, max: 1, run: lazy(() => import('./undrop-platform.js'), 'undropPlatform'),
    summary: 'remove platforms/PLATFORM',
    flags: [] },
  { name: 'inspect', args: 'ID|DIR', min: 1, max: 1, run: lazy(() => import('./inspect.js'), 'inspect'),
    summary: 'print the result of a finished job (by id, or its done/NAME/ID directory)',
    flags: [{ name: 'console', help: "print the job's console output" },
      { name: 'script', help: "print the job's script" },
      { name: 'job', help: 'print the whole job file' },
      { name: 'output', arg: 'DIR', help: 'copy the artifacts into DIR (created; existing files are never overwritten); goes with one of the others' }], oneOf: ['console', 'script', 'job'] },
  { name: 'cancel', args: 'ID', min: 1, max: 1, run: lazy(() => import('./cancel.js'), 'cancel'),
    summary: 'cancel a queued job at once, or ask spoold to stop a running one',
    flags: [] },
  { name: 'observe', args: 'ID', min: 1, max: 1, run: lazy(() => import('./observe.js'), 'observe'),
    summary: "print the job's console as it grows (waiting while it is queued), then 'ID STATUS' on stderr; exit 0 if it exited 0",
    flags: [] },
  { name: 'observe-latest', args: '', min: 0, max: 0, run: lazy(() => import('./observe.js'), 'observeLatest'),
    summary: 'observe the newest running job, else the newest finished one',
    flags: [{ name: 'platform', arg: 'P', help: 'only jobs for platform P' }, { name: 'job', arg: 'NAME', help: 'only jobs named NAME' }] },
  { name: 'fsck', args: '', min: 0, max: 0, run: lazy(() => import('./fsck.js'), 'fsck'),
    summary: "check the spool's invariants; print one line per problem, nothing when all is well",
    flags: [] },
];

function flagSynopsis(f: Flag): string {
  return `${f.short ? `-${f.short}|` : ''}--${f.name}${f.arg ? ` ${f.arg}` : ''}`;
}

export function synopsis(c: Command): string {
  const one = c.flags.filter((f) => c.oneOf?.includes(f.name));
  const flags = [...(one.length > 0 ? [`[${one.map(flagSynopsis).join(' | ')}]`] : []), ...c.flags.filter((f) => !one.includes(f)).map((f) => `[${flagSynopsis(f)}]`)];
  return ['bctl [-s SPOOL]', c.name, c.args, ...flags].filter((x) => x !== '').join(' ');
}

export function commandHelp(c: Command): string {
  const lines = [`usage: ${synopsis(c)}`, '', c.summary];
  const flags = [...c.flags, ...GLOBAL_FLAGS];
  const left = flags.map((f) => `  ${f.short ? `-${f.short}, ` : ''}--${f.name}${f.arg ? ` ${f.arg}` : ''}`);
  const w = Math.max(...left.map((l) => l.length));
  lines.push('', 'options:', ...flags.map((f, i) => `${left[i]!.padEnd(w)}  ${f.help}`));
  return lines.join('\n') + '\n';
}

export function mainHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: bctl [-s SPOOL] COMMAND [ARGS...]',
    '       bctl COMMAND --help',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    `SPOOL is -s/--spool DIR, else $BUILDER_SPOOL, else ${DEFAULT_SPOOL}. See bctl(1).`,
  ].join('\n') + '\n';
}

const STDIN = '\0-';

function declare(flags: Flag[]): { string: string[]; boolean: string[]; alias: Record<string, string[]> } {
  const out = { string: [] as string[], boolean: [] as string[], alias: {} as Record<string, string[]> };
  for (const f of flags) {
    (f.arg ? out.string : out.boolean).push(f.name);
    out.alias[f.name] = [];
    if (f.short) out.alias[f.short] = [f.name];
  }
  return out;
}

function flagNames(flags: Flag[]): FlagNames {
  return {
    strings: flags.filter((f) => f.arg).map((f) => f.name),
    booleans: flags.filter((f) => !f.arg).map((f) => f.name),
    shorts: Object.fromEntries(flags.filter((f) => f.short).map((f) => [f.short!, f.name])),
  };
}

interface Parsed { command: Command | undefined; help: boolean; version?: boolean; opts: Record<string, string | boolean | undefined>; args: string[] }

/** Parse argv; UsageError on anything wrong. */
export function parseArgs(argv: string[]): Parsed {
  const av = argv.map((a) => (a === '-' ? STDIN : a));
  // Pre-parse: global flags only, and every command's booleans, so that a
  // boolean before the command (`--json info`) does not swallow it.
  const allBooleans = COMMANDS.flatMap((c) => c.flags.filter((f) => !f.arg).map((f) => f.name));
  const g = declare(GLOBAL_FLAGS);
  const pre = mri(av, { string: g.string, boolean: [...g.boolean, ...allBooleans], alias: g.alias });
  const name = pre._.length > 0 ? String(pre._[0]) : undefined;
  // Checked against the command's own flags when it is known: a flag may take
  // a value in one command and none in another (--job).
  const named = COMMANDS.find((c) => c.name === name);
  const problem = argvProblem(av, flagNames([...GLOBAL_FLAGS, ...(named ? named.flags : COMMANDS.flatMap((c) => c.flags))]));
  if (problem) throw named ? new CommandUsageError(problem, named) : new UsageError(problem);
  const help = pre.help === true || (Array.isArray(pre.help) && pre.help.length > 0);
  if (name === undefined) {
    if (help) return { command: undefined, help, opts: {}, args: [] };
    if (pre.version === true) return { command: undefined, help: false, version: true, opts: {}, args: [] };
    // `bctl --spool` alone: the flag's missing value is the first thing wrong.
    for (const f of GLOBAL_FLAGS) if (f.arg && pre[f.name] === '') throw new UsageError(`--${f.name} needs a value ${f.arg} (none was given, or an empty one)`);
    // `bctl -s info`: the flag took the command as its value.
    for (const f of GLOBAL_FLAGS) {
      const v = pre[f.name];
      if (f.arg && typeof v === 'string' && COMMANDS.some((c) => c.name === v)) throw new UsageError(`--${f.name} needs a value ${f.arg} before the command (it took '${v}')`);
    }
    throw new UsageError('no command given');
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command '${name.replace(STDIN, '-')}'`);
  if (help) return { command, help, opts: {}, args: [] };
  if (pre.version === true) return { command, help: false, version: true, opts: {}, args: [] };
  try {
    return parseCommand(command, av);
  } catch (e) {
    if (e instanceof UsageError) throw new CommandUsageError(e.message, command);
    throw e;
  }
}

class CommandUsageError extends UsageError {
  constructor(message: string, readonly command: Command) { super(message); }
}

function parseCommand(command: Command, argv: string[]): Parsed {
  const spec = declare([...GLOBAL_FLAGS, ...command.flags]);
  // mri reads `--priority -5` as two flags: a negative number after a long
  // string flag is its value, so join them as `--priority=-5`.
  const av: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const long = /^--([^=]+)$/.exec(argv[i]!)?.[1];
    const next = argv[i + 1];
    if (long !== undefined && spec.string.includes(long) && next !== undefined && /^-\d/.test(next)) {
      av.push(`--${long}=${next}`);
      i++;
    } else {
      av.push(argv[i]!);
    }
  }
  const unknown: string[] = [];
  const p = mri(av, { ...spec, unknown: (f: string) => { unknown.push(f); } });
  if (unknown.length > 0 || p === undefined) throw new UsageError(`unknown option ${unknown[0] ?? '?'} for ${command.name}`);
  const opts: Record<string, string | boolean | undefined> = {};
  for (const f of [...GLOBAL_FLAGS, ...command.flags]) {
    const v: unknown = p[f.name];
    if (v === undefined) continue;
    if (Array.isArray(v)) throw new UsageError(`--${f.name} given more than once`);
    if (f.arg) {
      if (typeof v !== 'string' || v === '') throw new UsageError(`--${f.name} needs a value ${f.arg} (none was given, or an empty one)`);
      opts[f.name] = v === STDIN ? '-' : v;
    } else {
      opts[f.name] = v === true;
    }
  }
  const pos = (p._ as unknown[]).map(String).map((a) => (a === STDIN ? '-' : a));
  if (pos[0] !== command.name) throw new UsageError(`the command must come before its arguments: bctl ${command.name} ...`);
  const args = pos.slice(1);
  if (args.length < command.min) throw new UsageError(`${command.name}: missing ${command.args.split(' ').slice(args.length).join(' ')}`);
  if (args.length > command.max) throw new UsageError(`${command.name}: too many arguments (${args.length}; expected ${command.args || 'none'})`);
  return { command, help: false, opts, args };
}

/**
 * Where bctl reads and writes. bin/bctl.ts passes getters, so a stream is
 * made only when a verb uses it: a pipe on stdout costs the net and stream
 * modules, a few ms of a run that takes ~130 ms. writeOut, when given, writes
 * whole lines of ctx.out and the help text instead of stdout.write.
 */
export interface Io {
  env: NodeJS.ProcessEnv; stdin: Readable; stdout: Writable; stderr: Writable;
  writeOut?: (s: string) => void;
}

/** Run bctl with argv (without node and script); returns the exit status. */
export async function main(argv: string[], io: Io): Promise<number> {
  const err = (s: string) => { io.stderr.write(s); };
  let parsed: Parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    const cmd = e instanceof CommandUsageError ? e.command : undefined;
    err(`bctl: ${e.message}\n`);
    err(cmd ? `usage: ${synopsis(cmd)}\n` : 'usage: bctl [-s SPOOL] COMMAND [ARGS...]; bctl --help lists the commands\n');
    return EXIT_USAGE;
  }
  const { command } = parsed;
  if (parsed.version) {
    if (io.writeOut) io.writeOut(versionLine('bctl')); else io.stdout.write(versionLine('bctl'));
    return EXIT_OK;
  }
  if (parsed.help || !command) {
    const text = command ? commandHelp(command) : mainHelp();
    if (io.writeOut) io.writeOut(text); else io.stdout.write(text);
    return EXIT_OK;
  }
  const spool = (parsed.opts.spool as string | undefined) ?? (io.env.BUILDER_SPOOL || DEFAULT_SPOOL);
  const ctx: Ctx = {
    sp: new SpoolPaths(spool), args: parsed.args, opts: parsed.opts, env: io.env,
    get stdin() { return io.stdin; },
    get stdout() { return io.stdout; },
    out: io.writeOut ? (line) => { io.writeOut!(`${line}\n`); } : (line) => { io.stdout.write(`${line}\n`); },
    warn: (line) => { err(`bctl: ${line}\n`); },
  };
  try {
    return await command.run(ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`bctl: ${e.message}\nusage: ${synopsis(command)}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof SpoolError) {
      err(`bctl: ${e.message}\n`);
      return EXIT_FAIL;
    }
    const code = (e as NodeJS.ErrnoException)?.code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
      // An fs error a verb did not wrap: still name the file it is about.
      err(`bctl: ${(e as Error).message}\n`);
      return EXIT_FAIL;
    }
    throw e;
  }
}
