// job.ts: schedule files (schedules/NAME) and queued jobs (new/ID, running/ID/job).
//
// Both are a header block, a blank line and the script body (headers.ts).
// A schedule says what to run and when; a queued job is one instance of it (or
// a one-off submission) with an id, a queue time, an origin and an attempt count.
// Parsing is strict: every key is known, every value checked, and a template
// schedule's body must be empty (the template supplies it).

import { decodeFile, formatHeaders, parseHeaders, parseTime, type Header } from './headers.js';
import { SpoolError } from './errors.js';
import { checkName, checkPlatform, isId } from './paths.js';
import { formatDuration, parseDuration } from './duration.js';
import { checkSchedule } from './schedule.js';
import { idTime, newId } from './ids.js';

export const DEFAULT_TIMEOUT_MS = 3_600_000;   // 1 h, as robur builder
export const DEFAULT_RETRIES = 2;              // re-queued twice on worker loss, then `lost`
export const MAX_RETRIES = 100;
export const EXECUTE_PRIORITY = 10;            // bctl execute: ahead of the queue

export const ORIGINS = ['schedule', 'execute', 'submit'] as const;
export type Origin = (typeof ORIGINS)[number];

/** What a schedule and a job have in common: what to run and how. */
export interface Spec {
  name: string;
  platform: string | undefined;   // a template schedule without platform runs on every templated platform
  timeout: number | undefined;    // ms; DEFAULT_TIMEOUT_MS when absent
  retries: number | undefined;    // re-queues on worker loss; DEFAULT_RETRIES when absent
  priority: number;               // higher runs first; 0 by default
  network: boolean;               // the sandbox gives the job network access
  template: string | undefined;   // templates/TEMPLATE.template.PLATFORM supplies the body
  vars: Record<string, string>;   // var.NAME: VALUE, for %%NAME%% in the template
  body: string;
}

export interface Schedule extends Spec {
  schedule: string;               // @hourly @daily @weekly never, or 5 cron fields
  tz: string;                     // IANA zone for cron fields; UTC by default
}

declare const parsed: unique symbol;
export interface Job extends Spec {
  platform: string;
  id: string | undefined;         // undefined for a file dropped into new/ under a non-id name: spoold adopts it
  queued: Date | undefined;
  origin: Origin;
  attempt: number;                // attempts started before this one
}
/** A job that came out of parseJob or makeJob: the only kind state.ts accepts. */
export type ParsedJob = Job & { readonly [parsed]: true };

const SPEC_KEYS = ['name', 'platform', 'timeout', 'retries', 'priority', 'network', 'template'];
export const SCHEDULE_KEYS = [...SPEC_KEYS, 'schedule', 'tz'];
export const JOB_KEYS = ['id', ...SPEC_KEYS, 'queued', 'origin', 'attempt'];

type Kind = 'schedule' | 'job';

function fail(source: string, h: Header | undefined, what: string, hint: string): never {
  throw new SpoolError('SPOOL_BAD_FILE', what, { path: source, ...(h ? { line: h.line } : {}), hint });
}

function int(h: Header, source: string, min: number, max: number): number {
  if (!/^-?\d{1,9}$/.test(h.value) || Number(h.value) < min || Number(h.value) > max) {
    fail(source, h, `bad ${h.key} '${h.value.slice(0, 40)}'`, `write a whole number from ${min} to ${max}`);
  }
  return Number(h.value);
}

function rewrap<T>(source: string, h: Header, f: () => T): T {
  try { return f(); } catch (e) {
    if (e instanceof SpoolError && e.path === undefined) {
      throw new SpoolError(e.code, e.message.replace(/; .*$/, ''), { path: source, line: h.line, ...(e.hint ? { hint: e.hint } : {}) });
    }
    throw e;
  }
}

