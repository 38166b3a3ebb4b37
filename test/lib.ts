// test/lib.ts: helpers for end-to-end tests. Not a suite (no .test.ts suffix).
//
// Every end-to-end test runs the programs as built (dist/bin/, made by
// `npm run build`, which `npm test` runs first) against a fresh spool made
// with mkdtemp, as separate processes.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpoolPaths } from '../src/spool/paths.js';
import { ensureSpool } from '../src/spool/layout.js';
import { submission, type Job } from '../src/spool/job.js';
import { submit } from '../src/spool/state.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** A program as built: bctl is one bundled CommonJS file (scripts/bundle-bctl.mjs), the daemons tsc's output. */
export const BIN = (name: 'bctl' | 'spoold' | 'workerd'): string => path.join(ROOT, 'dist', 'bin', name === 'bctl' ? 'bctl.cjs' : `${name}.js`);
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

export async function tmpdir(tag = 'builder'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `${tag}-`));
}

export interface Ran { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Run a program to completion. */
export function run(cmd: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => { stdout += b; });
    child.stderr.on('data', (b) => { stderr += b; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Run bctl as built against `spool`. */
export function bctl(spool: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return run(process.execPath, [BIN('bctl'), '-s', spool, ...args], opts);
}

/** A long-running program (spoold, workerd) whose stderr we keep for assertions. */
export interface Daemon { child: ChildProcess; log: () => string; waitLog: (re: RegExp, ms?: number) => Promise<string>; stop: (sig?: NodeJS.Signals) => Promise<void> }

/** `as`: run it as this user (the tests run as root). */
export function daemon(name: 'spoold' | 'workerd', args: string[], env: NodeJS.ProcessEnv = {}, as?: { uid: number; gid: number }): Daemon {
  const child = spawn(process.execPath, [BIN(name), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let log = '';
  const onData = (b: Buffer) => { log += b.toString(); if (process.env.BUILDER_TEST_VERBOSE) process.stderr.write(`[${name} ${child.pid}] ${b}`); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    child,
    log: () => log,
    waitLog: async (re, ms = 15_000) => {
      const end = Date.now() + ms;
      for (;;) {
        const m = re.exec(log);
        if (m) return m[0];
        if (Date.now() > end) throw new Error(`timed out waiting for ${re} in ${name} log:\n${log}`);
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${re}:\n${log}`);
        await sleep(20);
      }
    },
    stop: async (sig = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(sig);
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll until f() returns a truthy value, or fail after ms. */
export async function until<T>(what: string, f: () => T | Promise<T>, ms = 15_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export function readIf(p: string): string | undefined {
  try { return fs.readFileSync(p, 'utf8'); } catch { return undefined; }
}

/** Write a file into a spool directory the way DESIGN.md says people should: in tmp/, then rename. */
export async function drop(spool: string, dir: string, name: string, text: string | Buffer): Promise<string> {
  const staged = path.join(spool, 'tmp', `drop.${process.pid}.${Math.random().toString(36).slice(2)}`);
  await fsp.mkdir(path.join(spool, 'tmp'), { recursive: true });
  await fsp.writeFile(staged, text);
  const target = path.join(spool, dir, name);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  await fsp.rename(staged, target);
  return target;
}

/** Queue a one-off job into new/ as bctl submit would (platform debian-12 unless given); returns its id. */
export async function queueJob(spool: string, j: Pick<Job, 'name' | 'body'> & Partial<Job>): Promise<string> {
  const sp = new SpoolPaths(spool);
  await ensureSpool(sp);
  const job = submission({ ...j, platform: j.platform ?? 'debian-12' });
  await submit(sp, job);
  return job.id;
}
