/**
 * The mirror module's data plane: for each replicated directory,
 * - on the primary: a persistent dirty tracker and a replication sink (opened BEFORE the FUSE
 *   interceptor mounts over the directory, so they keep access to the real files), the interceptor,
 *   and, while a secondary is attached, the authenticated sender;
 * - on the secondary: the receiver/applier (its fd on the real directory opened first), then a
 *   read-only bind of the directory over itself, so local processes cannot write to it.
 * Reintegration: the secondary reports its own dirty list (changes it may have made as a primary
 * that were never acknowledged) over the membership's authenticated messages; the primary
 * resynchronises the union of both lists, or everything when the secondary has never been in sync.
 */
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { keepAside, type DivergedReport } from './keep-aside.js';
import { HaError, type DataContext, type DataReplication, type ReintegrationProgress } from '@ha/interface';
import {
  connectSender, mountInterceptor, openDirtyTracker, openReplicatedDir, readOnlyBind, staleMountCleanup, startReceiver, undoReadOnlyBind,
  type Interceptor, type ReplicatedDir, type ResyncResult, type RfsReceiver, type RfsSender, type VerifyDifference,
} from '@ha/native';

/** Configuration of {@link replicator}. @public */
export interface ReplicatorInit {
  /** Absolute paths of the directories to replicate (each must exist on both nodes). */
  dirs: string[];
  /** TCP port of the secondary's receiver for the first directory; directory i uses port + i (default 5600). */
  port?: number;
  /**
   * What the secondary has done when a change returns to the application: 'received' (default):
   * it holds the change (authenticated, in order; a secondary that takes over applies everything
   * it received first); 'written': it has applied it to its files, and an fsync also waits for
   * the secondary's own fsync (one round trip more per fsync).
   */
  mode?: 'received' | 'written';
  /**
   * Which calls are synchronous with the secondary. 'write' (default): every `write()` and every
   * metadata change returns only once the secondary has it. 'fsync': writes go to the kernel's
   * page cache (much faster for streams of small or large writes) and reach the secondary at
   * `fsync`/`fdatasync`, `O_SYNC`/`O_DSYNC` writes, `close` and background writeback, which return
   * only once it has them; metadata changes stay synchronous. Risk: like any page cache, writes
   * not yet at such a point are lost if the primary dies (node or process), and between two sync
   * points the secondary receives the data in writeback order, not `write()` order.
   */
  durability?: 'write' | 'fsync';
  /** A secondary that does not acknowledge within this is declared lost: the primary goes ALONE (default 2000). */
  ackTimeoutMs?: number;
  /** Granularity of dirty tracking in bytes (power of two, default 1 MiB). */
  zoneBytes?: number;
}

/** The comparison of one replicated directory with the secondary's copy ({@link ReplicatorApi.verify}). @public */
export interface DirVerifyReport {
  dir: string;
  /** Every difference (empty: identical). `path` is relative to `dir`. */
  differences: VerifyDifference[];
  entries: number;
  bytes: number;
  ms: number;
}

/** Where replication of one directory stands ({@link ReplicatorApi.status}). @public */
export interface DirReplicationStatus {
  dir: string;
  role: 'primary' | 'secondary' | 'stopped';
  /** Primary: alone (no secondary), attached (reintegrating), synced. */
  state?: 'alone' | 'attached' | 'synced';
  /** A reintegration / first synchronisation in progress. */
  progress?: ReintegrationProgress & { kind: 'full' | 'resync'; startedAt: string };
  /** The last finished one. */
  last?: ResyncResult & { kind: 'full' | 'resync'; at: string };
  /** Entries the dirty tracker holds (what a reintegration would copy). */
  dirtyEntries?: number;
}

/** What the replicator adds to the DataReplication contract (verify, status). @public */
export interface ReplicatorApi {
  /** Compares every replicated directory with the secondary's copy by block checksums (primary, with a secondary attached). */
  verify(): Promise<DirVerifyReport[]>;
  status(): DirReplicationStatus[];
}

/** A replicator configuration error. @public */
export class ReplicatorConfigError extends HaError {
  constructor(field: string, message: string) { super('ERR_REPLICATOR_CONFIG', `replicator: ${field}: ${message}`, { details: { field } }); }
}

