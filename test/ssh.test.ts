// ssh.test.ts: workers that reach spoold only through a real OpenSSH tunnel.
//
// Each test starts its own sshd (test/realsrv.ts) on a loopback port with
// throwaway keys, and spoold, ssh and workerd as built. The authorized_keys
// lines, the sshd_config Match blocks and the ssh command lines are read from
// docs/ssh.md (the blocks marked <!-- recipe:NAME -->), with only names, paths,
// ports and keys replaced: the recipe people copy is the one that ran here.
//
// Besides running a job through each tunnel, the tests try what a stolen
// worker key would try (a shell, other forwards, listeners) and assert that
// nothing got through: no byte read, and the bait server behind the forward
// saw no connection. They also assert the OpenSSH limits docs/ssh.md states,
// so that the page gets revisited if a new OpenSSH changes them.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { ROOT, tmpdir, daemon, until, readIf, run, queueJob, type Daemon } from './lib.js';
import { binary, freePort, keygen, startSshd, sshBase, tunnel, bait, readAll, type Bait, type Sshd } from './realsrv.js';
import { parseResult } from '../src/spool/result.js';

const DOC = path.join(ROOT, 'docs', 'ssh.md');
const DOC_PORT = '7070';
const DEST = 'root@127.0.0.1';

let dir = '';
let spool = '';
let procs: Daemon[] = [];
let baits: Bait[] = [];
let probes = 0;

