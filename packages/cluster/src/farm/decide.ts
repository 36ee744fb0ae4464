/**
 * Farm decisions (pure): which nodes share the buckets, and which buckets this node may hold now.
 *
 * Each node announces in its heartbeat payload its state and the view (set of nodes) whose
 * rendezvous assignment it applies; its claim is its share of that view. A node releases buckets
 * at once when its view changes, and takes a bucket only when no other live node claims it: a
 * bucket is never held by two nodes, and is unheld for at most about one heartbeat (the time for
 * the old owner's release to be announced) or, when the old owner died, until it is detected.
 */
import { assignBuckets } from '@ha/farm-filter';

/** States of a farm module on one node. @public */
export type FarmState = 'STOP' | 'WAIT' | 'UP';

/** What a node announces for one farm module. @public */
export interface FarmAnnounce {
  /** State. */
  s: FarmState;
  /**
   * The view (sorted node names) whose assignment the node applies: its claim is its share of it
   * (whatever its state: a node leaving announces a view without itself once it has released).
   */
  v: string[];
}

/** A peer as seen by the decision. @public */
export interface FarmPeer { id: string; alive: boolean; announce?: FarmAnnounce | undefined }

const memo = new Map<string, Array<string | undefined>>();
/** {@link assignBuckets}, memoised on the view (a handful of views are live at a time). @internal */
export function owners(view: readonly string[], count: number): Array<string | undefined> {
  const key = `${count}|${[...view].sort().join('\0')}`;
  let o = memo.get(key);
  if (!o) {
    o = assignBuckets([...view].sort(), count);
    memo.set(key, o);
    if (memo.size > 16) memo.delete(memo.keys().next().value!);
  }
  return o;
}

/** The nodes that share the buckets: this node if UP, and every live peer announcing UP (sorted). Pure. @public */
export function farmView(self: string, selfUp: boolean, peers: readonly FarmPeer[]): string[] {
  const v = peers.filter((p) => p.alive && p.announce?.s === 'UP' && p.id !== self).map((p) => p.id);
  if (selfUp) v.push(self);
  return [...new Set(v)].sort();
}

/**
 * This node's buckets: its share of `view`, minus every bucket a live peer claims (its share of
 * the view it announced). Pure.
 * @public
 */
export function decideBuckets(self: string, view: readonly string[], peers: readonly FarmPeer[], count: number): { target: number[]; hold: number[]; waiting: number } {
  if (!view.includes(self)) return { target: [], hold: [], waiting: 0 };
  const mine = owners(view, count);
  const claimed = new Uint8Array(count);
  for (const p of peers) {
    // A claim stands whatever the peer's state until it announces a view without itself: it is
    // announced only after the release is applied.
    if (!p.alive || p.id === self || !p.announce?.v.includes(p.id)) continue;
    const o = owners(p.announce.v, count);
    for (let b = 0; b < count; b++) if (o[b] === p.id) claimed[b] = 1;
  }
  const target: number[] = [];
  const hold: number[] = [];
  for (let b = 0; b < count; b++) {
    if (mine[b] !== self) continue;
    target.push(b);
    if (!claimed[b]) hold.push(b);
  }
  return { target, hold, waiting: target.length - hold.length };
}

/** Reads a farm module's announcement out of a heartbeat payload; undefined if absent or malformed. Pure. @public */
export function extractFarmAnnounce(payload: unknown, module: string): FarmAnnounce | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const f = (payload as { f?: unknown }).f;
  if (typeof f !== 'object' || f === null) return undefined;
  const a = (f as Record<string, unknown>)[module] as { s?: unknown; v?: unknown } | undefined;
  if (!a || (a.s !== 'UP' && a.s !== 'WAIT' && a.s !== 'STOP') || !Array.isArray(a.v) || !a.v.every((x) => typeof x === 'string')) return undefined;
  return { s: a.s, v: a.v as string[] };
}
