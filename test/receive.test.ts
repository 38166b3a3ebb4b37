// receiveArtifacts (src/spool/tar.ts) given up half way: spoold destroys the
// receiver of a worker that went away, then waits for its `done` before it
// removes the directory (daemon.ts resetArtifacts). So `done` must settle
// whenever the destroy comes, and after it nothing of the receiver stays open
// or changes in the directory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from './lib.js';
import { packTar } from './fakeworker.js';
import { receiveArtifacts, compareManifest } from '../src/spool/tar.js';
import { removeTree } from '../src/spool/stage.js';

const openUnder = (dir: string): string[] => fs.readdirSync('/proc/self/fd')
  .map((n) => { try { return fs.readlinkSync(`/proc/self/fd/${n}`); } catch { return ''; } })
  .filter((l) => l.startsWith(dir));

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => { for (const n of fs.readdirSync(d).sort()) { const p = path.join(d, n); out.push(p); if (fs.lstatSync(p).isDirectory()) walk(p); } };
  walk(dir);
  return out;
}

test('a receiver destroyed at any moment settles, holds nothing open, and changes nothing after', async () => {
  const base = await tmpdir('receive');
  const deep = Array.from({ length: 12 }, (_, i) => `d${i}`).join('/');
  const t = await packTar([
    { header: { name: `${deep}/small`, type: 'file' }, body: Buffer.alloc(3000, 0x61) },
    { header: { name: `${deep}/link`, type: 'symlink', linkname: 'small' } },
    { header: { name: `${deep}/big`, type: 'file' }, body: Buffer.alloc(200_000, 0x62) },
    { header: { name: 'last', type: 'file' }, body: Buffer.alloc(10, 0x63) },
  ]);
  for (let k = 0; k < 120; k++) {
    const dir = path.join(base, String(k));
    fs.mkdirSync(dir);
    const rx = receiveArtifacts(dir, 1 << 30);
    rx.done.catch(() => {});
    rx.sink.write(t.subarray(0, 512 + (k % 3) * 700));
    rx.sink.write(t.subarray(512 + (k % 3) * 700));
    // From at once to well inside the entries: microtask, immediate and timer turns.
    for (let i = 0; i < k % 20; i++) await new Promise((r) => (i % 3 === 0 ? setTimeout(r, 0) : i % 3 === 1 ? setImmediate(r) : process.nextTick(r)));
    rx.sink.destroy();
    let settled = false;
    const timer = new Promise((r) => setTimeout(r, 5000));
    await Promise.race([rx.done.then(() => {}, () => {}).then(() => { settled = true; }), timer]);
    assert.ok(settled, `run ${k}: done did not settle within 5 s of the destroy`);
    assert.equal(openUnder(dir), [], `run ${k}: descriptors left open`);
    const before = tree(dir);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(tree(dir), before, `run ${k}: the directory changed after done settled`);
  }
  fs.rmSync(base, { recursive: true, force: true });
});

test('removeTree removes a tree of files, links and directories, never following a link out of it', async () => {
  const base = await tmpdir('rmtree');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'kept');
  const tree = path.join(base, 'artifacts');
  fs.mkdirSync(path.join(tree, 'a', 'b'), { recursive: true });
  for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(tree, 'a', `f${i}`), 'x');
  fs.writeFileSync(path.join(tree, 'a', 'b', 'deep'), 'x');
  fs.symlinkSync(outside, path.join(tree, 'dirlink'));
  fs.symlinkSync(path.join(outside, 'keep'), path.join(tree, 'a', 'filelink'));
  await removeTree(tree);
  assert.not.ok(fs.existsSync(tree));
  assert.is(fs.readFileSync(path.join(outside, 'keep'), 'utf8'), 'kept');
  await removeTree(tree);   // gone already: no error
  fs.rmSync(base, { recursive: true });
});

test('compareManifest: the same entries in any order match; a changed, missing, extra or doubled entry is named', () => {
  const f = (name: string, sha = 'a'.repeat(64), size = 1) => ({ name, type: 'file' as const, size, sha256: sha });
  const l = (name: string, target: string) => ({ name, type: 'symlink' as const, size: 0, target });
  const d = (name: string) => ({ name, type: 'directory' as const, size: 0 });
  const all = [d('x'), f('x/a'), l('x/l', 'a'), f('b')];
  assert.is(compareManifest(all, [...all].reverse()), undefined);
  assert.is(compareManifest(all, [d('x'), f('x/a', 'b'.repeat(64)), l('x/l', 'a'), f('b')]), `received but not announced: file x/a 1 ${'b'.repeat(64)} `);
  assert.is(compareManifest(all, [d('x'), f('x/a'), l('x/l', 'elsewhere'), f('b')]), 'received but not announced: symlink x/l 0  elsewhere');
  assert.is(compareManifest(all, [d('x'), f('x/a'), l('x/l', 'a')]), `announced but not received: file b 1 ${'a'.repeat(64)} `);
  assert.is(compareManifest(all, [...all, f('c')]), `received but not announced: file c 1 ${'a'.repeat(64)} `);
  assert.is(compareManifest([...all, f('b')], all), `announced twice: file b 1 ${'a'.repeat(64)} `);
  assert.is(compareManifest(all, [...all, f('b')]), `received twice: file b 1 ${'a'.repeat(64)} `);
});

test.run();
