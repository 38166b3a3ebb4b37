import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeFile, parseHeaders, formatHeaders, MAX_FILE } from '../src/spool/headers.js';
import { SpoolError } from '../src/spool/errors.js';
import { parseJob } from '../src/spool/job.js';
import { newId, idTime } from '../src/spool/ids.js';
import { isId } from '../src/spool/paths.js';
import { formatStatus, parseStatus } from '../src/spool/result.js';

function err(f: () => unknown): SpoolError {
  try { f(); } catch (e) { if (e instanceof SpoolError) return e; throw e; }
  throw new Error('expected a SpoolError');
}

test('headers and body round-trip', () => {
  const text = formatHeaders([['name', 'hello'], ['var.OPAM_PACKAGE', 'x']], '#!/bin/sh\necho hi\n');
  const p = parseHeaders(text, 'f');
  assert.equal(p.headers.map((h) => [h.key, h.value]), [['name', 'hello'], ['var.OPAM_PACKAGE', 'x']]);
  assert.is(p.body, '#!/bin/sh\necho hi\n');
  assert.is(p.bodyLine, 4);
});

test('a trailing comment is not part of the value', () => {
  const p = parseHeaders('schedule: @daily   # every day\nx: 0 0 * * 5#2\n', 'f');
  assert.is(p.headers[0]!.value, '@daily');
  assert.is(p.headers[1]!.value, '0 0 * * 5#2');
});

test('a script without the blank line names the line and the fix', () => {
  const e = err(() => parseHeaders('name: x\n#!/bin/sh\n', 'new/x'));
  assert.is(e.line, 2);
  assert.match(e.message, /^new\/x:2: .*blank line/);
});

// Found by a tester: a comment line got the script's advice, which would make the whole file a script.
test('a comment line among the headers says to remove it', () => {
  const e = err(() => parseHeaders('platform: p\n# my schedule\nschedule: @daily\n', 'schedules/x'));
  assert.is(e.line, 2);
  assert.match(e.message, /headers take no comment lines .*remove it/);
});

test('duplicate keys are refused with both lines', () => {
  const e = err(() => parseHeaders('a: 1\nb: 2\na: 3\n', 'f'));
  assert.match(e.message, /f:3: duplicate header 'a' \(first on line 1\)/);
});

test('bad keys are refused', () => {
  assert.match(err(() => parseHeaders('Name: x\n', 'f')).message, /bad header key/);
  assert.match(err(() => parseHeaders('na me: x\n', 'f')).message, /expected 'key: value'/);
});

test('NUL, CRLF, invalid UTF-8, BOM and oversize files are refused', () => {
  assert.match(err(() => decodeFile(Buffer.from('a: 1\nb\0: 2\n'), 'f')).message, /^f:2: NUL byte/);
  assert.match(err(() => decodeFile(Buffer.from('a: 1\r\n'), 'f')).message, /^f:1: carriage return/);
  assert.match(err(() => decodeFile(Buffer.from([0x61, 0x3a, 0x20, 0xff, 0x0a]), 'f')).message, /not valid UTF-8/);
  assert.match(err(() => decodeFile(Buffer.from('\ufeffa: 1\n'), 'f')).message, /byte order mark/);
  assert.match(err(() => decodeFile(Buffer.alloc(MAX_FILE + 1, 0x61), 'f')).message, /over the limit/);
});

test('over-long header lines are refused', () => {
  assert.match(err(() => parseHeaders(`a: ${'x'.repeat(5000)}\n`, 'f')).message, /^f:1: header line is over 4096 bytes/);
});

test('formatHeaders refuses values that would not read back', () => {
  assert.throws(() => formatHeaders([['a', 'x\ny']]));
  assert.throws(() => formatHeaders([['a', 'x # y']]));
  assert.throws(() => formatHeaders([['a', ' x']]));
});

test('a job\'s queued: time is RFC 3339, strictly: new Date() would take 1 as the year 2001', () => {
  const job = (q: string) => `queued: ${q}\nname: x\nplatform: p\n\n#!/bin/sh\n`;
  assert.is(parseJob(job('2026-11-27T18:00:00Z'), 'new/j').queued?.toISOString(), '2026-11-27T18:00:00.000Z');
  for (const bad of ['1', '2026-11-27', '2026-02-30T00:00:00Z', 'Fri Nov 27 2026']) {
    assert.match(err(() => parseJob(job(bad), 'new/j')).message, /bad queued time/, bad);
  }
});

test('var.__proto__ is a variable like any other: without template: it is refused, not dropped', () => {
  assert.match(err(() => parseJob('name: x\nplatform: p\nvar.__proto__: y\n\n#!/bin/sh\n', 'new/j')).message, /var\.NAME without template:/);
});

test('ids are UUIDv7, strictly increasing within a process, carry their time, and their random bits vary', () => {
  const t = idTime(newId()).getTime() + 1000;   // past any id this process made before: ids never go back in time
  const ids = Array.from({ length: 5000 }, (_, i) => newId(t + Math.floor(i / 1000)));   // 1000 per millisecond, past the pool's refills
  for (const [i, id] of ids.entries()) {
    assert.ok(isId(id), id);
    if (i > 0) assert.ok(id > ids[i - 1]!, `${id} after ${ids[i - 1]}`);
  }
  assert.is(idTime(ids[0]!).getTime(), t);
  assert.is(new Set(ids.map((id) => id.slice(19))).size, ids.length, 'the random tails differ');
});

test('a failed status from any text can be written as a result header and reads back as failed (no " #", no "#" first, no blank at an end)', () => {
  for (const why of ['#1', 'a ##b', 'a # #b', ' # ', '#', '###', 'x\u00a0#y', 'line\n#two', `${'x'.repeat(499)} #tail`, `${'y'.repeat(499)}  z`, 'issue#42 stays']) {
    const v = formatStatus({ kind: 'failed', why });
    assert.not.throws(() => formatHeaders([['status', v]]), `${JSON.stringify(why)} -> ${JSON.stringify(v)}`);
    const back = parseHeaders(formatHeaders([['status', v]]), 'result').headers[0]!.value;
    assert.is(back, v);
    assert.is(parseStatus(back)?.kind, 'failed');
  }
  assert.is(formatStatus({ kind: 'failed', why: 'issue#42 stays' }), 'failed: issue#42 stays');
  assert.is(formatStatus({ kind: 'failed', why: '###' }), 'failed: unknown');
});

test.run();