function parseSpec(kind: Kind, text: string, source: string) {
  const { headers, body, bodyLine } = parseHeaders(text, source);
  const known = kind === 'schedule' ? SCHEDULE_KEYS : JOB_KEYS;
  const h = new Map<string, Header>();
  const vars: Record<string, string> = {};
  for (const x of headers) {
    if (x.key.startsWith('var.')) { Object.defineProperty(vars, x.key.slice(4), { value: x.value, enumerable: true, writable: true, configurable: true }); continue; }
    if (!known.includes(x.key)) {
      const hint = `known: ${known.join(', ')}, var.NAME`;
      fail(source, x, `unknown header '${x.key}'`, hint);
    }
    h.set(x.key, x);
  }
  // The headers end at the first blank line: one before them, or among them,
  // leaves headers in the script, and the file would be refused for missing a
  // header it has.
  const stray = /^([a-z][a-z0-9-]*): /.exec(body.split('\n', 1)[0]!);
  if (stray && known.includes(stray[1]!) && !h.has(stray[1]!)) {
    fail(source, { key: '', value: '', line: bodyLine - 1 }, `blank line before the header '${stray[1]}' (line ${bodyLine})`,
      'the headers end at the first blank line, which goes between them and the script: remove this one');
  }
  const name = h.get('name');
  const platform = h.get('platform');
  const template = h.get('template');
  if (template) checkName(template.value, 'template name', `${source}:${template.line}`);
  // A schedule names a template instead of a body; a queued job always carries
  // its script (for a template job, the expanded template, kept with template: for the record).
  if (kind === 'schedule' && template && body.trim() !== '') fail(source, template, 'a template job has a script body too', 'remove the body or the template header');
  if (kind === 'job' && template && body.trim() === '') {
    fail(source, template, 'a queued job carries its script: a template is expanded when a schedule fires or by bctl execute, not in new/', 'put the script after a blank line, or make this a schedule');
  }
  if (!template && body.trim() === '') fail(source, undefined, `no script after the headers (line ${bodyLine})`, kind === 'job' ? 'add a blank line and the script' : 'add a blank line and the script, or a template: header');
  if (Object.keys(vars).length > 0 && !template) fail(source, headers.find((x) => x.key.startsWith('var.')), 'var.NAME without template:', 'add template: NAME, or remove the var. headers');
  const network = h.get('network');
  if (network && network.value !== 'yes' && network.value !== 'no') fail(source, network, `bad network '${network.value}'`, 'write yes or no');
  const timeout = h.get('timeout');
  const spec: Spec = {
    name: name ? checkName(name.value, 'job name', `${source}:${name.line}`) : '',
    platform: platform ? checkPlatform(platform.value, `${source}:${platform.line}`) : undefined,
    timeout: timeout ? rewrap(source, timeout, () => parseDuration(timeout.value, 'timeout')) : undefined,
    retries: h.has('retries') ? int(h.get('retries')!, source, 0, MAX_RETRIES) : undefined,
    priority: h.has('priority') ? int(h.get('priority')!, source, -1000, 1000) : 0,
    network: network?.value === 'yes',
    template: template?.value,
    vars,
    body,
  };
  return { spec, h };
}

/** Parse schedules/NAME. `fileName` is the file's name, which must equal `name:` when given. */
export function parseSchedule(buf: Uint8Array | string, source: string, fileName?: string): Schedule {
  const text = typeof buf === 'string' ? buf : decodeFile(buf, source);
  const { spec, h } = parseSpec('schedule', text, source);
  if (spec.name === '') {
    if (fileName === undefined) fail(source, undefined, "missing header 'name'", 'add name: NAME');
    spec.name = checkName(fileName, 'file name', source);
  } else if (fileName !== undefined && fileName !== spec.name) {
    fail(source, h.get('name'), `name '${spec.name}' differs from the file name '${fileName}'`, `rename the file to schedules/${spec.name} or fix the header`);
  }
  if (!spec.platform && !spec.template) fail(source, undefined, "missing header 'platform'", 'add platform: PLATFORM (only template jobs may omit it)');
  const sched = h.get('schedule');
  if (!sched) fail(source, undefined, "missing header 'schedule'", 'add schedule: @daily (or @hourly, @weekly, never, or 5 cron fields)');
  const tzh = h.get('tz');
  const tz = tzh?.value ?? 'UTC';
  rewrap(source, tzh ?? sched, () => checkSchedule(sched.value, tz));
  return { ...spec, schedule: sched.value, tz };
}

