// read.ts: read a spool file that people and scripts write (a job in new/, a
// schedule, a schedule's state), without trusting what is there; and the
// token file people write for spoold and workerd.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { MAX_FILE } from './headers.js';
import { errno } from './errors.js';

/**
 * The bytes of `file` if it is a regular file of at most `max` bytes, else
 * why not (a link, a fifo, a device, a directory, a larger file). It is opened
 * without following a link and without blocking, and checked on the open
 * file, so that a fifo or a link swapped in after an earlier lstat can neither
 * hang the caller nor lead it elsewhere. Synchronous: the file is small.
 * Other errors (ENOENT ...) are thrown.
 */
/** How a spool file is opened to be read: never through a link, never blocking on a fifo. */
export const READ_NOFOLLOW = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

export function readRegular(file: string, max = MAX_FILE): Buffer | { why: string } {
  let fd: number;
  try {
    fd = fs.openSync(file, READ_NOFOLLOW);
  } catch (e) {
    if (errno(e) === 'ELOOP') return { why: 'not a regular file (a symbolic link)' };
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { why: `not a regular file (a ${st.isDirectory() ? 'directory' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device'})` };
    if (st.size > max) return { why: `file is ${st.size} bytes, over the limit of ${max}` };
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** readRegular for spoold's readers: undefined for a file that is not read. */
export function readSpoolFile(file: string): Buffer | undefined {
  const r = readRegular(file);
  return Buffer.isBuffer(r) ? r : undefined;
}

/**
 * The shared secret in a --token-file (spoold's and workerd's): its text
 * without leading and trailing white space. An Error naming the file when it
 * cannot be read or is empty: an empty token would let any worker in.
 */
export async function readTokenFile(file: string): Promise<string> {
  let text: string;
  try { text = (await fsp.readFile(file, 'utf8')).trim(); } catch (e) {
    throw new Error(`cannot read --token-file ${file}: ${(e as Error).message}`);
  }
  if (!text) throw new Error(`--token-file ${file} is empty: put the shared secret in it (say, head -c 32 /dev/urandom | base64 > ${file})`);
  return text;
}

/** Whether p is a directory (following links); false for anything that cannot be looked at (ENOENT, ENOTDIR, EACCES). */
export function isDir(p: string): boolean {
  try { return fs.statSync(p).isDirectory(); } catch { return false; }
}
