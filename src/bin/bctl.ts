#!/usr/bin/env node
// bctl: the builder client. See man/bctl.1 and src/bctl/main.ts.
//
// Built as one bundled file (scripts/bundle-bctl.mjs), because bctl's start
// is most of its cost. For the same reason the standard streams are made only
// when a verb uses them (process.stdin and process.stdout are getters that
// load the net and stream modules for a pipe), and lines (ids, listings, help)
// go to fd 1 with write(2) while no stdout stream exists: the same bytes, in
// the same order, each line written before the verb goes on. When no stream
// was made, nothing can be left unwritten, so bctl exits as soon as the verb returns.

import { writeSync } from 'node:fs';
import { main } from '../bctl/main.js';

// `bctl info | head` closes our stdout early; that is not an error.
const onStdoutError = (e: NodeJS.ErrnoException): void => { if (e.code === 'EPIPE') process.exit(0); else throw e; };

let stdout: NodeJS.WriteStream | undefined;
let streams = false;   // a verb asked for process.stdin, stdout or stderr
function stdoutStream(): NodeJS.WriteStream {
  streams = true;
  if (stdout === undefined) {
    stdout = process.stdout;
    stdout.on('error', onStdoutError);
  }
  return stdout;
}

function writeOut(s: string): void {
  // Once a verb has the stream (inspect, observe), everything goes through it, so nothing overtakes what it buffered.
  if (stdout !== undefined) { stdout.write(s); return; }
  const buf = Buffer.from(s);
  let off = 0;
  try {
    while (off < buf.length) off += writeSync(1, buf, off);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') process.exit(0);
    // fd 1 shared with a process that made it non-blocking, and full: let the stream queue the rest.
    if (code === 'EAGAIN') { stdoutStream().write(buf.subarray(off)); return; }
    throw e;
  }
}

const io = {
  env: process.env,
  get stdin() { streams = true; return process.stdin; },
  get stdout() { return stdoutStream(); },
  get stderr() { streams = true; return process.stderr; },
  writeOut,
};

main(process.argv.slice(2), io)
  .then((status) => {
    process.exitCode = status;
    // The verb has finished (it awaits all it starts), and with no stream made
    // every byte it printed went out with write(2): nothing is left to flush, so
    // exit now instead of at the end of the event loop, which saved ~2 ms.
    if (!streams) process.exit();
  })
  .catch((e: unknown) => {
    process.stderr.write(`bctl: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
