// test/fakeworker.ts: a worker that speaks the protocol by hand, for tests that
// feed spoold hostile input. Not a suite (no .test.ts suffix).
//
// It gives a test byte-level control: raw bytes, frames with any length and
// type, control frames holding any JSON (checkMsg is not applied to what we
// send), and crafted tar streams (hostileTar). What spoold sends back is
// decoded with the real FrameReader and kept in `received`; a frame spoold
// should never send is kept in `readerError`. Writes after spoold hung up are
// swallowed, because hanging up is what these tests provoke.

import net from 'node:net';
import os from 'node:os';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import { FrameReader, encodeMsg, dataHeader, MAX_FRAME, PROTOCOL_VERSION, T_CONTROL, T_CONSOLE, T_ARTIFACTS, type Msg, type ArtifactEntry } from '../src/spool/protocol.js';

export type JobMsg = Extract<Msg, { t: 'job' }>;

export class FakeWorker {
  readonly received: Msg[] = [];
  readerError: string | undefined;
  closed = false;
  /** Resolves when the socket is closed (by either side). */
  readonly gone: Promise<void>;
  private reader = new FrameReader(MAX_FRAME);
  private pinger: NodeJS.Timeout | undefined;
  private wake: (() => void)[] = [];

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (b: Buffer) => {
      try { for (const f of this.reader.push(b)) if (f.type === T_CONTROL) this.received.push(f.msg); }
      catch (e) { this.readerError = (e as Error).message; }
      this.poke();
    });
    sock.on('error', () => { /* EPIPE/ECONNRESET after spoold hung up: close follows */ });
    this.gone = new Promise((resolve) => sock.on('close', () => {
      this.closed = true;
      if (this.pinger) clearInterval(this.pinger);
      this.poke();
      resolve();
    }));
  }

  static connect(socketPath: string): Promise<FakeWorker> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath);
      s.once('connect', () => { s.off('error', reject); resolve(new FakeWorker(s)); });
      s.once('error', reject);
    });
  }

  private poke(): void { const w = this.wake; this.wake = []; for (const f of w) f(); }

  /** Raw bytes, as they are. */
  raw(b: Buffer | Uint8Array): void { if (!this.sock.destroyed && this.sock.writable) this.sock.write(b); }

  /** A frame header (length, type) with no check of either. */
  header(len: number, type: number): Buffer {
    const h = Buffer.alloc(5);
    h.writeUInt32BE(len >>> 0, 0);
    h[4] = type & 0xff;
    return h;
  }

  /** A control frame holding any JSON value (or any text, when `text` is a string). */
  controlFrame(v: unknown, text?: string): Buffer {
    const body = Buffer.from(text ?? JSON.stringify(v));
    return Buffer.concat([this.header(body.length, T_CONTROL), body]);
  }

  control(v: unknown): void { this.raw(this.controlFrame(v)); }
  send(m: Msg): void { this.raw(encodeMsg(m)); }

  /** Data frames of `type` carrying `data`, split at MAX_FRAME, as one write. */
  dataFrames(type: typeof T_CONSOLE | typeof T_ARTIFACTS, data: Buffer): Buffer {
    const parts: Buffer[] = [];
    for (let o = 0; o < data.length || (o === 0 && data.length === 0); o += MAX_FRAME) {
      const c = data.subarray(o, o + MAX_FRAME);
      parts.push(dataHeader(type, c.length), c);
      if (data.length === 0) break;
    }
    return Buffer.concat(parts);
  }

  data(type: typeof T_CONSOLE | typeof T_ARTIFACTS, data: Buffer): void { this.raw(this.dataFrames(type, data)); }

  hello(over: Record<string, unknown> = {}): void {
    this.control({ t: 'hello', v: PROTOCOL_VERSION, name: 'fake', platform: 'evil-1', ...over });
  }

  /** Answer spoold's heartbeat, so that only what the test sends decides the connection's fate. */
  keepAlive(everyMs: number): void {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = setInterval(() => this.send({ t: 'ping' }), everyMs);
  }

  /** Stop the pings of keepAlive (a frame written in pieces must not have pings between them). */
  quiet(): void {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = undefined;
  }

  /** The first message of type t received (now or within ms); throws naming what did arrive. */
  async expect<T extends Msg['t']>(t: T, ms = 10_000): Promise<Extract<Msg, { t: T }>> {
    return await this.expectOneOf([t], ms) as Extract<Msg, { t: T }>;
  }

  /** The first message of any of the types ts received (now or within ms); throws naming what did arrive. */
  async expectOneOf(ts: Msg['t'][], ms = 10_000): Promise<Msg> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.received.find((x) => ts.includes(x.t));
      if (m) return m;
      if (this.closed || Date.now() > end) {
        throw new Error(`no '${ts.join("' or '")}' from spoold (${this.closed ? 'connection closed' : 'timed out'}); got: ${this.received.map((x) => x.t).join(', ') || 'nothing'}`);
      }
      await this.waitEvent(end - Date.now());
    }
  }

  /** True once spoold closed the connection, false if it was still open after ms. */
  async closedWithin(ms: number): Promise<boolean> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => { t = setTimeout(() => r(false), ms); });
    const r = await Promise.race([this.gone.then(() => true), timeout]);
    clearTimeout(t);
    return r;
  }

  get bye(): Extract<Msg, { t: 'bye' }> | undefined { return this.received.find((m) => m.t === 'bye') as Extract<Msg, { t: 'bye' }> | undefined; }

  private waitEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      this.wake.push(() => { clearTimeout(t); resolve(); });
    });
  }

  destroy(): void {
    if (this.pinger) clearInterval(this.pinger);
    this.sock.destroy();
  }
}

