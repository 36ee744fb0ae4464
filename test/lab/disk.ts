/**
 * Disk facts a lab test can observe from outside the code under test.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';

/**
 * The count of cache flushes sent to the disk that holds `path` (field 16 of its block device's
 * stat), or undefined when that disk has no volatile write cache (flushes are not sent at all) or
 * cannot be found (tmpfs, overlay). A synchronous write (O_DSYNC, fdatasync) on a disk with a
 * volatile cache makes the kernel send at least one flush; a plain or O_DIRECT write does not.
 */
export function flushCounter(path: string): (() => number) | undefined {
  const dev = statSync(path).dev;
  const sys = `/sys/dev/block/${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
  const cache = [`${sys}/queue/write_cache`, `${sys}/../queue/write_cache`].find((f) => existsSync(f));
  if (!cache || !existsSync(`${sys}/stat`) || !readFileSync(cache, 'utf8').includes('write back')) return undefined;
  return () => Number(readFileSync(`${sys}/stat`, 'utf8').trim().split(/\s+/)[15] ?? NaN);
}
