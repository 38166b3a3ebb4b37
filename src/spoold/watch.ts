// watch.ts: chokidar doorbells on the directories people and bctl write.
//
// An event never carries truth: it only says "look again". new/ events name
// the file to read (the fast path for dispatch); schedules/, platforms/ and
// templates/ events trigger a rescan of that directory. done/ is never watched
// (it grows without bound, one inotify watch per file; DEPENDENCIES.md 1), and
// a periodic rescan in main.ts covers any event the kernel dropped.

import chokidar, { type FSWatcher } from 'chokidar';
import path from 'node:path';
import type { Stats } from 'node:fs';

export function watchDir(dir: string, onName: (name: string) => void, onError: (e: unknown) => void): FSWatcher {
  const w = chokidar.watch(dir, {
    depth: 0, ignoreInitial: true, atomic: false, awaitWriteFinish: false, persistent: true,
    ignored: (p: string, st?: Stats) => p !== dir && (path.basename(p).startsWith('.') || (st !== undefined && st.isDirectory())),
  });
  const hit = (p: string) => { if (path.dirname(p) === dir) onName(path.basename(p)); };
  w.on('add', hit).on('change', hit).on('unlink', hit).on('error', onError);
  return w;
}
