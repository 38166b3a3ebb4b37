// fsck.ts: bctl fsck: check the spool's invariants (DESIGN.md, builder-spool(5))
// and print one line per violation, `bctl fsck: PATH: what is wrong; what to do`.
// Silent with exit 0 when the spool is sound; exit 1 when anything is wrong.
//
// Checked:
//   new/F          a regular file that parses (and whose id: matches an id name)
//   one owner      no id in more than one of new/, running/, done/*/
//   running/ID/    has a job file that parses (a leftover without one is only a
//                  violation when no spoold holds the lock: spoold cleans them;
//                  one holding a cancel request for a job in new/ is none)
//   done/NAME/ID/  job and result parse (result id and name match), console.log,
//                  artifacts/ a directory, SHA256SUMS listing exactly the regular
//                  files under artifacts/ with their sha256
//   done/NAME/latest  a symlink to an existing ID directory
//   tmp/           empty while no spoold holds the lock (stale staged writes)
//   schedules/F    parses; state/F parses
//   bad/F          has bad/F.why
//   writable       by the spool's group: the spool's directories
//                  (not templates/, platforms/), done/NAME, running/ID and its
//                  artifacts/ (spoold and bctl, run by the group's members,
//                  write there)
//   everywhere     nothing world-writable; no symlink but done/*/latest and
//                  those inside artifacts/
//
// Memory stays bounded: artifacts are hashed as streams, directories are
// walked one at a time. Symlinks inside artifacts/ are neither hashed nor
// required in SHA256SUMS (a link is not content; hashing it would follow it).
// BUGS: run against a live spool, jobs move while we look; a job seen in two
// states, or a result seen before latest moved, can be a passing moment. Run
// it again before acting on such a line.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { SpoolError, errno, oneLine } from '../spool/errors.js';
import { parseJob, parseSchedule } from '../spool/job.js';
import { parseResult } from '../spool/result.js';
import { isId, isName, DIRS } from '../spool/paths.js';
import { parseScheduleState } from '../spool/schedstate.js';
import { isLocked } from '../spool/lock.js';
import { checkSpool } from '../spool/layout.js';
import { DIR_MODE } from '../spool/stage.js';
import { EXIT_FAIL, EXIT_OK } from '../spool/exit.js';
import { list, readIf, type Ctx } from './cli.js';
import { doneFile } from './find.js';

type Report = (rel: string, what: string, fix: string) => void;

/** readIf, with a file that cannot be read (a fifo, a link, EACCES) reported; `failed` comes back for it. */
async function readChecked<F extends undefined | null = undefined>(p: string, rel: string, report: Report, failed?: F, max?: number): Promise<Buffer | undefined | F> {
  try { return await readIf(p, max); } catch (e) {
    const what = why(e);
    const hint = (e as SpoolError).hint ?? '';
    report(rel, hint && what.endsWith(`; ${hint}`) ? what.slice(0, -hint.length - 2) : what, hint || 'remove it, or put a plain file in its place');
    return failed as F;
  }
}

function why(e: unknown): string {
  if (e instanceof SpoolError) {
    // The message already names the file; keep what follows it.
    const at = e.path === undefined ? '' : e.line === undefined ? `${e.path}: ` : `${e.path}:${e.line}: `;
    return (e.line === undefined ? '' : `line ${e.line}: `) + (e.message.startsWith(at) ? e.message.slice(at.length) : e.message);
  }
  throw e;
}

/** The directories spoold writes into, by their path's parts below the spool (not templates/ nor platforms/, which it reads). */
function spooldWrites(parts: string[]): boolean {
  return (parts.length === 1 && (DIRS as readonly string[]).includes(parts[0]!) && parts[0] !== 'templates' && parts[0] !== 'platforms')
    || (parts[0] === 'done' && parts.length === 2)
    || (parts[0] === 'running' && (parts.length === 2 || (parts.length === 3 && parts[2] === 'artifacts')));
}

