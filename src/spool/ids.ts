// ids.ts: time-sortable job ids (UUIDv7, RFC 9562), so `ls new/` is queue order.
//
// 48 bits of milliseconds, then a 12-bit counter in rand_a that makes ids from
// one process strictly increasing even within a millisecond (RFC 9562 6.2,
// method 1), then 62 random bits. Ids from different processes in the same
// millisecond are ordered by their random bits, which is fine for a queue.

import fs from 'node:fs';

/**
 * Random bytes from the kernel's generator, read a pool at a time. Not
 * node:crypto: loading it cost a one-shot `bctl submit` about 4 ms of its
 * start (npm run bench, W1 startup), and ids need nothing else from it.
 * Without a /dev/urandom device (a bare chroot), node:crypto is loaded after all.
 */
let pool = Buffer.alloc(0);
function randomBytes(n: number): Buffer {
  if (pool.length < n) pool = Buffer.concat([pool, fill(1024)]);
  const b = pool.subarray(0, n);
  pool = pool.subarray(n);
  return b;
}
function fill(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let fd: number | undefined;
  try {
    fd = fs.openSync('/dev/urandom', 'r');
    // A regular file there (a bind mount in a container) would give every process the same bytes.
    if (!fs.fstatSync(fd).isCharacterDevice()) throw new Error('not a device');
    for (let got = 0; got < n;) {
      const k = fs.readSync(fd, b, got, n - got, null);
      if (k === 0) throw new Error('end of file');
      got += k;
    }
    return b;
  } catch {
    return process.getBuiltinModule('node:crypto').randomBytes(n);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

let lastMs = 0;
let counter = 0;

export function newId(now: number = Date.now()): string {
  let ms = now;
  if (ms <= lastMs) {
    ms = lastMs;
    counter++;
    if (counter > 0xfff) { ms = ++lastMs; counter = 0; }
  } else {
    counter = randomBytes(1)[0]! & 0x3f; // a small random start leaves room to count
  }
  lastMs = ms;
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = 0x70 | (counter >> 8);
  b[7] = counter & 0xff;
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The millisecond timestamp inside an id. */
export function idTime(id: string): Date {
  return new Date(parseInt(id.slice(0, 8) + id.slice(9, 13), 16));
}
