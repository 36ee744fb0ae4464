/**
 * Persistent dirty tracking for the replicated file system (native/src/rfs/dirty.{h,cc}): which
 * paths, and which zones inside files, may differ from the peer's copy. The sender marks a zone
 * before each local data change (activity log) and clears marks once the secondary acknowledged
 * them; while ALONE every change is marked and kept until reintegration copied it. Marks are on
 * disk before a mark call returns (one fdatasync per new zone, shared by concurrent callers; none
 * for an already-dirty zone), survive crashes, and never need a scan of the tree.
 *
 * The JS calls are synchronous (they are small); the hot path is the C++ API used by native
 * threads, which get the tracker through {@link DirtyTracker.external}.
 */
import { binding } from './native.js';

/** Options of {@link openDirtyTracker}. @public */
export interface DirtyTrackerInit {
  /** Directory of the persistent state (created if missing), e.g. `<stateDir>/rfs/<module>/<n>`. One tracker per directory. */
  dir: string;
  /** Zone size in bytes: a power of two from 4096 to 1 GiB (default 1 MiB). Must match the state's. */
  zoneBytes?: number;
  /** Compact (rewrite the snapshot, start a new log) when the log exceeds this many bytes (default 64 MiB). */
  compactBytes?: number;
}

/** One dirty path in a {@link DirtyTracker.snapshot}. @public */
export interface DirtyEntry {
  /** Relative to the replicated directory's root, no leading '/', '' is the root. */
  path: string;
  /**
   * Dirty zone ranges `[start, end)` in zone units (zone i = bytes `[i*zoneBytes, (i+1)*zoneBytes)`),
   * sorted and disjoint. A range may reach past the file's size (a truncate marks to the end).
   */
  zones: Array<[number, number]>;
  /**
   * The path's existence, type, attributes or (for a directory) listing may have changed: compare
   * it as a whole (a directory that is new or gone: its whole subtree).
   */
  meta: boolean;
  /** Latest epoch of its marks. */
  epoch: number;
}

/** One mark of {@link DirtyTracker.markMany}: data zones of `[offset, offset+length)`, or with `meta`, a metadata mark. @public */
export interface DirtyMark {
  path: string;
  offset?: number;
  length?: number;
  meta?: boolean;
}

/** Figures of a {@link DirtyTracker}. @public */
export interface DirtyStats {
  entries: number;
  ranges: number;
  /** Dirty zones over all paths. */
  zones: number;
  metaEntries: number;
  logBytes: number;
  snapshotBytes: number;
  /** fdatasync calls on the log since open. */
  fsyncs: number;
  /** Mark calls since open. */
  marks: number;
  /** Marks that had to be written to the log (new zones, new meta marks, renames). */
  loggedMarks: number;
  compactions: number;
  generation: number;
  /** The current epoch (what a mark made now carries). */
  epoch: number;
  zoneBytes: number;
}

/**
 * The opaque value handed to other native modules (a `Napi::External` tagged as a dirty tracker);
 * C++ turns it back with `ha::rfs::DirtyTrackerFromValue(env, value)` (native/src/rfs/dirty.h),
 * which returns a `std::shared_ptr<ha::rfs::DirtyTracker>` (nullptr for anything else).
 * @public
 */
export type DirtyTrackerExternal = { readonly __brand: 'DirtyTrackerExternal' };

