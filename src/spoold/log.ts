// log.ts: one line per event on stderr, for people and grep:
//   spoold: finished id=0190... name=hello status="exited 0" duration=3s
// Values with blanks or quotes are JSON-quoted so every line splits cleanly.
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
    line += ` ${k}=${/^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)}`;
  }
  process.stderr.write(`${line}\n`);
}