/** Reintegration failed (link, peer's dirty list not received, ...). @public */
export class ReintegrationError extends HaError {
  constructor(message: string, cause?: unknown) { super('ERR_REINTEGRATION', message, { cause }); }
}

interface DirState {
  dir: string;
  index: number;
  trackerDir: string;
  repl?: ReplicatedDir | undefined;
  interceptor?: Interceptor | undefined;
  sender?: RfsSender | undefined;
  receiver?: RfsReceiver | undefined;
  /** The FUSE connection id of the interceptor's mount (/sys/fs/fuse/connections/<id>). */
  fuseId?: number | undefined;
  roBound?: boolean;
  progress?: (ReintegrationProgress & { kind: 'full' | 'resync'; startedAt: string }) | undefined;
  last?: (ResyncResult & { kind: 'full' | 'resync'; at: string }) | undefined;
}

/** Marker: this node's copy of the directory was fully in sync with its peer at some point. */
const IN_SYNC = 'in-sync';

/**
 * Creates the data plane of a mirror module; give it as `mirror.data` to `createCluster()`.
 * @public
 */
export function replicator(init: ReplicatorInit): (ctx: DataContext) => DataReplication & ReplicatorApi {
  validate(init);
  return (ctx) => new Replicator(init, ctx);
}

function validate(init: ReplicatorInit): void {
  if (!init || !Array.isArray(init.dirs) || init.dirs.length === 0) throw new ReplicatorConfigError('dirs', 'give at least one directory to replicate');
  const seen = new Set<string>();
  for (const [i, d] of init.dirs.entries()) {
    if (typeof d !== 'string' || !d.startsWith('/')) throw new ReplicatorConfigError(`dirs[${i}]`, `must be an absolute path, got ${JSON.stringify(d)}`);
    const n = d.replace(/\/+$/, '') || '/';
    if (n === '/') throw new ReplicatorConfigError(`dirs[${i}]`, 'cannot replicate /');
    for (const o of seen) {
      if (n === o || n.startsWith(o + '/') || o.startsWith(n + '/')) throw new ReplicatorConfigError(`dirs[${i}]`, `${n} overlaps ${o}`);
    }
    seen.add(n);
  }
  if (init.port !== undefined && (!Number.isInteger(init.port) || init.port < 1 || init.port + init.dirs.length - 1 > 65535)) {
    throw new ReplicatorConfigError('port', `must be a TCP port leaving room for ${init.dirs.length} directories, got ${init.port}`);
  }
  if (init.mode !== undefined && init.mode !== 'received' && init.mode !== 'written') throw new ReplicatorConfigError('mode', `must be 'received' or 'written', got ${JSON.stringify(init.mode)}`);
  if (init.durability !== undefined && init.durability !== 'write' && init.durability !== 'fsync') throw new ReplicatorConfigError('durability', `must be 'write' or 'fsync', got ${JSON.stringify(init.durability)}`);
  if (init.ackTimeoutMs !== undefined && (!Number.isFinite(init.ackTimeoutMs) || init.ackTimeoutMs < 10)) throw new ReplicatorConfigError('ackTimeoutMs', `must be at least 10 ms, got ${init.ackTimeoutMs}`);
}

interface DirtyReply { t: 'dirty'; i: number; part: number; parts: number; fresh: boolean; entries: unknown[] }

/** Not attached to a secondary: nothing to compare with. @public */
export class VerifyUnavailableError extends HaError {
  constructor(message: string) { super('ERR_VERIFY_UNAVAILABLE', message); }
}

function mib(n: number): string { return `${(n / 1048576).toFixed(1)} MiB`; }

class Replicator extends EventEmitter<{ lost: [Error]; diverged: [DivergedReport] }> implements DataReplication, ReplicatorApi {
  readonly #dirs: DirState[];
  readonly #port: number;
  readonly #mode: 'received' | 'written';
  readonly #channel: string;
  #onMessage = (e: { from: string; channel: string; body: unknown }) => this.#handleMessage(e);

