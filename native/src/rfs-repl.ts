/**
 * A replicated directory on the primary (native, src/rfs/repl_sink.* and resync.*): the change
 * sink the write interceptor gets, tying together the persistent dirty tracker and the
 * replication sender.
 *
 * - ALONE (no sender): every change is marked dirty (durably, before it is applied) and never
 *   acknowledged, so the application keeps running and nothing is forgotten.
 * - attached ({@link ReplicatedDir.attachSender}): changes are forwarded to the secondary and the
 *   write returns once it has them. After a successful {@link ReplicatedDir.resync} or
 *   {@link ReplicatedDir.fullSync} the directory is `synced`: a barrier every
 *   `barrierIntervalMs` clears the marks the secondary acknowledged.
 * - a lost sender is detached (its unacknowledged changes marked) and `lost` is emitted.
 *
 * @example
 * ```ts
 * const rd = openReplicatedDir({ dir: '/srv/data', stateDir: '/var/lib/ha/rfs/data' })
 * const itc = await mountInterceptor({ dir: '/srv/data', sink: rd.sinkHandle })
 * rd.on('lost', (err) => console.warn('secondary lost', err.code))
 * const sender = await connectSender({ host: '198.18.0.2', port: 7410, key })
 * rd.attachSender(sender)
 * const r = await rd.resync(peerDirtyEntries)     // copies only what changed
 * ```
 */
