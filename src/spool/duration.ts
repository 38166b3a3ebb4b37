// duration.ts: durations as people write them: 90s, 15m, 1h, 1h30m, 2d, 500ms.

import { SpoolError } from './errors.js';

const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+)(ms|s|m|h|d)/y;

/** Parse a duration into milliseconds; SpoolError on anything else. */
export function parseDuration(s: string, what = 'duration'): number {
  let total = 0;
  PART.lastIndex = 0;
  let pos = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) break;
    total += Number(m[1]) * UNIT[m[2]!]!;
    pos = PART.lastIndex;
  }
  if (s === '' || pos !== s.length || !Number.isSafeInteger(total) || total <= 0 || total > 366 * UNIT.d!) {
    throw new SpoolError('SPOOL_BAD_VALUE', `bad ${what} ${JSON.stringify(s.slice(0, 40))}`,
      { hint: 'write a positive duration up to 366d like 90s, 15m, 1h, 1h30m or 2d' });
  }
  return total;
}

/** Format milliseconds as the shortest duration parseDuration reads back to the same value. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  let out = '';
  let rest = Math.round(ms);
  for (const u of ['d', 'h', 'm', 's', 'ms'] as const) {
    const n = Math.floor(rest / UNIT[u]!);
    if (n > 0) { out += `${n}${u}`; rest -= n * UNIT[u]!; }
  }
  return out;
}
