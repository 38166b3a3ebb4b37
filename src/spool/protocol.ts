// protocol.ts: the worker protocol, the one wire contract between spoold and workerd.
//
// A connection carries frames: a 4-byte big-endian payload length, a 1-byte
// type, then the payload. The length is capped (MAX_FRAME; MAX_JOB_MSG for the
// job message workerd reads) before anything is allocated, so a peer can make
// the reader hold at most one frame. Types:
//   1 CONTROL   a JSON message (at most MAX_CONTROL bytes), see Msg below
//   2 CONSOLE   raw console bytes of the job the worker holds
//   3 ARTIFACTS raw bytes of the artifact tar stream of the job the worker holds
// The conversation (man/workerd.8):
//   worker: hello {v, name, platform, token?, once?, keys?, holding?}
//   server: welcome {v, heartbeatMs, ended?} | bye {why}
//   server: job {...} | resume {id, consoleOffset} | not-yours {id} | done {id} | idle {why}
//   worker: CONSOLE* ... [ended {id}] CONSOLE* artifacts {id} ARTIFACTS* manifest {id, files, more}+ finished {id, status}
//           (ended: the job's process has exited, sent only to a spoold whose welcome says ended: true)
//           (the manifest comes in parts, each a control message under MAX_CONTROL; a part without more: true ends it)
//   server: done {id}          (the result is in done/; the worker may forget the job)
//   either: ping, at least every heartbeatMs; silence for DEAD_AFTER heartbeats closes the connection
//   server: cancel {id}        (kill the job; report `canceled`)
//   worker: release {id, why, unstarted?}  (stopping: the job was killed unfinished, or never started; spoold requeues it now)


import { timingSafeEqual } from 'node:crypto';
export const PROTOCOL_VERSION = 1;
export const MAX_FRAME = 4 << 20;        // 4 MiB payload: the per-frame memory bound, but for the job message
export const MAX_CONTROL = 64 << 10;     // 64 KiB: what spoold accepts for one worker message (workers never send scripts)
// The job message, which only workerd reads: a job file is at most 1 MiB
// (headers.ts MAX_FILE), and JSON writes a control character (0x01-0x1f,
// allowed in a script) as 6 bytes, so its script may take 6 MiB escaped.
export const MAX_JOB_MSG = 8 << 20;
export const DEAD_AFTER = 3;               // heartbeats of silence before a peer is taken for dead
/** A secret shown equals the one kept (a token, an attempt's key), in time that does not depend on where they differ. */
export function sameSecret(shown: Buffer, kept: Buffer): boolean {
  return shown.length === kept.length && timingSafeEqual(shown, kept);
}

/** workerd's grace between the SIGTERM and the SIGKILL of a job's group; spoold allows for it (daemon.ts stuck()). */
export const KILL_GRACE_MS = 5_000;
export const MAX_MANIFEST_PART = 1000;  // entries in one manifest message (a worker also keeps each under MAX_CONTROL)
// One job's artifacts: with the entries' count, the bytes of their paths and
// link targets in all bound the two lists of them spoold holds (the
// manifest, and what the tar stream held).
export const MAX_ARTIFACT_FILES = 100_000;
export const MAX_ARTIFACT_NAMES = 16 << 20;
export const MAX_NAME = 1024;              // bytes in an artifact path, and in a link's target
/** What an artifact entry counts against MAX_ARTIFACT_NAMES. */
export const nameBytes = (e: { name: string; target?: string }): number => Buffer.byteLength(e.name) + (e.target ? Buffer.byteLength(e.target) : 0);

export const T_CONTROL = 1;
export const T_CONSOLE = 2;
export const T_ARTIFACTS = 3;

export interface ArtifactEntry { name: string; type: 'file' | 'directory' | 'symlink'; size: number; sha256?: string; target?: string }

export type Msg =
  | { t: 'hello'; v: number; name: string; platform: string; token?: string; once?: boolean; keys?: boolean; holding?: { id: string; name: string; attempt: number; finished: boolean; key?: string } }
  | { t: 'welcome'; v: number; heartbeatMs: number; ended?: boolean }
  | { t: 'bye'; why: string; code?: 'version' | 'token' | 'name' | 'platform' | 'protocol' }
  | { t: 'ping' }
  | { t: 'job'; id: string; name: string; platform: string; attempt: number; timeoutMs: number; network: boolean; script: string; key?: string }
  | { t: 'resume'; id: string; consoleOffset: number }
  | { t: 'not-yours'; id: string; why: string }
  | { t: 'cancel'; id: string }
  | { t: 'idle'; why: string }
  | { t: 'ended'; id: string }
  | { t: 'artifacts'; id: string }
  | { t: 'manifest'; id: string; files: ArtifactEntry[]; more?: boolean }
  | { t: 'finished'; id: string; status: string; started: string; finished: string }
  | { t: 'done'; id: string }
  | { t: 'release'; id: string; why: string; unstarted?: boolean };

export type Frame = { type: typeof T_CONTROL; msg: Msg } | { type: typeof T_CONSOLE | typeof T_ARTIFACTS; data: Buffer };