/** An open dirty tracker. Errors carry a stable `code` (ERR_RFS_DIRTY_...). @public */
export interface DirtyTracker {
  readonly dir: string;
  readonly zoneBytes: number;
  /** Zones covering `[offset, offset+length)` become dirty, durably, before it returns (length 0: the zone at `offset`). Returns the mark's epoch. */
  markData(path: string, offset: number, length: number): number;
  /** A metadata change of `path` (create, chmod, chown, utimens, xattr, link, ...). Returns the epoch. */
  markPath(path: string): number;
  /** Many marks made durable together (one log write, at most one fdatasync). Returns the epoch. */
  markMany(marks: readonly DirtyMark[]): number;
  /**
   * Before a rename: marks `from`, `to` and both parents, and copies the marks of `from` and
   * everything below it to `to` (with `exchange`, both ways). Returns the epoch.
   */
  markRename(from: string, to: string, opts?: { exchange?: boolean }): number;
  /** After an unlink/rmdir succeeded: marks `path` and its parent and drops the zones of `path` and below. Returns the epoch. */
  markUnlink(path: string): number;
  /** Starts a new epoch and returns the closed one (marks made before carry an epoch <= it). */
  checkpoint(): number;
  /** Removes marks whose latest epoch <= `epoch` (once the peer acknowledged everything marked before that checkpoint). */
  clearUpTo(epoch: number): void;
  /** Removes every mark (after a successful full resynchronisation). */
  clearAll(): void;
  /** Removes the marks of these paths whose epoch <= `maxEpoch` (default: all), e.g. entries a resync pass finished. */
  clearEntries(paths: readonly string[], maxEpoch?: number): void;
  /** The dirty paths, sorted by path. */
  snapshot(): DirtyEntry[];
  stats(): DirtyStats;
  /** Rewrites the snapshot and starts a new log now. */
  compact(): void;
  /** Writes pending clears to disk. */
  flush(): void;
  /** Flushes and releases the state directory; later calls throw ERR_RFS_DIRTY_CLOSED. Idempotent. */
  close(): void;
  /** The tracker for other native modules (see {@link DirtyTrackerExternal}). */
  external(): DirtyTrackerExternal;
}

/** A dirty tracker call got a bad argument. @public */
export class DirtyArgumentError extends TypeError {
  readonly code = 'ERR_RFS_DIRTY_ARG';
}

interface NativeTracker {
  markData(path: string, offset: number, length: number): number;
  markPath(path: string): number;
  markMany(paths: string[], offsets: Float64Array, lengths: Float64Array, meta: Uint8Array): number;
  markRename(from: string, to: string, flags: number): number;
  markUnlink(path: string): number;
  checkpoint(): number;
  clearUpTo(epoch: number): void;
  clearAll(): void;
  clearEntries(paths: string[], maxEpoch?: number): void;
  snapshot(): DirtyEntry[];
  stats(): DirtyStats;
  compact(): void;
  flush(): void;
  close(): void;
  setCompactThreshold(bytes: number): void;
  external(): DirtyTrackerExternal;
  bench(threads: number, perThread: number, fresh: boolean, prefix: string): { ms: number; marks: number; fsyncs: number };
}

/** The binding's part for this module. */
interface RfsDirtyBinding {
  RfsDirtyTracker: new (dir: string, zoneBytes: number) => NativeTracker;
}

const RENAME_EXCHANGE = 2;
const MAX_PATH = 4096;

function arg(what: string, message: string): never {
  throw new DirtyArgumentError(`dirty tracker: ${what}: ${message}`);
}

/** Checks a path relative to the replicated root ('' is the root). */
function checkPath(what: string, p: unknown): string {
  if (typeof p !== 'string') arg(what, `expected a string, got ${typeof p}`);
  if (p === '') return p;
  if (p.length > MAX_PATH) arg(what, `longer than ${MAX_PATH} characters`);
  if (p.includes('\0')) arg(what, `contains a NUL character: ${JSON.stringify(p)}`);
  if (p.startsWith('/')) arg(what, `must be relative to the replicated root (no leading '/'): ${JSON.stringify(p)}`);
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') arg(what, `empty, '.' or '..' component in ${JSON.stringify(p)}`);
  }
  return p;
}

function checkUint(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) arg(what, `expected a non-negative safe integer, got ${String(v)}`);
  return v;
}

/**
 * Opens (creating if needed) the dirty tracker stored in `init.dir` and replays it.
 * Throws an Error with `code` ERR_RFS_DIRTY_CORRUPT when the state is damaged (the caller then
 * falls back to a full resynchronisation and starts a fresh state), ERR_RFS_DIRTY_LOCKED when the
 * directory is already open, ERR_RFS_DIRTY_ZONE when zoneBytes differs from the state's,
 * ERR_RFS_DIRTY_IO for I/O errors.
 *
 * @example
 * ```ts
 * const t = openDirtyTracker({ dir: '/var/lib/ha/rfs/web/0', zoneBytes: 1 << 20 })
 * t.markData('db/data.bin', 3 * 2 ** 30, 4096)   // durable before the write is applied
 * const e = t.checkpoint()                         // ... barrier acknowledged by the peer:
 * t.clearUpTo(e)
 * t.close()
 * ```
 * @public
 */
