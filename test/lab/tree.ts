/**
 * Comparing two copies of a replicated directory in tests: a hash of every entry by relative path.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** sha256 of every file (and symlink target) under dir, by relative path; directories listed too. */
export function treeHash(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) { out[r + '/'] = 'dir'; walk(r); }
      else if (st.isSymbolicLink()) out[r] = `-> ${readlinkSync(join(dir, r))}`;
      else out[r] = createHash('sha256').update(readFileSync(join(dir, r))).digest('hex');
    }
  };
  walk('');
  return out;
}

/** The paths whose entries differ between two tree hashes. */
export function treeDiff(a: Record<string, string>, b: Record<string, string>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => a[k] !== b[k]).sort();
}