export class ProtocolError extends Error {
  constructor(why: string) { super(why); this.name = 'ProtocolError'; }
}

const header = (type: number, len: number): Buffer => {
  const h = Buffer.allocUnsafe(5);
  h.writeUInt32BE(len, 0);
  h[4] = type;
  return h;
};

/** Encode a control message as one frame. Throws on a message over MAX_CONTROL, or MAX_JOB_MSG for a job (a bug: a job file never makes one). */
export function encodeMsg(msg: Msg): Buffer {
  const body = Buffer.from(JSON.stringify(msg));
  const max = msg.t === 'job' ? MAX_JOB_MSG : MAX_CONTROL;
  if (body.length > max) throw new ProtocolError(`message ${msg.t} is ${body.length} bytes, over ${max}`);
  return Buffer.concat([header(T_CONTROL, body.length), body]);
}

/** The 5-byte header of a data frame; the caller writes the payload after it (no copy). */
export function dataHeader(type: typeof T_CONSOLE | typeof T_ARTIFACTS, len: number): Buffer {
  if (len > MAX_FRAME) throw new ProtocolError(`data frame of ${len} bytes is over ${MAX_FRAME}`);
  return header(type, len);
}

const STR = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;
const INT = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Check a decoded JSON value against Msg; ProtocolError if it is not one. */
export function checkMsg(v: unknown): Msg {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolError('control frame is not a JSON object');
  const m = v as Record<string, unknown>;
  const ok = ((): boolean => {
    switch (m.t) {
      case 'hello': {
        const h = m.holding as Record<string, unknown> | undefined;
        return INT(m.v) && STR(m.name, 256) && STR(m.platform, 256) && (m.token === undefined || STR(m.token, 4096)) && (m.once === undefined || typeof m.once === 'boolean') && (m.keys === undefined || typeof m.keys === 'boolean')
          && (h === undefined || (typeof h === 'object' && h !== null && STR(h.id, 64) && STR(h.name, 256) && INT(h.attempt) && typeof h.finished === 'boolean' && (h.key === undefined || STR(h.key, 64))));
      }
      case 'welcome': return INT(m.v) && INT(m.heartbeatMs) && (m.ended === undefined || typeof m.ended === 'boolean');
      case 'bye': return STR(m.why);
      case 'ping': return true;
      case 'job': return STR(m.id, 64) && STR(m.name, 256) && STR(m.platform, 256) && INT(m.attempt) && INT(m.timeoutMs) && typeof m.network === 'boolean' && STR(m.script, MAX_FRAME) && (m.key === undefined || STR(m.key, 64));
      case 'resume': return STR(m.id, 64) && INT(m.consoleOffset);
      case 'not-yours': return STR(m.id, 64) && STR(m.why);
      case 'cancel': case 'artifacts': case 'done': case 'ended': return STR(m.id, 64);
      case 'idle': return STR(m.why);
      case 'release': return STR(m.id, 64) && STR(m.why, 600) && (m.unstarted === undefined || typeof m.unstarted === 'boolean');
      case 'manifest': return STR(m.id, 64) && (m.more === undefined || typeof m.more === 'boolean') && Array.isArray(m.files) && m.files.length <= MAX_MANIFEST_PART && m.files.every((f: unknown) => {
        const e = f as Record<string, unknown>;
        return typeof e === 'object' && e !== null && STR(e.name, MAX_NAME) && (e.type === 'file' || e.type === 'directory' || e.type === 'symlink')
          && INT(e.size) && (e.sha256 === undefined || (STR(e.sha256, 64) && /^[0-9a-f]{64}$/.test(e.sha256))) && (e.target === undefined || STR(e.target, MAX_NAME));
      });
      case 'finished': return STR(m.id, 64) && STR(m.status, 600) && STR(m.started, 64) && STR(m.finished, 64);
      default: return false;
    }
  })();
  if (!ok) throw new ProtocolError(`malformed control message${typeof m.t === 'string' ? ` '${m.t.slice(0, 20)}'` : ''}`);
  return m as unknown as Msg;
}

/**
 * A read under this many bytes is copied into the reader's own buffer (a tail
 * of TAIL bytes, filled in turn) rather than held as a view: each view keeps
 * the whole buffer it was read into alive, 64 KiB for a socket read, so a
 * peer sending one byte per write made spoold hold 64 KiB per byte of an
 * unfinished frame (60 connections took it from 54 to 537 MiB). Larger reads
 * are held as they are: their buffer is at most 4 times their size. A tail is
the size of the largest small read, so that an idle connection keeps 16 KiB.
 */
const SMALL_READ = 16 << 10;
const TAIL = SMALL_READ;

