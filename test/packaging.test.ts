// packaging.test.ts: the FreeBSD jail files, the rc.d scripts and the systemd
// units, checked on Linux.
//
// freebsd/load.sh runs for real, with zfs, jail, jls, mount, umount, ifconfig
// and sleep replaced by stubs: small sh scripts, first on PATH, that log their
// argv and keep just enough state (datasets, mounts, jails) to fail the way
// the real tools do when load.sh gets the order wrong (destroying a dataset
// with something mounted below it, creating a jail that exists). The rc.d
// scripts run against a stand-in for rc.subr that only calls their start,
// stop and status functions, with daemon(8) stubbed, to check the argument
// lists they build.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { ROOT, BIN, bctl, daemon, run, tmpdir, until, readIf, type Ran } from './lib.js';

const LOAD = path.join(ROOT, 'freebsd', 'load.sh');
const JAIL_CONF = path.join(ROOT, 'freebsd', 'jail.conf');
const RC_SPOOLD = path.join(ROOT, 'freebsd', 'rc.d', 'spoold');
const RC_WORKERD = path.join(ROOT, 'freebsd', 'rc.d', 'workerd');
const UNITS = path.join(ROOT, 'packaging', 'systemd');
const DOCS = path.join(ROOT, 'docs', 'freebsd.md');

const cleanups: (() => Promise<void>)[] = [];
test.after.each(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function onPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':')) {
    const p = path.join(d, cmd);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return undefined;
}

async function scratch(tag: string): Promise<string> {
  const d = await tmpdir(tag);
  cleanups.push(() => fsp.rm(d, { recursive: true, force: true }));
  return d;
}

// ---- stubs for FreeBSD's tools ---------------------------------------------

