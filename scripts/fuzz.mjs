#!/usr/bin/env node
// fuzz.mjs: a fuzzer of the worker protocol (issue 5 item 7). `npm run fuzz`.
//
//   node scripts/fuzz.mjs [--seconds N] [--seed S] [--connections C] [--max-mem-mib M]
//                         [--dist DIR] [--keep] [--verbose]
//
// Starts spoold as built (dist/bin) on a fresh spool, with a real workerd for
// platform real-1 beside it, and for N seconds (default 60) keeps C
// connections (default 8) busy with hostile input: random bytes, frames with
// bit-flipped lengths and random types, random JSON shapes, mutated hellos,
// messages about jobs the connection does not hold (ids taken from running/),
// and, after taking a job of platform fuzz-1, console data and mutated tar
// streams with mutated manifests and statuses. A seeded PRNG drives every
// choice; the seed is printed first, so a failure can be replayed with
// --seed (timing still varies between runs, so a replay is likely, not
// certain, to hit the same path).
//
// After the budget it checks that spoold is alive; that the real workerd still
// gets a normal job done (exited 0, its artifact in done/); that spoold's
// VmHWM stayed under M MiB (default 150); that spoold logged no uncaught
// exception, unhandled rejection, internal error or listener leak; that every
// result in done/ parses; that every job it queued is still in exactly one of
// new/, running/ and done/ (none lost); and that nothing was written outside the spool's
// own places: nothing beside the spool, in the escape target or in /tmp, no
// unexpected path, device, fifo or hard link inside it.
//
// --dist DIR runs the programs and library of another build (default dist/),
// for example one with a proposed patch. --keep leaves the spool behind;
// --verbose echoes the daemons' log lines.
//
// Exit status: 0 when every check holds, 1 when one fails (the seed and the
// tail of spoold's log are printed), 2 on bad usage.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mri from 'mri';
import tar from 'tar-stream';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const USAGE = 'usage: node scripts/fuzz.mjs [--seconds N] [--seed S] [--connections C] [--max-mem-mib M] [--dist DIR] [--keep] [--verbose]\n';

let unknown;
const a = mri(process.argv.slice(2), {
  alias: { seconds: [], seed: [], connections: [], 'max-mem-mib': [], dist: [], keep: [], verbose: [], h: 'help' },
  string: ['seconds', 'seed', 'connections', 'max-mem-mib', 'dist'],
  boolean: ['keep', 'verbose', 'help'],
  unknown: (f) => { unknown = f; },
});
if (a.help) { process.stdout.write(USAGE); process.exit(0); }
const num = (k, dflt, min) => {
  if (a[k] === undefined) return dflt;
  const v = Number(a[k]);
  if (Array.isArray(a[k]) || !Number.isSafeInteger(v) || v < min) { process.stderr.write(`fuzz: --${k} takes a whole number >= ${min}\n${USAGE}`); process.exit(2); }
  return v;
};
if (unknown || a._.length > 0) { process.stderr.write(`fuzz: unknown argument ${unknown ?? a._[0]}\n${USAGE}`); process.exit(2); }
const SECONDS = num('seconds', 60, 1);
const SEED = num('seed', randomBytes(4).readUInt32BE(0) >>> 1, 0);
const CONNS = num('connections', 8, 1);
const MAX_MEM = num('max-mem-mib', 150, 1) * 2 ** 20;
if (Array.isArray(a.dist) || a.dist === '') { process.stderr.write(`fuzz: --dist needs one directory\n${USAGE}`); process.exit(2); }
const DIST = path.resolve(a.dist ?? path.join(ROOT, 'dist'));

for (const f of ['bin/spoold.js', 'bin/workerd.js', 'spool/protocol.js']) {
  if (!fs.existsSync(path.join(DIST, f))) { process.stderr.write(`fuzz: ${path.join(DIST, f)} is missing; run npm run build first\n`); process.exit(2); }
}
const { FrameReader, MAX_FRAME, MAX_CONTROL, T_CONTROL, T_CONSOLE, T_ARTIFACTS } = await import(path.join(DIST, 'spool/protocol.js'));
const { SpoolPaths } = await import(path.join(DIST, 'spool/paths.js'));
const { makeJob } = await import(path.join(DIST, 'spool/job.js'));
const { submit } = await import(path.join(DIST, 'spool/state.js'));
const { newId } = await import(path.join(DIST, 'spool/ids.js'));
const { parseResult } = await import(path.join(DIST, 'spool/result.js'));

