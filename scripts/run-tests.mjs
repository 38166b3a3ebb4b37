#!/usr/bin/env node
// run-tests.mjs: run every test/*.test.ts with uvu (through tsx), a few files
// at a time, and end with the one line CI reads: "N passed, N failed, N skipped".
//
// Most tests wait on real heartbeats, leases and retries rather than on the
// CPU, so files run side by side: each in its own uvu process, on its own
// temporary spool, with its own free ports. A file's output is printed whole
// when it ends, so outputs never interleave.
//
// Exits non-zero when any test fails, a file crashes or prints no summary, no
// test ran, a file lingers after its summary (an open handle) or runs too long.
//
// Usage: node scripts/run-tests.mjs [PATTERN]
//   PATTERN   a regular expression on the file names under test/ (default: all)
//   TEST_JOBS how many files run at once (default: the number of CPUs plus one)
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FILE_TIMEOUT_MS = 10 * 60_000;
const LINGER_MS = 5_000;
const KEEP = 1 << 20;
// The files that take longest (a minute or more each), started first so that
// the run does not end waiting for one of them. Measured with TEST_JOBS=1.
const SLOW_FIRST = ['hostile-protocol', 'daemon', 'schedules', 'ended', 'fulldisk', 'bctl', 'crash', 'load'];

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const uvuBin = path.join(path.dirname(createRequire(import.meta.url).resolve('uvu')), '..', 'bin.js');
const filter = new RegExp(process.argv[2] ?? '');
const jobs = Math.max(1, Number(process.env.TEST_JOBS) || os.availableParallelism() + 1);
const rank = (f) => { const i = SLOW_FIRST.indexOf(f.replace(/\.test\.ts$/, '')); return i < 0 ? SLOW_FIRST.length : i; };
const files = fs.readdirSync(path.join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts') && filter.test(f))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const last = (out, re) => { const all = [...out.matchAll(re)]; return all.length ? Number(all[all.length - 1][1]) : undefined; };

/** Run one test file; resolve with its counts, its output and how long it took. */
function runFile(file) {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', uvuBin, 'test', `^${escape(file)}$`, '-c', 'false'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    let problem = '';
    let lingerTimer;
    const take = (b) => {
      out += b.toString();
      if (out.length > KEEP) out = `[... output cut ...]\n${out.slice(-KEEP / 2)}`;
      if (/Duration:/.test(out) && !lingerTimer) {
        lingerTimer = setTimeout(() => { problem = 'it lingers after its summary (an open handle)'; child.kill('SIGKILL'); }, LINGER_MS);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const hard = setTimeout(() => { problem = `it ran over ${FILE_TIMEOUT_MS / 60_000} minutes`; child.kill('SIGKILL'); }, FILE_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(hard);
      clearTimeout(lingerTimer);
      const total = last(out, /Total:\s+(\d+)/g);
      const passed = last(out, /Passed:\s+(\d+)/g);
      const skipped = last(out, /Skipped:\s+(\d+)/g) ?? 0;
      if (!problem && (total === undefined || passed === undefined)) problem = `no summary from uvu (exit ${code}, signal ${signal}): it crashed at import or was killed`;
      else if (!problem && code !== 0 && total === passed) problem = `uvu exited ${code} with every test passed`;
      const failed = problem ? Math.max(1, (total ?? 0) - (passed ?? 0)) : total - passed;
      resolve({ file, passed: passed ?? 0, failed, skipped, out, problem, ms: Date.now() - started });
    });
  });
}

const began = Date.now();
const results = [];
let next = 0;
async function lane() {
  while (next < files.length) {
    const r = await runFile(files[next++]);
    results.push(r);
    process.stdout.write(`\n=== ${r.file} (${(r.ms / 1000).toFixed(1)} s)\n${r.out}`);
    if (r.problem) console.error(`run-tests: ${r.file}: ${r.problem}`);
  }
}
await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, lane));

const sum = (k) => results.reduce((n, r) => n + r[k], 0);
const failedFiles = results.filter((r) => r.failed > 0).map((r) => r.file);
console.log(`\n${files.length} files, ${jobs} at a time, in ${((Date.now() - began) / 1000).toFixed(1)} s` +
  (failedFiles.length ? `; failing: ${failedFiles.join(' ')}` : ''));
if (files.length === 0) console.error(`run-tests: no test file matches ${filter}`);
console.log(`${sum('passed')} passed, ${sum('failed') + (files.length === 0 ? 1 : 0)} failed, ${sum('skipped')} skipped`);
process.exit(sum('failed') > 0 || sum('passed') === 0 ? 1 : 0);
