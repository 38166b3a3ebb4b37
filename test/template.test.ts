// template.ts and the shipped templates/orb-build.template.*.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expand, findTemplate, renderTemplate, templateFile, templatePlatforms } from '../src/spool/template.js';
import { checkName } from '../src/spool/paths.js';
import { parseSchedule } from '../src/spool/job.js';
import { SpoolError } from '../src/spool/errors.js';

const SHIPPED = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'templates');

function err(f: () => unknown): SpoolError {
  try { f(); } catch (e) { if (e instanceof SpoolError) return e; throw e; }
  throw new Error('expected a SpoolError');
}
async function aerr(f: () => Promise<unknown>): Promise<SpoolError> {
  try { await f(); } catch (e) { if (e instanceof SpoolError) return e; throw e; }
  throw new Error('expected a SpoolError');
}

let tmp: string | undefined;
test.after.each(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); tmp = undefined; });
function dirs(n: number): string[] {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'template-'));
  return Array.from({ length: n }, (_, i) => { const d = path.join(tmp!, `d${i}`); fs.mkdirSync(d); return d; });
}

// ---- expand ----

test('expand replaces %%PLATFORM%% and every %%VAR%%, each time it appears', () => {
  const out = expand('#!/bin/sh\necho %%A%% on %%PLATFORM%%; echo %%A%%-%%B_2%%\n', 't', 'debian-12', { A: 'x', B_2: 'y' });
  assert.is(out, '#!/bin/sh\necho x on debian-12; echo x-y\n');
});

test('expand inserts values literally, in one pass', () => {
  assert.is(expand('a=%%A%%', 't', 'p', { A: '$& $1 $$' }), 'a=$& $1 $$');
  assert.is(expand('a=%%A%% b=%%B%%', 't', 'p', { A: '%%B%%', B: '%%PLATFORM%%' }), 'a=%%B%% b=%%PLATFORM%%');
  assert.is(expand('100%% done, %%1%% and %% A %% stay', 't', 'p', {}), '100%% done, %%1%% and %% A %% stay');
});

test('a variable the job does not set is an error naming the template and the variable', () => {
  const e = err(() => expand('echo %%OPAM_PACKAGE%% %%OTHER%%', 'templates/orb-build.template.debian-12', 'debian-12', {}));
  assert.is(e.code, 'SPOOL_BAD_VALUE');
  assert.is(e.path, 'templates/orb-build.template.debian-12');
  assert.match(e.message, /^templates\/orb-build\.template\.debian-12: template uses %%OPAM_PACKAGE%%, %%OTHER%% but the job has no var\.OPAM_PACKAGE, var\.OTHER; add var\.OPAM_PACKAGE: VALUE/);
});

test('a variable the template does not use is an error too (a misspelt var. would be lost)', () => {
  const e = err(() => expand('echo %%OPAM_PACKAGE%%', 't', 'p', { OPAM_PACKAGE: 'hello', OPAM_PAKAGE: 'x' }));
  assert.match(e.message, /^t: the job sets var\.OPAM_PAKAGE but the template has no %%OPAM_PAKAGE%%; remove var\.OPAM_PAKAGE or fix the spelling/);
  assert.match(err(() => expand('echo %%PLATFORM%%', 't', 'p', { PLATFORM: 'x' })).message, /sets var\.PLATFORM, which is the platform the job runs on/);
  // inherited names are not variables
  assert.match(err(() => expand('%%constructor%%', 't', 'p', {})).message, /has no var\.constructor/);
});

// ---- finding templates ----

test('the first directory that has the template wins', async () => {
  const [a, b] = dirs(2);
  fs.writeFileSync(path.join(b!, 'orb-build.template.debian-12'), 'from b %%PLATFORM%%\n');
  assert.is(await renderTemplate([a!, b!], 'orb-build', 'debian-12', {}), 'from b debian-12\n');
  fs.writeFileSync(path.join(a!, 'orb-build.template.debian-12'), 'from a %%PLATFORM%%\n');
  assert.is(await findTemplate([a!, b!], 'orb-build', 'debian-12'), path.join(a!, 'orb-build.template.debian-12'));
  assert.is(await renderTemplate([a!, b!], 'orb-build', 'debian-12', {}), 'from a debian-12\n');
  // a missing directory, or a directory where the file would be, is passed over
  fs.rmSync(path.join(a!, 'orb-build.template.debian-12'));
  fs.mkdirSync(path.join(a!, 'orb-build.template.debian-12'));
  assert.is(await renderTemplate([path.join(tmp!, 'none'), a!, b!], 'orb-build', 'debian-12', {}), 'from b debian-12\n');
});

test('a missing template is an error naming the file to add', async () => {
  const [a] = dirs(1);
  assert.is(await findTemplate([a!], 'orb-build', 'freebsd'), undefined);
  const e = await aerr(() => renderTemplate([a!], 'orb-build', 'freebsd', { OPAM_PACKAGE: 'x' }));
  assert.is(e.code, 'SPOOL_NOT_FOUND');
  assert.match(e.message, /no template orb-build\.template\.freebsd; add templates\/orb-build\.template\.freebsd/);
  assert.is(templateFile('orb-build', 'freebsd'), 'orb-build.template.freebsd');
});