console.log(`fuzz: seed ${SEED} (replay: npm run fuzz -- --seed ${SEED} --seconds ${SECONDS})`);

// ---- the PRNG and random shapes ----------------------------------------

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const int = (n) => Math.floor(rnd() * n);              // 0 .. n-1
const chance = (p) => rnd() < p;
const pick = (xs) => xs[int(xs.length)];
const bytes = (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = int(256); return b; };
const sizeSkewed = (max) => Math.min(max, Math.floor(Math.exp(rnd() * Math.log(max + 1))));   // mostly small, sometimes big

const TAG = `fz${SEED.toString(36)}${randomBytes(3).toString('hex')}`;
const EVIL_NAMES = () => [
  `../evil-${TAG}`, `a/../../evil-${TAG}`, `/tmp/evil-${TAG}`, `${escapeDir}/abs-${TAG}`, `../../../../../evil-${TAG}`, `./../evil-${TAG}`,
  `l/evil-${TAG}`, `x\\..\\evil-${TAG}`, '', '.', '..', '/', 'a\u0000b', 'n'.repeat(300), `${'d/'.repeat(80)}f`, 'dup', 'dup', 'ok.txt',
];
const KEYS = ['t', 'v', 'name', 'platform', 'token', 'holding', 'id', 'files', 'status', 'started', 'finished', 'why', 'attempt', 'size', 'type', 'sha256', 'target', 'consoleOffset', '__proto__', 'constructor'];
const TYPES = ['hello', 'welcome', 'bye', 'ping', 'job', 'resume', 'not-yours', 'cancel', 'idle', 'ended', 'artifacts', 'manifest', 'finished', 'done', 'HELLO', '', 'toString', '__proto__'];
const STATUSES = ['exited 0', 'exited 3', 'exited 255', 'exited 256', 'exited -1', 'signalled 9', 'stopped 19', 'timeout', 'canceled', 'lost', 'failed: why',
  'failed: a #b', 'failed: trailing ', 'failed: nul\u0000', 'failed: \u001b[31mred', 'failed: line\nbreak', '', 'exited', 'ok', 'x'.repeat(600)];

function randomValue(depth = 0) {
  switch (int(depth > 2 ? 6 : 9)) {
    case 0: return int(2) ? int(1000) : pick([0, -1, 1.5, 2 ** 53, -(2 ** 31), 1e308, NaN]);
    case 1: return pick(['', 'x', 'a'.repeat(sizeSkewed(5000)), `../evil-${TAG}`, newId(), pick(STATUSES), '\u0000', 'latest', pick(TYPES)]);
    case 2: return chance(0.5);
    case 3: return null;
    case 4: return pick(runningIds()) ?? newId();
    case 5: return new Date(int(2 ** 40)).toISOString();
    case 6: return Array.from({ length: sizeSkewed(20) }, () => randomValue(depth + 1));
    default: return Object.fromEntries(Array.from({ length: int(6) }, () => [pick(KEYS), randomValue(depth + 1)]));
  }
}

function randomMsg() {
  const ids = runningIds();
  const id = chance(0.6) && ids.length ? pick(ids) : chance(0.5) ? newId() : randomValue();
  const now = new Date().toISOString();
  const m = pick([
    () => ({ t: pick(TYPES) }),
    () => ({ t: 'finished', id, status: pick(STATUSES), started: now, finished: now }),
    () => ({ t: 'artifacts', id }),
    () => ({ t: 'ended', id }),
    () => ({ t: 'manifest', id, files: Array.from({ length: int(4) }, () => ({ name: pick(EVIL_NAMES()), type: pick(['file', 'directory', 'symlink', 'link']), size: int(100), sha256: chance(0.5) ? randomBytes(32).toString('hex') : undefined })) }),
    () => ({ t: 'ping' }),
    () => ({ t: 'hello', v: 1, name: fuzzName(), platform: 'fuzz-1' }),
    () => randomValue(),
    () => Object.fromEntries(Array.from({ length: int(8) }, () => [pick(KEYS), randomValue()])),
  ])();
  if (m && typeof m === 'object' && !Array.isArray(m) && chance(0.3)) m[pick(KEYS)] = randomValue();
  return m;
}

// ---- frames ---------------------------------------------------------------

