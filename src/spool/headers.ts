// headers.ts: the `key: value` header block, a blank line, then a body.
//
// This is the one syntax of every spool file a person reads or writes (jobs,
// schedules, results, schedule state), parsed strictly so that a typo is an
// error that names the line rather than a silently ignored setting:
//   - the file is valid UTF-8, has no NUL byte and no CR, and is at most MAX_FILE bytes;
//   - each header line is `key: value`, at most MAX_LINE bytes, keys unique;
//   - a value may end in a comment: whitespace, '#', anything (so ` # note`);
//   - a blank line ends the headers; everything after it is the body, verbatim.
// formatHeaders() is the exact inverse for values it accepts.

import { SpoolError } from './errors.js';

export const MAX_FILE = 1 << 20;   // 1 MiB: a job script, not a data set
export const MAX_LINE = 4096;      // one header line

export interface Header { key: string; value: string; line: number }
export interface HeaderBlock { headers: Header[]; body: string; bodyLine: number }

const KEY_RE = /^[a-z][a-z0-9-]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

function bad(source: string, line: number | undefined, what: string, hint: string): SpoolError {
  return new SpoolError('SPOOL_BAD_FILE', what, { path: source, ...(line === undefined ? {} : { line }), hint });
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode file bytes, refusing what no spool file may hold (`max`: a larger size limit, for a part checked again whole). */
export function decodeFile(buf: Uint8Array, source: string, max = MAX_FILE): string {
  if (buf.length > max) throw bad(source, undefined, `file is ${buf.length} bytes, over the limit of ${max}`, `cut it by ${buf.length - max} bytes or more: keep job scripts small, and fetch large inputs from the script`);
  const nul = buf.indexOf(0);
  if (nul >= 0) throw bad(source, lineAt(buf, nul), 'NUL byte in file', 'spool files are text: remove the NUL byte');
  let text: string;
  try { text = utf8.decode(buf); } catch {
    throw bad(source, badUtf8Line(buf), 'file is not valid UTF-8', 'save it as UTF-8');
  }
  if (text.charCodeAt(0) === 0xfeff) throw bad(source, 1, 'file starts with a byte order mark', 'save it as UTF-8 without BOM');
  const cr = text.indexOf('\r');
  if (cr >= 0) throw bad(source, text.slice(0, cr).split('\n').length, 'carriage return (CRLF line ending)', 'save the file with Unix line endings (LF), e.g. with dos2unix');
  return text;
}

/** The first line of buf that is not valid UTF-8 (a line at a time: no sequence spans a newline). */
function badUtf8Line(buf: Uint8Array): number | undefined {
  let line = 1;
  for (let start = 0; start < buf.length; line++) {
    const nl = buf.indexOf(10, start);
    const end = nl < 0 ? buf.length : nl;
    try { utf8.decode(buf.subarray(start, end)); } catch { return line; }
    start = end + 1;
  }
  return undefined;
}

function lineAt(buf: Uint8Array, offset: number): number {
  let n = 1;
  for (let i = 0; i < offset; i++) if (buf[i] === 10) n++;
  return n;
}

/** Parse a header block. `text` must come from decodeFile (or be as clean). */
export function parseHeaders(text: string, source: string): HeaderBlock {
  const headers: Header[] = [];
  const seen = new Map<string, number>();
  let pos = 0;
  let line = 0;
  while (pos < text.length) {
    line++;
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    const raw = text.slice(pos, end);
    pos = nl < 0 ? text.length : nl + 1;
    if (raw === '') return { headers, body: text.slice(pos), bodyLine: line + 1 };
    if (Buffer.byteLength(raw) > MAX_LINE) throw bad(source, line, `header line is over ${MAX_LINE} bytes`, 'shorten the value');
    const m = /^([^:\s]+):(?:[ \t]+(.*))?$/.exec(raw);
    if (!m) {
      const hint = raw.startsWith('#!') ? 'put a blank line between the headers and the script'
        : raw.startsWith('#') ? "headers take no comment lines (a comment follows a value: 'key: value # why'); remove it, or put a blank line before it if the script starts there"
          : "write headers as 'key: value', and end them with a blank line";
      throw bad(source, line, `expected 'key: value', got ${JSON.stringify(raw.slice(0, 60))}`, hint);
    }
    const key = m[1]!;
    if (!KEY_RE.test(key)) throw bad(source, line, `bad header key '${key.slice(0, 60)}'`, 'keys are lowercase words like timeout or var.NAME');
    const prev = seen.get(key);
    if (prev !== undefined) throw bad(source, line, `duplicate header '${key}' (first on line ${prev})`, 'keep one of them');
    seen.set(key, line);
    const value = (m[2] ?? '').replace(/(^|[ \t]+)#.*$/, '').trim();
    headers.push({ key, value, line });
  }
  // End of file inside the header block: fine for header-only files.
  return { headers, body: '', bodyLine: line + 1 };
}

/** Format headers and body; the exact inverse of parseHeaders for what it accepts. */
export function formatHeaders(headers: ReadonlyArray<readonly [string, string]>, body = ''): string {
  let out = '';
  for (const [key, value] of headers) {
    if (!KEY_RE.test(key)) throw new Error(`internal error: bad header key ${key}`);
    if (/[\n\r\0]/.test(value) || /(^|[ \t])#/.test(value) || value !== value.trim()) {
      throw new SpoolError('SPOOL_BAD_VALUE', `header ${key}: value ${JSON.stringify(value.slice(0, 60))} cannot be written`,
        { hint: "values are one line, without leading or trailing blanks and without ' #'" });
    }
    out += value === '' ? `${key}:\n` : `${key}: ${value}\n`;
  }
  return body === '' ? out : `${out}\n${body}`;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * An RFC 3339 time, strictly: Date.parse alone takes '1' as 2001 and rolls
 * 2026-02-30 over into March. Years before 1970 are refused (no spool is older).
 */
export function parseTime(s: string): Date | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > new Date(Date.UTC(y, mo, 0)).getUTCDate() || h > 23 || mi > 59 || sec > 59) return undefined;
  let off = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]), om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    off = (m[9] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  const ms = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  return new Date(Date.UTC(y, mo - 1, d, h, mi, sec, ms) - off);
}