// State: $STUB_STATE/zfs/<dataset> (content: mountpoint), $STUB_STATE/mounts
// (mount -p lines), $STUB_STATE/jail.<name> (a running jail), $STUB_STATE/if.<if>,
// $STUB_STATE/statuses (what each next exec.start's workerd exits with; "crash":
// jail(8) dies half-way and leaves devfs mounted; "hang": runs until jail -r;
// "symlink": the job replaced the status file with a link to a host file).
const STUBS: Record<string, string> = {
  zfs: String.raw`
ds() { printf '%s/zfs/%s\n' "$STUB_STATE" "$(printf '%s' "$1" | tr '/@' '%+')"; }
mkdir -p "$STUB_STATE/zfs"
cmd=$1; shift
case $cmd in
list)
	for last; do :; done
	if [ -e "$(ds "$last")" ]; then echo "$last"; exit 0; fi
	echo "cannot open '$last': dataset does not exist" >&2; exit 1 ;;
clone)
	mp=
	while [ $# -gt 2 ]; do
		case $1 in -o) mp=\${2#mountpoint=}; shift ;; esac
		shift
	done
	[ -e "$(ds "$1")" ] || { echo "cannot open '$1': dataset does not exist" >&2; exit 1; }
	[ ! -e "$(ds "$2")" ] || { echo "cannot create '$2': dataset already exists" >&2; exit 1; }
	echo "$mp" >"$(ds "$2")"
	mkdir -p "$mp/etc" "$mp/var/run"
	echo "$2 $mp zfs rw 0 0" >>"$STUB_STATE/mounts" ;;
destroy)
	[ "$1" = -f ] && shift
	[ -e "$(ds "$1")" ] || { echo "cannot open '$1': dataset does not exist" >&2; exit 1; }
	mp=$(cat "$(ds "$1")")
	if awk -v d="$mp/" 'index($2, d) == 1 { f = 1 } END { exit !f }' "$STUB_STATE/mounts" ||
	    grep -qx "$mp" "$STUB_STATE"/jail.* 2>/dev/null; then
		echo "cannot unmount '$mp': pool or dataset is busy" >&2; exit 1
	fi
	awk -v m="$mp" '$2 != m' "$STUB_STATE/mounts" >"$STUB_STATE/mounts.new"
	mv "$STUB_STATE/mounts.new" "$STUB_STATE/mounts"
	rm -rf "$mp" "$(ds "$1")" ;;
*) echo "zfs stub: no '$cmd'" >&2; exit 2 ;;
esac`,
  jail: String.raw`
[ "$1" = -f ] && [ -r "$2" ] || { echo "jail stub: want -f CONF, got $*" >&2; exit 2; }
op=$3 name=$4 path=$JAILDIR/$4
case $op in
-c)
	[ ! -e "$STUB_STATE/jail.$name" ] || { echo "jail: $name: jail already exists" >&2; exit 1; }
	[ -d "$path" ] || { echo "jail: $name: $path: No such file or directory" >&2; exit 1; }
	mkdir -p "$path/dev"
	echo "devfs $path/dev devfs rw 0 0" >>"$STUB_STATE/mounts"
	echo "$path" >"$STUB_STATE/jail.$name"
	echo "jail-token $(cat "$path/usr/local/etc/builder/token" 2>/dev/null || echo none)" >>"$STUB_LOG"
	st=$(head -n 1 "$STUB_STATE/statuses")
	tail -n +2 "$STUB_STATE/statuses" >"$STUB_STATE/statuses.new"
	mv "$STUB_STATE/statuses.new" "$STUB_STATE/statuses"
	case $st in
	'') echo "jail stub: no status left in the queue" >&2; exit 2 ;;
	crash) rm -f "$STUB_STATE/jail.$name"; echo "jail: $name: killed" >&2; exit 1 ;;
	symlink) echo 0 >"$STUB_STATE/host-file"; ln -s "$STUB_STATE/host-file" "$path/var/run/builder-workerd.status" ;;
	hang) i=0; while [ -e "$STUB_STATE/jail.$name" ] && [ $i -lt 2400 ]; do /bin/sleep 0.05; i=$((i + 1)); done; exit 1 ;;
	*) echo "$st" >"$path/var/run/builder-workerd.status" ;;
	esac ;;
-r)
	[ -e "$STUB_STATE/jail.$name" ] || { echo "jail: \"$name\" not found" >&2; exit 1; }
	awk -v m="$path/dev" '$2 != m' "$STUB_STATE/mounts" >"$STUB_STATE/mounts.new"
	mv "$STUB_STATE/mounts.new" "$STUB_STATE/mounts"
	rm -f "$STUB_STATE/jail.$name"
	echo "$name: removed" ;;
*) echo "jail stub: no '$op'" >&2; exit 2 ;;
esac`,
  jls: String.raw`
[ "$1" = -j ] || exit 2
[ -e "$STUB_STATE/jail.$2" ] && { echo 1; exit 0; }
echo "jls: jail \"$2\" not found" >&2; exit 1`,
  mount: String.raw`
[ "$1" = -p ] || { echo "mount stub: only -p" >&2; exit 2; }
cat "$STUB_STATE/mounts"`,
  umount: String.raw`
[ "$1" = -f ] && shift
if awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' "$STUB_STATE/mounts"; then
	awk -v m="$1" '$2 != m' "$STUB_STATE/mounts" >"$STUB_STATE/mounts.new"
	mv "$STUB_STATE/mounts.new" "$STUB_STATE/mounts"
else
	echo "umount: $1: not a file system root directory" >&2; exit 1
fi`,
  ifconfig: String.raw`
st=$STUB_STATE/if.$1
case \${2-} in
'') [ -e "$st" ] || { echo "ifconfig: interface $1 does not exist" >&2; exit 1; }
	echo "$1: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384"; cat "$st" ;;
create) [ ! -e "$st" ] || { echo "ifconfig: SIOCIFCREATE2 ($1): File exists" >&2; exit 1; }; : >"$st" ;;
destroy) [ -e "$st" ] || { echo "ifconfig: interface $1 does not exist" >&2; exit 1; }; rm -f "$st" ;;
inet) [ -e "$st" ] || { echo "ifconfig: interface $1 does not exist" >&2; exit 1; }
	a=\${3%/*}
	if grep -q "inet $a " "$st"; then echo "ifconfig: ioctl (SIOCAIFADDR): File exists" >&2; exit 1; fi
	printf '\tinet %s netmask 0xffffff00\n' "$a" >>"$st" ;;
up) [ -e "$st" ] || { echo "ifconfig: interface $1 does not exist" >&2; exit 1; } ;;
*) echo "ifconfig stub: no '$2'" >&2; exit 2 ;;
esac`,
  sleep: ':',
};

interface Farm { dir: string; state: string; logFile: string; env: NodeJS.ProcessEnv; jails: string; fs: (n: string) => string; snapshot: string; conf: string }

