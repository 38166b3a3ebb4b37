// The bubblewrap sandbox (libexec/builder-bwrap) with workerd --sandbox, end to end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir, daemon, until, readIf, ROOT, type Daemon } from './lib.js';
import { SpoolPaths } from '../src/spool/paths.js';
import { submission } from '../src/spool/job.js';
import { submit } from '../src/spool/state.js';
import { newId } from '../src/spool/ids.js';
import { parseResult } from '../src/spool/result.js';
import { ensureSpool } from '../src/spool/layout.js';

const SANDBOX = path.join(ROOT, 'libexec', 'builder-bwrap');
let spool = '';
let procs: Daemon[] = [];

// Where the kernel forbids user namespaces bwrap cannot run at all; say so
// plainly and skip. A missing bwrap is a failure: .ci/run installs it.
function bwrapUnusable(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v bwrap']);
  if (which.status !== 0) throw new Error('bwrap is not installed (apt-get install bubblewrap); .ci/run installs it');
  const r = spawnSync('bwrap', ['--ro-bind', '/', '/', '--unshare-all', 'true'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `bwrap cannot create namespaces here: ${r.stderr.trim()}`;
}
const unusable = bwrapUnusable();

test.before.each(async () => { spool = await tmpdir('sandbox'); procs = []; await ensureSpool(new SpoolPaths(spool)); });
test.after.each(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  await fsp.rm(spool, { recursive: true, force: true });
  await fsp.rm(`${spool}-wd`, { recursive: true, force: true });
});

function start(): void {
  procs.push(daemon('spoold', ['-s', spool, '--lease', '2s', '--heartbeat', '400ms']));
  procs.push(daemon('workerd', ['-s', spool, '--name', 'sb', '--workdir', `${spool}-wd`, '--sandbox', SANDBOX, 'debian-12']));
}
async function run(name: string, body: string, extra: { timeout?: number; network?: boolean } = {}) {
  const id = newId();
  await submit(new SpoolPaths(spool), submission({ name, platform: 'debian-12', timeout: extra.timeout, network: extra.network ?? false, body, id }));
  const text = await until(`result of ${id}`, () => readIf(path.join(spool, 'done', name, id, 'result')), 30_000);
  return { id, r: parseResult(text, 'result'), dir: path.join(spool, 'done', name, id) };
}

test('a sandboxed job cannot write outside its directory, has its own /tmp, and its artifacts land', async () => {
  if (unusable) { console.log(`SKIPPED (${unusable})`); return; }
  start();
  const outside = path.join(ROOT, `.sandbox-evil-${Date.now()}`);   // a real directory, not the sandbox's own /tmp
  const { r, dir } = await run('jail', [
    '#!/bin/sh',
    `touch ${outside} 2>/dev/null && echo wrote-outside || echo outside-refused`,
    'touch /etc/builder-evil 2>/dev/null && echo wrote-etc || echo etc-refused',
    `touch ${spool}/new/evil 2>/dev/null && echo wrote-spool || echo spool-refused`,
    'ls -A /tmp | wc -l | tr -d " " > tmp-count',
    'echo inside > result.txt',
  ].join('\n') + '\n');
  assert.equal(r.status, { kind: 'exited', code: 0 });
  const out = fs.readFileSync(path.join(dir, 'console.log'), 'utf8');
  assert.match(out, /outside-refused/);
  assert.match(out, /etc-refused/);
  assert.match(out, /spool-refused/);
  assert.ok(!fs.existsSync(outside));
  assert.ok(!fs.existsSync('/etc/builder-evil'));
  assert.is(fs.readFileSync(path.join(dir, 'artifacts', 'result.txt'), 'utf8'), 'inside\n');
  // /tmp holds only the mount point of the job directory's path, nothing of the host's /tmp.
  assert.ok(Number(fs.readFileSync(path.join(dir, 'artifacts', 'tmp-count'), 'utf8')) <= 1);
});

// Found by a deployment tester: the read-only view showed builder's token and
// spoold.sock (a socket on a read-only mount still accepts connections), so a
// job could pose as a worker; and in review: a spool named only by -s, and a
// token file, were not hidden at all.
test("a sandboxed job sees neither workerd's spool (its socket) nor its token file", async () => {
  if (unusable) { console.log(`SKIPPED (${unusable})`); return; }
  // Not under /tmp or /var/tmp, which the sandbox replaces anyway: that would hide them whatever the script did.
  const base = /^\/(var\/)?tmp\//.test(`${ROOT}/`) ? os.homedir() : ROOT;
  const home = await fsp.mkdtemp(path.join(base, '.sandbox-spool-'));
  const sp = path.join(home, 'spool');
  const tok = path.join(home, 'token');           // a link to the token, as a reviewer found one broke every job
  const tokReal = path.join(home, 'secrets', 'token');
  try {
    await ensureSpool(new SpoolPaths(sp));
    await fsp.writeFile(path.join(sp, 'secret'), 'spool secret\n');
    await fsp.mkdir(path.dirname(tokReal));
    await fsp.writeFile(tokReal, 'the token\n', { mode: 0o600 });
    await fsp.symlink(tokReal, tok);
    procs.push(daemon('spoold', ['-s', sp, '--lease', '2s', '--heartbeat', '400ms', '--token-file', tok]));
    procs.push(daemon('workerd', ['-s', sp, '--name', 'sb', '--workdir', path.join(home, 'wd'), '--token-file', tok, '--sandbox', SANDBOX, 'debian-12'], { BUILDER_SPOOL: '' }));
    const id = newId();
    await submit(new SpoolPaths(sp), submission({ name: 'peek', platform: 'debian-12', network: false, body: [
      '#!/bin/sh',
      `cat ${sp}/secret 2>/dev/null | grep -q secret && echo read-secret || echo secret-hidden`,
      `[ -S ${sp}/spoold.sock ] && echo socket-visible || echo socket-hidden`,
      `cat ${tok} ${tokReal} 2>/dev/null | grep -q token && echo read-token || echo token-hidden`,
      'echo hidden-below-ok > ran.txt',
    ].join('\n') + '\n', id }));
    const text = await until(`result of ${id}`, () => readIf(path.join(sp, 'done', 'peek', id, 'result')), 30_000);
    assert.equal(parseResult(text, 'result').status, { kind: 'exited', code: 0 });
    assert.is(fs.readFileSync(path.join(sp, 'done', 'peek', id, 'console.log'), 'utf8'), 'secret-hidden\nsocket-hidden\ntoken-hidden\n');
    assert.is(fs.readFileSync(path.join(sp, 'done', 'peek', id, 'artifacts', 'ran.txt'), 'utf8'), 'hidden-below-ok\n');
  } finally {
    for (const p of procs.splice(0)) await p.stop('SIGKILL');
    await fsp.rm(home, { recursive: true, force: true });
  }
});

test('a sandboxed job has no network unless it asks for it', async () => {
  if (unusable) { console.log(`SKIPPED (${unusable})`); return; }
  start();
  const probe = '#!/bin/sh\nip -o link 2>/dev/null | wc -l > links; cat /proc/net/dev | tail -n +3 | wc -l > ifaces\n';
  const off = await run('nonet', probe);
  const on = await run('net', probe, { network: true });
  const ifaces = (d: string) => Number(fs.readFileSync(path.join(d, 'artifacts', 'ifaces'), 'utf8'));
  assert.is(ifaces(off.dir), 1, 'only lo in a new network namespace');
  const host = fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length - 2;
  assert.is(ifaces(on.dir), host, 'network: yes shares the host network');
});

test('timeout kills the sandboxed process group, bwrap and all', async () => {
  if (unusable) { console.log(`SKIPPED (${unusable})`); return; }
  start();
  const { r } = await run('jailslow', '#!/bin/sh\nsleep 6061 &\nsleep 6062\n', { timeout: 1000 });
  assert.equal(r.status, { kind: 'timeout' });
  await until('sandboxed sleeps gone', () => {
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    return !/sleep 606[12]/.test(ps);
  }, 10_000);
});

test.run();
