// usage.ts: the context a verb runs in, and the usage error. Kept apart from
// cli.ts so that main.ts can parse the command line and print help without
// loading the spool library (cron-parser, tar-stream ...): each verb
// module is imported only when it runs, which keeps bctl's start fast.

import type { Readable, Writable } from 'node:stream';
import type { SpoolPaths } from '../spool/paths.js';

/** What a verb gets: the spool, its options and positionals, and where to write. */
export interface Ctx {
  sp: SpoolPaths;
  args: string[];
  opts: Record<string, string | boolean | undefined>;
  env: NodeJS.ProcessEnv;
  stdin: Readable;
  stdout: Writable;
  /** One line to stdout. */
  out: (line: string) => void;
  /** One line to stderr, prefixed `bctl: `. */
  warn: (line: string) => void;
}

/** Bad usage: main prints the message and the command's synopsis, exits 2. */
export class UsageError extends Error {
  constructor(message: string) { super(message); this.name = 'UsageError'; }
}

export function usage(message: string): never {
  throw new UsageError(message);
}

