// conn.ts: one worker connection: frames in and out, heartbeats, the hello.
//
// Everything a worker sends is checked here or in daemon.ts before it touches
// the spool: frames are capped (protocol.ts), the hello is validated (version,
// token, name, platform), and any violation closes this connection with a
// logged reason while spoold goes on serving the others. Silence for
// DEAD_AFTER heartbeats closes it too; while we hold the socket paused for
// backpressure, the silence is ours and does not count.

import net from 'node:net';
import { FrameReader, encodeMsg, ProtocolError, sameSecret, PROTOCOL_VERSION, DEAD_AFTER, MAX_CONTROL, MAX_FRAME, T_CONSOLE, T_ARTIFACTS, type Frame, type Msg } from '../spool/protocol.js';
import { isName } from '../spool/paths.js';
import { Slabs } from './slabs.js';

export interface ConnOwner {
  heartbeatMs: number;
  token: Buffer | undefined;
  onHello(c: Conn, hello: Extract<Msg, { t: 'hello' }>): void;
  /** Handle one frame. A returned promise is awaited before the next frame is handled. */
  onFrame(c: Conn, f: Frame): void | Promise<void>;
  onClose(c: Conn, why: string): void;
}

let nextConnId = 1;

export class Conn {
  readonly cid = nextConnId++;
  readonly since = new Date();
  name = '';
  platform = '';
  hello = false;
  closed = false;
  /** workerd --once: one job, then no more (it is about to exit). */
  once = false;
  /** It keeps each job's key and shows it to re-attach (a workerd older than keys does not). */
  keys = false;
  /** performance.now() when bytes of an unfinished data frame last came (daemon.ts stuck()). */
  dataAt = 0;
  private reader = new FrameReader(MAX_CONTROL);
  private slabs = new Slabs();
  private readonly readerHolds = (buffer: ArrayBufferLike) => this.reader.holds(buffer);
  readonly sock: net.Socket;
  private lastRx = Date.now();
  private heldPaused = 0;
  private timer: NodeJS.Timeout;
  private helloTimer: NodeJS.Timeout;

  /** `accepted`: a socket as the server accepted it, not yet reading (pauseOnConnect). */
  constructor(accepted: net.Socket, private readonly owner: ConnOwner, readonly peer: string) {
    const sock = this.sock = readIntoSlabs(accepted, this.slabs, (chunk) => this.onData(chunk));
    sock.setNoDelay(true);
    this.reader.maxData = 0;   // no data frame before the hello (a stranger makes us hold nothing)
    // The hello must be complete within DEAD_AFTER heartbeats, however the bytes drip in.
    this.helloTimer = setTimeout(() => { if (!this.hello) this.close(`no hello within ${DEAD_AFTER * owner.heartbeatMs} ms`); }, DEAD_AFTER * owner.heartbeatMs);
    sock.on('error', (e) => this.close(`socket error: ${e.message}`));
    sock.on('close', () => this.close(this.reader.pending > 0 ? 'connection closed inside a frame (truncated)' : 'connection closed'));
    this.timer = setInterval(() => this.tick(), owner.heartbeatMs);
  }

  send(msg: Msg): void {
    if (this.closed) return;
    this.sock.write(encodeMsg(msg));
  }

