// The read slabs of spoold's connections (src/spoold/slabs.ts): a slab is
// reused only when nobody holds a view of it, so no socket read ever lands on
// bytes a console write or the frame reader still needs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Slabs, SLAB } from '../src/spoold/slabs.js';

/** A connection begins in fresh buffers; console bytes put it on slabs. */
function onSlabs(): Slabs {
  const s = new Slabs();
  const first = read(s, 10, 0);
  s.hold(first);
  s.release(first);
  return s;
}

/** Do two views share a byte? */
function overlap(a: Buffer, b: Buffer): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}

/** One socket read of up to n bytes (the kernel fills at most the buffer), as node makes it: next() for the buffer, then got(). */
function read(s: Slabs, want: number, fill: number): Buffer {
  const buf = s.next();
  assert.ok(buf.length >= Math.min(want, 64 << 10), `a read buffer of ${buf.length} bytes`);
  const n = Math.min(want, buf.length);
  buf.fill(fill, 0, n);
  return s.got(n, buf);
}

test('a read never lands on a console view that is held, however the reads and releases interleave', () => {
  const s = new Slabs();
  const held: Array<{ view: Buffer; fill: number }> = [];
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const buffers = new Set<ArrayBufferLike>();
  for (let i = 0; i < 2000; i++) {
    const n = 1 + rnd(200 << 10);
    const fill = i % 251;
    const v = read(s, n, fill);
    buffers.add(v.buffer);
    for (const h of held) assert.not.ok(overlap(v, h.view), `read ${i} landed on a held view`);
    s.hold(v);
    held.push({ view: v, fill });
    // Writes complete out of order, a few at a time, as the disk takes them.
    while (held.length > 1 + rnd(12)) {
      const [h] = held.splice(rnd(held.length), 1);
      assert.ok(h!.view.every((b) => b === h!.fill), 'a held view was overwritten');
      s.release(h!.view);
    }
  }
  // Slabs came back and were used again: a handful for 2,000 reads of up to 200 KiB.
  assert.ok(buffers.size < 40, `${buffers.size} slabs for 2000 reads: released ones are not reused`);
});

test('bytes the frame reader holds (an unfinished frame) are not read over', () => {
  const s = onSlabs();
  const partial = read(s, 1000, 1);
  s.pin((b) => b === partial.buffer);
  const next = read(s, 1000, 2);
  assert.not.ok(overlap(partial, next));
  assert.ok(partial.every((b) => b === 1));
  s.pin(() => false);
  // Nothing held any more: the slab is read into from its start again.
  const again = read(s, 10, 3);
  assert.is(again.buffer, partial.buffer);
  assert.is(again.byteOffset, partial.byteOffset);
});

test('between console frames, control traffic keeps reading into the start of one slab', () => {
  const s = onSlabs();
  const first = read(s, 60, 1);
  for (let i = 0; i < 1000; i++) {
    const v = read(s, 60, 1);
    assert.is(v.buffer, first.buffer);
    assert.is(v.byteOffset, first.byteOffset);
  }
});

test('a new connection holds no slab until console bytes come', () => {
  const s = new Slabs();
  const a = read(s, 100, 1);
  const b = read(s, 100, 2);
  assert.is.not(a.buffer, b.buffer, 'control reads of a new connection share a buffer');
  assert.ok(a.buffer.byteLength < SLAB);
});

test('a slab with artifact bytes is never reused, and reads go to fresh buffers until console bytes come again', () => {
  const s = onSlabs();
  const art = read(s, 5000, 9);
  s.lend(art);
  const seen = new Set<ArrayBufferLike>();
  for (let i = 0; i < 50; i++) {
    const v = read(s, 1000, 4);
    assert.not.ok(overlap(v, art));
    assert.is.not(v.buffer, art.buffer);
    assert.not.ok(seen.has(v.buffer), 'a fresh buffer was handed out twice');
    seen.add(v.buffer);
    s.lend(v);
  }
  assert.ok(art.every((b) => b === 9), 'lent bytes were overwritten');
  const con = read(s, 100, 5);
  s.hold(con);
  const back = read(s, 100, 6);
  assert.ok(back.buffer.byteLength >= SLAB, 'reads did not go back to slabs after a console frame');
  assert.not.ok(overlap(back, con));
});

test('when artifacts begin, the connection gives up its slab, and the one with artifact bytes is never reused', () => {
  const s = onSlabs();
  const con = read(s, 1000, 1);
  s.hold(con);
  const art = read(s, 1000, 2);
  assert.is(art.buffer, con.buffer);
  s.lend(art);
  s.release(con);
  // From here the connection reads into fresh buffers, none of them that slab.
  for (let i = 0; i < 5; i++) assert.is.not(read(s, 100, 3).buffer, con.buffer);
  // Nor does any other connection get it, however many slabs they go through.
  const others = Array.from({ length: 12 }, () => onSlabs());
  for (const o of others) {
    const v = read(o, 100, 4);
    assert.is.not(v.buffer, con.buffer, 'a slab with artifact bytes was reused');
    o.hold(v);
  }
  assert.ok(con.every((b) => b === 1) && art.every((b) => b === 2));
});

test('release after the connection closed is harmless', () => {
  const s = onSlabs();
  const v = read(s, 100, 1);
  s.hold(v);
  s.close();
  s.release(v);
  s.release(Buffer.alloc(10));   // not one of ours
});

test.run();
