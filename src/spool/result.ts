// result.ts: a finished job's result file and its status strings.
//
// status is one of:  exited N | signalled N | stopped N | timeout | canceled | lost | failed: WHY
// `exited 0` is the only success. Exit codes and signals stay distinct (a
// signal is never folded into an exit code, as 128+N or as "code null").

import { formatHeaders, parseHeaders, decodeFile } from './headers.js';
import { SpoolError } from './errors.js';
import { checkId, checkName, checkPlatform } from './paths.js';
import { formatDuration, parseDuration } from './duration.js';

export type Status =
  | { kind: 'exited'; code: number }
  | { kind: 'signalled'; signal: number }
  | { kind: 'stopped'; signal: number }
  | { kind: 'timeout' }
  | { kind: 'canceled' }
  | { kind: 'lost' }
  | { kind: 'failed'; why: string };

const UNPRINTABLE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const escapeChar = (c: string): string => { const n = c.charCodeAt(0); return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`; };

export function formatStatus(s: Status): string {
  switch (s.kind) {
    case 'exited': return `exited ${s.code}`;
    case 'signalled': return `signalled ${s.signal}`;
    case 'stopped': return `stopped ${s.signal}`;
    // A header value (headers.ts): one line, no '#' after a blank (a comment), none first, no blank at either end.
    // Other control characters (escape sequences a terminal would obey, a
    // worker's or a job's) and bidirectional overrides are written \xNN / \uNNNN.
    case 'failed': return `failed: ${s.why.replace(/[\r\n\0]+/g, ' ').replace(/(^|\s)#+/g, '$1').replace(UNPRINTABLE, escapeChar).trim().slice(0, 500).trim() || 'unknown'}`;
    default: return s.kind;
  }
}

export function parseStatus(s: string): Status | undefined {
  let m: RegExpExecArray | null;
  if ((m = /^exited (\d{1,3})$/.exec(s)) && Number(m[1]) <= 255) return { kind: 'exited', code: Number(m[1]) };
  if ((m = /^signalled (\d{1,2})$/.exec(s))) return { kind: 'signalled', signal: Number(m[1]) };
  if ((m = /^stopped (\d{1,2})$/.exec(s))) return { kind: 'stopped', signal: Number(m[1]) };
  if (s === 'timeout' || s === 'canceled' || s === 'lost') return { kind: s };
  if ((m = /^failed: (.+)$/.exec(s))) return { kind: 'failed', why: m[1]! };
  return undefined;
}

export function isSuccess(s: Status): boolean {
  return s.kind === 'exited' && s.code === 0;
}

export interface Result {
  id: string;
  name: string;
  platform: string;
  worker: string;          // the worker that reported it; '' when none did (canceled while queued or away, lost, template error)
  attempt: number;
  queued: Date;
  started: Date | undefined;
  finished: Date;
  status: Status;
}

const KEYS = ['id', 'name', 'platform', 'worker', 'attempt', 'queued', 'started', 'finished', 'duration', 'status'];

export function formatResult(r: Result): string {
  const started = r.started ?? r.finished;
  return formatHeaders([
    ['id', r.id], ['name', r.name], ['platform', r.platform], ['worker', r.worker], ['attempt', String(r.attempt)],
    ['queued', r.queued.toISOString()], ['started', r.started ? r.started.toISOString() : ''],
    ['finished', r.finished.toISOString()], ['duration', formatDuration(Math.max(0, r.finished.getTime() - started.getTime()))],
    ['status', formatStatus(r.status)],
  ]);
}

export function parseResult(buf: Uint8Array | string, source: string): Result {
  const text = typeof buf === 'string' ? buf : decodeFile(buf, source);
  const { headers } = parseHeaders(text, source);
  const h = new Map<string, { value: string; line: number }>();
  for (const x of headers) {
    if (!KEYS.includes(x.key)) throw new SpoolError('SPOOL_BAD_FILE', `unknown header '${x.key}'`, { path: source, line: x.line, hint: `known: ${KEYS.join(', ')}` });
    h.set(x.key, x);
  }
  const get = (k: string): { value: string; line: number } => {
    const v = h.get(k);
    if (!v) throw new SpoolError('SPOOL_BAD_FILE', `missing header '${k}'`, { path: source, hint: 'a result has ' + KEYS.join(', ') });
    return v;
  };
  const date = (k: string, optional = false): Date | undefined => {
    const v = get(k);
    if (optional && v.value === '') return undefined;
    const d = new Date(v.value);
    if (Number.isNaN(d.getTime())) throw new SpoolError('SPOOL_BAD_VALUE', `bad time '${v.value}' in ${k}`, { path: source, line: v.line, hint: 'write RFC 3339, e.g. 2026-11-27T18:00:00Z' });
    return d;
  };
  const st = get('status');
  const status = parseStatus(st.value);
  if (!status) throw new SpoolError('SPOOL_BAD_VALUE', `bad status '${st.value}'`, { path: source, line: st.line, hint: 'one of: exited N, signalled N, stopped N, timeout, canceled, lost, failed: WHY' });
  if (h.has('duration')) parseDuration(get('duration').value === '0s' ? '1ms' : get('duration').value, 'duration');
  const worker = get('worker').value;
  return {
    id: checkId(get('id').value, source), name: checkName(get('name').value, 'job name', source),
    platform: checkPlatform(get('platform').value, source), worker: worker === '' ? '' : checkName(worker, 'worker name', source),
    attempt: Number(get('attempt').value) || 0,
    queued: date('queued')!, started: date('started', true), finished: date('finished')!, status,
  };
}