/**
 * Splits a byte stream into frames. push() takes a chunk and returns the frames
 * it completes; at most one partial frame (<= MAX_FRAME, or maxControl if
 * larger, + 5 bytes) is held.
 * Every check on a frame (type, length, data before hello) is made at its
 * header, before its bytes are buffered. A data frame's bytes are returned as
 * they come, as one or more frames of its type whose payloads together are the
 * frame's: each a view into the chunk its bytes came in (no copy), none held
 * here. Console and artifact bytes are a stream, so the split does not matter
 * to the reader. Assembling 1-4 MiB frames from 64 KiB socket reads cost
 * spoold a fresh buffer and a copy of every byte; holding a frame's views until
 * its end held up to 4 MiB per connection out of reach of spoold's console
 * budget (twelve workers streaming took it to 158 MiB: npm run bench,
 * W3-many). An empty data frame is returned as one empty payload, so it is
 * checked like any other.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private tail: Buffer | undefined;
  private tailUsed = 0;
  /** The data frame being read: its type, and how many of its bytes are still to come. */
  private dataType: typeof T_CONSOLE | typeof T_ARTIFACTS = T_CONSOLE;
  private dataLeft = 0;
  /** maxControl: the largest control frame accepted; spoold uses MAX_CONTROL, workerd MAX_JOB_MSG (job scripts). */
  constructor(private readonly maxControl = MAX_CONTROL) {}
  /** The largest data frame accepted; spoold sets 0 until the hello is done, so a stranger cannot make it hold 4 MiB. */
  maxData = MAX_FRAME;

  push(chunk: Buffer): Frame[] {
    if (chunk.length < SMALL_READ) this.append(chunk);
    else this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.dataLeft > 0) {
        if (this.buffered === 0) break;
        const piece = this.takeSome(this.dataLeft);
        this.dataLeft -= piece.length;
        out.push({ type: this.dataType, data: piece });
        continue;
      }
      if (this.buffered < 5) break;
      const head = this.peek(5);
      const len = head.readUInt32BE(0);
      const type = head[4]!;
      const max = Math.max(MAX_FRAME, this.maxControl);
      if (len > max) throw new ProtocolError(`frame length ${len} is over the limit of ${max}`);
      if (type !== T_CONTROL && type !== T_CONSOLE && type !== T_ARTIFACTS) throw new ProtocolError(`unknown frame type ${type}`);
      if (type === T_CONTROL && len > this.maxControl) throw new ProtocolError(`control frame of ${len} bytes is over the limit of ${this.maxControl}`);
      if (type !== T_CONTROL && len > this.maxData) throw new ProtocolError(this.maxData === 0 ? 'data frame before hello' : `data frame of ${len} bytes is over the limit of ${this.maxData}`);
      if (type === T_CONTROL && this.buffered < 5 + len) break;
      this.take(5);
      if (type === T_CONTROL) {
        const payload = this.take(len);
        let v: unknown;
        try { v = JSON.parse(payload.toString('utf8')); } catch { throw new ProtocolError('control frame is not valid JSON'); }
        out.push({ type: T_CONTROL, msg: checkMsg(v) });
        continue;
      }
      this.dataType = type as typeof T_CONSOLE | typeof T_ARTIFACTS;
      if (len === 0) out.push({ type: this.dataType, data: Buffer.alloc(0) });
      this.dataLeft = len;
    }
    return out;
  }

  /**
   * Copy a small read to the free room of the tail, and hold it as a view of
   * that (one view with the bytes before it, when those are the tail's last).
   * Bytes handed out earlier stay where they are: the tail is only written
   * past them.
   */
  private append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (!this.tail || this.tailUsed + chunk.length > this.tail.length) { this.tail = Buffer.allocUnsafeSlow(TAIL); this.tailUsed = 0; }
    const start = this.tailUsed;
    chunk.copy(this.tail, start);
    this.tailUsed += chunk.length;
    const k = this.chunks.length - 1;
    const last = this.chunks[k];
    if (last && last.buffer === this.tail.buffer && last.byteOffset + last.length === start) this.chunks[k] = this.tail.subarray(last.byteOffset, this.tailUsed);
    else this.chunks.push(this.tail.subarray(start, this.tailUsed));
  }

  /** Does this reader hold bytes of `buffer` (those of its unfinished frame)? */
  holds(buffer: ArrayBufferLike): boolean { return this.chunks.some((c) => c.buffer === buffer); }

  /** The unfinished frame is a data frame of which some bytes are in: a delivery under way, however slow its link. */
  get readingData(): boolean { return this.dataLeft > 0; }

  /** Bytes of an unfinished frame, held or still to come: at end of stream, a truncated frame. */
  get pending(): number { return this.buffered + this.dataLeft; }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    // A header split across chunks: copy only its own bytes.
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = c.copy(out, off, 0, Math.min(c.length, n - off));
      off += k;
      if (off === n) break;
    }
    return out;
  }

  /** Up to n bytes from the first buffered chunk, without copying. */
  private takeSome(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length > n) { this.chunks[0] = first.subarray(n); this.buffered -= n; return first.subarray(0, n); }
    this.chunks.shift();
    this.buffered -= first.length;
    return first;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length > n) { this.chunks[0] = first.subarray(n); return first.subarray(0, n); }
    if (first.length === n) { this.chunks.shift(); return first; }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift(); else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
