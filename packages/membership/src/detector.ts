/**
 * Failure detector: the state of every configured member, driven by authenticated,
 * non-replayed messages and by periodic checks. Pure logic (no I/O, no clock of its own):
 * times and the local-stall counter are passed in, events are returned.
 */
import type { Acks } from './messages.js';
import { isExpired } from './timing.js';

/** State of a member as seen from here. @public */
export type MemberState = 'unknown' | 'up' | 'down' | 'left';

/** Why a member went down. @public */
export type DownReason = 'timeout' | 'left';

/** What the detector decided. */
export type DetectorEvent =
  | { type: 'member:up'; id: string; incarnation: number }
  | { type: 'member:down'; id: string; reason: DownReason; silentMs: number }
  | { type: 'member:suspect'; id: string; silentMs: number }
  | { type: 'member:restarted'; id: string; incarnation: number }
  | { type: 'member:payload'; id: string; payload: unknown }
  | { type: 'network:up'; id: string; network: string }
  | { type: 'network:down'; id: string; network: string };

interface NetState { up: boolean; lastHeard: number; stallAtHeard: number }

interface MemberRecord {
  id: string;
  state: MemberState;
  /** Incarnation the member was last seen up with (fresh packets only). */
  incarnation: number | undefined;
  /** Highest incarnation heard in any authenticated packet (echoed in our acks). */
  heard: number | undefined;
  lastHeard: number;
  stallAtHeard: number;
  /** Silent for more than half the timeout since last heard (member:suspect sent once). */
  suspect: boolean;
  nets: Map<number, NetState>;
  payloadBytes: Uint8Array | undefined;
  payload: unknown;
}

/** A snapshot of one member (times as monotonic ms). */
export interface MemberRecordView {
  id: string;
  state: MemberState;
  incarnation: number;
  lastHeard: number | undefined;
  networks: Record<string, boolean>;
  payload: unknown;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.compare(a, b) === 0;
}

/** Failure detector state of all members. */
export class Detector {
  readonly #members = new Map<string, MemberRecord>();

