// log.ts: one line per event, values quoted so a line splits cleanly and a
// value a worker chose cannot drive the terminal of whoever reads the log.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { log } from '../src/spoold/log.js';

function line(fields: Record<string, string>): string {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((b: string) => { out += b; return true; }) as typeof process.stderr.write;
  try { log('released', fields); } finally { process.stderr.write = write; }
  return out;
}

test('plain values stay bare; blanks, quotes, = and non-ASCII are quoted', () => {
  assert.is(line({ id: 'abc-1', worker: 'w.1' }), 'spoold: released id=abc-1 worker=w.1\n');
  assert.is(line({ why: 'two words' }), 'spoold: released why="two words"\n');
  assert.is(line({ a: 'x=y', b: 'say "hi"', c: 'café', d: '' }), 'spoold: released a="x=y" b="say \\"hi\\"" c="café" d=""\n');
});

test('control characters never reach the log raw: C0, DEL, C1 (CSI) and line separators are escaped', () => {
  const out = line({ why: '\x1b[2J\x1b[31mFAKE\x07\x7f\u009b1m\u2028x\u2029', id: '\x1b]0;title\x07' });
  assert.not.match(out.slice(0, -1), /[\x00-\x1f\x7f-\x9f\u2028\u2029]/);
  assert.is(out, 'spoold: released why="\\u001b[2J\\u001b[31mFAKE\\u0007\\u007f\\u009b1m\\u2028x\\u2029" id="\\u001b]0;title\\u0007"\n');
  assert.is(out.split('\n').length, 2, 'one line');
});

test.run();