import type { ReintegrationProgress } from '@ha/interface';
import { mkdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { HaError } from '@ha/interface';
import { binding } from './native.js';
import type { RfsSinkHandle } from './rfs-fuse.js';
import type { RfsSender } from './rfs-transport.js';
import type { VerifyReport } from './rfs-verify.js';
import { VerifyError } from './rfs-verify.js';

/** Options of {@link openReplicatedDir}. @public */
export interface ReplicatedDirInit {
  /** The replicated directory (absolute or relative; must exist). Open it BEFORE mounting the interceptor over it. */
  dir: string;
  /** The dirty tracker's state directory (created if missing; one per replicated directory). */
  stateDir: string;
  /** Zone size: a power of two from 4096 to 1 GiB. Default 1 MiB. */
  zoneBytes?: number;
  /** Barrier period while synced, ms (10 to 60000). Default 500. */
  barrierIntervalMs?: number;
}

/** One entry of a peer's dirty list (as {@link ReplicatedDir.snapshot} returns them). @public */
export interface DirtyEntryJson {
  path: string;
  /** Zone ranges `[start, end)` in zone units of the tracker's zoneBytes. */
  zones: Array<[number, number]>;
  meta: boolean;
  epoch?: number;
}

/** Progress of a resync / full sync (every ~200 ms): the mirror's reintegration progress. @public */
export type ResyncProgress = ReintegrationProgress;

/** Result of a finished resync / full sync. @public */
export interface ResyncResult {
  entries: number;
  /** Regular files whose data was copied. */
  files: number;
  /** File data bytes sent. */
  bytesSent: number;
  records: number;
  /** Live changes left to the resync because their path was still to be copied. */
  deferred: number;
  ms: number;
  /** Full sync with checksums: data bytes the secondary already had (not sent). */
  bytesMatched?: number;
  /** Full sync with checksums: regular files found identical (nothing sent for them). */
  filesIdentical?: number;
  /** Full sync with checksums: 64 KiB blocks that are holes here, punched on the secondary. */
  holesPunched?: number;
  /** Full sync with checksums: time to get the secondary's checksums, ms. */
  sumsMs?: number;
  /** Set when the secondary's checksums could not be had: a plain full copy was made instead. */
  sumsError?: string;
}

/** Options of {@link ReplicatedDir.resync} / {@link ReplicatedDir.fullSync}. @public */
export interface ResyncOptions {
  /** Aborts at the next chunk (the promise rejects with code ERR_RFS_REPL_ABORTED; what was done stays done). */
  signal?: AbortSignal;
  /** Unacknowledged copied bytes at most (default 16 MiB). */
  windowBytes?: number;
  /** Bandwidth cap for the copied data, bytes/s (default unlimited). */
  maxBytesPerSec?: number;
  /**
   * fullSync only: first get the secondary's block checksums (SHA-256 per 64 KiB block) and send
   * only the entries and blocks that differ (default true). false: copy everything.
   */
  checksums?: boolean;
}

/** Figures of a {@link ReplicatedDir}. @public */
export interface ReplicatedDirStats {
  /** `alone` (no live sender), `attached` (forwarding, not yet resynchronised), `synced`. */
  state: 'alone' | 'attached' | 'synced';
  /** Sender generation (increments at each attach). */
  generation: number;
  forwarded: number;
  notForwarded: number;
  deferred: number;
  barriers: number;
  lastBarrierUs: number;
  markErrors: number;
  lastMarkError?: string;
  losses: number;
  staleInFlight: number;
  resyncRunning: boolean;
  tracker: { entries: number; zones: number; metaEntries: number; fsyncs: number; marks: number; epoch: number; zoneBytes: number };
}

/** Events of a {@link ReplicatedDir}. @public */
export interface ReplicatedDirEvents {
  /** The attached sender was lost; the directory is ALONE (changes are tracked for the next resync). */
  lost: [error: RfsReplError];
  progress: [progress: ResyncProgress];
  /** Dirty tracking failed (changes may be untracked: plan a full sync). */
  error: [error: RfsReplError];
}

/** Errors of the replicated directory (`code` ERR_RFS_REPL_... or ERR_RFS_DIRTY_... or the sender's loss code). @public */
export class RfsReplError extends HaError {}
/** A bad argument (names the field). @public */
export class InvalidRfsReplArgumentError extends RfsReplError {
  constructor(message: string) { super('ERR_RFS_REPL_ARG', message); }
}

interface NativeEvent { code?: string; message?: string; [k: string]: unknown }
declare const replBrand: unique symbol;
interface Handle { readonly [replBrand]: 'RfsReplHandle' }

/** The binding's part for this module. */
interface RfsReplBinding {
  rfsReplOpen(o: { dir: string; stateDir: string; zoneBytes: number; barrierIntervalMs: number; onEvent: (type: string, e: NativeEvent) => void }): Handle;
  rfsReplSink(h: Handle): RfsSinkHandle;
  rfsReplAttach(h: Handle, sender: RfsSinkHandle, holdUntilResync?: boolean): void;
  rfsReplDetach(h: Handle): void;
  rfsReplResync(h: Handle, o: { full: boolean; extra: DirtyEntryJson[]; windowBytes: number; maxBytesPerSec: number; progressIntervalMs: number; sums: boolean }): void;
  rfsReplAbort(h: Handle): void;
  rfsReplIdle(h: Handle): void;
  rfsReplSnapshot(h: Handle): DirtyEntryJson[];
  rfsReplStats(h: Handle): ReplicatedDirStats;
  rfsReplClose(h: Handle): void;
  rfsReplVerify(h: Handle, timeoutMs: number): Promise<VerifyReport>;
}

function fail(msg: string): never { throw new InvalidRfsReplArgumentError(msg); }

function wrap(err: unknown, where: string): RfsReplError {
  const e = err as { code?: unknown; message?: string };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_RFS_REPL';
  if (code === 'ERR_RFS_REPL_ARG') return new InvalidRfsReplArgumentError(`${where}: ${e?.message ?? String(err)}`);
  return new RfsReplError(code, `${where}: ${e?.message ?? String(err)}`, { cause: err });
}

function intIn(v: unknown, name: string, min: number, max: number, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return v;
}

function checkEntries(list: unknown, where: string): DirtyEntryJson[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) fail(`${where}: extra must be an array of dirty entries`);
  return list.map((e: unknown, i) => {
    const at = `${where}: extra[${i}]`;
    if (!e || typeof e !== 'object') fail(`${at} must be an object`);
    const { path, zones, meta } = e as Partial<DirtyEntryJson>;
    if (typeof path !== 'string' || path.startsWith('/') || path.includes('\0') || (path !== '' && path.split('/').some((c) => c === '' || c === '.' || c === '..')))
      fail(`${at}.path must be a relative path without empty, '.' or '..' components, got ${JSON.stringify(path)}`);
    if (meta !== undefined && typeof meta !== 'boolean') fail(`${at}.meta must be a boolean`);
    const z = zones ?? [];
    if (!Array.isArray(z)) fail(`${at}.zones must be an array of [start, end] pairs`);
    for (const [j, r] of z.entries()) {
      if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isInteger(x) && x >= 0) || r[0] >= r[1])
        fail(`${at}.zones[${j}] must be [start, end] with integers 0 <= start < end, got ${JSON.stringify(r)}`);
    }
    return { path, zones: z, meta: meta ?? false };
  });
}

