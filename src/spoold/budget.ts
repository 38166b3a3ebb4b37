// budget.ts: a byte budget shared by many connections (spoold's consoles).
//
// take() counts bytes in and says whether the caller must wait; give() counts
// them out. Callers held for the budget go on together once it is half free,
// so that they do not go on one frame at a time.

export class Budget {
  private used = 0;
  private waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Count n bytes in: a promise to wait on when the budget is now over its limit, else undefined. */
  take(n: number): Promise<void> | undefined {
    this.used += n;
    if (this.used <= this.limit) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** n bytes taken earlier are done with (written, or dropped). */
  give(n: number): void {
    this.used -= n;
    if (this.waiters.length === 0 || this.used > this.limit / 2) return;
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }
}