test('templatePlatforms lists the platforms of a template across directories', async () => {
  const [a, b] = dirs(2);
  for (const f of ['orb-build.template.debian-12', 'orb-build.template.freebsd', 'other.template.x', 'orb-build.template.', 'orb-build.template..hidden', 'orb-build.template.a b']) {
    fs.writeFileSync(path.join(a!, f), '');
  }
  fs.writeFileSync(path.join(b!, 'orb-build.template.debian-12'), '');
  fs.writeFileSync(path.join(b!, 'orb-build.template.ubuntu-20.04'), '');
  assert.equal(await templatePlatforms([a!, b!, path.join(tmp!, 'none')], 'orb-build'), ['debian-12', 'freebsd', 'ubuntu-20.04']);
});

test('a template or platform name with / or .. is refused by checkName, before any file is touched', async () => {
  for (const bad of ['../x', 'a/b', '..', '.', '/etc/passwd', 'x\0y', '']) {
    assert.is(err(() => checkName(bad, 'template name')).code, 'SPOOL_BAD_NAME', JSON.stringify(bad));
  }
  const e = err(() => parseSchedule('name: x\nschedule: @daily\ntemplate: ../../etc/passwd\nvar.A: b\n', 'schedules/x', 'x'));
  assert.match(e.message, /^schedules\/x:3: bad template name "\.\.\/\.\.\/etc\/passwd"/);
  // and template.ts checks again, so a caller that forgets cannot escape the directories
  const [a] = dirs(1);
  fs.writeFileSync(path.join(tmp!, 'secret.template.p'), 'secret\n');
  assert.is((await aerr(() => renderTemplate([a!], '../secret', 'p', {}))).code, 'SPOOL_BAD_NAME');
  assert.is((await aerr(() => findTemplate([a!], 'secret', '../p'))).code, 'SPOOL_BAD_NAME');
  assert.is((await aerr(() => templatePlatforms([a!], '../secret'))).code, 'SPOOL_BAD_NAME');
});

test('a template that is not UTF-8 text is refused with its path', async () => {
  const [a] = dirs(1);
  fs.writeFileSync(path.join(a!, 't.template.p'), Buffer.from('echo \0\n'));
  const e = await aerr(() => renderTemplate([a!], 't', 'p', {}));
  assert.match(e.message, /t\.template\.p:1: NUL byte/);
});

// ---- the shipped templates ----

const PLATFORMS = ['debian-12', 'freebsd', 'ubuntu-20.04'];

test('templates/ ships orb-build for debian-12, freebsd and ubuntu-20.04', async () => {
  assert.equal(await templatePlatforms([SHIPPED], 'orb-build'), PLATFORMS);
});

test('each shipped template opens with what it is, expands, and is a valid sh script that runs orb build', async () => {
  const hasShellcheck = spawnSync('shellcheck', ['--version']).status === 0;
  for (const p of PLATFORMS) {
    const raw = fs.readFileSync(path.join(SHIPPED, `orb-build.template.${p}`), 'utf8');
    assert.ok(raw.startsWith(`#!/bin/sh\n# orb-build.template.${p}: `), p);
    assert.ok(raw.includes('%%OPAM_PACKAGE%%') && raw.includes('%%PLATFORM%%'), p);
    const out = await renderTemplate([SHIPPED], 'orb-build', p, { OPAM_PACKAGE: 'hello' });
    assert.not.match(out, /%%[A-Za-z_]/, p);
    assert.match(out, /\norb build [^\n]*(\\\n[^\n]*)*--out=\. /, p);
    assert.match(out, /--switch-name="\$work\/switch"/, p);   // the switch stays out of the job directory
    const syn = spawnSync('sh', ['-n'], { input: out });
    assert.is(syn.status, 0, `${p}: sh -n: ${syn.stderr}`);
    if (hasShellcheck) {
      const sc = spawnSync('shellcheck', ['-s', 'sh', '-'], { input: out });
      assert.is(sc.status, 0, `${p}: shellcheck: ${sc.stdout}`);
    }
  }
});

test('the shipped templates read the package name literally and refuse one that is not an opam name', async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'template-'));
  const marker = path.join(tmp, 'ran');
  const cases: Array<[string, number, string]> = [
    ['mirage-hello.1.0~beta', 0, 'mirage-hello.1.0~beta'],
    [`x'); touch ${marker}; echo "`, 2, ''],
    [`$(touch ${marker})`, 2, ''],
    [`\`touch ${marker}\``, 2, ''],
    ['-rf', 2, ''],
    ['../x', 2, ''],
  ];
  for (const p of PLATFORMS) {
    for (const [value, status, printed] of cases) {
      const out = await renderTemplate([SHIPPED], 'orb-build', p, { OPAM_PACKAGE: value });
      // run the script up to the first command that installs anything
      const cut = out.search(/\n(sudo=|# builds\.robur\.coop)/);
      assert.ok(cut > 0, p);
      const r = spawnSync('sh', ['-c', `${out.slice(0, cut)}\nprintf '%s' "$package"\n`], { encoding: 'utf8' });
      assert.is(r.status, status, `${p} ${value}: ${r.stderr}`);
      assert.is(r.stdout, printed, `${p} ${value}`);
      if (status !== 0) assert.match(r.stderr, /is not an opam package name/);
      assert.not.ok(fs.existsSync(marker), `${p} ${value}: the value ran`);
    }
  }
});

test.run();