/**
 * A replicated directory on the primary. Get one from {@link openReplicatedDir}; mount the
 * interceptor with {@link ReplicatedDir.sinkHandle}; {@link ReplicatedDir.close} after unmounting.
 * @public
 */
export class ReplicatedDir extends EventEmitter<ReplicatedDirEvents> {
  /** The replicated directory (canonical). */
  readonly dir: string;
  readonly stateDir: string;
  readonly #b: RfsReplBinding;
  readonly #h: Handle;
  #sink: RfsSinkHandle | undefined;
  #closed = false;
  #pending: { resolve: (r: ResyncResult) => void; reject: (e: Error) => void; cleanup: () => void } | undefined;

  /** @internal Made by {@link openReplicatedDir}; `b` and `open` are internal (typed `unknown` to keep the binding's types private). */
  constructor(b: unknown, dir: string, stateDir: string, open: unknown) {
    super();
    this.#b = b as RfsReplBinding;
    this.dir = dir;
    this.stateDir = stateDir;
    this.#h = (open as (onEvent: (type: string, e: NativeEvent) => void) => Handle)((type, e) => this.#event(type, e));
  }

  #event(type: string, e: NativeEvent): void {
    if (type === 'lost') this.emit('lost', new RfsReplError(e.code ?? 'ERR_RFS_LINK', `replication of ${this.dir} lost: ${e.message ?? ''}`));
    else if (type === 'error') this.emit('error', new RfsReplError(e.code ?? 'ERR_RFS_REPL', e.message ?? 'dirty tracking failed'));
    else if (type === 'progress') this.emit('progress', e as unknown as ResyncProgress);
    else if (type === 'done') {
      const p = this.#pending;
      this.#pending = undefined;
      if (!this.#closed) this.#b.rfsReplIdle(this.#h);
      if (!p) return;
      p.cleanup();
      const { ok, aborted, code, message, ...rest } = e as NativeEvent & { ok: boolean; aborted: boolean };
      void aborted;
      if (ok) p.resolve(rest as unknown as ResyncResult);
      else p.reject(new RfsReplError(code ?? 'ERR_RFS_REPL', `resync of ${this.dir}: ${message ?? 'failed'}`, { details: rest }));
    }
  }

  /** The native change sink to give the write interceptor (`mountInterceptor({ dir, sink: rd.sinkHandle })`). */
  get sinkHandle(): RfsSinkHandle {
    this.#open('sinkHandle');
    this.#sink ??= this.#b.rfsReplSink(this.#h);
    return this.#sink;
  }