  constructor(
    readonly selfId: string,
    readonly selfIncarnation: number,
    /** Member ids (without self). */
    memberIds: readonly string[],
    /** Network names by index. */
    readonly networkNames: readonly string[],
    public timeoutMs: number,
    readonly decodePayload: (bytes: Uint8Array) => unknown,
  ) {
    for (const id of memberIds) {
      this.#members.set(id, {
        id, state: 'unknown', incarnation: undefined, heard: undefined, lastHeard: 0, stallAtHeard: 0, suspect: false,
        nets: new Map(), payloadBytes: undefined, payload: undefined,
      });
    }
  }

  has(id: string): boolean { return this.#members.has(id); }

  /** True if `acks` proves the packet was made after we started (it echoes our incarnation). */
  isFresh(acks: Acks): boolean {
    return Object.hasOwn(acks, this.selfId) && acks[this.selfId] === this.selfIncarnation;
  }

  /** What we heard of each member (for our heartbeats' acks). */
  acks(): Acks {
    const acks: Acks = {};
    for (const m of this.#members.values()) if (m.heard !== undefined) acks[m.id] = m.heard;
    return acks;
  }

  /** Records that an authenticated, non-replayed packet came from `id` with `incarnation`. */
  noteIncarnation(id: string, incarnation: number): void {
    const m = this.#members.get(id);
    if (m && (m.heard === undefined || incarnation > m.heard)) m.heard = incarnation;
  }

  /**
   * An authenticated, non-replayed heartbeat. Returns the decisions it causes; a heartbeat
   * that does not echo our incarnation only teaches us the sender's incarnation.
   */
  onHeartbeat(id: string, incarnation: number, net: number, acks: Acks, payload: Uint8Array | undefined, now: number, stall: number): DetectorEvent[] {
    const m = this.#members.get(id);
    if (!m) return [];
    this.noteIncarnation(id, incarnation);
    if (!this.isFresh(acks)) return [];
    const events: DetectorEvent[] = [];
    if (m.incarnation !== undefined && incarnation < m.incarnation) return [];
    if (m.state === 'left' && incarnation === m.incarnation) return []; // late copies after its LEAVE
    if (m.incarnation !== undefined && incarnation > m.incarnation) {
      events.push({ type: 'member:restarted', id, incarnation });
      m.payloadBytes = undefined;
      m.payload = undefined;
    }
    m.incarnation = incarnation;
    m.lastHeard = now;
    m.stallAtHeard = stall;
    m.suspect = false;
    if (m.state !== 'up') {
      m.state = 'up';
      events.push({ type: 'member:up', id, incarnation });
    }
    let ns = m.nets.get(net);
    if (!ns) { ns = { up: false, lastHeard: now, stallAtHeard: stall }; m.nets.set(net, ns); }
    ns.lastHeard = now;
    ns.stallAtHeard = stall;
    if (!ns.up) {
      ns.up = true;
      events.push({ type: 'network:up', id, network: this.networkNames[net] ?? String(net) });
    }
    if (!sameBytes(m.payloadBytes, payload)) {
      m.payloadBytes = payload === undefined ? undefined : Uint8Array.from(payload);
      let value: unknown;
      try { value = payload === undefined ? undefined : this.decodePayload(payload); } catch { value = undefined; }
      m.payload = value;
      events.push({ type: 'member:payload', id, payload: value });
    }
    return events;
  }

  /** An authenticated, non-replayed LEAVE that echoes our incarnation. */
  onLeave(id: string, incarnation: number, now: number): DetectorEvent[] {
    const m = this.#members.get(id);
    if (!m || m.state === 'left') return [];
    if (m.incarnation !== undefined && incarnation < m.incarnation) return [];
    const events: DetectorEvent[] = [];
    const wasUp = m.state === 'up';
    const heardBefore = m.incarnation !== undefined;
    m.state = 'left';
    for (const [net, ns] of m.nets) {
      if (ns.up) {
        ns.up = false;
        events.push({ type: 'network:down', id, network: this.networkNames[net] ?? String(net) });
      }
    }
    const heard = heardBefore;
    if (wasUp || heard) {
      events.push({ type: 'member:down', id, reason: 'left', silentMs: heard ? Math.round(now - m.lastHeard) : 0 });
    }
    m.incarnation = incarnation;
    return events;
  }

  /**
   * Periodic check. `stall` is the local stall counter (it grows while this thread was not
   * running or all local networks lacked carrier); `isolated` forbids declaring members down.
   */
  tick(now: number, stall: number, isolated: boolean): DetectorEvent[] {
    const events: DetectorEvent[] = [];
    if (isolated) return events;
    for (const m of this.#members.values()) {
      if (m.state !== 'up') continue;
      for (const [net, ns] of m.nets) {
        if (ns.up && isExpired(now, ns.lastHeard, this.timeoutMs, stall, ns.stallAtHeard)) {
          ns.up = false;
          events.push({ type: 'network:down', id: m.id, network: this.networkNames[net] ?? String(net) });
        }
      }
      if (!m.suspect && isExpired(now, m.lastHeard, this.timeoutMs / 2, stall, m.stallAtHeard)) {
        // Half the timeout without a word: not down yet, but users may prepare (e.g. probe the VIP).
        m.suspect = true;
        events.push({ type: 'member:suspect', id: m.id, silentMs: Math.round(now - m.lastHeard) });
      }
      if (isExpired(now, m.lastHeard, this.timeoutMs, stall, m.stallAtHeard)) {
        m.state = 'down';
        for (const [net, ns] of m.nets) {
          if (ns.up) {
            ns.up = false;
            events.push({ type: 'network:down', id: m.id, network: this.networkNames[net] ?? String(net) });
          }
        }
        events.push({ type: 'member:down', id: m.id, reason: 'timeout', silentMs: Math.round(now - m.lastHeard) });
      }
    }
    return events;
  }

  /** State of `id`. */
  state(id: string): MemberState | undefined { return this.#members.get(id)?.state; }

  /** A snapshot of every member. */
  view(): MemberRecordView[] {
    return [...this.#members.values()].map((m) => {
      const networks: Record<string, boolean> = {};
      this.networkNames.forEach((name, i) => { networks[name] = m.nets.get(i)?.up ?? false; });
      return {
        id: m.id, state: m.state, incarnation: m.incarnation ?? m.heard ?? 0,
        lastHeard: m.incarnation !== undefined ? m.lastHeard : undefined, networks, payload: m.payload,
      };
    });
  }
}
