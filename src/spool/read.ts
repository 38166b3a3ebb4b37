// read.ts: read a spool file that people and scripts write (a job in new/, a
// schedule, a schedule's state), without trusting what is there.

import fs from 'node:fs';
import { MAX_FILE } from './headers.js';
import { errno } from './errors.js';

/**
 * The bytes of `file` if it is a regular file of at most MAX_FILE bytes;
 * undefined if it is anything else (a symlink, a fifo, a device, a directory,
 * a larger file). It is opened without following a link and without blocking,
 * and checked on the open file, so that a fifo or a link swapped in after an
 * earlier lstat can neither hang the caller nor lead it elsewhere.
 * Synchronous: the file is small. Other errors (ENOENT ...) are thrown.
 */
export function readSpoolFile(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    if (errno(e) === 'ELOOP') return undefined;
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    return st.isFile() && st.size <= MAX_FILE ? fs.readFileSync(fd) : undefined;
  } finally {
    fs.closeSync(fd);
  }
}
