// slabs.ts: where a worker connection's bytes are read into.
//
// Node gives every socket read a fresh buffer of its own. For a console of
// 100 MB that is ~1,600 new 64 KiB buffers, and on the project's VMs making
// and collecting them cost spoold ~0.3 s of CPU, three times what the bytes
// themselves cost to read and write (npm run bench, W3). So each connection
// reads into slabs instead (net.Socket's onread with a buffer function): the
// socket reads straight into the free tail of the connection's current slab,
// the frame reader hands out views of it (no copy), and a slab goes back to a
// small shared pool once nobody holds a view of it.
//
// Who holds a view of a slab, and so when it is free:
//   - a console frame handed to the daemon holds one until it is release()d,
//     exactly once (by the console's write callback, or at once when dropped);
//   - the frame reader holds the bytes of its unfinished frame (pin()).
// Artifact bytes go into tar-stream, which keeps views of what it is given
// for as long as it likes, out of our sight: a slab with artifact bytes in it
// is never reused (lend()), and once artifacts flow the connection reads into
// fresh buffers, as node would, until console bytes come again. Copying them
// out instead, or lending whole slabs, cost more memory (W4 of npm run bench).
// Slabs are for consoles only: a connection reads into fresh buffers until
// console bytes come, and again from its first artifact bytes on, when it
// gives up its current slab. So a connected worker that is idle, or between
// jobs, holds no slab, however many consoles it streamed before.

/** A slab's size. A read needs MIN_READ of room; what is left under that is not used. */
export const SLAB = 1 << 20;
const MIN_READ = 128 << 10;
/** A fresh buffer's size: node's own for a socket read. */
const FRESH = 64 << 10;
/**
 * Free slabs kept for reuse, shared by all connections: what they cost is
 * resident memory. Enough for one console streaming against a slow disk (its
 * 4 MiB write window, and the reads on their way in): with 2, slabs freed
 * together beyond the pool were dropped and new ones made, and their page
 * faults cost spoold up to 0.2 s of system time per 100 MB in one W3 run of three.
 */
const POOL_MAX = 8;

const pool: Buffer[] = [];

interface Slab {
  buf: Buffer;
  fill: number;      // bytes read into it so far
  refs: number;      // data frames handed out and not yet released
  pinned: boolean;   // the frame reader holds bytes of it
  lent: boolean;     // a view of it went where we cannot see it end: never reused
}

export class Slabs {
  private cur: Slab | undefined;
  private live = new Map<ArrayBufferLike, Slab>();
  private fresh = true;       // no console bytes flow (yet, or since artifacts began): read into fresh buffers
  private inSlab = false;     // the last next() was a slab's tail

  /** The buffer for the next socket read: the free tail of the current slab, or a fresh one. */
  next(): Buffer {
    this.inSlab = !this.fresh;
    if (this.fresh) return Buffer.allocUnsafeSlow(FRESH);
    let s = this.cur;
    // Nothing of it is held: read into its start again.
    if (s && s.refs === 0 && !s.pinned && !s.lent) s.fill = 0;
    if (!s || s.buf.length - s.fill < MIN_READ) {
      if (s) this.retire(s);
      s = this.cur = this.make();
    }
    return s.buf.subarray(s.fill);
  }

  /** A read of `n` bytes landed in `buf` (the last next()): the bytes, as a view. */
  got(n: number, buf: Buffer): Buffer {
    if (this.inSlab && this.cur) this.cur.fill += n;
    return buf.subarray(0, n);
  }

  /** A console frame's payload, handed to the daemon: it holds its slab until release(). */
  hold(view: Buffer): void {
    this.fresh = false;
    const s = this.live.get(view.buffer);
    if (s) s.refs++;
  }

  /** A payload handed out with hold() is done with (written, or dropped). */
  release(view: Buffer): void {
    const s = this.live.get(view.buffer);
    if (!s) return;
    s.refs--;
    if (s !== this.cur) this.maybeFree(s);
  }

  /**
   * An artifact frame's payload, given away for good: its slab is never
   * reused. Reads go to fresh buffers from now on, and the current slab is
   * given up: freed now, or when its last console write is done.
   */
  lend(view: Buffer): void {
    this.fresh = true;
    const s = this.live.get(view.buffer);
    if (s) { s.lent = true; if (s !== this.cur) this.live.delete(s.buf.buffer); }
    if (this.cur) { const c = this.cur; this.cur = undefined; this.retire(c); }
  }

  /** The frame reader has read on: `holds` says which buffers it now holds bytes of. */
  pin(holds: (buffer: ArrayBufferLike) => boolean): void {
    for (const s of this.live.values()) {
      const was = s.pinned;
      s.pinned = holds(s.buf.buffer);
      if (was && !s.pinned && s !== this.cur) this.maybeFree(s);
    }
  }

  /** The connection is gone: forget every slab (views still out keep theirs alive until collected). */
  close(): void {
    this.live.clear();
    this.cur = undefined;
  }

  private make(): Slab {
    const buf = pool.pop() ?? Buffer.allocUnsafeSlow(SLAB);
    const s: Slab = { buf, fill: 0, refs: 0, pinned: false, lent: false };
    this.live.set(buf.buffer, s);
    return s;
  }

  /** The current slab is full: it is freed when its last holder lets go. */
  private retire(s: Slab): void {
    if (s.lent) this.live.delete(s.buf.buffer);
    else this.maybeFree(s);
  }

  private maybeFree(s: Slab): void {
    if (s.refs > 0 || s.pinned || s.lent) return;
    this.live.delete(s.buf.buffer);
    if (pool.length < POOL_MAX) pool.push(s.buf);
  }
}