  /** Stop reading until `resume` is called: backpressure from a slow disk. */
  hold(): () => void {
    this.heldPaused++;
    this.sock.pause();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.heldPaused--;
      this.lastRx = Date.now();
      if (this.heldPaused === 0 && !this.closed) this.sock.resume();
    };
  }

  close(why: string, bye?: Extract<Msg, { t: 'bye' }>): void {
    if (this.closed) return;
    if (bye) { try { this.sock.write(encodeMsg(bye)); } catch { /* closing anyway */ } }
    this.closed = true;
    this.slabs.close();
    clearInterval(this.timer);
    clearTimeout(this.helloTimer);
    this.sock.end();
    setTimeout(() => this.sock.destroy(), 1000).unref();
    this.owner.onClose(this, why);
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    const dead = DEAD_AFTER * this.owner.heartbeatMs;
    if (this.heldPaused === 0 && now - this.lastRx > dead) {
      this.close(`no heartbeat for ${dead} ms`);
      return;
    }
    // A peer that pings but reads nothing would keep what we wrote to it (a
    // job of up to 8 MiB) in our memory for ever: what waits to be sent must
    // go down, or be gone, within the same time as a heartbeat must come.
    const unsent = this.sock.writableLength;
    if (unsent === 0 || unsent < this.unsent) this.drainedAt = now;
    this.unsent = unsent;
    if (now - this.drainedAt > dead) {
      this.close(`read nothing of the last ${unsent} bytes sent to it for ${dead} ms`);
      return;
    }
    this.send({ t: 'ping' });
  }
  private unsent = 0;
  private drainedAt = Date.now();

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastRx = Date.now();
    try {
      for (const f of this.reader.push(chunk)) {
        if (f.type === T_CONSOLE) this.slabs.hold(f.data);
        else if (f.type === T_ARTIFACTS) this.slabs.lend(f.data);
        this.pending.push(f);
      }
    } catch (e) {
      this.protocolError(e as Error);
      return;
    }
    this.slabs.pin(this.readerHolds);
    if (this.reader.readingData) this.dataAt = performance.now();
    void this.drain();
  }

  /**
   * A console frame's payload is done with: written, or dropped. Every console
   * frame handed to onFrame must be given back here, once: until then, the
   * memory it was read into is not reused (slabs.ts). Artifact frames are the
   * receiver's to keep.
   */
  release(data: Buffer): void { this.slabs.release(data); }

  // Frames are handled strictly in order. A handler that returns a promise
  // (setting up the artifact directory, checking artifacts, finalizing) holds
  // the socket paused until it settles, so `pending` never holds more than what
  // arrived in the chunks read before the pause.
  private pending: Frame[] = [];
  private draining = false;
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.pending.length > 0 && !this.closed) {
        const f = this.pending.shift()!;
        if (!this.hello) { this.onFirst(f); continue; }
        if (f.type === 1 && f.msg.t === 'ping') continue;
        const p = this.owner.onFrame(this, f);
        if (p) {
          const release = this.hold();
          try { await p; } finally { release(); }
        }
      }
    } catch (e) {
      this.pending = [];
      this.protocolError(e as Error);
    } finally {
      this.draining = false;
    }
  }

  protocolError(e: Error): void {
    const why = e instanceof ProtocolError ? e.message : `internal error: ${e.stack ?? e.message}`;
    this.close(`protocol violation: ${why}`, { t: 'bye', why, code: 'protocol' });
  }

  private onFirst(f: Frame): void {
    if (f.type !== 1 || f.msg.t !== 'hello') throw new ProtocolError('the first message must be hello');
    const h = f.msg;
    if (h.v !== PROTOCOL_VERSION) {
      this.close(`hello with protocol version ${h.v}`, { t: 'bye', why: `protocol version ${h.v} is not supported; this spoold speaks ${PROTOCOL_VERSION}`, code: 'version' });
      return;
    }
    if (this.owner.token) {
      if (!sameSecret(Buffer.from(h.token ?? ''), this.owner.token)) {
        this.close(`${h.token === undefined ? 'no' : 'wrong'} token from worker ${JSON.stringify(h.name.slice(0, 64))}`, { t: 'bye', why: 'wrong or missing token (see --token-file)', code: 'token' });
        return;
      }
    }
    if (!isName(h.name)) { this.close(`bad worker name ${JSON.stringify(h.name.slice(0, 64))}`, { t: 'bye', why: 'bad worker name: use A-Z a-z 0-9 . _ + -', code: 'name' }); return; }
    if (!isName(h.platform)) { this.close(`bad platform ${JSON.stringify(h.platform.slice(0, 64))}`, { t: 'bye', why: 'bad platform name: use A-Z a-z 0-9 . _ + -', code: 'platform' }); return; }
    this.name = h.name;
    this.platform = h.platform;
    this.once = h.once === true;
    this.keys = h.keys === true;
    this.hello = true;
    clearTimeout(this.helloTimer);
    this.reader.maxData = MAX_FRAME;
    this.owner.onHello(this, h);
  }
}

/**
 * The accepted socket's handle, in a socket that reads into `slabs` (slabs.ts
 * says why). Node offers onread (a caller's buffer for each read) only when a
 * socket is made, so the accepted one gives up its handle before it reads a
 * byte (the server accepted it paused), and is destroyed without it, which
 * closes nothing but tells the server it is gone.
 */
function readIntoSlabs(accepted: net.Socket, slabs: Slabs, onData: (chunk: Buffer) => void): net.Socket {
  const a = accepted as unknown as { _handle: unknown };
  const handle = a._handle;
  if (!handle) {
    // A node without the private field (this is written for node 20): read as
    // node does, a fresh buffer per read, which the slabs do not know and leave alone.
    accepted.on('data', onData);
    accepted.resume();
    return accepted;
  }
  a._handle = null;
  accepted.destroy();
  return new net.Socket({
    handle,
    readable: true,
    writable: true,
    onread: { buffer: () => slabs.next(), callback: (n: number, buf: Uint8Array) => { onData(slabs.got(n, buf as Buffer)); } },
  } as net.SocketConstructorOpts);
}