  constructor(private readonly init: ReplicatorInit, private readonly ctx: DataContext) {
    super();
    this.#port = init.port ?? 5600;
    this.#mode = init.mode ?? 'received';
    this.#channel = `rfs/${ctx.module}`;
    this.#dirs = init.dirs.map((d, index) => ({ dir: d.replace(/\/+$/, ''), index, trackerDir: join(ctx.stateDir, 'rfs', String(index)) }));
    for (const d of this.#dirs) mkdirSync(d.trackerDir, { recursive: true });
    ctx.messages.on('message', this.#onMessage);
  }

  get #log() { return this.ctx.log; }

  #cleanStale(d: DirState): void {
    const n = staleMountCleanup(d.dir);
    if (n > 0) this.#log.warn('rfs:stale', `${d.dir}: removed ${n} stale mount(s) left by a process that died`);
  }

  /** If this process dies, the lifeline unmounts what we mounted over the directories. */
  #registerUnmounts(): void {
    this.ctx.lifeline?.update(`rfs:${this.ctx.module}`, {
      // Abort our FUSE connections first (a killed process with files open on its own mount
      // cannot finish exiting until then), then detach the mounts.
      fuseAbort: this.#dirs.flatMap((d) => (d.interceptor && d.fuseId !== undefined ? [d.fuseId] : [])),
      onDeath: this.#dirs.filter((d) => d.interceptor || d.roBound).map((d) => ({ cmd: 'umount', args: ['-l', d.dir], timeoutMs: 5000 })),
    });
  }

