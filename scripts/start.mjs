#!/usr/bin/env node
// start.mjs: `npm start`, builder's embedded default. Runs spoold on ./spool,
// one local workerd for this host's platform, submits examples/hello.sh, and
// says where its result is. Stays up (Ctrl-C stops both daemons), so you can
// go on submitting with bctl -s spool ... in another terminal.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const spool = path.join(root, 'spool');
const bin = (n) => path.join(root, 'dist', 'bin', n === 'bctl' ? 'bctl.cjs' : `${n}.js`);   // bctl is one bundle (scripts/bundle-bctl.mjs)
if (!fs.existsSync(bin('spoold'))) {
  console.error('start: dist/ is missing; run `npm ci` (or `npm run build`) first');
  process.exit(1);
}

/** This host's platform name: ID-VERSION_ID from os-release (debian-12), else the OS name (freebsd). */
function platform() {
  try {
    const osr = Object.fromEntries(fs.readFileSync('/etc/os-release', 'utf8').split('\n')
      .map((l) => /^([A-Z_]+)=("?)(.*)\2$/.exec(l)).filter(Boolean).map((m) => [m[1], m[3]]));
    if (osr.ID && osr.VERSION_ID) return `${osr.ID}-${osr.VERSION_ID}`.replace(/[^A-Za-z0-9._+-]/g, '-');
  } catch { /* not Linux */ }
  return os.platform();
}

const p = platform();
const tag = (name, child) => {
  child.stderr.on('data', (b) => { for (const l of b.toString().split('\n')) if (l) console.log(`[${name}] ${l}`); });
  return child;
};
const spoold = tag('spoold', spawn(process.execPath, [bin('spoold'), '-s', spool], { stdio: ['ignore', 'inherit', 'pipe'] }));
// Until spoold has made the spool and listens (bctl never makes a spool).
for (let i = 0; i < 100 && !fs.existsSync(path.join(spool, 'spoold.sock')) && spoold.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
// Queued before the worker joins, which spoold would otherwise warn has nothing to do.
const id = execFileSync(process.execPath, [bin('bctl'), '-s', spool, 'submit', p, path.join(root, 'examples', 'hello.sh'), '--name', 'hello'], { encoding: 'utf8' }).trim();
console.log(`start: submitted examples/hello.sh as job ${id} for platform ${p}`);
const workerd = tag('workerd', spawn(process.execPath, [bin('workerd'), '-s', spool, '--name', 'local', p], { stdio: ['ignore', 'inherit', 'pipe'] }));

const stop = () => { workerd.kill('SIGTERM'); spoold.kill('SIGTERM'); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
spoold.on('exit', (code) => { if (code) { console.error(`start: spoold exited ${code}`); workerd.kill('SIGTERM'); process.exitCode = 1; } });
const result = path.join(spool, 'done', 'hello', id, 'result');
const t0 = Date.now();
const poll = setInterval(() => {
  if (fs.existsSync(result)) {
    clearInterval(poll);
    console.log(`\nstart: the sample job finished; its result (${path.relative(root, result)}):\n`);
    console.log(fs.readFileSync(result, 'utf8'));
    console.log(`Look at:
  ls -R spool/done/hello/latest/                the whole result: job, result, console.log, artifacts/, SHA256SUMS
  node dist/bin/bctl.cjs -s spool info           schedules, queues, running jobs, workers
  node dist/bin/bctl.cjs -s spool inspect ${id} --console
  echo 'echo more' | node dist/bin/bctl.cjs -s spool submit ${p} - --wait

spoold and workerd keep running; Ctrl-C stops them.`);
  } else if (Date.now() - t0 > 60_000) {
    clearInterval(poll);
    console.error('start: no result after 60 s; see the spoold and workerd lines above');
    stop();
    process.exitCode = 1;
  }
}, 100);
