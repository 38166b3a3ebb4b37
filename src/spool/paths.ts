// paths.ts: the spool layout. The only module that joins spool paths.
//
// Every name that becomes a path component is checked here first: job names,
// platforms and ids. A name that fails the check never reaches the filesystem;
// callers get a SpoolError to report, and code that passes an unchecked name
// to a path function crashes (assertName), because that is a bug, not input.

import path from 'node:path';
import { SpoolError } from './errors.js';

export const NAME_MAX = 64;
/** What a name (of a job, platform, worker or template) may be, for messages. */
export const NAME_RULE = `1-${NAME_MAX} of A-Z a-z 0-9 . _ + -, not starting with . or -, and not "latest"`;
/** Why a job may not be named latest. */
const LATEST_WHY = ' (done/NAME/latest is the link to the last result)';

// Job names and platforms: letters, digits, '.', '_', '-', '+'; not starting
// with '.' or '-' (hidden files, flags); at most NAME_MAX bytes. This rules
// out '/', '..', NUL, whitespace and control characters by construction.
const NAME_RE = /^[A-Za-z0-9_+][A-Za-z0-9._+-]{0,63}$/;
// Ids are UUIDv7 in lowercase hex (ids.ts).
const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isName(s: string): boolean {
  return NAME_RE.test(s) && s !== 'latest';
}
export function isId(s: string): boolean {
  return ID_RE.test(s);
}

export function checkName(s: string, what = 'job name', source?: string): string {
  if (!isName(s)) {
    throw new SpoolError('SPOOL_BAD_NAME', `bad ${what} ${JSON.stringify(s.length > 80 ? s.slice(0, 80) + '...' : s)}`, {
      ...(source === undefined ? {} : { path: source }),
      hint: `use ${NAME_RULE}${s === 'latest' && /job|file/.test(what) ? LATEST_WHY : ''}`,
    });
  }
  return s;
}
export function checkPlatform(s: string, source?: string): string {
  return checkName(s, 'platform', source);
}
export function checkId(s: string, source?: string): string {
  if (!isId(s)) {
    throw new SpoolError('SPOOL_BAD_NAME', `bad job id ${JSON.stringify(s.slice(0, 80))}`, {
      ...(source === undefined ? {} : { path: source }),
      hint: 'an id looks like 0190b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f (see bctl info)',
    });
  }
  return s;
}

function assertName(s: string): void {
  if (!isName(s)) throw new Error(`internal error: unchecked name ${JSON.stringify(s)} reached paths.ts`);
}
function assertId(s: string): void {
  if (!isId(s)) throw new Error(`internal error: unchecked id ${JSON.stringify(s)} reached paths.ts`);
}

export const DIRS = ['tmp', 'schedules', 'new', 'running', 'done', 'bad', 'platforms', 'templates', 'state', 'workers'] as const;

/** Paths inside one spool. */
export class SpoolPaths {
  readonly root: string;
  readonly tmp: string;
  readonly schedules: string;
  readonly new: string;
  readonly running: string;
  readonly done: string;
  readonly bad: string;
  readonly platforms: string;
  readonly templates: string;
  /** spoold's own per-schedule state (last fired, next due); never a person's file */
  readonly state: string;
  /** one status file per connected worker, written by spoold for bctl info */
  readonly workers: string;
  readonly socket: string;
  readonly lock: string;
  readonly pid: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.tmp = path.join(this.root, 'tmp');
    this.schedules = path.join(this.root, 'schedules');
    this.new = path.join(this.root, 'new');
    this.running = path.join(this.root, 'running');
    this.done = path.join(this.root, 'done');
    this.bad = path.join(this.root, 'bad');
    this.platforms = path.join(this.root, 'platforms');
    this.templates = path.join(this.root, 'templates');
    this.state = path.join(this.root, 'state');
    this.workers = path.join(this.root, 'workers');
    this.socket = path.join(this.root, 'spoold.sock');
    this.lock = path.join(this.root, 'spoold.lock');
    this.pid = path.join(this.root, 'spoold.pid');
  }

  /** The root and every directory of DIRS in it, root first: what ensureSpool (layout.ts) makes. */
  dirs(): string[] {
    return [this.root, ...DIRS.map((d) => path.join(this.root, d))];
  }

  /** A path relative to the spool root, for messages: "new/0190...". */
  rel(p: string): string {
    const r = path.relative(this.root, p);
    return r.startsWith('..') ? p : r;
  }

  // The names below are checked, so a plain `dir/name` is the path: path.join's
  // normalizing was a twentieth of spoold's main thread in W1 (perf).
  schedule(name: string): string { assertName(name); return `${this.schedules}/${name}`; }
  scheduleState(name: string): string { assertName(name); return `${this.state}/${name}`; }
  queued(id: string): string { assertId(id); return `${this.new}/${id}`; }
  runningDir(id: string): string { assertId(id); return `${this.running}/${id}`; }
  runningFile(id: string, file: RunningFile): string { return `${this.runningDir(id)}/${file}`; }
  doneName(name: string): string { assertName(name); return `${this.done}/${name}`; }
  doneDir(name: string, id: string): string { assertId(id); return `${this.doneName(name)}/${id}`; }
  latest(name: string): string { return `${this.doneName(name)}/latest`; }
  platform(p: string): string { assertName(p); return `${this.platforms}/${p}`; }
  worker(name: string): string { assertName(name); return `${this.workers}/${name}`; }
  /**
   * A unique staging path in tmp/: TAG.PID.MS.RANDOM. The pid lets spoold tell
   * a leftover of a dead writer from a file a live bctl is about to publish
   * (stagingPid); tag says what it is for, for a person reading tmp/.
   */
  staging(tag: string): string {
    return `${this.tmp}/${tag.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 10)}`;
  }
}

/** The pid of the process that staged tmp/NAME, when NAME has our staging shape. */
export function stagingPid(name: string): number | undefined {
  const m = /\.(\d+)\.(\d{13})\.[a-z0-9]+(\.\d+)?$/.exec(name);   // (.N: a temporary of write-file-atomic, which spool writes used before; its leftovers are still known)
  return m ? Number(m[1]) : undefined;
}

/** Files inside running/ID/ and done/NAME/ID/. */
export type RunningFile = 'job' | 'lease' | 'console.log' | 'result' | 'artifacts' | 'SHA256SUMS' | 'cancel';
