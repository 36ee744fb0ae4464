import type { ModuleLog } from './log.js';

/** Progress of a reintegration (resynchronisation of a returning secondary). @public */
export interface ReintegrationProgress {
  bytesDone: number;
  /** Bytes to copy (an estimate during a full synchronisation, which discovers the tree as it goes). */
  bytesTotal: number;
  /** Entries (files, directories, ...) done. */
  filesDone: number;
  /** Entries to do (an estimate during a full synchronisation). */
  filesTotal: number;
  /**
   * Entries done that the secondary has made durable (it synced them for a barrier) and that this
   * node has forgotten: an interrupted reintegration that resumes copies them again only if the
   * secondary reports them changed on its side (what it was applying when it died). Lags
   * `filesDone` by the secondary's sync. (A first synchronisation keeps its progress only at its
   * end: 0 until then.)
   */
  filesKept: number;
  /** Bytes per second since the start. */
  rate: number;
  /** Seconds left at the current rate; -1 when unknown. */
  etaS: number;
}

/**
 * The data plane of a mirror module (`@ha/replicator` implements it). Called by the mirror's
 * driver, in order: a node becoming primary calls `startPrimary()` before the application starts
 * and `stopPrimary()` after it stopped; a secondary calls `startSecondary()` / `stopSecondary()`;
 * a primary whose peer is its secondary calls `attachSecondary()` and goes PRIM when it resolves.
 * @public
 */
export interface DataReplication {
  startPrimary(): Promise<void>;
  stopPrimary(): Promise<void>;
  startSecondary(): Promise<void>;
  stopSecondary(): Promise<void>;
  /** Connect to the secondary `peer`, reintegrate it (copy what changed) and keep it in sync. */
  attachSecondary(peer: string, signal: AbortSignal, progress: (p: ReintegrationProgress) => void): Promise<void>;
  /** Stop replicating to the secondary (planned). */
  detachSecondary(): Promise<void>;
  /** Secondary: the primary reports this copy in sync (it is PRIM with us as its secondary). */
  secondaryInSync?(): Promise<void>;
  /** `lost`: replication to the secondary failed (link, ack timeout, its disk): the primary goes ALONE. */
  on(event: 'lost', listener: (err: Error) => void): unknown;
  /** Compares the replicated directories with the secondary's copies (primary only): one report per directory. */
  verify?(): Promise<unknown[]>;
  /** Replication state per directory, for `ha state` (role, state, progress, last sync). */
  status?(): unknown[];
}

/** Something that can be told what to undo if this process dies (the VIP package's lifeline). @public */
export interface DeathRegistry {
  update(owner: string, state: { onDeath?: Array<{ cmd: string; args?: string[]; timeoutMs?: number }>; fuseAbort?: number[] } | undefined): void;
}

/** A best-effort, authenticated message channel to the peer (the membership). @public */
export interface PeerMessages {
  send(to: string, channel: string, body: unknown): void;
  on(event: 'message', listener: (e: { from: string; channel: string; body: unknown }) => void): unknown;
  off(event: 'message', listener: (e: { from: string; channel: string; body: unknown }) => void): unknown;
}

/** What the cluster gives a data plane when it creates it. @public */
export interface DataContext {
  module: string;
  node: string;
  peer: string;
  /** This node's and the peer's addresses on the first heartbeat network. */
  localAddress: string;
  peerAddress: string;
  /** The shared cluster key. */
  key: string | Uint8Array;
  /** A directory for the data plane's persistent state. */
  stateDir: string;
  log: ModuleLog;
  messages: PeerMessages;
  lifeline?: DeathRegistry | undefined;
}

/** A data plane factory: `replicator(init)` returns one. @public */
export type DataFactory = (ctx: DataContext) => DataReplication;
