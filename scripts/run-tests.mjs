#!/usr/bin/env node
// run-tests.mjs: run every test/*.test.ts with uvu (through tsx) and end with
// the one line CI reads: "N passed, N failed, N skipped".
// Exits non-zero when uvu fails, any test fails, no test ran, or the run hangs.
// Usage: node scripts/run-tests.mjs [PATTERN]   (PATTERN filters test files)
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const HARD_TIMEOUT_MS = 15 * 60_000;
const LINGER_MS = 5_000;
const uvuBin = path.join(path.dirname(createRequire(import.meta.url).resolve('uvu')), '..', 'bin.js');
const pattern = process.argv[2] ?? '\\.test\\.ts$';
const files = process.argv[2] ? `${process.argv[2]}.*\\.test\\.ts$` : pattern;
const child = spawn(process.execPath, ['--import', 'tsx', uvuBin, 'test', files, '-c', 'false'],
  { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } });

let out = '';
let lingerTimer;
child.stdout.on('data', (b) => {
  process.stdout.write(b);
  out += b.toString();
  if (out.length > 1 << 20) out = out.slice(-(1 << 16));
  if (/Duration:/.test(out) && !lingerTimer) {
    lingerTimer = setTimeout(() => { console.error('run-tests: test process lingers after its summary (an open handle); killing it'); child.kill('SIGKILL'); }, LINGER_MS);
  }
});
const hard = setTimeout(() => { console.error('run-tests: hard timeout; killing the test run'); child.kill('SIGKILL'); }, HARD_TIMEOUT_MS);

child.on('close', (code, signal) => {
  clearTimeout(hard);
  clearTimeout(lingerTimer);
  const last = (re) => { const all = [...out.matchAll(re)]; return all.length ? Number(all[all.length - 1][1]) : undefined; };
  const total = last(/Total:\s+(\d+)/g);
  const passed = last(/Passed:\s+(\d+)/g);
  const skipped = last(/Skipped:\s+(\d+)/g) ?? 0;
  if (total === undefined || passed === undefined) {
    console.log(`0 passed, 1 failed, 0 skipped`);
    console.error(`run-tests: no summary from uvu (exit ${code}, signal ${signal}): a test file crashed at import or the run was killed`);
    process.exit(1);
  }
  const failed = total - passed;
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  const lingered = signal === 'SIGKILL';
  process.exit(code || failed > 0 || total === 0 || lingered ? 1 : 0);
});
