/**
 * The mirror module's decisions, as one pure function: given what this node knows about itself and
 * what its peer announces, which state should it move to, and why. The driver (mirror.ts) calls it
 * after every event and carries out the transition; keeping it pure makes every rule testable in a
 * table (test/decide.test.ts).
 */

/** States of a mirror module on one node. */
export type MirrorState = 'STOP' | 'WAIT' | 'ALONE' | 'PRIM' | 'SECOND';

/** Colour of a state as users of the reference product know it. */
export type Colour = 'red' | 'orange' | 'green';

export const PRIMARY_STATES: ReadonlySet<MirrorState> = new Set(['ALONE', 'PRIM']);

/** What a node announces about a module in every heartbeat. */
export interface Announce {
  /** State. */
  s: MirrorState;
  /** Epoch: bumped each time a node takes the primary role from a non-primary state. */
  e: number;
  /** Persisted "data up to date" flag. */
  u: boolean;
  /** Last role held before the current state ('ALONE' | 'PRIM' | 'SECOND' | '' if never). */
  l: string;
  /** SECOND only: resynchronisation finished (Ready); false while Transient. */
  r?: boolean;
  /** Yielding: this primary is handing its role to the peer (swap). */
  y?: boolean;
  /** WAIT only: this node was told to become secondary only (`second`). */
  w?: boolean;
  /** Was started by a forced `prim`. */
  f?: boolean;
}

export interface SelfView extends Announce {
  name: string;
  /** Node that should hold the primary role whenever it can (defaultprim), if any. */
  preferred?: string | undefined;
  /** Automatic failover on peer loss (failover="on"). */
  failover: boolean;
  /** All of this node's heartbeat networks have lost carrier. */
  isolated: boolean;
  /**
   * Primary only: the data of the replicated directories is in sync with the peer (replication
   * attached and reintegration finished). Without data replication, undefined: in sync as soon as
   * the peer is our secondary.
   */
  synced?: boolean | undefined;
  /** Milliseconds since this node entered WAIT (used for the discovery grace). */
  waitedMs: number;
  /** How long a WAIT node that is up to date looks for its peer before going ALONE. */
  discoveryMs: number;
  /** A checker with action `wait` holds the module in WAIT: why (undefined when not held). */
  held?: string | undefined;
  /**
   * WAIT only: this node was a Ready secondary (complete data) about to take over when the
   * split-brain witness was unreachable. Not announced: it lets this node (and only it: the former
   * primary of such an isolation is not up to date) take the role once the witness answers again.
   */
  witnessWait?: boolean | undefined;
}

export interface PeerView extends Announce {
  name: string;
}

export interface Decision {
  /** The state to move to; undefined to stay. */
  next?: MirrorState;
  /** Why, in words, for the module log. */
  reason: string;
  /** Set when a WAIT is explained (shown by `ha state`). */
  waitReason?: string;
  /** For ALONE from SECOND/WAIT: this is a takeover (a failover or planned switch). */
  takeover?: boolean;
  /** Primary: the peer is our secondary but not in sync: attach replication and reintegrate it. */
  attach?: boolean;
}

/**
 * Which of two nodes that both want (or both hold) the primary role keeps it. Deterministic: both
 * nodes compute the same answer from the same announcements.
 * Order: a forced `prim` wins; then up to date beats not up to date; then the higher epoch (the node
 * that took over most recently has served the clients since); then the last role (a node that was
 * primary beats one that was secondary); then the preferred node; then the smaller name.
 */
export function electPrimary(a: PeerView, b: PeerView, preferred?: string): string {
  const key = (x: PeerView) => [x.f ? 1 : 0, x.u ? 1 : 0, x.e, x.l === 'PRIM' || x.l === 'ALONE' ? 1 : 0, x.name === preferred ? 1 : 0];
  const ka = key(a); const kb = key(b);
  for (let i = 0; i < ka.length; i++) {
    if (ka[i]! !== kb[i]!) return ka[i]! > kb[i]! ? a.name : b.name;
  }
  return a.name < b.name ? a.name : b.name;
}

/** True if the node has never held a role (a fresh install). */
function fresh(x: Announce): boolean { return x.e === 0 && x.l === ''; }

