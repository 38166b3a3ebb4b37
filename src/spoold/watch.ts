// watch.ts: doorbells on the directories people and bctl write.
//
// An event never carries truth: it only says "look again". new/ events name
// the file to read (the fast path for dispatch); schedules/, platforms/,
// templates/ and state/ events trigger a rescan of that directory. done/ is
// never watched (it grows without bound, one inotify watch per file;
// DEPENDENCIES.md 1), and a periodic rescan in main.ts covers any event the
// kernel dropped.
//
// new/ is watched with fs.watch, not chokidar: chokidar re-reads and lstats
// the whole directory on every event, so a burst of N jobs cost O(N^2) lstats
// on spoold's event loop (profiled: 300 dropped jobs ran at 11 jobs/s, most of
// the main thread in readdirp's lstat). fs.watch gives the file name at once
// (DEPENDENCIES.md 1: p50 0.18 ms) and one inotify watch; the kernel may drop
// events in a burst without saying so, which the rescan on start, every
// RESCAN_MS and on any watcher error covers. The small, hand-edited
// directories keep chokidar, with its atomic-write handling.

import chokidar from 'chokidar';
import path from 'node:path';
import fs, { type Stats } from 'node:fs';

/** A watcher: `ready` once it sees every change (a change before it may be missed: the scan after it covers that). */
export interface Watcher { close: () => Promise<void>; ready: Promise<void> }

/** chokidar on one small, hand-edited directory: each event names a file to look at. */
export function watchDir(dir: string, onName: (name: string) => void, onError: (e: unknown) => void): Watcher {
  const w = chokidar.watch(dir, {
    depth: 0, ignoreInitial: true, atomic: false, awaitWriteFinish: false, persistent: true,
    ignored: (p: string, st?: Stats) => p !== dir && (path.basename(p).startsWith('.') || (st !== undefined && st.isDirectory())),
  });
  const hit = (p: string) => { if (path.dirname(p) === dir) onName(path.basename(p)); };
  w.on('add', hit).on('change', hit).on('unlink', hit).on('error', onError);
  const ready = new Promise<void>((resolve) => w.once('ready', () => resolve()));
  return { close: async () => w.close(), ready };
}

/** fs.watch on one directory: each event names a file to look at; errors ask for a rescan. */
export function watchNew(dir: string, onName: (name: string) => void, onError: (e: unknown) => void): Watcher {
  const w = fs.watch(dir, { persistent: true }, (_ev, name) => {
    if (!name) onError(new Error('event without a file name'));
    else if (!name.startsWith('.')) onName(name);   // dot files are others' temporaries (rsync's, an editor's swap file)
  });
  w.on('error', onError);
  return { close: async () => w.close(), ready: Promise.resolve() };   // inotify watches from the call on
}
