// argv.ts: what mri would take silently on our command lines.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { argvProblem } from '../src/spool/argv.js';

const F = { strings: ['spool', 'priority', 'name'], booleans: ['help', 'wait', 'json'], shorts: { s: 'spool', h: 'help' } };

test('sound command lines have no problem', () => {
  for (const argv of [
    [], ['submit', 'p', 'job.sh', '--wait'], ['-s', '/tmp/x', 'info', '--json'], ['-s=/tmp/x', 'info'], ['--spool=/tmp/x', 'info'],
    ['-hs', '/tmp/x'], ['submit', 'p', '--priority', '-5', 'job.sh'], ['-s', '-odd-dir', 'info'], ['submit', 'p', '--', '-x.sh', '--wait=no'],
    ['submit', 'p', '-'], ['--name=a=b'],
  ]) assert.is(argvProblem(argv, F), undefined, argv.join(' '));
});

test('a value to a flag that takes none, and unknown letters in a dash word, are named', () => {
  assert.is(argvProblem(['submit', 'p', 'j.sh', '--wait=no'], F), 'option --wait takes no value (--wait=no)');
  assert.is(argvProblem(['--help='], F), 'option --help takes no value (--help=)');
  assert.is(argvProblem(['submit', 'p', '-x.sh'], F), 'unknown option -x in -x.sh (to name a file that starts with -, write ./-x.sh)');
  assert.is(argvProblem(['-x', 'info'], F), 'unknown option -x');
  assert.is(argvProblem(['-hx'], F), 'unknown option -x in -hx (to name a file that starts with -, write ./-hx)');
});

// Found by a new user: mri keeps the first of `-s A --spool B` and drops the
// other; `--frob info` swallowed the command ("no command given"); `-s/dir`
// was read as the flags -s -/ -d -i -r.
test('a flag given twice under its two names, an unknown long flag, and a value glued to a short flag are named', () => {
  assert.is(argvProblem(['-s', '/tmp', '--spool', '/x', 'info'], F), '--spool given more than once');
  assert.is(argvProblem(['--spool=/tmp', '-s', '/x', 'info'], F), '--spool given more than once');
  assert.is(argvProblem(['-s=/tmp', '--spool=/x'], F), '--spool given more than once');
  assert.is(argvProblem(['submit', '--name', 'a', 'p', '--name=b'], F), '--name given more than once');
  assert.is(argvProblem(['--frob', 'info'], F), 'unknown option --frob');
  assert.is(argvProblem(['--version'], F), 'unknown option --version');
  assert.is(argvProblem(['-s/tmp/spool', 'info'], F), 'option -s takes its value as the next argument: write -s /tmp/spool');
  assert.is(argvProblem(['-hs/tmp', 'info'], F), 'option -s takes its value as the next argument: write -s /tmp');
  assert.is(argvProblem(['--wait', '--wait', '--', '--frob', '-s', 'x', '-s', 'y'], F), undefined, 'booleans may repeat; after -- all are arguments');
});

test.run();