async function farm(opts: { snapshot?: boolean } = {}): Promise<Farm> {
  const dir = await scratch('builder-pkg');
  const bin = path.join(dir, 'bin');
  const state = path.join(dir, 'state');
  await fsp.mkdir(bin);
  await fsp.mkdir(path.join(state, 'zfs'), { recursive: true });
  const logFile = path.join(dir, 'log');
  await fsp.writeFile(logFile, '');
  await fsp.writeFile(path.join(state, 'mounts'), '');
  await fsp.writeFile(path.join(state, 'statuses'), '');
  for (const [name, body] of Object.entries(STUBS)) {
    // The stubs' own ${...} are escaped in the templates above as \${...}.
    const text = `#!/bin/sh\necho "${name} $*" >>"$STUB_LOG"\n${body.replace(/\\\$\{/g, '${')}\n`;
    await fsp.writeFile(path.join(bin, name), text, { mode: 0o755 });
  }
  const conf = path.join(dir, 'jail.conf');
  await fsp.copyFile(JAIL_CONF, conf);
  await fsp.writeFile(path.join(dir, 'token'), 'sekrit\n');
  const snapshot = 'ztest/builder/14-2-REL@builder';
  if (opts.snapshot !== false) await fsp.writeFile(path.join(state, 'zfs', snapshot.replace(/\//g, '%').replace('@', '+')), '');
  const jails = path.join(dir, 'jails');
  const env = {
    PATH: `${bin}:${process.env.PATH}`, STUB_LOG: logFile, STUB_STATE: state,
    ZROOT: 'ztest', SNAPSHOT: snapshot, JAILDIR: jails, JAILCONF: conf, TOKEN_FILE: path.join(dir, 'token'),
  };
  return { dir, state, logFile, env, jails, fs: (n) => `ztest/builder/jails/${n}`, snapshot, conf };
}

// Generous: a build is some sixty short processes, and a loaded machine (two
// cores shared with other test runs) can make that take seconds.
const load = (f: Farm, ...args: string[]): Promise<Ran> => run('sh', [LOAD, ...args], { env: f.env, timeoutMs: 90_000 });
const queue = (f: Farm, ...sts: string[]) => fsp.writeFile(path.join(f.state, 'statuses'), sts.map((s) => `${s}\n`).join(''));
const log = async (f: Farm): Promise<string[]> => (await fsp.readFile(f.logFile, 'utf8')).split('\n').filter(Boolean);
// What changes the world, in order: the queries (list, jls, mount -p) left out.
const actions = async (f: Farm): Promise<string[]> =>
  (await log(f)).filter((l) => !/^(zfs list|jls|mount -p|jail-token)/.test(l));

async function assertNothingLeft(f: Farm): Promise<void> {
  assert.is((await fsp.readFile(path.join(f.state, 'mounts'), 'utf8')).trim(), '', 'no mounts left');
  const st = await fsp.readdir(f.state);
  assert.equal(st.filter((n) => n.startsWith('jail.')), [], 'no jail left');
  assert.equal((await fsp.readdir(path.join(f.state, 'zfs'))).filter((n) => !n.includes('+')), [], 'no clone left');
}

function expectedBuild(f: Farm, name: string): string[] {
  return [
    `zfs clone -p -o mountpoint=${f.jails}/${name} ${f.snapshot} ${f.fs(name)}`,
    `jail -f ${f.conf} -c ${name}`,
    `jail -f ${f.conf} -r ${name}`,
    `zfs destroy -f ${f.fs(name)}`,
  ];
}

// ---- static checks ------------------------------------------------------------

test('load.sh and the rc.d scripts are clean under shellcheck -s sh', async () => {
  if (!onPath('shellcheck')) assert.unreachable('shellcheck is not installed; .ci/run installs it (apt-get install shellcheck)');
  const r = await run('shellcheck', ['-s', 'sh', LOAD, RC_SPOOLD, RC_WORKERD]);
  assert.is(r.code, 0, r.stdout + r.stderr);
});

test('each file opens saying who reads it and which man page defines it', async () => {
  const head = async (p: string) => (await fsp.readFile(p, 'utf8')).split('\n').slice(0, 12).join('\n');
  assert.match(await head(JAIL_CONF), /jail\.conf\(5\)/);
  assert.match(await head(JAIL_CONF), /read by jail\(8\)/i);
  assert.match(await head(LOAD), /jail\.conf\(5\)/);
  assert.match(await head(RC_SPOOLD), /rc\.subr\(8\)/);
  assert.match(await head(RC_WORKERD), /rc\.subr\(8\)/);
  for (const u of ['spoold.service', 'workerd@.service', 'builder-tunnel.service']) assert.match(await head(path.join(UNITS, u)), /systemd\.service\(5\)/);
});

test('jail.conf: exec.start runs workerd --once and leaves its status where load.sh reads it', async () => {
  const conf = await fsp.readFile(JAIL_CONF, 'utf8');
  const sh = await fsp.readFile(LOAD, 'utf8');
  const live = conf.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
  const start = /^exec\.start = "(.*)";$/m.exec(live);
  assert.ok(start, 'an exec.start line');
  assert.match(start![1]!, /^\/usr\/local\/bin\/workerd --once --connect \$spoold --name \$name \$token \$platform; /);
  const statusInConf = /echo \\\$\? >\/(\S+)"/.exec(start![0])?.[1];
  const statusInSh = /^STATUS=(\S+)$/m.exec(sh)?.[1];
  assert.ok(statusInConf && statusInConf === statusInSh, `status file: jail.conf ${statusInConf}, load.sh ${statusInSh}`);
  assert.match(live, /^persist;$/m);
  // path is load.sh's JAILDIR/NAME.
  const jaildir = /^\$jaildir = "(.*)";$/m.exec(live)?.[1];
  assert.is(jaildir, /JAILDIR:=([^}]+)\}/.exec(sh)?.[1]);
  assert.match(live, /^path = "\$jaildir\/\$name";$/m);
  // The token lands where $token says.
  const jailToken = /^JAIL_TOKEN=(\S+)$/m.exec(sh)?.[1];
  assert.match(live, new RegExp(`^\\$token = "--token-file /${jailToken}";$`, 'm'));
  // Every jail has its own address on lo1, above spoold's 127.0.2.1.
  const addrs = [...live.matchAll(/ip4\.addr = ([\d.]+);/g)].map((m) => m[1]!);
  assert.ok(addrs.length >= 2, 'at least two jails');
  assert.is(new Set(addrs).size, addrs.length, `distinct addresses: ${addrs}`);
  for (const a of addrs) assert.match(a, /^127\.0\.2\.([2-9]|[1-9]\d|1\d\d|2[0-4]\d|25[0-4])$/);
});

// ---- load.sh with stubbed FreeBSD tools -------------------------------------

test('build: clone, jail -c, then jail -r and destroy; exits with workerd status 0', async () => {
  const f = await farm();
  await queue(f, '0');
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 0, r.stderr);
  assert.equal(await actions(f), expectedBuild(f, 'w1'));
  assert.ok((await log(f)).includes('jail-token sekrit'), 'the token was copied into the jail');
  // The snapshot was checked before anything was done.
  assert.is((await log(f))[0], `zfs list -H -o name -t snapshot ${f.snapshot}`);
  await assertNothingLeft(f);
});