  async startPrimary(): Promise<void> {
    for (const d of this.#dirs) {
      if (d.interceptor) continue;
      this.#cleanStale(d);
      d.repl = openReplicatedDir({ dir: d.dir, stateDir: d.trackerDir, ...(this.init.zoneBytes ? { zoneBytes: this.init.zoneBytes } : {}) });
      d.repl.on('lost', (err: Error) => this.#lost(d, err));
      d.repl.on('error', (err: Error) => {
        // The tracker may have missed a change: only a full synchronisation is safe from now on.
        this.#log.error('rfs:tracking', `${d.dir}: ${err.message}; the next reintegration will be a full synchronisation`);
        rmSync(join(d.trackerDir, IN_SYNC), { force: true });
      });
      d.interceptor = mountInterceptor({ dir: d.dir, sink: d.repl.sinkHandle, writeback: this.init.durability === 'fsync' });
      let lastRefusal = 0, quiet = 0;
      d.interceptor.on('refused', (err) => {
        // At most one line every 5 s (an application may retry in a loop).
        const now = Date.now();
        if (now - lastRefusal < 5000) { quiet++; return; }
        this.#log.warn('rfs:refused', `${d.dir}: ${err.message}${quiet ? ` (and ${quiet} more refusals)` : ''}`, { code: err.code });
        lastRefusal = now;
        quiet = 0;
      });
      // O_DIRECT refused by the file system (large writes stay buffered), and the interceptor's own
      // errors (e.g. ERR_RFS_DIVERGED: the replication loss it causes is logged by 'lost' too).
      d.interceptor.on('notice', (msg) => this.#log.info('rfs:notice', `${d.dir}: ${msg}`));
      d.interceptor.on('error', (err) => this.#log.error('rfs:error', `${d.dir}: ${err.message}`, { code: err.code }));
      d.fuseId = fuseConnectionId(d.dir);
      this.#log.info('rfs:primary', `${d.dir}: writes are intercepted and tracked (FUSE over the directory)`);
    }
    this.#registerUnmounts();
  }

  async stopPrimary(): Promise<void> {
    for (const d of this.#dirs) {
      if (d.interceptor) {
        await d.interceptor.unmount({ lazy: true, timeoutMs: 5000 }).catch((err: Error) => this.#log.error('rfs:unmount', `${d.dir}: unmount failed: ${err.message}`));
        d.interceptor = undefined;
        d.fuseId = undefined;
      }
      d.repl?.close();
      d.repl = undefined;
    }
    this.#registerUnmounts();
  }

  async startSecondary(): Promise<void> {
    for (const d of this.#dirs) {
      if (d.receiver) continue;
      this.#cleanStale(d);
      // This node's own unacknowledged changes (split brain) are copied aside before the primary overwrites them.
      const kept = keepAside({ dir: d.dir, index: d.index, trackerDir: d.trackerDir, stateDir: this.ctx.stateDir, zoneBytes: this.init.zoneBytes, log: this.#log });
      if (kept) this.emit('diverged', kept);
      // The receiver opens the real directory first; then the read-only bind hides it from local writers.
      d.receiver = startReceiver({ dir: d.dir, bind: this.ctx.localAddress, port: this.#port + d.index, key: this.ctx.key, mode: this.#mode });
      d.receiver.on('apply-failed', (e) => this.#log.error('rfs:apply-failed', `${d.dir}: applying a change to ${e.path} failed (${e.message}); this copy is not up to date`));
      d.receiver.on('error', (e: Error) => this.#log.warn('rfs:receiver', `${d.dir}: ${e.message}`));
      d.receiver.on('connected', (e) => this.#log.info('rfs:receiver', `${d.dir}: primary connected from ${e.peer}`));
      readOnlyBind(d.dir);
      d.roBound = true;
      this.#log.info('rfs:secondary', `${d.dir}: read-only for local processes; receiving on ${this.ctx.localAddress}:${d.receiver.port}`);
    }
    this.#registerUnmounts();
  }

  async stopSecondary(): Promise<void> {
    for (const d of this.#dirs) {
      if (d.roBound) {
        try { undoReadOnlyBind(d.dir); } catch (err) { this.#log.error('rfs:bind', `${d.dir}: ${(err as Error).message}`); }
        d.roBound = false;
      }
      // Apply everything received before this node may take over (what was acknowledged as
      // received must be in its files).
      d.receiver?.close({ drain: true });
      d.receiver = undefined;
    }
    this.#registerUnmounts();
  }

  async attachSecondary(peer: string, signal: AbortSignal, progress: (p: ReintegrationProgress) => void): Promise<void> {
    const totals: ReintegrationProgress[] = this.#dirs.map(() => ({ bytesDone: 0, bytesTotal: 0, filesDone: 0, filesTotal: 0, filesKept: 0, rate: 0, etaS: 0 }));
    const report = () => {
      const sum = totals.reduce((a, t) => ({
        bytesDone: a.bytesDone + t.bytesDone, bytesTotal: a.bytesTotal + t.bytesTotal, filesDone: a.filesDone + t.filesDone,
        filesTotal: a.filesTotal + t.filesTotal, filesKept: a.filesKept + t.filesKept, rate: a.rate + t.rate, etaS: Math.max(a.etaS, t.etaS),
      }), { bytesDone: 0, bytesTotal: 0, filesDone: 0, filesTotal: 0, filesKept: 0, rate: 0, etaS: 0 });
      progress(sum);
    };
    for (const d of this.#dirs) {
      if (!d.repl) throw new ReintegrationError(`${d.dir}: not primary here`);
      if (signal.aborted) throw new ReintegrationError('aborted');
      const sender = await connectSender({
        host: this.ctx.peerAddress, port: this.#port + d.index, key: this.ctx.key, mode: this.#mode,
        ...(this.init.ackTimeoutMs ? { ackTimeoutMs: this.init.ackTimeoutMs } : {}),
      });
      d.sender = sender;
      // Held: nothing reaches the secondary before the resync below orders it after its copy.
      d.repl.attachSender(sender, { holdUntilResync: true });
      const peerDirty = await this.#askDirty(peer, d.index, signal);
      const full = peerDirty.fresh || !existsSync(join(d.trackerDir, IN_SYNC));
      const kind = full ? 'full' as const : 'resync' as const;
      const startedAt = new Date().toISOString();
      let lastLog = Date.now();
      const onProgress = (p: ReintegrationProgress) => {
        totals[d.index] = p;
        d.progress = { ...p, kind, startedAt };
        report();
        if (Date.now() - lastLog >= 5000) {
          lastLog = Date.now();
          this.#log.info('rfs:progress', `${d.dir}: ${kind === 'full' ? 'first synchronisation' : 'reintegration'} of ${peer}: ${p.filesDone}/${p.filesTotal} entries, ${mib(p.bytesDone)}/${mib(p.bytesTotal)}, ${mib(p.rate)}/s, about ${p.etaS < 0 ? '?' : Math.round(p.etaS)} s left`, { ...p });
        }
      };
      d.repl.on('progress', onProgress);
      let r: ResyncResult;
      try {
        if (full) {
          this.#log.info('rfs:resync', `${d.dir}: full synchronisation of ${peer} (${peerDirty.fresh ? 'its copy was never in sync' : 'no record of a previous synchronisation here'}): its block checksums first, then only what differs`);
          r = await d.repl.fullSync({ signal });
        } else {
          this.#log.info('rfs:resync', `${d.dir}: reintegrating ${peer}: what changed here while it was away, and ${peerDirty.entries.length} entries it may have changed itself`);
          r = await d.repl.resync(peerDirty.entries as never, { signal });
        }
      } finally {
        d.repl.off('progress', onProgress);
        d.progress = undefined;
      }
      d.last = { ...r, kind, at: new Date().toISOString() };
      this.#log.info('rfs:synced', `${d.dir}: ${peer} in sync after ${Math.round(r.ms)} ms: ${r.entries} entries, ${mib(r.bytesSent)} sent${full ? `, ${mib(r.bytesMatched ?? 0)} already there (${r.filesIdentical ?? 0} identical files)${r.sumsError ? `; no checksums from the peer (${r.sumsError}): copied whole` : ''}` : ''}`, { ...r });
      writeFileSync(join(d.trackerDir, IN_SYNC), new Date().toISOString() + '\n');
    }
  }

  async verify(): Promise<DirVerifyReport[]> {
    const out: DirVerifyReport[] = [];
    for (const d of this.#dirs) {
      if (!d.repl || !d.sender) throw new VerifyUnavailableError(`${d.dir}: verify runs on the primary while a secondary is attached (this node is not replicating to one)`);
      const r = await d.repl.verify();
      out.push({ dir: d.dir, differences: r.differences, entries: r.entries, bytes: r.bytes, ms: r.ms });
      this.#log[r.differences.length ? 'warn' : 'info']('rfs:verify', `${d.dir}: ${r.differences.length ? `${r.differences.length} difference(s) with the secondary's copy` : "identical to the secondary's copy"} (${r.entries} entries, ${mib(r.bytes)}, ${Math.round(r.ms)} ms)`, { differences: r.differences.length });
    }
    return out;
  }

  status(): DirReplicationStatus[] {
    return this.#dirs.map((d) => {
      const st: DirReplicationStatus = { dir: d.dir, role: d.repl ? 'primary' : d.receiver ? 'secondary' : 'stopped' };
      if (d.repl) {
        try {
          const s = d.repl.stats();
          st.state = s.state;
          st.dirtyEntries = s.tracker.entries;
        } catch { /* closed meanwhile */ }
      }
      if (d.progress) st.progress = d.progress;
      if (d.last) st.last = d.last;
      return st;
    });
  }

  async detachSecondary(): Promise<void> {
    for (const d of this.#dirs) {
      d.repl?.detachSender();
      d.sender?.close();
      d.sender = undefined;
    }
  }

  #lost(d: DirState, err: Error): void {
    // IN_SYNC stays: the tracker keeps every change from here on (and what the lost sender had not
    // got acknowledged), so the returning secondary is reintegrated from it, not copied whole.
    this.#log.warn('rfs:lost', `${d.dir}: replication to the secondary lost: ${err.message}; changes are tracked for its reintegration`);
    this.emit('lost', err);
  }

  // --- the secondary's own dirty list, over the membership's authenticated messages ---

  #pending = new Map<number, { parts: Map<number, DirtyReply>; resolve: (r: { fresh: boolean; entries: unknown[] }) => void; total?: number }>();

  #askDirty(peer: string, index: number, signal: AbortSignal): Promise<{ fresh: boolean; entries: unknown[] }> {
    return new Promise((resolve, reject) => {
      const state: { parts: Map<number, DirtyReply>; resolve: (r: { fresh: boolean; entries: unknown[] }) => void } = { parts: new Map(), resolve: () => {} };
      this.#pending.set(index, state);
      let tries = 0;
      const ask = () => {
        if (signal.aborted) { clearInterval(timer); this.#pending.delete(index); reject(new ReintegrationError('aborted')); return; }
        if (++tries > 50) { clearInterval(timer); this.#pending.delete(index); reject(new ReintegrationError(`${peer} did not send its list of changes for directory ${index}`)); return; }
        const have = [...state.parts.keys()];
        this.ctx.messages.send(peer, this.#channel, { t: 'dirty?', i: index, have });
      };
      const timer = setInterval(ask, 200);
      ask();
      const done = (r: { fresh: boolean; entries: unknown[] }) => { clearInterval(timer); this.#pending.delete(index); resolve(r); };
      state.resolve = done;
    });
  }

  #handleMessage(e: { from: string; channel: string; body: unknown }): void {
    if (e.from !== this.ctx.peer || e.channel !== this.#channel || typeof e.body !== 'object' || e.body === null) return;
    const b = e.body as Record<string, unknown>;
    if (b.t === 'dirty?' && typeof b.i === 'number') {
      this.#replyDirty(e.from, b.i, Array.isArray(b.have) ? b.have.filter((x): x is number => typeof x === 'number') : []);
    } else if (b.t === 'dirty' && typeof b.i === 'number' && typeof b.part === 'number' && typeof b.parts === 'number' && Array.isArray(b.entries)) {
      const st = this.#pending.get(b.i);
      if (!st) return;
      st.parts.set(b.part, b as unknown as DirtyReply);
      if (st.parts.size === b.parts) {
        const all = [...st.parts.values()].sort((x, y) => x.part - y.part);
        st.resolve({ fresh: all.some((p) => p.fresh), entries: all.flatMap((p) => p.entries) });
      }
    }
  }

  /** Secondary side: send this node's own dirty list (changes made as a primary, maybe never acknowledged). */
  #replyDirty(to: string, index: number, have: number[]): void {
    const d = this.#dirs[index];
    if (!d) return;
    let entries: unknown[] = [];
    const fresh = !existsSync(join(d.trackerDir, IN_SYNC));
    if (!d.repl) {
      try {
        const t = openDirtyTracker({ dir: d.trackerDir, ...(this.init.zoneBytes ? { zoneBytes: this.init.zoneBytes } : {}) });
        try { entries = t.snapshot(); } finally { t.close(); }
      } catch (err) {
        this.#log.warn('rfs:dirty', `${d.dir}: own change list unreadable (${(err as Error).message}): asking for a full synchronisation`);
        this.ctx.messages.send(to, this.#channel, { t: 'dirty', i: index, part: 0, parts: 1, fresh: true, entries: [] });
        return;
      }
    }
    const per = 200;
    const parts = Math.max(1, Math.ceil(entries.length / per));
    for (let p = 0; p < parts; p++) {
      if (have.includes(p)) continue;
      this.ctx.messages.send(to, this.#channel, { t: 'dirty', i: index, part: p, parts, fresh, entries: entries.slice(p * per, (p + 1) * per) });
    }
  }

  /** The primary has reintegrated us: our own old change list is covered; record that we are in sync. */
  async secondaryInSync(): Promise<void> {
    for (const d of this.#dirs) {
      const t = openDirtyTracker({ dir: d.trackerDir, ...(this.init.zoneBytes ? { zoneBytes: this.init.zoneBytes } : {}) });
      try { t.clearAll(); } finally { t.close(); }
      writeFileSync(join(d.trackerDir, IN_SYNC), new Date().toISOString() + '\n');
    }
  }
}

/**
 * The FUSE connection id of the file system mounted at `dir`: the minor number of its device
 * (FUSE superblocks are anonymous devices, major 0), as named under /sys/fs/fuse/connections/.
 */
function fuseConnectionId(dir: string): number | undefined {
  try {
    const dev = statSync(dir).dev;
    const major = Math.floor(dev / 256) & 0xfff;
    const minor = (dev & 0xff) | (Math.floor(dev / 4096) & ~0xff);
    return major === 0 && minor > 1 ? minor : undefined;
  } catch { return undefined; }
}
