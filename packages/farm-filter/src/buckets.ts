/**
 * Bucket ownership: which node serves which hash bucket, from the membership view alone.
 *
 * Rendezvous (highest random weight) hashing per bucket: every node scores every bucket, the
 * highest score owns it. The result depends only on the set of nodes, so every node computes the
 * same map; when a node leaves only its buckets move (each to its next-highest scorer), and a
 * node that joins takes the buckets it scores highest on: about 1/N of each other node's.
 */
import { createHash } from 'node:crypto';

/** Default number of hash buckets (the nft rule hashes `mod` this). @public */
export const DEFAULT_BUCKETS = 4096;

function score(node: string, bucket: number): number {
  const h = createHash('md5').update(node).update('\0').update(String(bucket)).digest();
  return h.readUInt32BE(0) * 0x200000 + (h.readUInt32BE(4) >>> 11); // 53 bits
}

/** The owner of one bucket among `nodes` (undefined when there is none). Pure. @public */
export function bucketOwner(bucket: number, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const n of nodes) {
    const s = score(n, bucket);
    if (s > bestScore || (s === bestScore && best !== undefined && n < best)) { best = n; bestScore = s; }
  }
  return best;
}

/** The owner of every bucket 0..count-1 among `nodes` (an array indexed by bucket). Pure. @public */
export function assignBuckets(nodes: readonly string[], count = DEFAULT_BUCKETS): Array<string | undefined> {
  const uniq = [...new Set(nodes)];
  const out: Array<string | undefined> = new Array(count);
  for (let b = 0; b < count; b++) out[b] = bucketOwner(b, uniq);
  return out;
}

/** The buckets `node` owns among `nodes` (sorted). Pure. @public */
export function ownedBuckets(node: string, nodes: readonly string[], count = DEFAULT_BUCKETS): number[] {
  if (!nodes.includes(node)) return [];
  const out: number[] = [];
  assignBuckets(nodes, count).forEach((o, b) => { if (o === node) out.push(b); });
  return out;
}

/** Compresses sorted-or-not bucket numbers into nft set syntax: `0-3, 7, 9-10`. Pure. @public */
export function toRanges(buckets: Iterable<number>): string {
  const s = [...new Set(buckets)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    parts.push(i === j ? String(s[i]) : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** Encodes a set of buckets as a bitmap (bit b of byte b>>3), for heartbeat payloads. Pure. @public */
export function encodeBuckets(buckets: Iterable<number>, count = DEFAULT_BUCKETS): Uint8Array {
  const out = new Uint8Array(Math.ceil(count / 8));
  for (const b of buckets) if (b >= 0 && b < count) out[b >> 3]! |= 1 << (b & 7);
  return out;
}

/** Decodes {@link encodeBuckets}; anything malformed decodes to no buckets. Pure. @public */
export function decodeBuckets(bitmap: unknown, count = DEFAULT_BUCKETS): number[] {
  if (!(bitmap instanceof Uint8Array)) return [];
  const out: number[] = [];
  for (let b = 0; b < count && (b >> 3) < bitmap.length; b++) if (bitmap[b >> 3]! & (1 << (b & 7))) out.push(b);
  return out;
}