/** Parse a queued job, new/FILE or running/ID/job. `fileName` is the file's name in new/. */
export function parseJob(buf: Uint8Array | string, source: string, fileName?: string): ParsedJob {
  const text = typeof buf === 'string' ? buf : decodeFile(buf, source);
  const { spec, h } = parseSpec('job', text, source);
  if (spec.name === '') fail(source, undefined, "missing header 'name'", 'add name: NAME');
  if (!spec.platform) fail(source, undefined, "missing header 'platform'", 'add platform: PLATFORM');
  const idh = h.get('id');
  let id: string | undefined = idh?.value;
  if (id !== undefined && !isId(id)) fail(source, idh, `bad id '${id.slice(0, 60)}'`, 'remove the id header; spoold assigns one');
  if (fileName !== undefined && isId(fileName)) {
    if (id !== undefined && id !== fileName) fail(source, idh, `id ${id} differs from the file name ${fileName}`, 'remove the id header or rename the file');
    id = fileName;
  } else if (fileName !== undefined) {
    id = undefined; // dropped by hand under another name; spoold renames it to a fresh id
  }
  const qh = h.get('queued');
  let queued: Date | undefined = id ? idTime(id) : undefined;
  if (qh) {
    queued = parseTime(qh.value);
    if (!queued) fail(source, qh, `bad queued time '${qh.value.slice(0, 60)}'`, 'write RFC 3339, e.g. 2026-11-27T18:00:00Z, or remove it');
  }
  const oh = h.get('origin');
  if (oh && !(ORIGINS as readonly string[]).includes(oh.value)) fail(source, oh, `bad origin '${oh.value}'`, `one of ${ORIGINS.join(', ')}`);
  const job: Job = {
    ...spec, platform: spec.platform!, id, queued,
    origin: (oh?.value as Origin | undefined) ?? 'submit',
    attempt: h.has('attempt') ? int(h.get('attempt')!, source, 0, MAX_RETRIES + 1) : 0,
  };
  return job as ParsedJob;
}

/** Build a job from checked parts (bctl submit, schedule instances); validated by round trip. */
export function makeJob(j: Job & { id: string; queued: Date }): ParsedJob & { id: string } {
  const text = formatJob(j);
  return parseJob(text, `new/${j.id}`, j.id) as ParsedJob & { id: string };
}

/** A one-off job (bctl submit, scripts, tests): defaults for everything not given, a fresh id. */
export function submission(j: Pick<Job, 'name' | 'platform' | 'body'> & Partial<Job>): ParsedJob & { id: string } {
  return makeJob({
    timeout: undefined, retries: undefined, priority: 0, network: false, template: undefined, vars: {}, origin: 'submit', attempt: 0,
    ...j, id: j.id ?? newId(), queued: j.queued ?? new Date(),
  });
}

function specHeaders(s: Spec): Array<[string, string]> {
  const out: Array<[string, string]> = [['name', s.name]];
  if (s.platform !== undefined) out.push(['platform', s.platform]);
  if (s.timeout !== undefined) out.push(['timeout', formatDuration(s.timeout)]);
  if (s.retries !== undefined) out.push(['retries', String(s.retries)]);
  if (s.priority !== 0) out.push(['priority', String(s.priority)]);
  if (s.network) out.push(['network', 'yes']);
  if (s.template !== undefined) out.push(['template', s.template]);
  for (const [k, v] of Object.entries(s.vars)) out.push([`var.${k}`, v]);
  return out;
}

export function formatSchedule(s: Schedule): string {
  const hs = specHeaders(s);
  hs.splice(s.platform !== undefined ? 2 : 1, 0, ['schedule', s.schedule]);
  if (s.tz !== 'UTC') hs.splice(s.platform !== undefined ? 3 : 2, 0, ['tz', s.tz]);
  return formatHeaders(hs, s.template ? '' : s.body);
}

/**
 * d.toISOString(), spelled out for years 0-9999: V8 reads the local time zone
 * (/etc/localtime, ICU) on the first toISOString of a process although the
 * answer is UTC, ~1 ms of every bctl submit. Other years (the +YYYYYY form)
 * and invalid dates (RangeError) still go to toISOString.
 */
function isoTime(d: Date): string {
  const y = d.getUTCFullYear();
  if (!(y >= 0 && y <= 9999)) return d.toISOString();
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(y, 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}Z`;
}

export function formatJob(j: Job): string {
  const hs: Array<[string, string]> = [];
  if (j.id !== undefined) hs.push(['id', j.id]);
  hs.push(...specHeaders(j));
  if (j.queued !== undefined) hs.push(['queued', isoTime(j.queued)]);
  hs.push(['origin', j.origin], ['attempt', String(j.attempt)]);
  // An instantiated template job keeps template: and var. for the record, with its expanded body.
  return formatHeaders(hs, j.body);
}

export function timeoutOf(s: Spec): number { return s.timeout ?? DEFAULT_TIMEOUT_MS; }
export function retriesOf(s: Spec): number { return s.retries ?? DEFAULT_RETRIES; }