const header = (len, type) => { const h = Buffer.alloc(5); h.writeUInt32BE(len >>> 0, 0); h[4] = type & 0xff; return h; };
const control = (v) => { const b = Buffer.from(JSON.stringify(v) ?? 'undefined'); return Buffer.concat([header(b.length, T_CONTROL), b]); };
const dataFrame = (type, b) => Buffer.concat([header(b.length, type), b]);
function dataFrames(type, b) {
  const out = [];
  for (let o = 0; o < b.length; o += MAX_FRAME) out.push(dataFrame(type, b.subarray(o, o + MAX_FRAME)));
  return out;
}

/** A frame that is wrong in one random way (or, sometimes, right). */
function mutatedFrame() {
  switch (int(8)) {
    case 0: return bytes(sizeSkewed(4096) + 1);                                               // garbage
    case 1: { const b = control(randomMsg()); b.writeUInt32BE((b.readUInt32BE(0) ^ (1 << int(32))) >>> 0, 0); return b; } // bit-flipped length
    case 2: { const b = control(randomMsg()); b[4] = int(256); return b; }                    // random type
    case 3: { const b = Buffer.from(control(randomMsg())); for (let i = 0, n = 1 + int(4); i < n; i++) b[5 + int(Math.max(1, b.length - 5))] ^= 1 << int(8); return b; } // flipped payload bits
    case 4: return dataFrame(pick([T_CONSOLE, T_ARTIFACTS]), bytes(sizeSkewed(70_000)));      // data frames, maybe out of place
    case 5: return header(pick([0, 1, MAX_CONTROL, MAX_CONTROL + 1, MAX_FRAME, MAX_FRAME + 1, 2 ** 31, 2 ** 32 - 1, int(2 ** 32)]), pick([T_CONTROL, T_CONSOLE, T_ARTIFACTS, int(256)]));
    case 6: return dataFrame(pick([T_CONSOLE, T_ARTIFACTS]), Buffer.alloc(int(3)));           // empty and tiny frames
    default: return control(randomMsg());
  }
}

// ---- tar streams -----------------------------------------------------------

async function packTar(entries) {
  const pack = tar.pack();
  const chunks = [];
  pack.on('data', (c) => chunks.push(c));
  const ended = new Promise((resolve, reject) => { pack.on('end', resolve); pack.on('error', reject); });
  for (const e of entries) {
    await new Promise((resolve) => { try { pack.entry(e.header, e.body ?? Buffer.alloc(0), () => resolve()); } catch { resolve(); } });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** A tar stream with hostile entries, then damaged at random; and a manifest that may or may not match it. */
async function mutatedTar() {
  const entries = [];
  for (let i = 0, n = 1 + int(5); i < n; i++) {
    const name = chance(0.5) ? pick(EVIL_NAMES()) || 'e' : `f${i}.txt`;
    const body = bytes(sizeSkewed(20_000));
    switch (int(7)) {
      case 0: entries.push({ header: { name, type: 'directory' } }); break;
      case 1: entries.push({ header: { name, type: 'symlink', linkname: pick([os.tmpdir(), '/etc', '..', escapeDir]) } }); break;
      case 2: entries.push({ header: { name, type: 'link', linkname: '/etc/passwd' } }); break;
      case 3: entries.push({ header: { name, type: pick(['character-device', 'block-device', 'fifo']), devmajor: 1, devminor: 3 } }); break;
      case 4: entries.push({ header: { name: 'innocent', type: 'file', pax: { path: name, size: String(pick([-1, 0, 2 ** 60, 'NaN', 1e3])) } }, body }); break;
      default: entries.push({ header: { name, type: 'file', mode: pick([0o644, 0o4755, 0o777]) }, body });
    }
  }
  let t;
  try { t = await Promise.race([packTar(entries), sleep(2000).then(() => { throw new Error('tar-stream did not finish'); })]); } catch { t = bytes(2048); }
  if (chance(0.7)) {
    t = Buffer.from(t);
    for (let i = 0, n = 1 + int(6); i < n; i++) {
      const at = int(t.length);
      switch (int(4)) {
        case 0: t[at] ^= 1 << int(8); break;                                                  // a flipped bit
        case 1: t = t.subarray(0, at); break;                                                 // cut
        case 2: t = Buffer.concat([t.subarray(0, at - (at % 512)), bytes(512), t.subarray(at - (at % 512))]); break; // a garbage block
        default: if ((at - (at % 512)) + 136 <= t.length) t.write(int(2 ** 30).toString(8).padStart(11, '0'), (at - (at % 512)) + 124, 'latin1');   // a wrong size field
      }
    }
  }
  const files = entries.map((e) => ({ name: e.header.name, type: e.header.type === 'directory' ? 'directory' : e.header.type === 'symlink' ? 'symlink' : 'file', size: e.body?.length ?? 0 }));
  return { tar: t, files: chance(0.2) ? randomValue() : files };
}

// ---- the spool, spoold and the real workerd ----------------------------------

const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'fuzz-'));
const spool = path.join(root, 'spool');
const outside = path.join(root, 'outside');
await fsp.mkdir(outside);
const escapeDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'fuzz-escape-'));
const wd = await fsp.mkdtemp(path.join(os.tmpdir(), 'fuzz-wd-'));
const sp = new SpoolPaths(spool);
const sock = path.join(spool, 'spoold.sock');