async function lstatIf(p: string): Promise<fs.Stats | undefined> {
  try { return await fsp.lstat(p); } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(fs.createReadStream(file), h);
  return h.digest('hex');
}

/** SHA256SUMS in sha256sum(1) format: `HEX  NAME` or `HEX *NAME`, `\`-escaped names. */
export function parseSums(text: string, source: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const escaped = line.startsWith('\\');
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(escaped ? line.slice(1) : line);
    if (!m) throw new SpoolError('SPOOL_BAD_FILE', `expected 'SHA256  NAME', got ${JSON.stringify(line.slice(0, 60))}`, { path: source, line: i + 1, hint: 'write it as sha256sum does' });
    let name = m[2]!;
    if (escaped) name = name.replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
    if (out.has(name)) throw new SpoolError('SPOOL_BAD_FILE', `${name} is listed twice`, { path: source, line: i + 1, hint: 'list each artifact once' });
    out.set(name, m[1]!);
  });
  return out;
}

/** Regular files under dir (relative, '/'-separated), by lstat; links and odd types reported apart. */
async function artifactFiles(dir: string, rel = ''): Promise<{ files: string[]; links: string[]; odd: string[] }> {
  const acc = { files: [] as string[], links: [] as string[], odd: [] as string[] };
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isSymbolicLink()) acc.links.push(r);
    else if (e.isDirectory()) {
      const sub = await artifactFiles(path.join(dir, e.name), r);
      acc.files.push(...sub.files); acc.links.push(...sub.links); acc.odd.push(...sub.odd);
    } else if (e.isFile()) acc.files.push(r);
    else acc.odd.push(r);
  }
  return acc;
}

async function checkDoneDir(ctx: Ctx, name: string, id: string, report: Report): Promise<void> {
  const { sp } = ctx;
  const dir = sp.doneDir(name, id);
  const rel = sp.rel(dir);
  const incomplete = 'a finished job directory is assembled whole; restore the file from a backup or remove the directory';
  const jobBuf = await readChecked(doneFile(dir, 'job'), `${rel}/job`, report, null);
  if (jobBuf === undefined) report(`${rel}/job`, 'missing', incomplete);
  else if (jobBuf !== null) { try { parseJob(jobBuf, `${rel}/job`); } catch (e) { report(`${rel}/job`, why(e), 'fix the file by hand'); } }
  const resBuf = await readChecked(doneFile(dir, 'result'), `${rel}/result`, report, null);
  if (resBuf === undefined) report(`${rel}/result`, 'missing', incomplete);
  else if (resBuf !== null) {
    try {
      const r = parseResult(resBuf, `${rel}/result`);
      if (r.id !== id) report(`${rel}/result`, `id ${r.id} differs from the directory name`, 'fix the id: header or move the directory');
      if (r.name !== name) report(`${rel}/result`, `name ${r.name} differs from the directory done/${name}`, 'fix the name: header or move the directory');
    } catch (e) { report(`${rel}/result`, why(e), 'fix the file by hand'); }
  }
  const cons = await lstatIf(doneFile(dir, 'console.log'));
  if (!cons) report(`${rel}/console.log`, 'missing', `create it empty: touch ${rel}/console.log`);
  else if (!cons.isFile() && !cons.isSymbolicLink()) report(`${rel}/console.log`, 'not a regular file', 'replace it with the console output, or an empty file');   // a link: said once, as an unexpected symlink (walk)
  const art = doneFile(dir, 'artifacts');
  const ast = await lstatIf(art);
  let found: { files: string[]; links: string[]; odd: string[] } | undefined;
  if (!ast) report(`${rel}/artifacts`, 'missing', `create it empty: mkdir ${rel}/artifacts`);
  else if (!ast.isDirectory()) { if (!ast.isSymbolicLink()) report(`${rel}/artifacts`, 'not a directory', 'replace it with a directory of the artifacts'); }
  else {
    found = await artifactFiles(art);
    for (const o of found.odd) report(`${rel}/artifacts/${o}`, 'not a regular file, directory or symlink', 'remove it');
  }
  const sumsFile = doneFile(dir, 'SHA256SUMS');
  const sumsBuf = await readChecked(sumsFile, sp.rel(sumsFile), report, null, Infinity);   // a line per artifact: may be large
  if (sumsBuf === null) return;   // reported
  if (sumsBuf === undefined) { report(`${rel}/SHA256SUMS`, 'missing', `recreate it: (cd ${rel}/artifacts && find . -type f | sed 's|^./||' | xargs sha256sum) > ${rel}/SHA256SUMS`); return; }
  let sums: Map<string, string>;
  try { sums = parseSums(sumsBuf.toString('utf8'), `${rel}/SHA256SUMS`); } catch (e) { report(`${rel}/SHA256SUMS`, why(e), 'regenerate it with sha256sum'); return; }
  if (!found) return;
  const links = new Set(found.links);
  for (const f of found.files) {
    const want = sums.get(f);
    if (want === undefined) { report(`${rel}/artifacts/${f}`, 'not listed in SHA256SUMS', 'add it to SHA256SUMS, or remove the file if it does not belong'); continue; }
    sums.delete(f);
    const got = await sha256(path.join(art, ...f.split('/')));
    if (got !== want) report(`${rel}/artifacts/${f}`, `sha256 ${got} differs from SHA256SUMS (${want})`, 'the artifact changed after the job finished; restore it from a copy, or rerun the job');
  }
  for (const f of sums.keys()) {
    if (links.has(f)) report(`${rel}/SHA256SUMS`, `lists ${f}, which is a symlink`, 'SHA256SUMS lists regular files only; remove its line');
    else report(`${rel}/SHA256SUMS`, `lists ${f}, which is not a file under artifacts/`, 'restore the artifact, or remove its line');
  }
}

