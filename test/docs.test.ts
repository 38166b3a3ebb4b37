// docs.test.ts: the man pages are the contract, so every name the code
// accepts or emits must be in its page (Laminar's BIND_HRPC lesson: a feature
// nobody documented is a feature nobody can use or keep).
//
// The lists come from the code itself, not from this file: the header keys
// job.ts exports, the result keys formatResult writes, the status kinds of
// result.ts's Status type, the options spoold and workerd declare to mri, bctl's
// command table, the BUILDER_* variables the programs read or set, the exit
// statuses of exit.ts each program uses, the events spoold logs, the messages
// of protocol.ts. Adding one to the code without documenting it fails here.
// Pages are checked as mandoc renders them (-T ascii), section by section, so
// a name must appear where a reader looks for it, not just anywhere.
//
// Needs mandoc(1); CI installs it. Fails, with that said, when it is missing.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT } from './lib.js';
import { SCHEDULE_KEYS, JOB_KEYS, DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from '../src/spool/job.js';
import { formatResult, formatStatus, type Status } from '../src/spool/result.js';
import { parseHeaders, MAX_FILE, MAX_LINE } from '../src/spool/headers.js';
import { DIRS, NAME_MAX, SpoolPaths } from '../src/spool/paths.js';
import { formatDuration, parseDuration } from '../src/spool/duration.js';
import { MAX_FRAME, MAX_CONTROL, MAX_MANIFEST_PART, MAX_ARTIFACT_FILES, MAX_ARTIFACT_NAMES, MAX_JOB_MSG, DEAD_AFTER, T_CONTROL, T_CONSOLE, T_ARTIFACTS, PROTOCOL_VERSION } from '../src/spool/protocol.js';
import * as exits from '../src/spool/exit.js';
import { KILL_GRACE_MS } from '../src/spool/protocol.js';
import { RECONNECT_GRACE_MS, NO_SPACE_RESERVE, ORPHAN_MS } from '../src/spoold/daemon.js';
import { COMMANDS, GLOBAL_FLAGS } from '../src/bctl/main.js';

const MAN = path.join(ROOT, 'man');
const PAGES = { spool: 'builder-spool.5', spoold: 'spoold.8', workerd: 'workerd.8', bctl: 'bctl.1' } as const;
type Program = 'spoold' | 'workerd' | 'bctl';
const PROGRAMS: Program[] = ['spoold', 'workerd', 'bctl'];

const code = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const codeDir = (dir: string): Array<{ file: string; text: string }> =>
  fs.readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith('.ts')).sort().map((f) => ({ file: `${dir}/${f}`, text: code(`${dir}/${f}`) }));
const source = (page: string): string => fs.readFileSync(path.join(MAN, page), 'utf8');