function start(bin, args) {
  const child = spawn(process.execPath, [path.join(DIST, 'bin', bin), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { child, tail: '', flagged: [], lines: 0 };
  let partial = '';
  const onData = (b) => {
    const s = partial + b.toString();
    const lines = s.split('\n');
    partial = lines.pop();
    for (const l of lines) {
      p.lines++;
      if (a.verbose) process.stderr.write(`[${bin}] ${l}\n`);
      if (/uncaught|unhandled|internal error|Warning:|cannot claim|cannot finalize|cannot requeue/.test(l) && p.flagged.length < 20) p.flagged.push(l.slice(0, 2000));
    }
    p.tail = (p.tail + lines.map((l) => `${l.slice(0, 1000)}\n`).join('')).slice(-20_000);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  p.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return p;
}
const alive = (p) => p.child.exitCode === null && p.child.signalCode === null;

async function until(what, f, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const queuedIds = [];
async function queue(name, platform, body) {
  const id = newId();
  queuedIds.push({ id, name });
  await submit(sp, makeJob({ name, platform, timeout: 5000, retries: 1, priority: 0, network: false, template: undefined, vars: {}, body, id, queued: new Date(), origin: 'submit', attempt: 0 }));
  return id;
}

let running = [];
function runningIds() { return running; }
const fuzzName = () => (chance(0.9) ? `fz${int(50)}` : pick(['real', '../x', '', 'x'.repeat(70), 'fz-ok', 'latest']));

const spoold = start('spoold.js', ['-s', spool, '--lease', '2s', '--heartbeat', '400ms', '--max-artifacts', String(64 << 20)]);
const failures = [];
let workerd;
const stats = { connections: 0, frames: 0, bytes: 0, closedBySpoold: 0, jobsTaken: 0 };

async function cleanup() {
  for (const p of [workerd, spoold]) if (p && alive(p)) { p.child.kill('SIGKILL'); await p.exited; }
  if (!a.keep) for (const d of [root, escapeDir, wd]) await fsp.rm(d, { recursive: true, force: true });
  else console.log(`fuzz: kept ${root} ${escapeDir} ${wd}`);
}

function fail(why) {
  failures.push(why);
}

// ---- one hostile connection --------------------------------------------------

function connect() {
  return new Promise((resolve) => {
    const s = net.createConnection(sock);
    const c = { s, msgs: [], closed: false, waiters: [] };
    const reader = new FrameReader(MAX_FRAME);
    s.on('data', (b) => {
      try { for (const f of reader.push(b)) if (f.type === T_CONTROL) c.msgs.push(f.msg); } catch (e) { fail(`spoold sent a frame its own reader refuses: ${e.message}`); s.destroy(); }
      for (const w of c.waiters.splice(0)) w();
    });
    s.on('error', () => {});
    s.on('close', () => { c.closed = true; for (const w of c.waiters.splice(0)) w(); });
    s.on('connect', () => resolve(c));
    s.once('error', () => resolve(c));
  });
}

/** Writes on one connection go out in order, each perhaps split in two with a pause between. */
function write(c, buf) {
  c.chain = (c.chain ?? Promise.resolve()).then(async () => {
    if (c.closed || c.s.destroyed) return;
    stats.frames++;
    stats.bytes += buf.length;
    // Random splits: frame boundaries must not depend on chunk boundaries.
    const parts = [];
    if (buf.length > 1 && chance(0.3)) { const at = 1 + int(buf.length - 1); parts.push(buf.subarray(0, at), buf.subarray(at)); } else parts.push(buf);
    for (const p of parts) {
      if (c.closed) return;
      if (!c.s.write(p)) await Promise.race([new Promise((r) => c.s.once('drain', r)), new Promise((r) => c.s.once('close', r)), sleep(2000)]);
      if (parts.length > 1 && chance(0.5)) await sleep(int(20));
    }
  });
  return c.chain;
}

async function waitMsg(c, t, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const m = c.msgs.find((x) => x.t === t);
    if (m) return m;
    if (c.closed || Date.now() > end) return undefined;
    await new Promise((r) => { const tm = setTimeout(r, end - Date.now()); c.waiters.push(() => { clearTimeout(tm); r(); }); });
  }
}

const helloMsg = (over = {}) => ({ t: 'hello', v: 1, name: fuzzName(), platform: 'fuzz-1', ...over });

async function session() {
  const c = await connect();
  if (c.closed) return;
  stats.connections++;
  const kind = int(10);
  try {
    if (kind === 0) {                                    // garbage from the first byte
      await write(c, bytes(sizeSkewed(8192) + 1));
    } else if (kind === 1) {                             // a mutated hello
      const h = helloMsg();
      if (chance(0.5)) h[pick(KEYS)] = randomValue(); else h.v = pick([0, 2, -1, 1.5, '1', null]);
      if (chance(0.3)) h.holding = { id: pick(runningIds()) ?? newId(), name: pick(['fuzzjob', '../x', 'real']), attempt: int(3), finished: chance(0.5) };
      await write(c, control(h));
      for (let i = 0, n = int(4); i < n; i++) await write(c, mutatedFrame());
    } else if (kind === 2) {                             // a valid sequence, then bits flipped anywhere
      const seq = Buffer.concat([control(helloMsg()), control({ t: 'ping' }), dataFrame(T_CONSOLE, bytes(int(100))), control(randomMsg())]);
      for (let i = 0, n = 1 + int(8); i < n; i++) seq[int(seq.length)] ^= 1 << int(8);
      await write(c, seq);
    } else if (kind <= 5) {                              // hello, then mutated frames
      await write(c, control(helloMsg(chance(0.2) ? { holding: { id: pick(runningIds()) ?? newId(), name: 'fuzzjob', attempt: 1 + int(2), finished: chance(0.5) } } : {})));
      for (let i = 0, n = 1 + int(12); i < n && !c.closed; i++) {
        await write(c, mutatedFrame());
        if (chance(0.3)) await sleep(int(50));
      }
    } else if (kind <= 8) {                              // take a job, then a mutated artifact stream
      await write(c, control(helloMsg({ name: `fzjob${int(1000)}` })));
      const job = await waitMsg(c, 'job', 1500);
      if (job) {
        stats.jobsTaken++;
        const ping = setInterval(() => void write(c, control({ t: 'ping' })), 200);
        try {
          if (chance(0.7)) await write(c, dataFrame(T_CONSOLE, bytes(sizeSkewed(10_000))));
          if (chance(0.5)) await write(c, control({ t: 'ended', id: chance(0.9) ? job.id : newId() }));
          if (chance(0.9)) await write(c, control({ t: 'artifacts', id: chance(0.9) ? job.id : newId() }));
          const { tar: t, files } = await mutatedTar();
          for (const f of dataFrames(T_ARTIFACTS, t)) {
            await write(c, f);
            if (chance(0.1)) await write(c, mutatedFrame());
          }
          if (chance(0.9)) await write(c, control({ t: 'manifest', id: job.id, files }));
          if (chance(0.9)) { const now = new Date().toISOString(); await write(c, control({ t: 'finished', id: job.id, status: pick(STATUSES), started: now, finished: now })); }
          await Promise.race([waitMsg(c, 'done', 1000), waitMsg(c, 'bye', 1000)]);
        } finally { clearInterval(ping); }
      }
    } else {                                             // silence, or a drip, until the session ends
      await write(c, chance(0.5) ? control(helloMsg()) : Buffer.alloc(0));
      for (let i = 0, n = int(10); i < n && !c.closed; i++) { await sleep(100 + int(200)); if (chance(0.5)) await write(c, bytes(1)); }
    }
    await sleep(int(300));
  } finally {
    if (c.closed) stats.closedBySpoold++;
    c.s.destroy();
  }
}

// ---- the checks --------------------------------------------------------------

const ID = '[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
const JOBDIR = '(job|lease|cancel|result|console\\.log|SHA256SUMS|artifacts(/.+)?)';
const ALLOWED = new RegExp('^(tmp|schedules|new|running|done|bad|platforms|templates|state|workers|spoold\\.sock|spoold\\.lock(/.*)?|spoold\\.pid'
  + `|tmp/[^/]+|tmp/running\\.\\d+\\.\\d+\\.[a-z0-9]+/(console\\.log|SHA256SUMS|artifacts)`   // spoold's ready running/ID directories (state.ts)
  + `|new/${ID}|workers/[^/]+|state/[^/]+|running/${ID}|running/${ID}/${JOBDIR}`
  + `|done/[^/]+|done/[^/]+/latest|done/[^/]+/${ID}|done/[^/]+/${ID}/${JOBDIR})$`);

function walk(dir, rel = '', out = []) {
  let names;
  try { names = fs.readdirSync(path.join(dir, rel)); } catch { return out; }
  for (const n of names) {
    const r = rel ? `${rel}/${n}` : n;
    out.push(r);
    let st;
    try { st = fs.lstatSync(path.join(dir, r)); } catch { continue; }
    if (st.isDirectory()) walk(dir, r, out);
  }
  return out;
}

function checkContained() {
  const beside = fs.readdirSync(root).sort().join(',');
  if (beside !== 'outside,spool') fail(`something appeared beside the spool: ${beside}`);
  if (fs.readdirSync(outside).length) fail(`something appeared in the sentinel beside the spool: ${fs.readdirSync(outside).join(',')}`);
  if (fs.readdirSync(escapeDir).length) fail(`something appeared in the escape target ${escapeDir}: ${fs.readdirSync(escapeDir).join(',')}`);
  const inTmp = fs.readdirSync(os.tmpdir()).filter((n) => n.includes(TAG));
  if (inTmp.length) fail(`evil names appeared in ${os.tmpdir()}: ${inTmp.join(',')}`);
  for (const r of walk(spool)) {
    if (!ALLOWED.test(r)) fail(`unexpected path in the spool: ${JSON.stringify(r)}`);
    if (r.includes(TAG) && !/^(done\/[^/]+|running)\/[^/]+\/artifacts\//.test(r)) fail(`an evil name outside artifacts/: ${r}`);
    let st;
    try { st = fs.lstatSync(path.join(spool, r)); } catch { continue; }
    if (!(st.isFile() || st.isDirectory() || st.isSymbolicLink() || st.isSocket())) fail(`${r} is a device or fifo`);
    if (st.isFile() && st.nlink !== 1) fail(`${r} is a hard link (${st.nlink} links)`);
    if (st.isSocket() && r !== 'spoold.sock') fail(`${r} is a socket`);
    if (/^done\/[^/]+\/[^/]+\/result$/.test(r)) {
      try { parseResult(fs.readFileSync(path.join(spool, r)), r); } catch (e) { fail(`${r} does not parse: ${e.message}`); }
    }
  }
  // A symlink an artifact stream made must stay below artifacts/ in done/ or running/ only (checked by ALLOWED); nothing
  // else may be one but latest.
  for (const r of walk(spool)) {
    let st;
    try { st = fs.lstatSync(path.join(spool, r)); } catch { continue; }
    if (st.isSymbolicLink() && !/\/artifacts\//.test(r) && !/^done\/[^/]+\/latest$/.test(r)) fail(`unexpected symlink ${r} -> ${fs.readlinkSync(path.join(spool, r))}`);
  }
}

/** Every job queued is still in exactly one of new/, running/, done/ (invariant 2 of DESIGN.md): none was lost. */
async function checkConserved() {
  const where = ({ id, name }) => [path.join(spool, 'new', id), path.join(spool, 'running', id, 'job'), path.join(spool, 'done', name, id, 'result')].filter((p) => fs.existsSync(p));
  for (const j of queuedIds) {
    let w = where(j);
    for (let i = 0; i < 10 && w.length !== 1; i++) { await sleep(200); w = where(j); }     // a job moving between states
    if (w.length === 0) fail(`job ${j.name}/${j.id} was lost: it is in none of new/, running/ (with its job file), done/`);
    if (w.length > 1) fail(`job ${j.name}/${j.id} is in two states at once: ${w.map((p) => path.relative(spool, p)).join(', ')}`);
  }
}

function vmHWM(pid) {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

// ---- run -------------------------------------------------------------------------

let hwm = NaN;
try {
  await until('spoold to start', () => /spoold: started/.test(spoold.tail) || !alive(spoold), 15_000);
  if (!alive(spoold)) throw new Error('spoold exited at start');
  workerd = start('workerd.js', ['-s', spool, '--name', 'real', '--workdir', path.join(wd, 'jobs'), 'real-1']);
  await until('workerd to connect', () => /connected/.test(workerd.tail), 15_000);

  const end = Date.now() + SECONDS * 1000;
  let lastChores = 0;
  const chores = async () => {       // jobs for the fuzz workers to take, and the ids they may lie about
    try { running = (await fsp.readdir(sp.running)).filter((n) => new RegExp(`^${ID}$`).test(n)); } catch { /* spoold is making it */ }
    const queued = (await fsp.readdir(sp.new).catch(() => [])).length;
    for (let i = queued; i < 4; i++) await queue('fuzzjob', 'fuzz-1', '#!/bin/sh\necho fuzz\n');
  };
  const lanes = Array.from({ length: CONNS }, async () => {
    while (Date.now() < end && alive(spoold)) {
      if (Date.now() - lastChores > 300) { lastChores = Date.now(); await chores(); }
      await session().catch((e) => fail(`fuzz session: ${e.stack ?? e.message}`));
    }
  });
  const mid = (async () => {      // a normal job in the middle of the storm, too
    await sleep(SECONDS * 500);
    if (!alive(spoold)) return;
    const id = await queue('normal', 'real-1', '#!/bin/sh\necho normal\n');
    await until('the normal job queued mid-fuzz to finish', () => fs.existsSync(path.join(spool, 'done', 'normal', id, 'result')), SECONDS * 1000 + 30_000)
      .catch((e) => fail(e.message));
  })();
  await Promise.all(lanes);
  await mid;

  if (!alive(spoold)) {
    const { code, signal } = await spoold.exited;
    fail(`spoold died (exit ${code ?? signal})`);
  } else {
    const id = await queue('normal', 'real-1', '#!/bin/sh\necho normal\necho art > art.txt\n');
    const dir = path.join(spool, 'done', 'normal', id);
    try {
      await until('the real workerd to finish a normal job after the fuzzing', () => fs.existsSync(path.join(dir, 'result')), 30_000);
      const r = parseResult(fs.readFileSync(path.join(dir, 'result')), `done/normal/${id}/result`);
      if (r.status.kind !== 'exited' || r.status.code !== 0) fail(`the normal job ended ${JSON.stringify(r.status)}`);
      if (fs.readFileSync(path.join(dir, 'artifacts', 'art.txt'), 'utf8') !== 'art\n') fail('the normal job lost its artifact');
    } catch (e) { fail(e.message); }
    hwm = vmHWM(spoold.child.pid);
    if (!(hwm < MAX_MEM)) fail(`spoold's VmHWM is ${(hwm / 2 ** 20).toFixed(1)} MiB, over ${MAX_MEM / 2 ** 20} MiB`);
  }
  for (const l of spoold.flagged) fail(`spoold logged: ${l}`);
  checkContained();
  await checkConserved();
} catch (e) {
  fail(e.stack ?? e.message);
}

const summary = `${stats.connections} connections, ${stats.frames} writes, ${(stats.bytes / 2 ** 20).toFixed(1)} MiB sent, ${stats.closedBySpoold} closed by spoold, ${stats.jobsTaken} jobs taken, spoold VmHWM ${(hwm / 2 ** 20).toFixed(1)} MiB`;
if (failures.length) {
  console.log(`fuzz: FAILED seed ${SEED}: ${summary}`);
  for (const f of [...new Set(failures)].slice(0, 20)) console.log(`fuzz: - ${f}`);
  console.log(`fuzz: the tail of spoold's log:\n${spoold.tail.slice(-6000)}`);
  console.log(`fuzz: replay: npm run fuzz -- --seed ${SEED} --seconds ${SECONDS}`);
  await cleanup();
  process.exit(1);
}
console.log(`fuzz: ok seed ${SEED}: ${summary}`);
await cleanup();
process.exit(0);
