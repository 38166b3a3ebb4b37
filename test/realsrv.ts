// test/realsrv.ts: real OpenSSH and nginx servers for end-to-end tests. Not a
// suite (no .test.ts suffix).
//
// Each server runs in the foreground as a child of the test, from a config
// written into a temporary directory, on a free 127.0.0.1 port: no system
// service, no system config, nothing left behind once stop() has run. The
// tests run as root (CI does), so sshd can log in as root and nginx can read
// mkdtemp's 0700 directories.
//
// A missing binary is a failure that names the binary and the Debian package,
// never a skip: CI installs them, and a silently skipped tunnel test proves
// nothing.
//
// BUGS: freePort() closes the port it found before the server binds it; another
// process could take it in between. On a test machine that has not happened.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { run, until, type Daemon } from './lib.js';

const PACKAGE: Record<string, string> = {
  sshd: 'openssh-server', ssh: 'openssh-client', 'ssh-keygen': 'openssh-client', nginx: 'nginx', rsync: 'rsync',
};

/** The absolute path of a program, from PATH or the sbin directories; throws a message naming the package. */
export function binary(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  throw new Error(`${name} not found on PATH or in /usr/sbin: install ${PACKAGE[name] ?? name} (apt-get install ${PACKAGE[name] ?? name}); this test needs the real program`);
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((res, rej) => { srv.once('error', rej); srv.listen(0, '127.0.0.1', () => res()); });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

/** True once something accepts a TCP connection on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/**
 * Connect, read until the peer closes, and return what arrived. A refused
 * connection reads as an empty buffer; so does a tunnel whose far end was
 * denied (ssh accepts locally, then closes when sshd refuses the channel).
 */
export function readAll(target: { port: number } | { path: string }, ms = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = 'port' in target ? net.createConnection(target.port, '127.0.0.1') : net.createConnection(target.path);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no end of stream from ${JSON.stringify(target)} within ${ms} ms`)); }, ms);
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('error', () => { /* close follows */ });
    s.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)); });
  });
}

/**
 * A bait server on a Unix socket or a loopback port: it writes `secret` to
 * whoever connects and counts them. A forward the recipe must refuse is
 * proven refused when the client read nothing and the bait saw nobody.
 */
export interface Bait { accepted: () => number; close: () => Promise<void> }
export async function bait(where: { port: number } | { path: string }, secret = 'secret\n'): Promise<Bait> {
  let n = 0;
  const socks = new Set<net.Socket>();
  const srv = net.createServer((c) => { n++; socks.add(c); c.on('close', () => socks.delete(c)); c.on('error', () => {}); c.end(secret); });
  await new Promise<void>((res, rej) => {
    srv.once('error', rej);
    if ('port' in where) srv.listen(where.port, '127.0.0.1', () => res()); else srv.listen(where.path, () => res());
  });
  return {
    accepted: () => n,
    close: () => new Promise<void>((res) => { for (const s of socks) s.destroy(); srv.close(() => res()); }),
  };
}

/** Start any program in the foreground and keep its output, with the Daemon shape of test/lib.ts. */
export function foreground(name: string, cmd: string, args: string[]): Daemon {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (b: Buffer) => { log += b.toString(); if (process.env.BUILDER_TEST_VERBOSE) process.stderr.write(`[${name} ${child.pid}] ${b}`); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('error', (e) => { log += `spawn failed: ${e.message}\n`; });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const gone = () => child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
  return {
    child,
    log: () => log,
    waitLog: async (re, ms = 15_000) => {
      await until(`${re} in ${name}'s output`, () => {
        if (re.test(log)) return true;
        if (gone()) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${re}:\n${log}`);
        return false;
      }, ms).catch((e: Error) => { throw e.message.startsWith('timed out') ? new Error(`${e.message}; ${name} said:\n${log}`) : e; });
      return re.exec(log)![0];
    },
    stop: async (sig = 'SIGTERM') => {
      if (child.pid === undefined) return;
      if (!gone()) {
        child.kill(sig);
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

// --- OpenSSH -----------------------------------------------------------------

export interface KeyPair { key: string; pub: string }

/** A throwaway ed25519 key without passphrase. */
export async function keygen(file: string, comment: string): Promise<KeyPair> {
  const r = await run(binary('ssh-keygen'), ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  if (r.code !== 0) throw new Error(`ssh-keygen failed (${r.code}): ${r.stderr}`);
  return { key: file, pub: (await fsp.readFile(`${file}.pub`, 'utf8')).trim() };
}

export interface Sshd { port: number; dir: string; proc: Daemon; knownHosts: string; authorizedKeys: string; config: string }

/**
 * Start sshd on a free loopback port from a config in `dir`. `authorizedKeys`
 * is the whole authorized_keys file; `tail` is appended to the config (a Match
 * block must come last). The global part only makes sshd runnable here (its
 * own host key, keys file, pid file, no PAM, root by key only); every
 * restriction under test is in `authorizedKeys` and `tail`.
 */
export async function startSshd(dir: string, authorizedKeys: string, tail = ''): Promise<Sshd> {
  const sshd = binary('sshd');
  // sshd refuses to start without its privilege separation directory, which
  // Debian creates from the service unit we do not use.
  await fsp.mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const host = await keygen(path.join(dir, 'ssh_host_ed25519_key'), 'test-host');
  const keysFile = path.join(dir, 'authorized_keys');
  await fsp.writeFile(keysFile, authorizedKeys, { mode: 0o600 });
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  await fsp.writeFile(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${host.key}`,
    `AuthorizedKeysFile ${keysFile}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    'StrictModes no',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PrintMotd no',
    // Forced commands run as `$SHELL -c CMD`; bash run by sshd reads ~/.bashrc
    // unless it is a nested shell, and root's .bashrc on a developer machine
    // can take seconds (pyenv, nvm). SHLVL=1 makes bash think it is nested.
    'SetEnv SHLVL=1',
    '',
    tail,
  ].join('\n'));
  const test = await run(sshd, ['-t', '-f', config]);
  if (test.code !== 0) throw new Error(`sshd -t rejects ${config}: ${test.stderr}\n${await fsp.readFile(config, 'utf8')}`);
  // -D: stay in the foreground, our child; -e: log to stderr, which we keep.
  const proc = foreground('sshd', sshd, ['-D', '-e', '-f', config]);
  await proc.waitLog(/Server listening on 127\.0\.0\.1 port \d+/);
  // Pin the host key: the tests never accept an unknown host, as a worker never should.
  const knownHosts = path.join(dir, 'known_hosts');
  await fsp.writeFile(knownHosts, `[127.0.0.1]:${port} ${host.pub.split(' ').slice(0, 2).join(' ')}\n`);
  return { port, dir, proc, knownHosts, authorizedKeys: keysFile, config };
}

/**
 * ssh options that make a client hermetic: no user config, no agent, no
 * prompts, the pinned host key. Pass `key` unless the command names its own -i.
 */
export function sshBase(sshd: Sshd, key?: string): string[] {
  return ['-F', 'none', '-p', String(sshd.port), ...(key ? ['-i', key] : []),
    '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=10'];
}

/**
 * Start `ssh -v ARGS` as a tunnel and wait until it is logged in with its
 * forwards set up ("Entering interactive session" comes after the -L listeners
 * are bound and, with ExitOnForwardFailure, after every -R was granted).
 */
export async function tunnel(args: string[]): Promise<Daemon> {
  const p = foreground('ssh', binary('ssh'), ['-v', ...args]);
  await p.waitLog(/Entering interactive session/);
  return p;
}

// --- nginx -------------------------------------------------------------------

export interface Nginx { port: number; proc: Daemon; url: (p: string) => string; errorLog: string }

/**
 * Serve `root` (a spool's done/) read-only with autoindex on a free loopback
 * port, as README's nginx example should: artifacts are never followed
 * through a symlink. One process
 * (master_process off) so that stopping the child stops nginx: with a master,
 * a SIGKILLed test would orphan its workers. The process is root, like the
 * tests, so it reads mkdtemp's 0700 directories without a `user` directive.
 */
export async function startNginx(dir: string, root: string): Promise<Nginx> {
  const nginx = binary('nginx');
  const port = await freePort();
  const t = (n: string) => path.join(dir, n);
  const errorLog = t('error.log');
  const conf = t('nginx.conf');
  await fsp.writeFile(conf, `daemon off;
master_process off;
worker_processes 1;
pid ${t('nginx.pid')};
error_log ${errorLog} info;
events { worker_connections 64; }
http {
  access_log ${t('access.log')};
  client_body_temp_path ${t('client_body')};
  proxy_temp_path ${t('proxy')};
  fastcgi_temp_path ${t('fastcgi')};
  uwsgi_temp_path ${t('uwsgi')};
  scgi_temp_path ${t('scgi')};
  types { text/plain log; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    autoindex on;
    # nginx's default index, index.html, would be taken from done/ itself:
    # a job named index.html hid the listing of done/ (found by a tester).
    # No job name starts with a dot.
    index .listing;
    # A job chooses its artifacts, symlinks included (ln -s /etc/passwd x),
    # and spoold keeps them as symlinks. nginx follows symlinks by default,
    # so below artifacts/ it must not; NAME/latest, a symlink spoold makes,
    # stays usable for everything else.
    location ~ ^/[^/]+/[^/]+/artifacts/ {
      disable_symlinks on from=$document_root;
    }
  }
}
`);
  // -e: the error log before the config is read; otherwise nginx opens /var/log/nginx/error.log first.
  const args = ['-p', dir, '-c', conf, '-e', errorLog];
  const test = await run(nginx, ['-t', ...args]);
  if (test.code !== 0) throw new Error(`nginx -t rejects ${conf}: ${test.stderr}`);
  const proc = foreground('nginx', nginx, args);
  await until(`nginx accepting on 127.0.0.1:${port}`, async () => {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`nginx exited: ${proc.log()}\n${fs.readFileSync(errorLog, 'utf8')}`);
    return accepts(port);
  });
  return { port, proc, errorLog, url: (p) => `http://127.0.0.1:${port}/${p.replace(/^\//, '')}` };
}

export interface Got { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/** GET over a fresh connection (agent: false), so no keep-alive socket outlives the test. */
export function get(url: string, ms = 10_000): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (b: Buffer) => chunks.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(ms, () => req.destroy(new Error(`GET ${url}: no answer within ${ms} ms`)));
    req.on('error', reject);
  });
}