/**
 * The rules. `peer` is undefined when the peer is not heard (down, left, or never seen).
 */
export function decide(me: SelfView, peer: PeerView | undefined): Decision {
  const ps = peer?.s;
  const peerPrimary = ps !== undefined && PRIMARY_STATES.has(ps);

  switch (me.s) {
    case 'STOP':
      return { reason: 'stopped' };

    case 'WAIT': {
      if (me.held) return { reason: 'held by a checker', waitReason: me.held };
      if (me.isolated) return { reason: 'isolated', waitReason: 'all heartbeat networks have lost carrier' };
      if (peer && peerPrimary) {
        return { next: 'SECOND', reason: `peer ${peer.name} is ${ps}: becoming its secondary` };
      }
      if (me.w) return { reason: 'waiting for a primary', waitReason: `started as secondary only: waiting for ${peer ? peer.name + ' (' + ps + ')' : 'the peer'} to become primary` };
      if (me.f) return { next: 'ALONE', takeover: true, reason: 'forced primary (prim): this node\'s data is the reference' };
      if (peer && ps !== 'STOP') {
        // Both nodes are deciding (WAIT, or a SECOND without primary). A peer that only wants to be
        // secondary, or is not a candidate, leaves the role to us if we can take it.
        const peerCandidate = !peer.w;
        if (!peerCandidate) {
          if (me.u || me.l === 'PRIM' || fresh(me)) return { next: 'ALONE', takeover: true, reason: `peer ${peer.name} waits to be secondary: this node takes the primary role` };
          return { reason: 'not up to date', waitReason: `not up to date, and peer ${peer.name} started as secondary only: use \`prim\` on the node whose data is the reference` };
        }
        if (ps === 'SECOND') {
          // A secondary that lost its primary decides by its own rule (it takes over if its data is
          // complete); we must not race it.
          return { reason: 'peer is a secondary without primary', waitReason: `peer ${peer.name} is a secondary without primary: it decides` };
        }
        // After both nodes went down while PRIM/SECOND (power loss) neither is known up to date:
        // the election prefers the higher epoch and the last primary, which has the latest data.
        const winner = electPrimary(me, peer, me.preferred);
        if (winner === me.name) return { next: 'ALONE', takeover: true, reason: `elected primary against ${peer.name} (${describe(me)} vs ${describe(peer)})` };
        return { reason: 'peer elected', waitReason: `peer ${peer.name} is elected primary (${describe(peer)} vs ${describe(me)}); waiting for it` };
      }
      // Peer not heard, or stopped.
      if (me.witnessWait && !peer) {
        return { next: 'ALONE', takeover: true, reason: 'this secondary was complete when its primary vanished and waited only for the split-brain witness' };
      }
      if (me.u) {
        if (peer?.s === 'STOP' || me.waitedMs >= me.discoveryMs) {
          return { next: 'ALONE', takeover: true, reason: peer ? `data up to date and peer ${peer.name} is stopped` : `data up to date and no peer heard for ${me.waitedMs} ms` };
        }
        return { reason: 'discovery', waitReason: 'looking for the peer before starting alone' };
      }
      return {
        reason: 'not up to date',
        waitReason: fresh(me)
          ? 'first start: waiting for the peer (or use `prim` to start this node alone as the reference)'
          : 'data not known to be up to date and the peer is not available: waiting for the peer (or `prim` to force this node)',
      };
    }

    case 'SECOND': {
      if (me.held) return { next: 'WAIT', reason: `${me.held}: a secondary held by a checker waits`, waitReason: me.held };
      if (me.isolated) return { next: 'WAIT', reason: 'all heartbeat networks lost carrier: cannot be a secondary', waitReason: 'isolated' };
      if (peer && peerPrimary) {
        // A primary that announces y is stopping its application to hand over (swap): wait until it
        // has finished and announces SECOND, so stop_prim there runs before start_prim here.
        return { reason: peer.y ? 'primary is handing over' : 'secondary of a primary' };
      }
      if (me.y) return { reason: 'handing over', waitReason: 'waiting for the peer to take the primary role' };
      const why = !peer ? 'peer is not heard any more' : `peer ${peer.name} is ${ps}${ps === 'STOP' ? ' (planned stop)' : ''}`;
      if (peer && (ps === 'SECOND' || ps === 'WAIT') && peer.y) {
        return { next: 'ALONE', takeover: true, reason: `${why} and yields the primary role` };
      }
      if (me.r === false) {
        return { next: 'WAIT', reason: `${why}, and this secondary's resynchronisation had not finished: its data is incomplete, it must not serve`, waitReason: 'data not up to date (resynchronisation incomplete): waiting for the peer' };
      }
      if (!me.failover && !(peer && ps === 'STOP')) {
        return { next: 'WAIT', reason: `${why}; automatic failover is off (failover="off"): waiting for an operator`, waitReason: 'failover is off: use `prim` to take over' };
      }
      if (peer && ps === 'SECOND' && !peer.y) {
        // Two secondaries without a primary: elect one.
        const winner = electPrimary(me, peer, me.preferred);
        if (winner !== me.name) return { reason: 'peer elected', waitReason: `two secondaries: ${peer.name} is elected primary` };
      }
      return { next: 'ALONE', takeover: true, reason: `${why}: taking over the primary role` };
    }

    case 'ALONE':
    case 'PRIM': {
      if (me.held && !me.y) return { next: 'WAIT', reason: `${me.held}: this node stops serving and waits`, waitReason: me.held };
      if (me.isolated) return { next: 'WAIT', reason: 'all heartbeat networks lost carrier: this node cannot serve; releasing the primary role', waitReason: 'isolated' };
      if (me.y) return { reason: 'yielding' };
      if (peer && peerPrimary) {
        const winner = electPrimary(me, peer, me.preferred);
        if (winner === me.name) return { reason: `two primaries (split brain): this node keeps the role (${describe(me)} vs ${describe(peer)})` };
        return { next: 'SECOND', reason: `two primaries (split brain): ${peer.name} keeps the role (${describe(peer)} vs ${describe(me)}); this node stops its application and becomes secondary` };
      }
      if (me.s === 'ALONE' && peer && ps === 'SECOND' && !peer.y) {
        if (me.synced === false) return { reason: 'reintegrating', attach: true };
        return { next: 'PRIM', reason: me.synced ? `peer ${peer.name} is our secondary and its data is in sync` : `peer ${peer.name} is our secondary` };
      }
      if (me.s === 'PRIM' && (!peer || ps !== 'SECOND')) {
        return { next: 'ALONE', reason: !peer ? 'secondary is not heard any more' : `secondary ${peer.name} is ${ps}` };
      }
      if (me.s === 'PRIM' && me.synced === false) {
        return { next: 'ALONE', reason: `replication to ${peer!.name} is lost: going on alone, tracking every change for its reintegration` };
      }
      return { reason: 'primary' };
    }
  }
}

