// readSpoolFile (src/spool/read.ts): what people and scripts leave in the
// spool is read only when it is a small regular file, and never hangs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { tmpdir } from './lib.js';
import { readSpoolFile, readRegular } from '../src/spool/read.js';
import { MAX_FILE } from '../src/spool/headers.js';

test('a small regular file is read; a fifo, a symlink, a directory and a large file are not, and nothing blocks', async () => {
  const d = await tmpdir('read');
  const p = (n: string) => path.join(d, n);
  fs.writeFileSync(p('job'), 'name: x\n');
  execFileSync('mkfifo', [p('fifo')]);                 // no writer: a blocking open or read would hang here
  fs.symlinkSync(p('job'), p('link'));
  fs.mkdirSync(p('dir'));
  fs.writeFileSync(p('big'), Buffer.alloc(MAX_FILE + 1, 0x61));
  assert.equal(readSpoolFile(p('job'))?.toString(), 'name: x\n');
  for (const n of ['fifo', 'link', 'dir', 'big']) assert.is(readSpoolFile(p(n)), undefined, `${n} was read`);
  assert.throws(() => readSpoolFile(p('gone')), /ENOENT/);
  // readRegular says why, for bctl's messages; a larger limit reads the large file.
  for (const [n, what] of [['fifo', 'a fifo'], ['link', 'a symbolic link'], ['dir', 'a directory']]) assert.equal(readRegular(p(n!)), { why: `not a regular file (${what})` }, n);
  assert.equal(readRegular(p('big')), { why: `file is ${MAX_FILE + 1} bytes, over the limit of ${MAX_FILE}` });
  assert.is((readRegular(p('big'), Infinity) as Buffer).length, MAX_FILE + 1);
  fs.rmSync(d, { recursive: true, force: true });
});

test.run();
