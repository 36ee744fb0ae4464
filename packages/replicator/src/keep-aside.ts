/**
 * Keeping divergent changes aside before a resynchronisation overwrites them.
 *
 * A node that served ALONE during an isolation without a witness (split brain) and then loses the
 * election when the isolation heals becomes SECOND: the primary's resynchronisation overwrites
 * (or deletes) every file this node changed on its own. Its own dirty tracker lists exactly those
 * files (marks are cleared only once a peer acknowledged them), so before the receiver starts,
 * each listed file is copied to `<stateDir>/diverged/<ISO timestamp>/<dir index>/<relative path>`
 * with a `manifest.json` next to the index folders, reported in the module log and by an event,
 * so an operator can recover them. Entries already kept (same path, same epoch) are not copied
 * again when the node becomes SECOND twice before its resynchronisation finishes (the second copy
 * would hold the primary's data, not this node's).
 */
import { constants, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ModuleLog } from '@ha/interface';
import { openDirtyTracker, type DirtyEntry } from '@ha/native';

/** One path kept aside. @public */
export interface DivergedFile {
  /** Relative to the replicated directory. */
  path: string;
  /** `file` (copied), `symlink` (target in `target`), `deleted` (absent here: deleted while diverged), `other` (a device, fifo... listed only). */
  kind: 'file' | 'symlink' | 'deleted' | 'other';
  size?: number;
  target?: string;
  /** Zones (in units of `zoneBytes`) that changed; the whole file is copied. */
  zones: Array<[number, number]>;
  epoch: number;
}

/** What {@link keepAside} kept for one replicated directory (undefined when there was nothing). @public */
export interface DivergedReport {
  dir: string;
  index: number;
  /** The folder holding this directory's copies (`<stateDir>/diverged/<timestamp>/<index>`). */
  keptIn: string;
  files: DivergedFile[];
}

export interface KeepAsideInit {
  /** The replicated directory (its real files: nothing is mounted over it). */
  dir: string;
  index: number;
  /** Its dirty tracker's state directory. */
  trackerDir: string;
  /** The data plane's state directory: copies go to `<stateDir>/diverged/`. */
  stateDir: string;
  zoneBytes?: number | undefined;
  log: ModuleLog;
  /** Fixed timestamp (tests); default now. */
  now?: Date;
}

const KEPT = 'kept-aside.json';

/**
 * Copies this node's own changed files of one replicated directory aside (see the file comment).
 * Never throws: failures are logged (a file that cannot be copied is listed with kind `other`).
 * Returns undefined when the tracker lists nothing new.
 */
export function keepAside(init: KeepAsideInit): DivergedReport | undefined {
  let entries: DirtyEntry[];
  try {
    const t = openDirtyTracker({ dir: init.trackerDir, ...(init.zoneBytes ? { zoneBytes: init.zoneBytes } : {}) });
    try { entries = t.snapshot(); } finally { t.close(); }
  } catch (err) {
    init.log.error('replica:diverged', `${init.dir}: this node's change list is unreadable (${(err as Error).message}): its own changes cannot be kept aside before the resynchronisation`);
    return undefined;
  }
  const keptFile = join(init.trackerDir, KEPT);
  if (entries.length === 0) { rmSync(keptFile, { force: true }); return undefined; }
  let kept: Record<string, number> = {};
  try { kept = JSON.parse(readFileSync(keptFile, 'utf8')) as Record<string, number>; } catch { /* none yet */ }
  const todo = entries.filter((e) => e.path !== '' && !(kept[e.path] !== undefined && kept[e.path]! >= e.epoch));
  const files: DivergedFile[] = [];
  const stamp = (init.now ?? new Date()).toISOString().replace(/:/g, '-');
  const top = join(init.stateDir, 'diverged', stamp);
  const keptIn = join(top, String(init.index));
  for (const e of todo) {
    const src = join(init.dir, e.path);
    const base = { path: e.path, zones: e.zones, epoch: e.epoch };
    let st;
    try { st = lstatSync(src); } catch { files.push({ ...base, kind: 'deleted' }); continue; }
    if (st.isDirectory()) continue; // its changed children have entries of their own
    try {
      if (st.isFile()) {
        const dst = join(keptIn, e.path);
        mkdirSync(dirname(dst), { recursive: true });
        copyFileSync(src, dst, constants.COPYFILE_FICLONE);
        files.push({ ...base, kind: 'file', size: st.size });
      } else if (st.isSymbolicLink()) {
        files.push({ ...base, kind: 'symlink', target: readlinkSync(src) });
      } else {
        files.push({ ...base, kind: 'other' });
      }
    } catch (err) {
      init.log.error('replica:diverged', `${init.dir}: could not keep ${e.path} aside: ${(err as Error).message}`);
      files.push({ ...base, kind: 'other' });
    }
  }
  for (const e of todo) kept[e.path] = e.epoch;
  writeFileSync(keptFile, JSON.stringify(kept));
  if (files.length === 0) return undefined;
  mkdirSync(keptIn, { recursive: true });
  const manifestPath = join(top, 'manifest.json');
  const manifest = existsSync(manifestPath) ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as { dirs: unknown[] }) : { reason: '', dirs: [] as unknown[] };
  Object.assign(manifest, {
    reason: 'changes this node made while it served without its peer (split brain), kept before its resynchronisation from the primary overwrote them',
    time: (init.now ?? new Date()).toISOString(),
  });
  manifest.dirs.push({ dir: init.dir, index: init.index, folder: String(init.index), files });
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  const names = files.map((f) => f.path + (f.kind === 'file' ? '' : ` (${f.kind})`));
  init.log.warn('replica:diverged', `${init.dir}: ${files.length} path(s) changed here while this node served without its peer are kept in ${keptIn} before the resynchronisation overwrites them: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', ...' : ''}`, { dir: init.dir, keptIn, files: files.map((f) => f.path) });
  return { dir: init.dir, index: init.index, keptIn, files };
}