function mandoc(args: string[]): { out: string; status: number | null } {
  const r = spawnSync('mandoc', args, { encoding: 'utf8' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error('mandoc is not installed: apt-get install mandoc (CI installs it); the man page tests need it');
  }
  if (r.error) throw r.error;
  return { out: r.stdout + r.stderr, status: r.status };
}

const rendered = new Map<string, Map<string, string>>();
/** A page as mandoc renders it, split into its sections, each with its white space collapsed. */
function sections(page: string): Map<string, string> {
  let s = rendered.get(page);
  if (s) return s;
  const r = mandoc(['-T', 'ascii', path.join(MAN, page)]);
  assert.is(r.status, 0, `mandoc cannot render ${page}: ${r.out.slice(0, 300)}`);
  s = new Map();
  let title = '';
  let body: string[] = [];
  const flush = () => { if (title) s!.set(title, body.join(' ').replace(/\s+/g, ' ').trim()); };
  for (const line of r.out.replace(/.\x08/g, '').split('\n')) {
    if (/^[A-Z][A-Z0-9 ]*[A-Z0-9]$/.test(line)) { flush(); title = line; body = []; } else body.push(line);
  }
  flush();
  rendered.set(page, s);
  return s;
}

function section(page: string, title: string): string {
  const s = sections(page).get(title);
  if (s === undefined) throw new Error(`${page} has no section ${title} (it has ${[...sections(page).keys()].join(', ')})`);
  return s;
}

/** The mdoc source of one .Sh section. */
function sourceSection(page: string, title: string): string {
  const m = new RegExp(`^\\.Sh ${title}\\n([\\s\\S]*?)(?=^\\.Sh |(?![\\s\\S]))`, 'm').exec(source(page));
  if (!m) throw new Error(`${page} has no .Sh ${title}`);
  return m[1]!;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `word` as a whole word or option in text: not part of a longer name. */
const hasWord = (text: string, word: string) => new RegExp(`(^|[^A-Za-z0-9_.-])${esc(word)}($|[^A-Za-z0-9_-])`).test(text);
/** A header key as a page shows it, `key:`. */
const hasKey = (text: string, key: string) => new RegExp(`(^|[\\s(,'\`])${esc(key)}:`).test(text);

function missing<T>(items: Iterable<T>, ok: (x: T) => boolean): T[] {
  return [...items].filter((x) => !ok(x));
}

/** The keys of every `formatHeaders([['key', ...], ...])` call in a file. */
function formattedKeys(rel: string): string[] {
  const text = code(rel);
  const keys: string[] = [];
  for (let at = text.indexOf('formatHeaders(['); at >= 0; at = text.indexOf('formatHeaders([', at + 1)) {
    const end = text.indexOf('])', at);
    for (const m of text.slice(at, end).matchAll(/\['([a-z][a-z0-9-]*)',/g)) keys.push(m[1]!);
  }
  assert.ok(keys.length > 0, `no formatHeaders([...]) keys found in ${rel}: has it changed shape?`);
  return keys;
}

// ---- builder-spool(5) ---------------------------------------------------------

test('builder-spool.5 documents every header of a schedule file and of a job file', () => {
  const sched = section(PAGES.spool, 'SCHEDULE FILES');
  const job = section(PAGES.spool, 'JOB FILES');
  assert.equal(missing(SCHEDULE_KEYS, (k) => hasKey(sched, k)), [], 'SCHEDULE_KEYS missing from SCHEDULE FILES');
  assert.equal(missing(JOB_KEYS, (k) => hasKey(job, k)), [], 'JOB_KEYS missing from JOB FILES');
  for (const [title, text] of [['SCHEDULE FILES', sched], ['JOB FILES', job]]) assert.ok(hasKey(text!, 'var.NAME'), `var.NAME in ${title}`);
});

test('builder-spool.5 states the defaults and limits the code applies', () => {
  const sched = section(PAGES.spool, 'SCHEDULE FILES');
  assert.match(sched, `the default is ${DEFAULT_RETRIES}`, 'the default of retries:');
  assert.match(sched, `The default is ${formatDuration(DEFAULT_TIMEOUT_MS)}.`, 'the default of timeout:');
  const syntax = section(PAGES.spool, 'FILE SYNTAX');
  assert.match(syntax, `${MAX_FILE} bytes`, 'the file size limit');
  assert.match(syntax, `at most ${MAX_LINE} bytes`, 'the header line limit');
  assert.match(section(PAGES.spool, 'NAMES'), `1 to ${NAME_MAX} of the characters`, 'the name length limit');
});

test('builder-spool.5 documents every key of a result file and every status', () => {
  const now = new Date();
  const text = formatResult({ id: '01a21e58-8af8-7032-97b8-daee9507259d', name: 'n', platform: 'p', worker: 'w', attempt: 1, queued: now, started: now, finished: now, status: { kind: 'lost' } });
  const keys = parseHeaders(text, 'result').headers.map((h) => h.key);
  const results = section(PAGES.spool, 'RESULT FILES');
  assert.equal(missing(keys, (k) => hasKey(results, k)), [], 'result keys missing from RESULT FILES');

  // The kinds of the Status type, read from its declaration.
  const decl = /export type Status =([\s\S]*?);\n/.exec(code('src/spool/result.ts'));
  assert.ok(decl, 'result.ts declares export type Status');
  const kinds = [...decl![1]!.matchAll(/kind: '([a-z]+)'/g)].map((m) => m[1]!);
  assert.ok(kinds.length >= 7, `found the status kinds: ${kinds.join(', ')}`);
  const statuses = section(PAGES.spool, 'STATUSES');
  // Each status as it is written, with its number as N and its reason as why.
  const forms = kinds.map((kind) => formatStatus({ kind, code: 7, signal: 7, why: 'why' } as unknown as Status).replace(/7/, 'N'));
  assert.equal(missing(forms, (f) => statuses.includes(f)), [], 'statuses missing from STATUSES');
});

test('builder-spool.5 documents the keys of state, lease, worker and platform files', () => {
  const stateKeys = [...code('src/spool/schedstate.ts').matchAll(/\['\w+', '([a-z-]+)'\]/g)].map((m) => m[1]!);
  assert.ok(stateKeys.length >= 6, `found the state keys: ${stateKeys.join(', ')}`);
  const state = section(PAGES.spool, 'STATE FILES');
  assert.equal(missing(stateKeys, (k) => hasKey(state, k)), [], 'state keys missing from STATE FILES');
  const whole = [...sections(PAGES.spool).values()].join(' ');
  const others = [...formattedKeys('src/spoold/daemon.ts'), ...formattedKeys('src/bctl/drop-platform.ts')];
  assert.equal(missing(others, (k) => hasKey(whole, k)), [], 'lease, worker or platform file keys missing from builder-spool.5');
});

test('builder-spool.5 describes every directory and file of the spool and of a job', () => {
  const layout = section(PAGES.spool, 'LAYOUT');
  assert.equal(missing(DIRS, (d) => layout.includes(`${d}/`)), [], 'spool directories missing from LAYOUT');
  const sp = new SpoolPaths('/spool');
  const roots = [sp.socket, sp.lock, sp.pid].map((p) => path.basename(p));
  assert.equal(missing(roots, (f) => hasWord(layout, f)), [], 'spool files missing from LAYOUT');
  const decl = /export type RunningFile = ([^;]+);/.exec(code('src/spool/paths.ts'));
  assert.ok(decl, 'paths.ts declares RunningFile');
  const files = [...decl![1]!.matchAll(/'([^']+)'/g)].map((m) => m[1]!);
  assert.equal(missing(files, (f) => hasWord(layout, f)), [], 'job directory files missing from LAYOUT');
});

test("builder-spool.5's state table has every transition of state.ts", () => {
  const header = code('src/spool/state.ts').split('\n').filter((l) => l.startsWith('//'));
  const names = header.map((l) => /^\/\/ {3}([a-z]+) {2,}\S.* -> /.exec(l)?.[1]).filter((x): x is string => x !== undefined);
  assert.ok(names.length >= 6, `found the transitions: ${names.join(', ')}`);
  const table = section(PAGES.spool, 'STATE TRANSITIONS');
  assert.equal(missing(names, (n) => new RegExp(`\\b${n} +[^>]{1,60}-> `).test(table)), [], 'transitions missing from the table');
  assert.equal(missing(names, (n) => /commit/.test(table.slice(table.indexOf(`${n} `)))), [], 'a commit point for each');
});

// The rules block at the top of schedule.ts is what builder-spool.5, spoold.8
// and bctl.1 copy: every word of it must be in their section, so an edit to the
// rules that misses a page shows up here.
test('builder-spool.5, spoold.8 and bctl.1 carry the schedule rules of schedule.ts', () => {
  const lines = code('src/spool/schedule.ts').split('\n');
  const from = lines.findIndex((l) => /WHEN A SCHEDULE FIRES/.test(l));
  const to = lines.findIndex((l, i) => i > from && /^\/\/ How:/.test(l));
  assert.ok(from > 0 && to > from, 'schedule.ts has its WHEN A SCHEDULE FIRES block');
  const words = (s: string) => new Set((s.toLowerCase().match(/[a-z0-9@#*/]+/g) ?? []).filter((w) => w.length > 1));
  const rules = words(lines.slice(from + 1, to).map((l) => l.replace(/^\/\/ ?/, '')).join(' '));
  for (const [page, title] of [[PAGES.spool, 'WHEN A SCHEDULE FIRES'], [PAGES.spoold, 'SCHEDULES'], [PAGES.bctl, 'WHEN A SCHEDULE FIRES']] as const) {
    const have = words(section(page, title));
    assert.equal(missing(rules, (w) => have.has(w)), [], `words of schedule.ts's rules missing from ${page} ${title}`);
  }
});

// ---- spoold(8), workerd(8) ----------------------------------------------------

/** The options a daemon declares: to mri (string, boolean, alias) and in its USAGE text. */
function daemonOptions(rel: string): { long: string[]; short: string[]; usage: string[] } {
  const text = code(rel);
  const usage = /const USAGE = `([\s\S]*?)`/.exec(text)?.[1];
  assert.ok(usage, `${rel} has a USAGE string`);
  // Declared with daemonArgs(argv, STRINGS, BOOLEANS, usage); its short flags are argv.ts's.
  const decl = /daemonArgs\(argv, (\[[^\]]*\]), (\[[^\]]*\])/.exec(text);
  assert.ok(decl, `${rel} declares its options to daemonArgs`);
  const names = (list: string) => [...list.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
  const fromUsage = [...usage!.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]!);
  const long = [...new Set([...names(decl![1]!), ...names(decl![2]!), ...fromUsage])];
  const shorts = /shorts: \{([^}]*)\}/.exec(code('src/spool/argv.ts').split('export function daemonArgs')[1] ?? '')?.[1] ?? '';
  const short = [...shorts.matchAll(/\b([a-z]): '/g)].map((m) => m[1]!);
  assert.ok(long.length >= 5 && short.length >= 2, `${rel}: found options ${long.join(' ')} and ${short.join(' ')}`);
  return { long, short, usage: fromUsage };
}

for (const prog of ['spoold', 'workerd'] as const) {
  test(`${prog}.8 documents every option ${prog} declares, in SYNOPSIS and DESCRIPTION`, () => {
    const o = daemonOptions(`src/${prog}/main.ts`);
    const page = PAGES[prog];
    const syn = section(page, 'SYNOPSIS');
    const desc = section(page, 'DESCRIPTION');
    assert.equal(missing(o.usage, (f) => hasWord(syn, `--${f}`)), [], `options of USAGE missing from ${page} SYNOPSIS`);
    assert.equal(missing(o.long, (f) => hasWord(desc, `--${f}`)), [], `options missing from ${page} DESCRIPTION`);
    assert.equal(missing(o.short, (f) => hasWord(syn, `-${f}`) && hasWord(desc, `-${f}`)), [], `short options missing from ${page}`);
  });
}

test('spoold.8 states the lease and heartbeat defaults of main.ts and daemon.ts', () => {
  const text = code('src/spoold/main.ts');
  const num = (name: string) => Number(new RegExp(`let ${name} = ([\\d_]+);`).exec(text)?.[1]?.replace(/_/g, ''));
  const desc = section(PAGES.spoold, 'DESCRIPTION');
  for (const [name, option] of [['leaseMs', '--lease'], ['heartbeatMs', '--heartbeat']] as const) {
    assert.ok(num(name) > 0, `main.ts sets ${name}`);
    const stated = new RegExp(`${option} duration .*?The default is (\\S+?)\\.`).exec(desc)?.[1];
    assert.ok(stated, `spoold.8 states the default of ${option}`);
    assert.is(parseDuration(stated!), num(name), `the default of ${option}: the page says ${stated}, main.ts ${num(name)} ms`);
  }
  const recovery = section(PAGES.spoold, 'RECOVERY RULES');
  assert.match(recovery, `the lease plus ${RECONNECT_GRACE_MS / 1000} seconds`, 'RECONNECT_GRACE_MS');
  assert.match(recovery, `at least ${ORPHAN_MS / 1000} seconds old`, 'ORPHAN_MS');
  assert.match(section(PAGES.spoold, 'DESCRIPTION'), `complete within ${['zero', 'one', 'two', 'three', 'four', 'five'][DEAD_AFTER]} heartbeats`, 'the hello deadline, DEAD_AFTER');
  assert.match(section(PAGES.spoold, 'DESCRIPTION'), `last ${NO_SPACE_RESERVE >> 10} KiB are cut`, 'NO_SPACE_RESERVE');
});

test('spoold.8 names every event spoold logs, in LOG FORMAT', () => {
  const events = new Set<string>();
  for (const { text } of codeDir('src/spoold')) for (const m of text.matchAll(/\blog\('([a-z][a-z ]*)'/g)) events.add(m[1]!);
  assert.ok(events.size >= 20, `found the events: ${[...events].join(', ')}`);
  // Each event is named as an event (Cm EVENT) in the list, not just a word somewhere.
  const fmt = sourceSection(PAGES.spoold, 'LOG FORMAT');
  assert.equal(missing(events, (e) => new RegExp(`Cm ${esc(e)}( No|$)`, 'm').test(fmt)), [], 'events missing from the list of spoold.8 LOG FORMAT');
});

test('workerd.8 documents every protocol message, frame type and limit of protocol.ts', () => {
  const text = code('src/spool/protocol.ts');
  const decl = /export type Msg =([\s\S]*?);\n/.exec(text)?.[1];
  assert.ok(decl, 'protocol.ts declares export type Msg');
  const msgs = [...decl!.matchAll(/\{ t: '([a-z-]+)'/g)].map((m) => m[1]!);
  const codes = [.../code\?: ([^;}]+)/.exec(decl!)![1]!.matchAll(/'([a-z]+)'/g)].map((m) => m[1]!);
  assert.ok(msgs.length >= 13 && codes.length >= 5, `found messages ${msgs.join(' ')} and bye codes ${codes.join(' ')}`);
  const proto = section(PAGES.workerd, 'THE PROTOCOL');
  // Each message is an item of the list of messages, not just a word somewhere.
  const items = sourceSection(PAGES.workerd, 'THE PROTOCOL');
  assert.equal(missing(msgs, (m) => new RegExp(`^\\.It Cm ${esc(m)} `, 'm').test(items)), [], 'messages missing from the lists of workerd.8 THE PROTOCOL');
  // Each message's own fields (not those of an object nested in it) are in its item's braces.
  const fieldProblems: string[] = [];
  let fieldCount = 0;
  for (const m of decl!.matchAll(/\{ t: '([a-z-]+)'(.*)\}\s*$/gm)) {
    let rest = m[2]!;
    while (/\{[^{}]*\}/.test(rest)) rest = rest.replace(/\{[^{}]*\}/g, '');
    const fields = [...rest.matchAll(/;\s*(\w+)\??:/g)].map((f) => f[1]!);
    fieldCount += fields.length;
    const line = new RegExp(`^\\.It Cm ${esc(m[1]!)} Brq(.*)$`, 'm').exec(items)?.[1];
    const documented = (line ?? '').split(/[\s,]+/).filter((w) => w !== '' && w !== 'Ic');
    for (const f of missing(fields, (x) => documented.includes(x))) fieldProblems.push(`${m[1]}: ${f}`);
  }
  assert.ok(fieldCount >= 25, `found ${fieldCount} message fields in protocol.ts`);
  assert.equal(fieldProblems, [], 'message fields missing from the .It Cm MESSAGE Brq Ic ... lines of workerd.8');
  assert.equal(missing(codes, (c) => proto.includes(`\`${c}'`)), [], 'bye codes missing from workerd.8 THE PROTOCOL');
  for (const [n, what] of [[T_CONTROL, 'control'], [T_CONSOLE, 'console'], [T_ARTIFACTS, 'artifacts']] as const) {
    assert.match(proto, `${n} ${what}`, `frame type ${n} ${what}`);
  }
  assert.match(proto, `(${MAX_FRAME} bytes)`, 'MAX_FRAME');
  assert.match(proto, `(${MAX_CONTROL} bytes)`, 'MAX_CONTROL');
  assert.match(proto, `at most ${MAX_MANIFEST_PART} entries`, 'MAX_MANIFEST_PART');
  assert.match(proto, `at most ${MAX_ARTIFACT_FILES} entries in all`, 'MAX_ARTIFACT_FILES');
  assert.match(proto, `paths over ${MAX_ARTIFACT_NAMES} bytes in all`, 'MAX_ARTIFACT_NAMES');
  assert.match(proto, `(${MAX_JOB_MSG} bytes) for the`, 'MAX_JOB_MSG');
  assert.match(proto, `the protocol version, ${PROTOCOL_VERSION}`, 'PROTOCOL_VERSION');
});

// Found by a tester: spoold.8 sent readers to a BUGS section it no longer had.
test('every .Sx names a section or subsection of its page, or of the page named by the .Xr just before it', () => {
  const titles = new Map<string, Set<string>>();
  for (const page of Object.values(PAGES)) titles.set(page, new Set([...source(page).matchAll(/^\.S[hs] (.+)$/gm)].map((m) => m[1]!.trim())));
  const dangling: string[] = [];
  let refs = 0;
  for (const page of Object.values(PAGES)) {
    const lines = source(page).split('\n');
    for (const [i, line] of lines.entries()) {
      const m = /^\.Sx (.+)$/.exec(line);
      if (!m) continue;
      refs++;
      const xr = /^\.Xr (\S+) (\d)/.exec(lines[i - 1] ?? '');
      const target = xr ? `${xr[1]}.${xr[2]}` : page;
      const title = m[1]!.replace(/(\s+[).,;:(]+)+$/, '').trim();
      if (!titles.get(target)?.has(title)) dangling.push(`${page}: .Sx ${title} (in ${target})`);
    }
  }
  assert.ok(refs >= 20, `found ${refs} .Sx references`);
  assert.equal(dangling, []);
});

test("workerd.8 states the job's kill grace and every variable the job gets", () => {
  const job = section(PAGES.workerd, 'THE JOB');
  assert.match(job, `${KILL_GRACE_MS / 1000} seconds later, SIGKILL`, 'KILL_GRACE_MS');
  const launch = code('src/workerd/launch.ts');
  const set = [...new Set([...launch.matchAll(/\b(BUILDER_[A-Z_]+)=/g)].map((m) => m[1]!))];   // exported by the standby shell
  assert.ok(set.length >= 5, `found the job's variables: ${set.join(', ')}`);
  const perl = /@ENV\{qw\(([A-Z_ ]+)\)\}/.exec(launch)?.[1]?.split(' ') ?? [];   // set by the perl launcher's child
  assert.equal([...perl].sort(), [...set].sort(), 'both launchers give the job the same variables');
  assert.equal(missing(set, (v) => hasWord(job, v)), [], 'job variables missing from workerd.8 THE JOB');
  assert.equal(missing(set, (v) => hasWord(section(PAGES.workerd, 'ENVIRONMENT'), v)), [], 'job variables missing from workerd.8 ENVIRONMENT');
});

// Found by a tester: the README's and spoold.8's blocks lacked the types
// lines, so nginx served a job's index.html and .svg as pages.
test('the README and spoold.8 carry builder-spool.5\'s nginx server block verbatim', () => {
  const block = /^server \{\n[\s\S]*?^\}$/m;
  const spool = block.exec(source(PAGES.spool))?.[0];
  assert.ok(spool && spool.includes('default_type application/octet-stream;') && spool.includes('disable_symlinks on'), 'builder-spool.5 SERVING DONE has the server block');
  assert.is(block.exec(source(PAGES.spoold))?.[0], spool, 'spoold.8 EXAMPLES');
  assert.is(block.exec(code('README.md'))?.[0], spool, 'README.md, Serving the archive');
});

test('workerd.8 carries the SSH recipe of docs/ssh.md verbatim, and its caveat', () => {
  const doc = code('docs/ssh.md');
  const man = source(PAGES.workerd);
  for (const name of ['spoold', 'authorized_keys', 'sshd_config', 'ssh', 'workerd']) {
    const m = new RegExp(`<!-- recipe:${name} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\`\\n`).exec(doc);
    assert.ok(m, `docs/ssh.md has a block marked <!-- recipe:${name} -->`);
    // In mdoc a backslash is written \e; nothing else in these blocks needs escaping.
    assert.ok(man.includes(m![1]!.replace(/\\/g, '\\e')), `workerd.8 EXAMPLES lacks recipe:${name} as docs/ssh.md writes it:\n${m![1]}`);
  }
  const caveats = section(PAGES.workerd, 'CAVEATS');
  assert.match(caveats, 'OpenSSH can restrict a key to one TCP destination, but not to one Unix socket path');
  assert.match(caveats, 'The only thing that narrows a Unix socket forward is the file system');
});

// ---- bctl(1) ------------------------------------------------------------------

test('bctl.1 documents every verb of the command table with its flags, in SYNOPSIS and DESCRIPTION', () => {
  const syn = sourceSection(PAGES.bctl, 'SYNOPSIS').split(/^\.Nm$/m);
  const desc = sourceSection(PAGES.bctl, 'DESCRIPTION');
  const flagIn = (text: string, f: string) => new RegExp(`\\\\-${esc(f)}(?![a-z-])`).test(text);
  const problems: string[] = [];
  for (const c of COMMANDS) {
    const block = syn.find((b) => new RegExp(`^\\.Cm ${esc(c.name.replace(/-/g, '\\-'))}$|^\\.Cm ${esc(c.name)}$`, 'm').test(b));
    if (!block) problems.push(`SYNOPSIS: no ${c.name}`);
    const at = desc.search(new RegExp(`^\\.It Cm (${esc(c.name)}|${esc(c.name.replace(/-/g, '\\-'))})\\b`, 'm'));
    if (at < 0) { problems.push(`DESCRIPTION: no .It Cm ${c.name}`); continue; }
    const next = desc.slice(at + 1).search(/^\.It Cm /m);
    const item = desc.slice(at, next < 0 ? undefined : at + 1 + next);
    for (const f of c.flags) {
      if (block && !flagIn(block, f.name)) problems.push(`SYNOPSIS of ${c.name}: no --${f.name}`);
      if (!flagIn(item, f.name)) problems.push(`DESCRIPTION of ${c.name}: no --${f.name}`);
    }
  }
  for (const f of GLOBAL_FLAGS) {
    if (!flagIn(desc, f.name)) problems.push(`DESCRIPTION: no --${f.name}`);
    if (f.short && !desc.includes(`Fl ${f.short}`)) problems.push(`DESCRIPTION: no -${f.short}`);
  }
  assert.equal(problems, [], 'bctl.1 against the command table of src/bctl/main.ts');
});

// ---- all pages ----------------------------------------------------------------

/** Which programs a file in src/ belongs to; src/spool/ belongs to every program. */
function programsOf(file: string): Program[] {
  const dir = file.split('/')[1];
  return (PROGRAMS as string[]).includes(dir!) ? [dir as Program] : PROGRAMS;
}

test('every BUILDER_ variable a program reads is in the ENVIRONMENT of its page', () => {
  const problems: string[] = [];
  let found = 0;
  for (const dir of ['src/spoold', 'src/workerd', 'src/bctl', 'src/spool']) {
    for (const { file, text } of codeDir(dir)) {
      for (const m of text.matchAll(/\benv(?:\.|\[['"])(BUILDER_[A-Z_]+)/g)) {
        found++;
        const pages = programsOf(file).map((p) => PAGES[p]);
        if (!pages.some((p) => hasWord(section(p, 'ENVIRONMENT'), m[1]!))) problems.push(`${m[1]} (read in ${file}) not in ENVIRONMENT of ${pages.join(' or ')}`);
      }
    }
  }
  assert.ok(found >= 3, `found ${found} reads of BUILDER_ variables`);
  assert.equal(problems, []);
});

test('every exit status a program uses is in the EXIT STATUS of its page, and no other', () => {
  type Name = keyof typeof exits;
  const names = Object.keys(exits).filter((k) => k.startsWith('EXIT_')) as Name[];
  const used = (text: string): Name[] => names.filter((n) => new RegExp(`\\b${n}\\b`).test(text));
  // Library functions that exit the process themselves: an
  // exported function's body, up to the next export, names the statuses it uses.
  const libExits: Array<{ fn: string; names: Name[] }> = [];
  for (const { text } of codeDir('src/spool')) {
    const parts = text.split(/\n(?=export )/);
    for (const p of parts) {
      const fn = /^export (?:async )?function (\w+)/.exec(p)?.[1];
      if (fn && used(p).length > 0) libExits.push({ fn, names: used(p) });
    }
  }
  const problems: string[] = [];
  for (const prog of PROGRAMS) {
    const text = codeDir(`src/${prog}`).map((f) => f.text).join('\n');
    const statuses = new Set(used(text));
    for (const l of libExits) if (new RegExp(`\\b${l.fn}\\(`).test(text)) for (const n of l.names) statuses.add(n);
    const want = [...statuses].map((n) => exits[n] as number).sort((a, b) => a - b);
    const page = PAGES[prog];
    const listed = [...sourceSection(page, 'EXIT STATUS').matchAll(/^\.It (\d+)$/gm)].map((m) => Number(m[1])).sort((a, b) => a - b);
    if (want.join(' ') !== listed.join(' ')) problems.push(`${page}: EXIT STATUS lists ${listed.join(' ') || 'nothing'}; ${prog} uses ${want.join(' ')}`);
  }
  assert.equal(problems, []);
});

test('--version of each program prints package.json\'s version (and the daemons, the protocol of protocol.ts), exit 0', () => {
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
  for (const prog of ['spoold', 'workerd', 'bctl']) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'bin', prog === 'bctl' ? 'bctl.cjs' : `${prog}.js`), '--version'], { encoding: 'utf8' });
    assert.is(r.status, 0, `${prog} --version`);
    assert.is(r.stdout, `${prog} (builder) ${version}${prog === 'bctl' ? '' : `, worker protocol ${PROTOCOL_VERSION}`}\n`);
  }
});

test('every man page is clean under mandoc -Tlint -W warning', () => {
  const pages = fs.readdirSync(MAN).filter((f) => /\.[1-9]$/.test(f)).sort();
  for (const p of Object.values(PAGES)) assert.ok(pages.includes(p), `man/${p} exists`);
  for (const p of pages) {
    const r = mandoc(['-Tlint', '-W', 'warning', path.join(MAN, p)]);
    assert.is(r.out, '', `mandoc -Tlint -W warning man/${p}`);
    assert.is(r.status, 0, `mandoc -Tlint exit status for man/${p}`);
  }
});

test.run();
