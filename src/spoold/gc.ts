// gc.ts: collect the read buffers that artifact transfers leave behind.
//
// Artifact bytes are read from each worker's socket into fresh 64 KiB buffers
// (slabs.ts says why they cannot be reused: tar-stream keeps views of them).
// Each is garbage a moment later, but V8 counts buffers as external memory,
// which starts no collection until some 64 MiB more of it has piled up: six
// transfers at once took spoold's peak RSS over 100 MiB (W4-many of npm run
// bench), though what they held live was under 10 MiB (measured: bytes in the
// receivers' windows against process.memoryUsage().arrayBuffers).
//
// So spoold collects on its own, paced by the artifact bytes it receives: a
// young-generation collection every MINOR_EVERY bytes (the buffers of the
// last few MiB die young), and a full one every MAJOR_EVERY (those that were
// live at a young collection were promoted, and only a full one frees them).
// Measured (W4-many, 6 transfers at once): peak RSS 95-105 MiB before,
// 88-93 after. W4 (one 512 MiB artifact) is under the bound either way:
// 80-86 MiB without, 80-82 with, and its throughput the same within the
// machine's noise (alternating runs). Young every 8 MiB and full every 128:
// W4-many 86-90, but W4 lost some 5-10%. Young ones every 4 MiB promoted most buffers, and RSS went to 130
// MiB; full ones every 8 MiB kept it at 77 but cost a sixth of W4-many's
// throughput. A full collection stops spoold for some milliseconds (its
// heap is ~16 MiB): at 250 MB/s, one a second.

import v8 from 'node:v8';
import vm from 'node:vm';

const MINOR_EVERY = 16 << 20;
const MAJOR_EVERY = 256 << 20;

/** gc() is a full collection; gc({ type: 'minor' }) a young one ({ type: 'major' } is a young one too on node 20, found in review). */
type Gc = (options?: { type: 'minor' }) => void;

/**
 * V8's gc(), which --expose-gc gives a context made after it is set (node
 * has no other way to ask for a collection); undefined if this node will not.
 */
const gc: Gc | undefined = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    const f: unknown = vm.runInNewContext('gc');
    return typeof f === 'function' ? (f as Gc) : undefined;
  } catch { return undefined; }
})();

let sinceMinor = 0;
let sinceMajor = 0;

/** n artifact bytes came in from a worker: collect, when that is due. */
export function artifactBytesIn(n: number): void {
  if (!gc) return;
  sinceMinor += n;
  sinceMajor += n;
  if (sinceMajor >= MAJOR_EVERY) { sinceMajor = 0; sinceMinor = 0; gc(); }
  else if (sinceMinor >= MINOR_EVERY) { sinceMinor = 0; gc({ type: 'minor' }); }
}
