#!/usr/bin/env node
// bctl: the builder client. See man/bctl.1 and src/bctl/main.ts.

import { main } from '../bctl/main.js';

// `bctl info | head` closes our stdout early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(0); else throw e; });

main(process.argv.slice(2), { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
  .then((status) => { process.exitCode = status; })
  .catch((e: unknown) => {
    process.stderr.write(`bctl: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