// ---- tar streams --------------------------------------------------------

export interface TarEntry { header: Partial<tar.Header> & { name: string }; body?: Buffer }

/** Pack entries with tar-stream as given (tar-stream itself does not check names or types). */
export async function packTar(entries: TarEntry[], finalize = true): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const ended = new Promise<void>((resolve, reject) => { pack.on('end', () => resolve()); pack.on('error', reject); });
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry(e.header, e.body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }
  if (finalize) { pack.finalize(); await ended; } else { await new Promise((r) => setImmediate(r)); }
  return Buffer.concat(chunks);
}

/** Rewrite the size field of the ustar header at `off` (and its checksum). */
export function patchSize(buf: Buffer, off: number, size: number): void {
  buf.write(size.toString(8).padStart(11, '0') + '\0', off + 124, 12, 'latin1');
  buf.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += buf[i]!;
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', off + 148, 8, 'latin1');
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface Hostile {
  tar: Buffer;
  manifest: ArtifactEntry[];
  /** What the failed status must say (a part of it). */
  expect: RegExp;
}

/**
 * The hostile archives of the brief (issue 5 item 3). `escapeDir` is a directory
 * outside the spool where an absolute path would land (the symlink points at
 * os.tmpdir() itself); `tag` makes the
 * names unique to this run so that a leftover of another run is not mistaken
 * for an escape.
 */
export async function hostileTars(escapeDir: string, tag: string): Promise<Record<string, () => Promise<Hostile>>> {
  const file = (name: string, body: Buffer): TarEntry => ({ header: { name, type: 'file', size: body.length, mode: 0o644 }, body });
  const ok = Buffer.from('fine\n');
  const fine: ArtifactEntry = { name: 'fine.txt', type: 'file', size: ok.length, sha256: sha256(ok) };
  const evil = Buffer.from('evil\n');
  const evilEntry = (name: string): ArtifactEntry => ({ name, type: 'file', size: evil.length, sha256: sha256(evil) });
  const pathRe = (name: string) => new RegExp(`artifact path ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} rejected`);
  return {
    'an absolute path': async () => {
      const name = `${escapeDir}/abs-${tag}`;
      return { tar: await packTar([file('fine.txt', ok), file(name, evil)]), manifest: [fine, evilEntry(name)], expect: pathRe(name) };
    },
    '../evil': async () => {
      const name = `../../../../evil-${tag}`;
      return { tar: await packTar([file('fine.txt', ok), file(name, evil)]), manifest: [fine, evilEntry(name)], expect: pathRe(name) };
    },
    'a/../../evil': async () => {
      const name = `a/../../evil-${tag}`;
      return { tar: await packTar([file(name, evil)]), manifest: [evilEntry(name)], expect: pathRe(name) };
    },
    'a pax header path ../evil-pax': async () => {
      const name = `../evil-pax-${tag}`;
      const t = await packTar([{ header: { name: 'innocent.txt', type: 'file', size: evil.length, pax: { path: name } }, body: evil }]);
      return { tar: t, manifest: [evilEntry('innocent.txt')], expect: pathRe(name) };
    },
    'a symlink l -> /tmp, then l/evil': async () => {
      const tmp = os.tmpdir();
      const t = await packTar([{ header: { name: 'l', type: 'symlink', linkname: tmp } }, file(`l/evil-${tag}`, evil)]);
      return { tar: t, manifest: [{ name: 'l', type: 'symlink', size: 0, target: tmp }, evilEntry(`l/evil-${tag}`)], expect: /artifact l\/evil-\S+ rejected: l exists and is not a directory/ };
    },
    'a hard link to /etc/passwd': async () => {
      const t = await packTar([file('fine.txt', ok), { header: { name: 'passwd', type: 'link', linkname: '/etc/passwd' } }]);
      return { tar: t, manifest: [fine, { name: 'passwd', type: 'file', size: 0 }], expect: /artifact passwd rejected: type link/ };
    },
    'a character device': async () => {
      const t = await packTar([{ header: { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 } }]);
      return { tar: t, manifest: [], expect: /artifact null rejected: type character-device/ };
    },
    'a fifo': async () => {
      const t = await packTar([{ header: { name: 'pipe', type: 'fifo', mode: 0o644 } }]);
      return { tar: t, manifest: [], expect: /artifact pipe rejected: type fifo/ };
    },
    'a pax header over 4 MiB': async () => {
      const name = 'x'.repeat(5 << 20);
      const t = await packTar([{ header: { name, type: 'file', size: evil.length }, body: evil }]);
      return { tar: t, manifest: [], expect: /Header exceeds max size/ };
    },
    'a 3000-byte name': async () => {
      const name = `${'d/'.repeat(1000)}${'n'.repeat(1000)}`;
      const t = await packTar([{ header: { name, type: 'file', size: evil.length }, body: evil }]);
      return { tar: t, manifest: [], expect: /artifact path "d\/d\/.*rejected/ };
    },
    'a file with more bytes than its header says': async () => {
      const body = Buffer.alloc(1500, 0x41);
      const t = await packTar([file('long.bin', body)]);
      patchSize(t, 0, 10);            // the header says 10; 1500 follow, so the next "header" is file bytes
      return { tar: t, manifest: [{ name: 'long.bin', type: 'file', size: body.length, sha256: sha256(body) }], expect: /Invalid tar header/ };
    },
    'a manifest that does not match what was sent': async () => {
      return { tar: await packTar([file('fine.txt', ok)]), manifest: [{ ...fine, sha256: sha256(evil) }], expect: /artifacts do not match their manifest/ };
    },
    // Small files are received whole and large ones streamed (src/spool/tar.ts SMALL_FILE): both cut.
    'a stream cut inside a small file': async () => {
      const body = Buffer.alloc(5000, 0x41);
      const t = await packTar([file('cut.bin', body)]);
      return { tar: t.subarray(0, 512 + 2000), manifest: [{ name: 'cut.bin', type: 'file', size: body.length, sha256: sha256(body) }], expect: /artifact cut\.bin is incomplete: (2000 of 5000 bytes \()?the artifact stream was cut off/ };
    },
    'a stream cut inside a large file': async () => {
      const body = Buffer.alloc(300_000, 0x41);
      const t = await packTar([file('cut.bin', body)]);
      return { tar: t.subarray(0, 512 + 200_000), manifest: [{ name: 'cut.bin', type: 'file', size: body.length, sha256: sha256(body) }], expect: /artifact cut\.bin is incomplete: (\d+ of 300000 bytes \()?the artifact stream was cut off/ };
    },
    'a stream cut at an entry boundary (no end blocks)': async () => {
      const t = await packTar([file('fine.txt', ok), file('two.txt', ok)]);
      const cut = t.subarray(0, 1024);   // the first entry only
      return { tar: cut, manifest: [fine, { ...fine, name: 'two.txt' }], expect: /artifacts do not match their manifest: announced but not received: file two\.txt/ };
    },
  };
}
