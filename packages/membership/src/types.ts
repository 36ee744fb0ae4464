/** Public types shared by the main-thread proxy and the worker. */
import type { DropReason } from './messages.js';
import type { DownReason, MemberState } from './detector.js';

/** One member as seen from this node. @public */
export interface MemberInfo {
  id: string;
  state: MemberState;
  /** Its incarnation (0 if never heard). */
  incarnation: number;
  /** Wall-clock time (epoch ms) it was last heard with a fresh heartbeat, 0 if never. */
  lastHeardMs: number;
  /** Liveness per network name. */
  networks: Record<string, boolean>;
  /** Its latest payload (see `setPayload`), undefined if none. */
  payload: unknown;
}

/** Counters. `dropped` counts every dropped packet exactly, by reason. @public */
export interface MembershipStats {
  /** Datagrams sent (every copy to every peer on every network). */
  sent: number;
  /** Datagrams received (before checks). */
  received: number;
  /** Dropped datagrams by reason. */
  dropped: Record<DropReason, number>;
  /** Sends that failed (no route, link down...). */
  sendErrors: number;
  /** Accumulated local stall (ms) the detector compensated for. */
  stallMs: number;
}

/** Events of a {@link Membership}. @public */
export interface MembershipEvents {
  'member:up': (e: { id: string; incarnation: number }) => void;
  'member:down': (e: { id: string; reason: DownReason; silentMs: number }) => void;
  'member:restarted': (e: { id: string; incarnation: number }) => void;
  /**
   * A member that is up has been silent for half the timeout (once per silence). Not a failure:
   * a hint to prepare a takeover (the mirror pre-probes the VIP then).
   */
  'member:suspect': (e: { id: string; silentMs: number }) => void;
  'member:payload': (e: { id: string; payload: unknown }) => void;
  'network:up': (e: { id: string; network: string }) => void;
  'network:down': (e: { id: string; network: string }) => void;
  /** Every local network lost carrier: members are not declared down meanwhile. */
  'local:isolated': (e: { networks: string[] }) => void;
  /** At least one local network has carrier again. */
  'local:recovered': (e: { networks: string[] }) => void;
  message: (e: { from: string; channel: string; body: unknown }) => void;
  /** A packet was dropped (rate-limited; `stats().dropped` is exact). */
  dropped: (e: { reason: DropReason; from?: string }) => void;
  /** The heartbeat worker failed: the membership is failed. */
  error: (err: Error) => void;
}

/** Names of the events forwarded from the worker. */
export type MembershipEventName = Exclude<keyof MembershipEvents, 'error'>;
