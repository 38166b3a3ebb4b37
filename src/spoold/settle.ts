// settle.ts: waiting out a file that someone may be writing in place.
//
// People write spool files with `cat > file`, an editor or `sed -i`, not
// always in tmp/ and moved in. Read at the wrong moment, such a file is empty
// or half-written. So a file that is not ready to be taken as it is (it does
// not parse, or it is one spoold would rename: a job under a name of its
// writer's choosing) is taken only once it has settled: not changed for
// SETTLE_MS since spoold first saw this version (its size and mtime), by
// spoold's own clock. Not by the mtime: a writer whose clock is behind (a
// file server) would make every file look settled. Until then it is looked
// at again when it may have settled.

/** How long a file must stay unchanged to be taken as written. */
export const SETTLE_MS = 2_000;

interface Version { mtimeMs: number; size: number }

export class Settle {
  /** The version of each unsettled file seen, and when spoold first saw it. */
  private seen = new Map<string, Version & { since: number }>();
  private timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  /** `again(name)` is called when a file found unsettled may have settled. */
  constructor(private readonly again: (name: string) => void) {}

  /**
   * Has name, whose lstat is `st`, stayed unchanged for SETTLE_MS? If not,
   * `again(name)` comes when it may have (once, however often this asks).
   */
  settled(name: string, st: Version, now = Date.now()): boolean {
    const seen = this.seen.get(name);
    const since = seen && seen.mtimeMs === st.mtimeMs && seen.size === st.size ? seen.since : now;
    const wait = since + SETTLE_MS - now;
    if (wait <= 0) { this.forget(name); return true; }
    this.seen.set(name, { mtimeMs: st.mtimeMs, size: st.size, since });
    if (!this.timers.has(name) && !this.stopped) {
      this.timers.set(name, setTimeout(() => { this.timers.delete(name); this.again(name); }, wait + 50));
    }
    return false;
  }

  /** name was taken, rejected or is gone. */
  forget(name: string): void { this.seen.delete(name); }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