test('build cleans up the same way when workerd exits non-zero, and passes its status on', async () => {
  for (const st of ['75', '1']) {
    const f = await farm();
    await queue(f, st);
    const r = await load(f, 'build', 'w2');
    assert.is(r.code, Number(st), `status ${st}: ${r.stderr}`);
    assert.equal(await actions(f), expectedBuild(f, 'w2'), `status ${st}`);
    await assertNothingLeft(f);
  }
});

test('build twice in a row: the second run finds nothing in its way', async () => {
  const f = await farm();
  await queue(f, '0', '0');
  const a = await load(f, 'build', 'w1');
  assert.is(a.code, 0, a.stderr);
  const b = await load(f, 'build', 'w1');
  assert.is(b.code, 0, b.stderr);
  assert.equal(await actions(f), [...expectedBuild(f, 'w1'), ...expectedBuild(f, 'w1')]);
  await assertNothingLeft(f);
});

test('build after a crash removes the leftover jail, mount and clone before cloning', async () => {
  const f = await farm();
  const dir = `${f.jails}/w1`;
  // What a run killed mid-job leaves: the clone, the running jail with its
  // devfs, and a mount jail(8) does not know about.
  await queue(f, '0', '0');
  for (const args of [['zfs', 'clone', '-p', '-o', `mountpoint=${dir}`, f.snapshot, f.fs('w1')], ['jail', '-f', f.conf, '-c', 'w1']]) {
    const r = await run(args[0]!, args.slice(1), { env: f.env });
    assert.is(r.code, 0, r.stderr);
  }
  await fsp.appendFile(path.join(f.state, 'mounts'), `/var/spool/builder ${dir}/var/run/builder nullfs ro 0 0\n`);
  await fsp.writeFile(f.logFile, '');
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 0, r.stderr);
  assert.equal(await actions(f), [
    `jail -f ${f.conf} -r w1`,
    `umount -f ${dir}/var/run/builder`,
    `zfs destroy -f ${f.fs('w1')}`,
    ...expectedBuild(f, 'w1'),
  ]);
  await assertNothingLeft(f);
});

test('build when jail(8) dies half-way: exits 1, unmounts what it left, destroys the clone', async () => {
  const f = await farm();
  await queue(f, 'crash');
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /no workerd status/);
  assert.equal(await actions(f), [
    `zfs clone -p -o mountpoint=${f.jails}/w1 ${f.snapshot} ${f.fs('w1')}`,
    `jail -f ${f.conf} -c w1`,
    `umount -f ${f.jails}/w1/dev`,
    `zfs destroy -f ${f.fs('w1')}`,
  ]);
  await assertNothingLeft(f);
});

test('build does not follow a symlink the job left in place of the status file', async () => {
  const f = await farm();
  await queue(f, 'symlink');
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /no workerd status/);
  assert.equal(await actions(f), expectedBuild(f, 'w1'));
  await assertNothingLeft(f);
});

test('build refuses a missing snapshot (78) and a bad name (2) before touching anything', async () => {
  const f = await farm({ snapshot: false });
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 78);
  assert.ok(r.stderr.includes(`no ZFS snapshot ${f.snapshot}`), r.stderr);
  const g = await farm();
  for (const bad of ['a.b', '../x', '-x', '']) {
    const b = await load(g, 'build', bad);
    assert.is(b.code, 2, `'${bad}': ${b.stderr}`);
  }
  assert.is((await load(g, 'frobnicate')).code, 2);
  assert.equal(await actions(f), []);
  assert.equal(await actions(g), []);
});

test('build maps "workerd not found" in the jail (127) to a configuration error (78)', async () => {
  const f = await farm();
  await queue(f, '127');
  const r = await load(f, 'build', 'w1');
  assert.is(r.code, 78);
  assert.match(r.stderr, /install node and builder/);
  await assertNothingLeft(f);
});