export function openDirtyTracker(init: DirtyTrackerInit): DirtyTracker {
  if (typeof init !== 'object' || init === null) arg('init', 'expected { dir, zoneBytes? }');
  if (typeof init.dir !== 'string' || init.dir === '' || init.dir.includes('\0')) arg('dir', `expected a non-empty path, got ${JSON.stringify(init.dir)}`);
  const zoneBytes = init.zoneBytes ?? 1 << 20;
  if (!Number.isSafeInteger(zoneBytes) || zoneBytes < 4096 || zoneBytes > 2 ** 30 || (zoneBytes & (zoneBytes - 1)) !== 0) {
    arg('zoneBytes', `must be a power of two from 4096 to 1073741824, got ${String(zoneBytes)}`);
  }
  if (init.compactBytes !== undefined) checkUint('compactBytes', init.compactBytes);
  const b = binding<RfsDirtyBinding>();
  const n = new b.RfsDirtyTracker(init.dir, zoneBytes);
  if (init.compactBytes !== undefined) n.setCompactThreshold(init.compactBytes);
  const dir = init.dir;
  const tracker: DirtyTracker & { bench: NativeTracker['bench'] } = {
    dir,
    zoneBytes,
    markData(path, offset, length) {
      return n.markData(checkPath('markData path', path), checkUint('markData offset', offset), checkUint('markData length', length));
    },
    markPath(path) { return n.markPath(checkPath('markPath path', path)); },
    markMany(marks) {
      if (!Array.isArray(marks)) arg('markMany marks', 'expected an array of { path, offset?, length?, meta? }');
      const paths: string[] = new Array<string>(marks.length);
      const offsets = new Float64Array(marks.length);
      const lengths = new Float64Array(marks.length);
      const meta = new Uint8Array(marks.length);
      for (let i = 0; i < marks.length; i++) {
        const m = marks[i];
        if (typeof m !== 'object' || m === null) arg(`markMany marks[${i}]`, 'expected { path, offset?, length?, meta? }');
        paths[i] = checkPath(`markMany marks[${i}].path`, m.path);
        offsets[i] = m.offset === undefined ? 0 : checkUint(`markMany marks[${i}].offset`, m.offset);
        lengths[i] = m.length === undefined ? 0 : checkUint(`markMany marks[${i}].length`, m.length);
        meta[i] = m.meta ? 1 : 0;
      }
      return n.markMany(paths, offsets, lengths, meta);
    },
    markRename(from, to, opts = {}) {
      checkPath('markRename from', from);
      checkPath('markRename to', to);
      if (from === '' || to === '') arg('markRename', 'cannot rename the root');
      return n.markRename(from, to, opts.exchange ? RENAME_EXCHANGE : 0);
    },
    markUnlink(path) { return n.markUnlink(checkPath('markUnlink path', path)); },
    checkpoint() { return n.checkpoint(); },
    clearUpTo(epoch) { n.clearUpTo(checkUint('clearUpTo epoch', epoch)); },
    clearAll() { n.clearAll(); },
    clearEntries(paths, maxEpoch) {
      if (!Array.isArray(paths)) arg('clearEntries paths', 'expected an array of paths');
      const list = paths.map((p, i) => checkPath(`clearEntries paths[${i}]`, p));
      if (maxEpoch === undefined) n.clearEntries(list);
      else n.clearEntries(list, checkUint('clearEntries maxEpoch', maxEpoch));
    },
    snapshot() { return n.snapshot(); },
    stats() { return n.stats(); },
    compact() { n.compact(); },
    flush() { n.flush(); },
    close() { n.close(); },
    external() { return n.external(); },
    /** @internal test/bench helper: native threads marking (fresh: new zones each time). */
    bench(threads, perThread, fresh, prefix) { return n.bench(threads, perThread, fresh, prefix); },
  };
  return tracker;
}

/**
 * Test/benchmark helper: `threads` native threads each mark `perThread` zones of their own file
 * (`fresh`: a new zone every time, so every mark needs the log; else the same zone again).
 * Blocks the JS thread. @internal
 */
export function _benchDirtyTracker(t: DirtyTracker, threads: number, perThread: number, fresh: boolean, prefix = 'bench/t'): { ms: number; marks: number; fsyncs: number } {
  checkUint('threads', threads);
  checkUint('perThread', perThread);
  if (threads < 1 || threads > 256) arg('threads', 'must be from 1 to 256');
  checkPath('prefix', prefix + '0');
  return (t as DirtyTracker & { bench: NativeTracker['bench'] }).bench(threads, perThread, fresh, prefix);
}
