// log.ts: one line per event on stderr, for people and grep:
//   spoold: finished id=0190... name=hello status="exited 0" duration=3s
// Values with blanks, quotes or anything but printable ASCII are JSON-quoted,
// so every line splits cleanly, and with every control character escaped
// (C1 and U+2028/9 too, which JSON leaves as they are): a value a worker
// chose cannot move the cursor or clear the screen of whoever reads the log.
//
// A log reader that goes away (the pipe to a supervisor or to `tee` closed)
// costs the log, not the daemon: stderr's write errors are ignored. Left to
// the uncaught-exception handler, each one logged a line, whose write failed
// in turn: spoold spun at 100% CPU.
process.stderr.on('error', () => {});

export function log(event: string, fields: Record<string, string | number | undefined> = {}): void {
  let line = `spoold: ${event}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    line += ` ${k}=${/^[\x21\x23-\x3c\x3e-\x7e]+$/.test(s) ? s : quote(s)}`;
  }
  process.stderr.write(`${line}\n`);
}

/**
 * A condition that lasts (a file spoold cannot read, a state it cannot write)
 * is logged once per cause, not at every look: `first` says whether this
 * cause of key is news, and remembers it until `forget` (the condition is
 * over) or another cause. Also the set of keys whose condition holds (`has`).
 */
export class LogOnce {
  private said = new Map<string, string>();
  /** True when key has not been logged with this cause: the caller logs it now. */
  first(key: string, cause = ''): boolean {
    if (this.said.get(key) === cause) return false;
    this.said.set(key, cause);
    return true;
  }
  has(key: string): boolean { return this.said.has(key); }
  forget(key: string): void { this.said.delete(key); }
  /** Forget the keys not in `present` (files gone). */
  keepOnly(present: ReadonlySet<string>): void { for (const k of this.said.keys()) if (!present.has(k)) this.said.delete(k); }
}

function quote(s: string): string {
  return JSON.stringify(s).replace(/[\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