test('loop: goes on after 0, backs off after 75 or a failed jail, stops on 78', async () => {
  const f = await farm();
  await queue(f, '75', '75', '0', 'crash', '78', '0');
  const r = await load(f, 'loop', 'w3');
  assert.is(r.code, 78, r.stderr);
  assert.match(r.stderr, /stopping loop w3: configuration error \(78\)/);
  const l = await log(f);
  // 5 s, doubled, reset by a delivered job.
  assert.equal(l.filter((x) => x.startsWith('sleep')), ['sleep 5', 'sleep 10', 'sleep 5']);
  assert.is(l.filter((x) => x.startsWith('zfs clone')).length, 5);
  assert.is(l.filter((x) => x.startsWith('zfs destroy')).length, 5);
  assert.is((await fsp.readFile(path.join(f.state, 'statuses'), 'utf8')).trim(), '0', 'no jail after the 78');
  await assertNothingLeft(f);
});

test('loop stops at once on a missing snapshot', async () => {
  const f = await farm({ snapshot: false });
  const r = await load(f, 'loop', 'w1');
  assert.is(r.code, 78);
  assert.ok(!(await log(f)).some((l) => l.startsWith('sleep')));
});

test('SIGTERM to loop mid-job takes the jail down, destroys the clone and exits', async () => {
  const f = await farm();
  await queue(f, 'hang');
  // Its own process group, so that a load.sh that fails this test can be
  // killed with everything it started.
  const child = spawn('sh', [LOAD, 'loop', 'w1'], { env: { ...process.env, ...f.env }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.on('data', (b) => { stderr += b; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* all gone */ }
    await exited;
  });
  const end = Date.now() + 60_000;
  while (!fs.existsSync(path.join(f.state, 'jail.w1'))) {
    if (Date.now() > end) assert.unreachable(`the jail never started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise<string>((r) => { timer = setTimeout(() => r('still running 60 s after SIGTERM'), 60_000); })]);
  clearTimeout(timer);
  assert.is(code, 143, stderr);
  assert.match(stderr, /loop w1 stopped by a signal/);
  const a = await actions(f);
  assert.equal(a.slice(-2), [`jail -f ${f.conf} -r w1`, `zfs destroy -f ${f.fs('w1')}`]);
  await assertNothingLeft(f);
});

test('network_start and network_stop can each run twice', async () => {
  const f = await farm();
  for (let i = 0; i < 2; i++) {
    const r = await load(f, 'network_start');
    assert.is(r.code, 0, r.stderr);
  }
  const state = await fsp.readFile(path.join(f.state, 'if.lo1'), 'utf8');
  assert.is(state.match(/inet 127\.0\.2\.1 /g)?.length, 1);
  for (let i = 0; i < 2; i++) {
    const r = await load(f, 'network_stop');
    assert.is(r.code, 0, r.stderr);
  }
  assert.not.ok(fs.existsSync(path.join(f.state, 'if.lo1')));
});

// ---- jail.conf's exec.start with the real programs -------------------------

// The exec.start line as jail(8) would run it inside jail w1, its variables
// substituted, with the jail's paths moved under `root` and workerd the one
// built here.
async function execStart(root: string, spoold: string): Promise<string> {
  const conf = (await fsp.readFile(JAIL_CONF, 'utf8')).split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
  const vars: Record<string, string> = { name: 'w1' };
  for (const m of conf.matchAll(/^\$([a-z]+) = "(.*)";$/gm)) vars[m[1]!] = m[2]!;
  vars.spoold = spoold;
  const line = /^exec\.start = "(.*)";$/m.exec(conf)![1]!;
  return line
    .replace(/(?<!\\)\$([a-z]+)/g, (_, v: string) => { if (!(v in vars)) throw new Error(`jail.conf: no $${v}`); return vars[v]!; })
    .replace(/\\\$/g, '$')
    .replaceAll('/usr/local/bin/workerd', `${process.execPath} ${BIN('workerd')}`)
    .replaceAll(' /usr/local/etc/', ` ${root}/usr/local/etc/`)
    .replaceAll('>/var/run/', `>${root}/var/run/`);
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test("jail.conf's exec.start delivers one job over TCP with the token and leaves status 0; a wrong token leaves 78", async () => {
  if (!fs.existsSync(BIN('workerd'))) assert.unreachable('dist/bin/workerd.js is missing: run npm run build first');
  const spool = await scratch('builder-jailrun');
  const root = await scratch('builder-jailroot');
  await fsp.mkdir(path.join(root, 'var', 'run'), { recursive: true });
  await fsp.mkdir(path.join(root, 'usr', 'local', 'etc', 'builder'), { recursive: true });
  const tokenFile = path.join(root, 'host.token');
  await fsp.writeFile(tokenFile, 'sekrit\n');
  const port = await freePort();
  const d = daemon('spoold', ['-s', spool, '--listen', `127.0.0.1:${port}`, '--token-file', tokenFile]);
  cleanups.push(() => d.stop('SIGKILL'));
  await until('spoold listening', () => fs.existsSync(path.join(spool, 'spoold.sock')) && /tcp=/.test(d.log()), 60_000);
  const cmd = await execStart(root, `127.0.0.1:${port}`);
  const status = path.join(root, 'var', 'run', 'builder-workerd.status');

  const sub = await bctl(spool, ['submit', '--name', 'injail', 'freebsd', '-'], { input: '#!/bin/sh\necho hello from the jail\nexit 4\n' });
  assert.is(sub.code, 0, sub.stderr);
  const id = sub.stdout.trim();
  await fsp.writeFile(path.join(root, 'usr', 'local', 'etc', 'builder', 'token'), 'sekrit\n');
  const r = await run('sh', ['-c', cmd], { timeoutMs: 60_000 });
  assert.is(r.code, 0, r.stderr);
  assert.is(readIf(status)?.trim(), '0', `status file; workerd said: ${r.stderr}`);
  const result = await until('the job result', () => readIf(path.join(spool, 'done', 'injail', id, 'result')), 60_000);
  assert.match(result, /^status: exited 4$/m);
  assert.match(result, /^worker: w1$/m);

  await fsp.writeFile(path.join(root, 'usr', 'local', 'etc', 'builder', 'token'), 'wrong\n');
  await fsp.rm(status);
  const bad = await run('sh', ['-c', cmd], { timeoutMs: 60_000 });
  assert.is(bad.code, 0, 'exec.start itself succeeds, so jail(8) does not undo the jail behind load.sh');
  assert.is(readIf(status)?.trim(), '78', `status file; workerd said: ${bad.stderr}`);
});

// ---- rc.d scripts against a stand-in rc.subr ----------------------------------

// Just what the scripts use, without rc.subr's checks: start runs
// start_precmd then start_cmd; stop and status run their _cmd.
const MOCK_RC_SUBR = String.raw`
load_rc_config() { . "$RC_CONF"; }
checkyesno() { eval "_v=\${$1}"; case $_v in [Yy][Ee][Ss]) return 0 ;; *) return 1 ;; esac; }
err() { shift; echo "err: $*" >&2; exit 1; }
warn() { echo "warn: $*" >&2; }
check_pidfile() { [ -s "$1" ] && cat "$1"; return 0; }
wait_for_pids() { echo "wait_for_pids $*" >>"$STUB_LOG"; }
run_rc_command() {
	checkyesno "$rcvar" || { echo "$name not enabled" >&2; return 0; }
	eval "_cmd=\${$1_cmd:-}" "_pre=\${$1_precmd:-}"
	if [ -n "$_pre" ]; then $_pre || return 1; fi
	$_cmd
}
`;

async function rcScript(script: string, rcConf: string): Promise<{ r: Ran; calls: string[][] }> {
  const dir = await scratch('builder-rc');
  const log = path.join(dir, 'log');
  const daemon = path.join(dir, 'daemon');
  // One call per line, each argument in brackets, with the load.sh settings it got.
  await fsp.writeFile(daemon, '#!/bin/sh\n{ printf "SNAPSHOT=%s" "${SNAPSHOT-}"; for a; do printf " [%s]" "$a"; done; echo; } >>"$STUB_LOG"\n', { mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'rc.subr'), MOCK_RC_SUBR);
  await fsp.writeFile(path.join(dir, 'rc.conf'), rcConf);
  const text = (await fsp.readFile(script, 'utf8')).replace('. /etc/rc.subr', '. "$RC_SUBR"').replaceAll('/usr/sbin/daemon', daemon);
  const copy = path.join(dir, path.basename(script));
  await fsp.writeFile(copy, text, { mode: 0o755 });
  await fsp.writeFile(log, '');
  const r = await run('sh', [copy, 'start'], { env: { RC_SUBR: path.join(dir, 'rc.subr'), RC_CONF: path.join(dir, 'rc.conf'), STUB_LOG: log } });
  const calls = (await fsp.readFile(log, 'utf8')).split('\n').filter(Boolean).map((l) => {
    const [snap, ...rest] = l.split(' [');
    return [snap!, ...rest.map((a) => a.replace(/\]$/, ''))];
  });
  return { r, calls };
}

test('rc.d/spoold starts spoold under daemon(8) with the rc.conf settings as separate arguments', async () => {
  const dir = await scratch('builder-rcs');
  const bin = path.join(dir, 'spoold');
  await fsp.writeFile(bin, '#!/bin/sh\n', { mode: 0o755 });
  const { r, calls } = await rcScript(RC_SPOOLD, [
    'spoold_enable=YES', `spoold_spool='${dir}'`, 'spoold_listen=127.0.2.1:1234',
    `spoold_templates='${dir}/my templates'`, 'spoold_token_file=/usr/local/etc/builder/worker.token', `spoold_bin='${bin}'`, '',
  ].join('\n'));
  assert.is(r.code, 0, r.stderr);
  assert.equal(calls, [['SNAPSHOT=', '-f', '-S', '-T', 'spoold', '-P', '/var/run/spoold.pid', '-r', '-R', '5', '-u', 'builder',
    bin, '-s', dir, '--listen', '127.0.2.1:1234', '--templates', `${dir}/my templates`, '--token-file', '/usr/local/etc/builder/worker.token']]);
});

test('rc.d/workerd on the host: one workerd, the sandbox command kept whole, the platform last', async () => {
  const dir = await scratch('builder-rcw');
  const bin = path.join(dir, 'workerd');
  await fsp.writeFile(bin, '#!/bin/sh\n', { mode: 0o755 });
  const { r, calls } = await rcScript(RC_WORKERD, [
    'workerd_enable=YES', 'workerd_platform=freebsd-14', 'workerd_connect=10.0.0.1:1234', 'workerd_name=host1',
    `workerd_sandbox='/usr/local/bin/wrap --quiet'`, 'workerd_token_file=/t', 'workerd_user=nobody', `workerd_bin='${bin}'`, '',
  ].join('\n'));
  assert.is(r.code, 0, r.stderr);
  assert.equal(calls, [['SNAPSHOT=', '-f', '-S', '-T', 'workerd', '-P', '/var/run/workerd.pid', '-r', '-R', '5', '-u', 'nobody',
    bin, '--connect', '10.0.0.1:1234', '--name', 'host1', '--sandbox', '/usr/local/bin/wrap --quiet', '--token-file', '/t', 'freebsd-14']]);
  const none = await rcScript(RC_WORKERD, `workerd_enable=YES\nworkerd_bin='${bin}'\n`);
  assert.is(none.r.code, 1);
  assert.match(none.r.stderr, /set workerd_platform/);
  assert.equal(none.calls, []);
});

test('rc.d/workerd with workerd_jails: one load.sh loop per jail, each with its environment', async () => {
  const { r, calls } = await rcScript(RC_WORKERD, [
    'workerd_enable=YES', "workerd_jails='w1 w-2 bad.name'", "workerd_jail_env='SNAPSHOT=z/b/14@builder'",
    "workerd_jail_w_2_env='SNAPSHOT=z/b/13@builder'", `workerd_loadsh='${LOAD}'`, '',
  ].join('\n'));
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /bad jail name 'bad\.name'/);
  assert.equal(calls, [
    ['SNAPSHOT=z/b/14@builder', '-f', '-S', '-T', 'workerd-w1', '-P', '/var/run/workerd.w1.pid', LOAD, 'loop', 'w1'],
    ['SNAPSHOT=z/b/13@builder', '-f', '-S', '-T', 'workerd-w-2', '-P', '/var/run/workerd.w-2.pid', LOAD, 'loop', 'w-2'],
  ]);
});

// ---- documentation ---------------------------------------------------------------

test('docs/freebsd.md names every rc.conf variable and load.sh setting', async () => {
  const docs = await fsp.readFile(DOCS, 'utf8');
  const vars = new Set<string>();
  for (const f of [RC_SPOOLD, RC_WORKERD, LOAD]) {
    for (const m of (await fsp.readFile(f, 'utf8')).matchAll(/^: "\$\{([A-Za-z_]+):=/gm)) vars.add(m[1]!);
  }
  assert.ok(vars.size > 20, `found ${vars.size} settings`);
  for (const v of vars) assert.ok(docs.includes(`\`${v}\``) || docs.includes(`${v}=`), `docs/freebsd.md does not mention ${v}`);
  assert.ok(docs.includes('poudriere jail -c -j 14-2-REL -m ftp-archive -v 14.2-RELEASE'));
  assert.ok(docs.includes('cloned_interfaces="lo1"'));
  assert.match(docs, /nat pass on \$ext_if inet from 127\.0\.2\.0\/24/);
});