/**
 * The split-brain rule: a node about to become ALONE while it does not hear its peer (a failover
 * from SECOND, a PRIM that lost its secondary, a WAIT node that gave up looking for its peer) must
 * first reach the witness, if one is configured. A forced `prim` (from WAIT) and a peer that announced its
 * planned STOP need no witness.
 */
export function needsWitness(me: SelfView, peer: PeerView | undefined, d: Decision): boolean {
  return d.next === 'ALONE' && me.s !== 'ALONE' && peer === undefined && !(me.s === 'WAIT' && me.f);
}

/** The decision when the witness was needed and not reached. */
export function witnessUnreachable(me: SelfView, d: Decision, witness: string): Decision {
  const why = `split-brain witness (${witness}) unreachable`;
  const waitReason = `${why}: the peer may be serving on the other side of an isolation; waiting for the peer or an operator (\`prim\`)`;
  if (me.s === 'WAIT') return { reason: why, waitReason };
  return { next: 'WAIT', reason: `${d.reason}, but the ${why}: not taking the primary role (it could make two primaries)`, waitReason };
}

function describe(x: Announce): string {
  return `${x.f ? 'forced, ' : ''}${x.u ? 'up to date' : 'not up to date'}, epoch ${x.e}, last role ${x.l || 'none'}`;
}

/** Colour of a state (SECOND is orange while resynchronising). */
export function colourOf(s: MirrorState, ready = true): Colour {
  if (s === 'STOP' || s === 'WAIT') return 'red';
  if (s === 'SECOND' && !ready) return 'orange';
  return 'green';
}
