/**
 * Comparing two copies of a replicated directory by block checksums (native, src/rfs/checksum.*):
 * every entry's type, mode, owner, size, symlink target, device number and the SHA-256 of each
 * 64 KiB block of its data (holes hashed as zeros without being read). Used by
 * {@link ReplicatedDir.verify} (this copy against the attached secondary's) and
 * {@link compareDirs} (two local directories).
 *
 * @example
 * ```ts
 * const r = await compareDirs('/srv/data', '/backup/data')
 * for (const d of r.differences) console.log(d.kind, d.path, d.detail)
 * ```
 */
import { HaError } from '@ha/interface';
import { binding } from './native.js';

/** What differs for one path. @public */
export type DifferenceKind = 'missing' | 'extra' | 'type' | 'size' | 'content' | 'mode' | 'owner' | 'symlink' | 'rdev';

/** One difference between the two copies ("here" = the first/primary copy, "peer" = the other). @public */
export interface VerifyDifference {
  /** Relative to the directory ('' = the directory itself). */
  path: string;
  /** missing: only here; extra: only on the peer; content: some blocks differ. */
  kind: DifferenceKind;
  detail: string;
  /** content: offset of the first differing block. */
  offset?: number;
  /** content: number of differing blocks. */
  blocks?: number;
}

/** Result of a comparison. @public */
export interface VerifyReport {
  /** Every difference, sorted by path; empty when the copies are identical. */
  differences: VerifyDifference[];
  /** Entries here (the directory itself included). */
  entries: number;
  peerEntries: number;
  /** Regular-file bytes here. */
  bytes: number;
  /** Checksum block size (65536). */
  blockBytes: number;
  ms: number;
}

/** A comparison could not be made (code ERR_RFS_VERIFY_DIR, ERR_RFS_REPL_IO, ERR_RFS_REPL_ALONE, ...). @public */
export class VerifyError extends HaError {
  constructor(code: string, message: string, cause?: unknown) { super(code, message, { cause }); }
}

/** The binding's part for this module. */
interface RfsVerifyBinding {
  rfsCompareDirs(a: string, b: string): Promise<VerifyReport>;
}

/**
 * Compares two local directories by block checksums (runs on the libuv thread pool).
 * Rejects with a {@link VerifyError} when a directory cannot be read.
 * @public
 */
export async function compareDirs(a: string, b: string): Promise<VerifyReport> {
  for (const [name, v] of [['a', a], ['b', b]] as const) {
    if (typeof v !== 'string' || v === '' || v.includes('\0')) throw new VerifyError('ERR_RFS_VERIFY_ARG', `compareDirs: ${name} must be a non-empty path, got ${JSON.stringify(v)}`);
  }
  try {
    return await binding<RfsVerifyBinding>().rfsCompareDirs(a, b);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new VerifyError(e.code ?? 'ERR_RFS_VERIFY', `compareDirs(${a}, ${b}): ${e.message ?? String(err)}`, err);
  }
}

/** One line per difference, for logs and the CLI. @public */
export function formatDifferences(report: VerifyReport): string[] {
  return report.differences.map((d) => `${d.kind.padEnd(7)} ${d.path === '' ? '.' : d.path}: ${d.detail}`);
}