// ---- systemd units ---------------------------------------------------------------

type Ini = Map<string, Map<string, string[]>>;
function parseUnit(text: string, file: string): Ini {
  const ini: Ini = new Map();
  let section: Map<string, string[]> | undefined;
  text.split('\n').forEach((line, i) => {
    if (/^\s*([#;].*)?$/.test(line)) return;
    const s = /^\[([A-Za-z]+)\]$/.exec(line);
    if (s) { section = new Map(); ini.set(s[1]!, section); return; }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`${file}:${i + 1}: not a unit file line: ${line}`);
    section.set(kv[1]!, [...(section.get(kv[1]!) ?? []), kv[2]!]);
  });
  return ini;
}
const one = (ini: Ini, sec: string, key: string): string | undefined => ini.get(sec)?.get(key)?.at(-1);

test('the systemd units parse and carry the required settings', async () => {
  const s = parseUnit(await fsp.readFile(path.join(UNITS, 'spoold.service'), 'utf8'), 'spoold.service');
  const want: [string, string][] = [['Type', 'simple'], ['User', 'builder'], ['Group', 'builder'], ['KillSignal', 'SIGTERM'],
    ['Restart', 'on-failure'], ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ReadWritePaths', '/var/spool/builder'],
    ['PrivateTmp', 'yes'], ['ProtectHome', 'yes'], ['EnvironmentFile', '-/etc/default/builder']];
  for (const [k, v] of want) assert.is(one(s, 'Service', k), v, `spoold.service ${k}`);
  assert.ok(s.get('Service')!.get('Environment')!.includes('BUILDER_SPOOL=/var/spool/builder'));
  assert.is(one(s, 'Service', 'ExecStart'), '/usr/local/bin/spoold -s ${BUILDER_SPOOL} $SPOOLD_FLAGS');
  assert.is(one(s, 'Install', 'WantedBy'), 'multi-user.target');
  assert.is(one(s, 'Service', 'RestartPreventExitStatus'), '2', 'no restart after bad usage');
  // Found in review: systemd's RestrictSUIDSGID refuses a mkdir or chmod that asks
  // for setgid, and the spool's directories are 2775: spoold could not make a new
  // spool's directories nor claim a job.
  assert.is(one(s, 'Service', 'RestrictSUIDSGID'), undefined, 'spoold.service must not set RestrictSUIDSGID');

  const w = parseUnit(await fsp.readFile(path.join(UNITS, 'workerd@.service'), 'utf8'), 'workerd@.service');
  const wantW: [string, string][] = [['Type', 'simple'], ['User', 'builder'], ['Restart', 'always'], ['RestartSec', '1'],
    ['PrivateTmp', 'yes'], ['StateDirectory', 'builder/workerd-%i'], ['RestartPreventExitStatus', '78 2'],
    ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes']];
  for (const [k, v] of wantW) assert.is(one(w, 'Service', k), v, `workerd@.service ${k}`);
  assert.match(one(w, 'Service', 'ExecStart')!, /^\/usr\/local\/bin\/workerd --once .* %i$/);
  assert.is(one(w, 'Unit', 'StartLimitIntervalSec'), '0');
});

test('systemd-analyze verify accepts the units', async () => {
  if (!onPath('systemd-analyze')) {
    console.log('skipped: systemd-analyze not installed (the units were still parsed and checked above)');
    return;
  }
  // verify insists that ExecStart's program exists: point it at stand-ins,
  // changing nothing else. --man=no: man pages are checked below, against
  // this tree rather than the machine's manpath.
  const dir = await scratch('builder-units');
  for (const p of ['spoold', 'workerd']) await fsp.writeFile(path.join(dir, p), '#!/bin/sh\n', { mode: 0o755 });
  const files: string[] = [];
  for (const u of ['spoold.service', 'workerd@.service', 'builder-tunnel.service']) {
    const text = (await fsp.readFile(path.join(UNITS, u), 'utf8')).replaceAll('/usr/local/bin/', `${dir}/`);
    await fsp.writeFile(path.join(dir, u), text);
    files.push(path.join(dir, u));
  }
  const r = await run('systemd-analyze', ['verify', '--man=no', ...files]);
  assert.is(r.code, 0, r.stderr);
  // Unknown keys and bad values are only warnings to verify: none allowed.
  assert.is(r.stderr.trim(), '', r.stderr);
});

// Found by an operator: docs/ssh.md said to keep the tunnel up under a supervisor, and none was shipped.
test('builder-tunnel.service runs docs/ssh.md\'s tunnel command as builder, restarted for ever, before workerd@', async () => {
  const t = parseUnit(await fsp.readFile(path.join(UNITS, 'builder-tunnel.service'), 'utf8'), 'builder-tunnel.service');
  const want: [string, string][] = [['User', 'builder'], ['Restart', 'always'], ['EnvironmentFile', '/etc/default/builder-tunnel'],
    ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ReadWritePaths', '/run/builder']];
  for (const [k, v] of want) assert.is(one(t, 'Service', k), v, `builder-tunnel.service ${k}`);
  assert.is(one(t, 'Unit', 'StartLimitIntervalSec'), '0');
  // The same ssh options as the recipe, in the same order; only the forward and the target are settings.
  const doc = await fsp.readFile(path.join(ROOT, 'docs', 'ssh.md'), 'utf8');
  const recipe = /<!-- recipe:ssh -->\n```[a-z]*\n([\s\S]*?)```\n/.exec(doc)![1]!.replace(/\\\n\s*/g, '').trim();
  const asUnit = recipe.replace(/^ssh /, '/usr/bin/ssh ').replace(/-L \S+/, '-L ${TUNNEL_FORWARD}').replace(/\S+$/, '${TUNNEL_TARGET}');
  assert.is(one(t, 'Service', 'ExecStart'), asUnit);
  const w = parseUnit(await fsp.readFile(path.join(UNITS, 'workerd@.service'), 'utf8'), 'workerd@.service');
  assert.ok(one(w, 'Unit', 'After')!.split(/\s+/).includes('builder-tunnel.service'), 'workerd@ starts after the tunnel');
});

test('the units point at man pages this tree ships', async () => {
  for (const u of ['spoold.service', 'workerd@.service', 'builder-tunnel.service']) {
    const ini = parseUnit(await fsp.readFile(path.join(UNITS, u), 'utf8'), u);
    const docs = (one(ini, 'Unit', 'Documentation') ?? '').split(/\s+/).filter(Boolean);
    assert.ok(docs.length > 0, `${u} has Documentation=`);
    for (const d of docs) {
      const m = /^man:([a-z-]+)\((\d)\)$/.exec(d);
      assert.ok(m, `${u}: ${d}`);
      assert.ok(fs.existsSync(path.join(ROOT, 'man', `${m![1]}.${m![2]}`)), `${u}: Documentation=${d}, but man/${m![1]}.${m![2]} is missing`);
    }
  }
});

test.run();