export async function fsck(ctx: Ctx): Promise<number> {
  const { sp } = ctx;
  let problems = 0;
  const report: Report = (rel, what, fix) => {
    problems++;
    ctx.out(oneLine(`bctl fsck: ${rel}: ${what}; ${fix}`));   // one line, whatever a file's name holds
  };
  checkSpool(sp);
  const rootSt = await fsp.stat(sp.root);
  const locked = await isLocked(sp);
  const owner = new Map<string, string[]>();   // id -> where it was seen
  const seen = (id: string, where: string) => { const l = owner.get(id) ?? []; l.push(where); owner.set(id, l); };

  // Everywhere: modes and symlinks. Walked one directory at a time.
  const walk = async (dir: string, inArtifacts: boolean): Promise<void> => {
    let entries: fs.Dirent[];
    try { entries = await fsp.readdir(dir, { withFileTypes: true }); } catch (e) {
      if (errno(e) === 'ENOENT') return;   // moved while we looked
      throw e;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      const rel = sp.rel(p);
      const parts = rel.split(path.sep);
      const st = await lstatIf(p);
      if (!st) continue;
      if (st.isSymbolicLink()) {
        const isLatest = parts.length === 3 && parts[0] === 'done' && parts[2] === 'latest';
        // bad/ holds what spoold refused as it was, a link included (bad/ is checked below).
        if (!isLatest && !inArtifacts && !(parts.length >= 2 && parts[0] === 'bad')) report(rel, 'unexpected symlink', 'only done/NAME/latest and files inside artifacts/ may be symlinks; replace it with the file or remove it');
        continue;
      }
      if (st.mode & 0o002) report(rel, `world-writable (mode ${(st.mode & 0o7777).toString(8)})`, `chmod o-w ${rel}`);
      if (st.isDirectory() && spooldWrites(parts) && !groupCanWrite(st)) {
        report(rel, `owned by uid ${st.uid}, group ${st.gid}, mode ${(st.mode & 0o7777).toString(8)}: the spool's group (${rootSt.gid}) cannot write it, so bctl run by its members, or spoold run as one, cannot store results there`, `${st.gid === rootSt.gid ? '' : `chgrp ${rootSt.gid} ${rel} && `}chmod ${DIR_MODE.toString(8)} ${rel}`);
      }
      if (st.isDirectory()) await walk(p, inArtifacts || (e.name === 'artifacts' && parts.length === 4 && parts[0] === 'done'));
    }
  };
  // The spool's group, as builder-spool(5) says: spoold and the people who
  // run bctl are its members, and a directory only its owner can write stops
  // the others (root, which writes anywhere, hid this when spoold ran as root).
  const groupCanWrite = (st: fs.Stats): boolean => st.gid === rootSt.gid && (st.mode & 0o020) !== 0;
  if (rootSt.mode & 0o002) report(sp.root, 'world-writable', `chmod o-w ${sp.root}`);
  await walk(sp.root, false);

  // new/
  for (const f of await list(sp.new)) {
    if (f.startsWith('.')) continue;   // editors' swap files; spoold ignores them too
    const rel = `new/${f}`;
    const p = isId(f) ? sp.queued(f) : path.join(sp.new, f);
    const st = await lstatIf(p);
    if (!st) { if (f.includes('\ufffd')) report(rel, 'file name is not valid UTF-8, so spoold cannot take it', 'rename it (mv with a plain name)'); continue; }
    if (!st.isFile()) { if (!st.isSymbolicLink()) report(rel, 'not a regular file', 'remove it; new/ holds job files only'); continue; }
    const buf = await readChecked(p, rel, report);
    if (buf === undefined) continue;
    try {
      parseJob(buf, rel, f);
      if (isId(f)) seen(f, rel);
    } catch (e) { report(rel, why(e), 'fix it, or let spoold move it to bad/'); }
  }

  // running/
  for (const id of await list(sp.running)) {
    const rel = `running/${id}`;
    if (!isId(id)) { report(rel, 'not a job id', 'remove it; running/ holds only spoold\'s job directories'); continue; }
    const st = await lstatIf(sp.runningDir(id));
    if (!st?.isDirectory()) { if (st && !st.isSymbolicLink()) report(rel, 'not a directory', 'remove it'); continue; }
    const buf = await readChecked(sp.runningFile(id, 'job'), `${rel}/job`, report, null);
    if (buf === null) continue;
    if (buf === undefined) {
      // A cancel request beside a queued job waits for its claim (builder-spool(5)).
      const waiting = await lstatIf(sp.runningFile(id, 'cancel')) && await lstatIf(sp.queued(id));
      if (!locked && !waiting) report(rel, 'no job file (left by a crash)', 'start spoold, which removes it, or remove the directory');
      continue;
    }
    seen(id, rel);
    try { parseJob(buf, `${rel}/job`); } catch (e) { report(`${rel}/job`, why(e), 'fix it by hand; spoold cannot dispatch it'); }
  }

  // done/
  for (const name of await list(sp.done)) {
    const rel = `done/${name}`;
    const st = await lstatIf(path.join(sp.done, name));
    if (!st?.isDirectory()) { if (st && !st.isSymbolicLink()) report(rel, 'not a directory', 'remove it; done/ holds one directory per job name'); continue; }
    if (!isName(name)) { report(rel, 'not a job name', 'rename or remove it'); continue; }
    let newest: string | undefined;   // ids sort by time
    for (const id of await list(sp.doneName(name))) {
      if (id === 'latest') continue;
      const r = `${rel}/${id}`;
      if (!isId(id)) { report(r, 'not a job id', `remove it; done/${name}/ holds job directories and latest`); continue; }
      const ist = await lstatIf(sp.doneDir(name, id));
      if (!ist?.isDirectory()) { if (ist && !ist.isSymbolicLink()) report(r, 'not a directory', 'remove it'); continue; }
      if (newest === undefined || id > newest) newest = id;
      seen(id, r);
      await checkDoneDir(ctx, name, id, report);
    }
    const latest = sp.latest(name);
    const lst = await lstatIf(latest);
    // The fix names the newest job, or says to remove latest when no job of the name is left (found by a new user).
    const fix = newest === undefined ? `no job of ${name} is left: rm ${rel}/latest` : `point it at the newest job: ln -sfn ${newest} ${rel}/latest`;
    if (!lst) { if (newest !== undefined) report(`${rel}/latest`, 'missing', fix); }
    else if (!lst.isSymbolicLink()) report(`${rel}/latest`, 'not a symlink', newest === undefined ? fix : `replace it: ln -sfn ${newest} ${rel}/latest`);
    else {
      const target = await fsp.readlink(latest);
      const tst = isId(target) ? await lstatIf(sp.doneDir(name, target)) : undefined;
      if (!tst?.isDirectory()) report(`${rel}/latest`, `points to ${JSON.stringify(target)}, not a job directory in ${rel}`, fix);
    }
  }

  for (const [id, seenIn] of owner) {
    if (seenIn.length < 2) continue;
    // Looked at again: a job that spoold moved on while we listed new/, then
    // running/, then done/ was seen in two of them (found by a tester: fsck
    // said to remove one of a job that was only passing through).
    // Furthest along first (done, running, new): a job moving on between two
    // of these looks is then seen in one place only.
    const places: string[] = [];
    for (const p of [...seenIn].reverse()) if (await lstatIf(path.join(sp.root, p.startsWith('running/') ? `${p}/job` : p))) places.unshift(p);
    if (places.length > 1) report(places[0]!, `job ${id} is also in ${places.slice(1).join(', ')}`, 'a job has one state; keep the one furthest along (done, then running) and remove the others');
  }

  // tmp/
  if (!locked) {
    for (const f of await list(sp.tmp)) report(`tmp/${f}`, 'staged write never published (spoold is not running)', 'remove it (spoold removes it at its next start if the process that wrote it is gone, or once it is an hour old)');
  }

  // schedules/ and state/
  for (const f of await list(sp.schedules)) {
    if (f.startsWith('.')) continue;
    const rel = `schedules/${f}`;
    if (!isName(f)) { report(rel, 'not a job name', 'rename it to a job name'); continue; }
    const st = await lstatIf(sp.schedule(f));
    if (!st?.isFile()) { if (st && !st.isSymbolicLink()) report(rel, 'not a regular file', 'remove it'); continue; }
    const buf = await readChecked(sp.schedule(f), rel, report);
    if (buf === undefined) continue;
    try { parseSchedule(buf, rel, f); } catch (e) { report(rel, why(e), 'fix it, or let spoold move it to bad/'); }
  }
  for (const f of await list(sp.state)) {
    if (f.startsWith('.')) continue;
    const rel = `state/${f}`;
    if (!isName(f)) { report(rel, 'not a job name', 'remove it; state/ is spoold\'s, one file per schedule'); continue; }
    const buf = await readChecked(sp.scheduleState(f), rel, report);
    if (buf === undefined) continue;
    try { parseScheduleState(buf, rel); } catch (e) { report(rel, why(e), 'fix it by hand (spoold holds the schedule until then), or remove it (the schedule then fires at once)'); }
  }
  for (const f of await list(sp.platforms)) {
    if (!f.startsWith('.') && !isName(f)) report(`platforms/${f}`, 'not a platform name, so it drops no platform', 'rename it to the platform it should drop, or remove it');
  }

  // bad/
  const bad = new Set(await list(sp.bad));
  for (const f of bad) {
    if (f.endsWith('.why')) continue;
    if (!bad.has(`${f}.why`)) report(`bad/${f}`, 'no .why beside it', `write why it was set aside into bad/${f}.why`);
  }

  return problems > 0 ? EXIT_FAIL : EXIT_OK;
}