  /**
   * Forwards changes to this connected sender from now on (PRIM). Then run {@link ReplicatedDir.resync} or {@link ReplicatedDir.fullSync}.
   * With `holdUntilResync`, until a resync or full sync has succeeded, live changes are forwarded only
   * while one runs (they are tracked in any case, and the resync copies them): use it when the
   * secondary's copy may lack files the application is writing (its apply would fail with ENOENT).
   */
  attachSender(sender: RfsSender, opts: { holdUntilResync?: boolean } = {}): void {
    this.#open('attachSender');
    if (!sender || typeof sender !== 'object' || !('sinkHandle' in sender)) fail('attachSender: sender must be an RfsSender (connectSender)');
    let h: RfsSinkHandle;
    try { h = sender.sinkHandle; } catch (err) { throw wrap(err, 'attachSender'); }
    try { this.#b.rfsReplAttach(this.#h, h, opts.holdUntilResync === true); } catch (err) { throw wrap(err, 'attachSender'); }
  }

  /** Planned detach: the directory goes ALONE (unacknowledged changes are marked dirty). The sender stays open (close it yourself). */
  detachSender(): void {
    this.#open('detachSender');
    this.#b.rfsReplDetach(this.#h);
  }

  /**
   * Reintegration: copies what this node's dirty tracker names plus `extra` (the returning
   * node's own dirty entries), while the application keeps writing. Resolves when the secondary
   * acknowledged everything; the directory is then `synced`. Resumable: an interrupted resync
   * leaves only the unfinished entries dirty.
   */
  resync(extra?: DirtyEntryJson[], opts: ResyncOptions = {}): Promise<ResyncResult> {
    return this.#run(false, checkEntries(extra, 'resync'), opts, 'resync');
  }

  /** First synchronisation: copies the whole tree (holes skipped), then clears the tracker up to its start. */
  fullSync(opts: ResyncOptions = {}): Promise<ResyncResult> {
    return this.#run(true, [], opts, 'fullSync');
  }

  #run(full: boolean, extra: DirtyEntryJson[], opts: ResyncOptions, where: string): Promise<ResyncResult> {
    this.#open(where);
    if (!opts || typeof opts !== 'object') fail(`${where}: options must be an object`);
    const windowBytes = intIn(opts.windowBytes, `${where}: windowBytes`, 1 << 20, 2 ** 40, 16 << 20);
    const maxBytesPerSec = intIn(opts.maxBytesPerSec, `${where}: maxBytesPerSec`, 0, 2 ** 50, 0);
    const signal = opts.signal;
    if (opts.checksums !== undefined && typeof opts.checksums !== 'boolean') fail(`${where}: checksums must be a boolean`);
    const sums = opts.checksums ?? true;
    if (signal !== undefined && !(signal instanceof AbortSignal)) fail(`${where}: signal must be an AbortSignal`);
    if (this.#pending) return Promise.reject(new RfsReplError('ERR_RFS_REPL_BUSY', `${where}: a resynchronisation of ${this.dir} is already running`));
    if (signal?.aborted) return Promise.reject(new RfsReplError('ERR_RFS_REPL_ABORTED', `${where}: aborted before it started`));
    return new Promise<ResyncResult>((resolve, reject) => {
      const onAbort = (): void => { if (!this.#closed) this.#b.rfsReplAbort(this.#h); };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      try {
        this.#b.rfsReplResync(this.#h, { full, extra, windowBytes, maxBytesPerSec, progressIntervalMs: 200, sums });
      } catch (err) {
        this.#pending.cleanup();
        this.#pending = undefined;
        reject(wrap(err, where));
      }
    });
  }

  /**
   * Compares this copy with the attached secondary's by block checksums (SHA-256 per 64 KiB
   * block) and lists every difference (missing, extra, type, size, content, mode, owner,
   * symlink, rdev; mtimes are not compared). The secondary's checksums are taken once every
   * change sent before the call is applied; writes made during the comparison can show as
   * differences (compare a quiet directory, or verify again). Rejects with a {@link VerifyError}
   * (code ERR_RFS_REPL_ALONE: no secondary attached; ERR_RFS_REPL_BUSY: a resync runs;
   * ERR_RFS_REPL_LOST; ERR_RFS_REPL_VERIFY: no answer within `timeoutMs`, default 120000).
   */
  async verify(opts: { timeoutMs?: number } = {}): Promise<VerifyReport> {
    this.#open('verify');
    const timeoutMs = intIn(opts.timeoutMs, 'verify: timeoutMs', 100, 2 ** 31 - 1, 120_000);
    try {
      return await this.#b.rfsReplVerify(this.#h, timeoutMs);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      throw new VerifyError(e.code ?? 'ERR_RFS_REPL_VERIFY', `verify ${this.dir}: ${e.message ?? String(err)}`, err);
    }
  }

  /** The dirty entries (sorted by path): what a resync would copy; what to send the peer as its `extra` when this node returns. */
  snapshot(): DirtyEntryJson[] {
    this.#open('snapshot');
    return this.#b.rfsReplSnapshot(this.#h);
  }

  stats(): ReplicatedDirStats {
    this.#open('stats');
    return this.#b.rfsReplStats(this.#h);
  }

  /** Aborts a running resync, stops the barrier thread, closes the tracker. Unmount the interceptor first. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#b.rfsReplClose(this.#h);
    const p = this.#pending;
    this.#pending = undefined;
    if (p) { p.cleanup(); p.reject(new RfsReplError('ERR_RFS_REPL_CLOSED', `${this.dir} was closed during the resynchronisation`)); }
  }

  #open(what: string): void {
    if (this.#closed) throw new RfsReplError('ERR_RFS_REPL_CLOSED', `${what}: ${this.dir} is closed`);
  }
}

/**
 * Opens a replicated directory (ALONE until a sender is attached): opens the real directory and
 * the dirty tracker at `stateDir`. Call it BEFORE mounting the interceptor over `dir`.
 * @public
 */
export function openReplicatedDir(init: ReplicatedDirInit): ReplicatedDir {
  if (!init || typeof init !== 'object') fail('openReplicatedDir(init): init must be an object');
  if (typeof init.dir !== 'string' || init.dir === '' || init.dir.includes('\0')) fail(`openReplicatedDir: dir must be a non-empty string, got ${JSON.stringify(init.dir)}`);
  if (typeof init.stateDir !== 'string' || init.stateDir === '' || init.stateDir.includes('\0')) fail(`openReplicatedDir: stateDir must be a non-empty string, got ${JSON.stringify(init.stateDir)}`);
  const zoneBytes = intIn(init.zoneBytes, 'openReplicatedDir: zoneBytes', 4096, 2 ** 30, 1 << 20);
  if ((zoneBytes & (zoneBytes - 1)) !== 0) fail(`openReplicatedDir: zoneBytes must be a power of two, got ${zoneBytes}`);
  const barrierIntervalMs = intIn(init.barrierIntervalMs, 'openReplicatedDir: barrierIntervalMs', 10, 60_000, 500);
  let dir: string;
  try { dir = realpathSync(isAbsolute(init.dir) ? init.dir : resolve(init.dir)); } catch (err) { fail(`openReplicatedDir: dir ${init.dir} is not accessible: ${(err as Error).message}`); }
  if (!statSync(dir).isDirectory()) fail(`openReplicatedDir: dir ${dir} is not a directory`);
  const stateDir = isAbsolute(init.stateDir) ? init.stateDir : resolve(init.stateDir);
  if (stateDir === dir || stateDir.startsWith(dir + '/')) fail(`openReplicatedDir: stateDir ${stateDir} must not be inside the replicated directory ${dir}`);
  try { mkdirSync(stateDir, { recursive: true, mode: 0o700 }); } catch (err) { fail(`openReplicatedDir: stateDir ${stateDir} cannot be created: ${(err as Error).message}`); }
  const b = binding<RfsReplBinding>();
  try {
    return new ReplicatedDir(b, dir, stateDir, (onEvent: (type: string, e: NativeEvent) => void) => b.rfsReplOpen({ dir, stateDir, zoneBytes, barrierIntervalMs, onEvent }));
  } catch (err) {
    throw wrap(err, 'openReplicatedDir');
  }
}