test.before.each(async () => {
  // Fail, not skip, when a program is missing: CI installs them.
  for (const b of ['sshd', 'ssh', 'ssh-keygen']) binary(b);
  dir = await tmpdir('ssh');
  spool = path.join(dir, 'spool');
  await fsp.mkdir(spool);
  procs = [];
  baits = [];
});
test.after.each(async () => {
  // Clients before servers: an sshd session child ends when its client goes.
  for (const p of procs.reverse()) await p.stop('SIGTERM');
  for (const b of baits) await b.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

// --- the recipe, as docs/ssh.md writes it -------------------------------------

/** The fenced block after `<!-- recipe:NAME -->` in docs/ssh.md. */
function recipe(name: string): string {
  const doc = fs.readFileSync(DOC, 'utf8');
  const m = new RegExp(`<!-- recipe:${name} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\`\\n`).exec(doc);
  if (!m) throw new Error(`docs/ssh.md has no block marked <!-- recipe:${name} -->`);
  return m[1]!;
}

/** The documented authorized_keys options, for our key and port. */
function keyLine(name: string, pub: string, port?: number): string {
  const lines = recipe(name).trim().split('\n');
  assert.is(lines.length, 1, `recipe:${name} is one authorized_keys line`);
  const options = lines[0]!.split(' ')[0]!;
  assert.match(options, /^restrict,/, `recipe:${name} starts with restrict`);
  if (port !== undefined) assert.ok(options.includes(DOC_PORT), `recipe:${name} names port ${DOC_PORT}`);
  return `${port === undefined ? options : options.split(DOC_PORT).join(String(port))} ${pub}`;
}

/** The documented Match block, for the account the tests log in as (root) and our port. */
function matchBlock(name: string, port?: number): string {
  const block = recipe(name);
  assert.match(block, /^Match User builder-tunnel\n/, `recipe:${name} is a Match block for builder-tunnel`);
  const b = block.replace('Match User builder-tunnel', 'Match User root');
  return port === undefined ? b : b.split(DOC_PORT).join(String(port));
}

/**
 * The arguments of the documented `prog` command line in recipe NAME, with
 * each placeholder replaced. Every replacement must be used (the doc still
 * says what the test expects) and no example name may survive.
 */
function commandLine(name: string, prog: string, subs: [string, string][]): string[] {
  const lines = recipe(name).replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim());
  let line = lines.find((l) => l.startsWith(`${prog} `))?.slice(prog.length + 1);
  if (line === undefined) throw new Error(`recipe:${name} has no ${prog} command`);
  for (const [from, to] of subs) {
    assert.ok(line.includes(from), `recipe:${name} contains ${from}`);
    line = line.split(from).join(to);
  }
  assert.not.match(line, /example\.org|\/etc\/builder|\/run\/builder|\/var\/spool\/builder|#/, `recipe:${name}: a placeholder left in ${line}`);
  return line.split(/\s+/);
}

/** The documented ssh command, which must keep the options that make a tunnel fail loudly. */
function sshCommand(name: string, subs: [string, string][]): string[] {
  const args = commandLine(name, 'ssh', subs);
  for (const o of ['ExitOnForwardFailure=yes', 'ServerAliveInterval=15', 'BatchMode=yes', 'StrictHostKeyChecking=yes']) {
    assert.ok(args.includes(o), `recipe:${name} sets ${o}`);
  }
  assert.ok(args.includes('-N'), `recipe:${name} runs no command (-N)`);
  return args;
}

// --- spoold, workerd, jobs ----------------------------------------------------

const FAST = ['--lease', '2s', '--heartbeat', '400ms'];

async function spoold(args: string[] = ['-s', spool]): Promise<Daemon> {
  const d = daemon('spoold', [...args, ...FAST]);
  procs.push(d);
  await d.waitLog(/spoold: started/);
  return d;
}

/** workerd with the documented arguments, plus a work directory of its own. */
function workerd(name: string, args: string[]): Daemon {
  const d = daemon('workerd', ['--workdir', path.join(dir, `wd-${name}`), ...args]);
  procs.push(d);
  return d;
}

async function token(): Promise<string> {
  const f = path.join(dir, 'token');
  await fsp.writeFile(f, `${randomBytes(24).toString('base64')}\n`, { mode: 0o600 });
  return f;
}

const queue = (name: string, body: string): Promise<string> => queueJob(spool, { name, body });

const sha = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** Queue a job that leaves two artifacts, wait for it in done/, and check all of it. */
async function runsAJob(worker: string): Promise<void> {
  const id = await queue('tunnelled', '#!/bin/sh\necho "via $BUILDER_PLATFORM"\necho hello > hello.txt\nmkdir sub\nhead -c 65536 /dev/zero | tr "\\0" x > sub/big\n');
  const done = path.join(spool, 'done', 'tunnelled', id);
  const text = await until(`done/tunnelled/${id}/result`, () => readIf(path.join(done, 'result')), 30_000);
  const r = parseResult(text, 'result');
  assert.equal(r.status, { kind: 'exited', code: 0 });
  assert.is(r.worker, worker);
  assert.is(fs.readFileSync(path.join(done, 'console.log'), 'utf8'), 'via debian-12\n');
  assert.is(fs.readFileSync(path.join(done, 'artifacts', 'hello.txt'), 'utf8'), 'hello\n');
  assert.is(fs.statSync(path.join(done, 'artifacts', 'sub', 'big')).size, 65536);
  assert.is(fs.readFileSync(path.join(done, 'SHA256SUMS'), 'utf8'),
    `${sha(path.join(done, 'artifacts', 'hello.txt'))}  hello.txt\n${sha(path.join(done, 'artifacts', 'sub', 'big'))}  sub/big\n`);
}

// --- what a stolen key would try ---------------------------------------------

/** A command, and with `shell` also a shell on stdin: the forced command runs instead, prints nothing and fails. */
async function noShell(sshd: Sshd, key: string, shell = false): Promise<void> {
  const cmd = await run(binary('ssh'), [...sshBase(sshd, key), DEST, 'echo pwned']);
  assert.not.match(cmd.stdout + cmd.stderr, /pwned/, 'a command ran');
  assert.is(cmd.code, 1, `the forced /bin/false answers a command (got ${cmd.code}: ${cmd.stderr})`);
  if (!shell) return;
  const sh = await run(binary('ssh'), [...sshBase(sshd, key), '-T', DEST], { input: 'echo pwned; id\n' });
  assert.not.match(sh.stdout + sh.stderr, /pwned|uid=/, 'a shell ran');
  assert.is(sh.code, 1);
}

/** Each -L target is a bait; the tunnel comes up (local listeners), but no byte and no connection gets through. */
async function noLocalForward(sshd: Sshd, key: string, targets: ({ port: number; bait?: Bait } | { path: string; bait?: Bait })[]): Promise<void> {
  const args: string[] = [];
  const ends: ({ port: number } | { path: string })[] = [];
  for (const t of targets) {
    if ('port' in t) { const lp = await freePort(); args.push('-L', `127.0.0.1:${lp}:127.0.0.1:${t.port}`); ends.push({ port: lp }); }
    else { const ls = path.join(dir, `probe-${++probes}.sock`); args.push('-L', `${ls}:${t.path}`); ends.push({ path: ls }); }
  }
  const t = await tunnel([...sshBase(sshd, key), '-N', '-o', 'ExitOnForwardFailure=yes', ...args, DEST]);
  procs.push(t);
  for (const [i, end] of ends.entries()) {
    const got = await readAll(end);
    assert.is(got.toString(), '', `-L to ${JSON.stringify(targets[i])} delivered data`);
    assert.is(targets[i]!.bait?.accepted() ?? 0, 0, `-L to ${JSON.stringify(targets[i])} reached its target`);
  }
  await t.stop();
}

/** -R of a port and of a socket path: ssh gives up (ExitOnForwardFailure) and nothing listens. */
async function noRemoteForward(sshd: Sshd, key: string, to: string): Promise<void> {
  const port = await freePort();
  const tcp = await run(binary('ssh'), [...sshBase(sshd, key), '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${port}:${to}`, DEST], { timeoutMs: 15_000 });
  assert.is(tcp.code, 255, `-R of a port was granted (ssh ${tcp.code ?? tcp.signal})`);
  assert.match(tcp.stderr, /remote port forwarding failed/);
  const sock = path.join(dir, 'pushed.sock');
  const unix = await run(binary('ssh'), [...sshBase(sshd, key), '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${sock}:${to}`, DEST], { timeoutMs: 15_000 });
  assert.is(unix.code, 255, `-R of a socket path was granted (ssh ${unix.code ?? unix.signal})`);
  assert.match(unix.stderr, /remote port forwarding failed/);
  assert.not.ok(fs.existsSync(sock), 'sshd created the -R socket');
}

async function baitAt(where: { port: number } | { path: string }): Promise<Bait> {
  const b = await bait(where);
  baits.push(b);
  return b;
}

// --- tests --------------------------------------------------------------------

test('the recipe: a worker reaches spoold through ssh -L to its TCP listener, and the key opens nothing else', async () => {
  const sport = await freePort();
  const tok = await token();
  const s = await spoold(commandLine('spoold', 'spoold', [[DOC_PORT, String(sport)], ['/var/spool/builder', spool], ['/etc/builder/token', tok]]));
  const user = await keygen(path.join(dir, 'worker_key'), 'builder@worker1');
  const sshd = await startSshd(dir, `${keyLine('authorized_keys', user.pub, sport)}\n`, matchBlock('sshd_config', sport));
  procs.push(sshd.proc);

  const local = path.join(dir, 'run', 'spoold.sock');
  await fsp.mkdir(path.dirname(local), { mode: 0o700 });
  const t = await tunnel([...sshBase(sshd), ...sshCommand('ssh', [['/etc/builder/known_hosts', sshd.knownHosts],
    [DOC_PORT, String(sport)], ['/run/builder/spoold.sock', local], ['/etc/builder/tunnel_key', user.key], ['builder-tunnel@spool.example.org', DEST]])]);
  procs.push(t);
  await until('the tunnel socket', () => fs.existsSync(local));
  assert.is(fs.statSync(local).mode & 0o777, 0o600, 'ssh makes the local end private to its account');
  const w = workerd('tunnelled', commandLine('workerd', 'workerd', [['/run/builder/spoold.sock', local], ['/etc/builder/token', tok], ['worker1', 'tunnelled']]));
  await w.waitLog(/connected to/);
  await runsAJob('tunnelled');
  assert.match(s.log(), /worker joined worker=tunnelled platform=debian-12 peer=127\.0\.0\.1:\d+/, 'the worker came in over TCP, from sshd');

  // The worker's only way in is the tunnel: end it, and the worker loses spoold.
  await t.stop();
  await w.waitLog(/lost spoold/);

  // What a stolen key would try; independent, so at once.
  const other = await freePort();
  const otherSock = path.join(dir, 'other.sock');
  const targets = [
    { port: other, bait: await baitAt({ port: other }) },
    { path: path.join(spool, 'spoold.sock') },
    { path: otherSock, bait: await baitAt({ path: otherSock }) },
  ];
  await Promise.all([noShell(sshd, user.key, true), noLocalForward(sshd, user.key, targets), noRemoteForward(sshd, user.key, `127.0.0.1:${sport}`)]);
  assert.match(s.log(), /worker joined/);
  assert.not.match(s.log(), /connection refused/, 'no probe reached spoold');
});

test('a Unix socket at both ends (ssh -L LOCAL.sock:SPOOL/spoold.sock) runs jobs, but its key cannot be held to spoold.sock', async () => {
  const s = await spoold();
  const user = await keygen(path.join(dir, 'worker_key'), 'builder@worker1');
  const sshd = await startSshd(dir, `${keyLine('unix-authorized_keys', user.pub)}\n`, matchBlock('unix-sshd_config'));
  procs.push(sshd.proc);

  const local = path.join(dir, 'run', 'spoold.sock');
  await fsp.mkdir(path.dirname(local), { mode: 0o700 });
  const t = await tunnel([...sshBase(sshd), ...sshCommand('unix-ssh', [
    ['/run/builder/spoold.sock', local], ['/var/spool/builder', spool], ['/etc/builder/tunnel_key', user.key], ['builder-tunnel@spool.example.org', DEST]])]);
  procs.push(t);
  await until('the tunnel socket', () => fs.existsSync(local));
  const w = workerd('tunnelled', commandLine('unix-workerd', 'workerd', [['/run/builder/spoold.sock', local], ['worker1', 'tunnelled']]));
  await w.waitLog(/connected to/);
  await runsAJob('tunnelled');
  assert.match(s.log(), /worker joined worker=tunnelled platform=debian-12 peer=unix/);
  await t.stop();
  await w.waitLog(/lost spoold/);

  await Promise.all([noShell(sshd, user.key), noRemoteForward(sshd, user.key, path.join(spool, 'spoold.sock'))]);

  // The caveat docs/ssh.md states: the same key reaches another socket and another port.
  const otherSock = path.join(dir, 'other.sock');
  const otherPort = await freePort();
  const bs = await baitAt({ path: otherSock });
  const bp = await baitAt({ port: otherPort });
  const lp = await freePort();
  const ls = path.join(dir, 'probe.sock');
  const probe = await tunnel([...sshBase(sshd, user.key), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${ls}:${otherSock}`, '-L', `127.0.0.1:${lp}:127.0.0.1:${otherPort}`, DEST]);
  procs.push(probe);
  assert.is((await readAll({ path: ls })).toString(), 'secret\n', 'OpenSSH now limits socket forwards; revise docs/ssh.md');
  assert.is((await readAll({ port: lp })).toString(), 'secret\n', 'OpenSSH now refuses TCP here; revise docs/ssh.md');
  assert.is(bs.accepted(), 1);
  assert.is(bp.accepted(), 1);
});

test('ssh -R: spoold\'s host pushes its socket to a port on the worker host, and permitlisten holds the key to that port', async () => {
  const tok = await token();
  const s = await spoold(['-s', spool, '--token-file', tok]);
  const wport = await freePort();
  // Here sshd plays the worker host and the ssh client the spoold host.
  const push = await keygen(path.join(dir, 'push_key'), 'spoold@spool');
  const sshd = await startSshd(dir, `${keyLine('push-authorized_keys', push.pub, wport)}\n`, matchBlock('push-sshd_config', wport));
  procs.push(sshd.proc);

  const t = await tunnel([...sshBase(sshd), ...sshCommand('push-ssh', [
    [DOC_PORT, String(wport)], ['/var/spool/builder', spool], ['/etc/builder/push_key', push.key], ['builder-tunnel@worker1.example.org', DEST]])]);
  procs.push(t);
  const w = workerd('pushed', commandLine('push-workerd', 'workerd', [[DOC_PORT, String(wport)], ['/etc/builder/token', tok], ['worker1', 'pushed']]));
  await w.waitLog(/connected to/);
  await runsAJob('pushed');
  assert.match(s.log(), /worker joined worker=pushed platform=debian-12 peer=unix/);
  await t.stop();
  await w.waitLog(/lost spoold/);

  // Another -R port, a -R socket, any -L, a shell: refused.
  const other = await freePort();
  const otherSock = path.join(dir, 'other.sock');
  const targets = [
    { port: other, bait: await baitAt({ port: other }) },
    { path: otherSock, bait: await baitAt({ path: otherSock }) },
  ];
  await Promise.all([noRemoteForward(sshd, push.key, path.join(spool, 'spoold.sock')), noShell(sshd, push.key), noLocalForward(sshd, push.key, targets)]);
});

test('OpenSSH limits that docs/ssh.md states: no socket path in permitopen, no socket -L once TCP -L is restricted, permitlisten ignores sockets', async () => {
  const target = path.join(dir, 'target.sock');
  const b = await baitAt({ path: target });

  // 1. permitopen naming a socket path: sshd throws the whole key line away.
  const k1 = await keygen(path.join(dir, 'k1'), 'k1');
  const k2 = await keygen(path.join(dir, 'k2'), 'k2');
  const lp = await freePort();
  const a = path.join(dir, 'a');
  await fsp.mkdir(a);
  const keys = [
    `restrict,port-forwarding,permitopen="${target}:*",command="/bin/true" ${k1.pub}`,
    `restrict,port-forwarding,permitopen="127.0.0.1:${lp}",permitlisten="127.0.0.1:${lp}",command="/bin/true" ${k2.pub}`,
  ].join('\n');
  const open = await startSshd(a, `${keys}\n`);
  procs.push(open.proc);
  const rejected = await run(binary('ssh'), [...sshBase(open, k1.key), DEST, 'true']);
  assert.is(rejected.code, 255);
  assert.match(rejected.stderr, /Permission denied \(publickey\)/);
  const control = await run(binary('ssh'), [...sshBase(open, k2.key), DEST, 'true']);
  assert.is(control.code, 0, `the control key logs in: ${control.stderr}`);

  // 2. With sshd's defaults, any permitopen entry already refuses every -L to a socket...
  await noLocalForward(open, k2.key, [{ path: target, bait: b }]);
  // 3. ...but permitlisten does not stop a socket listener.
  const pushed = path.join(dir, 'listener.sock');
  const r = await tunnel([...sshBase(open, k2.key), '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${pushed}:${target}`, DEST]);
  procs.push(r);
  await until('the -R socket', () => fs.existsSync(pushed));
  assert.is((await readAll({ path: pushed })).toString(), 'secret\n', 'OpenSSH now applies permitlisten to sockets; revise docs/ssh.md');
  await r.stop();
  await open.proc.stop();

  // 4. Refusing TCP -L refuses socket -L too, even with AllowStreamLocalForwarding yes: no way to allow only sockets.
  const target2 = path.join(dir, 'target2.sock');
  const b2 = await baitAt({ path: target2 });
  await Promise.all(([['notcp', 'AllowTcpForwarding no'], ['remoteonly', 'AllowTcpForwarding remote'], ['noopen', 'PermitOpen none']] as const).map(async ([tag, line]) => {
    const d = path.join(dir, tag);
    await fsp.mkdir(d);
    const sshd = await startSshd(d, `restrict,port-forwarding,command="/bin/false" ${k1.pub}\n`, `Match User root\n    ${line}\n    AllowStreamLocalForwarding yes\n`);
    procs.push(sshd.proc);
    await noLocalForward(sshd, k1.key, [{ path: target2, bait: b2 }]);
  }));
  assert.is(b.accepted(), 1, 'only the listener probe reached the target');
  assert.is(b2.accepted(), 0);
});

test.run();
