/**
 * The replicated file system's write interceptor (native, src/rfs/fuse*.cc): a libfuse3
 * low-level passthrough file system mounted over a replicated directory on the primary. Every
 * change is applied to the real directory underneath, described as a record and handed to a
 * change sink (the replication sender, or the {@link TestSink}) in apply order; the write()
 * returns to the application once the sink says the secondary has it — or that it cannot (the
 * primary then goes on ALONE: the write succeeds and the sink tracks it as dirty).
 *
 * Also: {@link staleMountCleanup} for a mount left by a dead process, and
 * {@link readOnlyBind} / {@link undoReadOnlyBind} for the secondary's read-only view.
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { HaError } from '@ha/interface';
import { binding } from './native.js';

declare const sinkBrand: unique symbol;

/**
 * An opaque handle on a native change sink (a `std::shared_ptr<ha::rfs::ChangeSink>` in an
 * external), created by a native module (the replication sender, or {@link createTestSink}).
 * @public
 */
export interface RfsSinkHandle { readonly [sinkBrand]: 'RfsSinkHandle' }

/** Interceptor counters. @public */
export interface InterceptorStats {
  /** Operations by kind: `read`, `write`, `truncate`, `fallocate`, `create`, `mkdir`, `mknod`, `symlink`, `unlink`, `rmdir`, `rename`, `chmod`, `chown`, `utimens`, `setxattr`, `removexattr`, `link`, `fsync`. */
  ops: Record<string, number>;
  bytesWritten: number;
  bytesRead: number;
  /** Operations that failed locally (the errno went back to the application). */
  errors: number;
  /** Records the sink did not get acknowledged (applied locally only; the sink tracks them as dirty). */
  notReplicated: number;
  /** Changes applied locally that had no known path (writes to an open, unlinked file). */
  unrecorded: number;
  /** max_write negotiated with the kernel (bytes per FUSE write). */
  maxWrite: number;
  /** Inodes the kernel holds references on. */
  inodes: number;
  /** Of which with an open fd (the interceptor keeps at most {@link InterceptorStats.inodeFdsMax} open). */
  inodeFds: number;
  inodeFdsMax: number;
  /** Inode fds reopened after the cache closed them, and fds the cache closed. */
  fdReopens: number;
  fdEvictions: number;
  /** Writes made with O_DIRECT on the real file ({@link MountInterceptorInit.directLocalWrites}). */
  directWrites: number;
  /**
   * Of those, writes whose data had to be copied to an aligned buffer first. The interceptor's
   * request buffers put write data on a page boundary, so this stays 0 unless that layout is lost.
   */
  alignedCopies: number;
  /**
   * Large writes whose record went to the secondary before the local write, which then failed or
   * wrote less (disk full): what the file really holds in the range was sent after it, before the
   * application's reply.
   */
  reconciledWrites: number;
  /**
   * Writes answered while their local O_DIRECT write was still running
   * ({@link MountInterceptorInit.overlapLocalWrites}): the secondary had the bytes first.
   */
  overlappedWrites: number;
  /**
   * Of those, writes whose local write then failed (an I/O error): the next fsync or close of the
   * file reported it, and the secondary was given back what the file holds.
   */
  lateLocalErrors: number;
  /** The file system under the mount refused O_DIRECT: every write is buffered. */
  directUnsupported: boolean;
  mounted: boolean;
}

/** Events of an {@link Interceptor}. @public */
export interface InterceptorEvents {
  /** Replication was lost (a change was not acknowledged) or restored. */
  replication: [replicated: boolean];
  /** A stale mount of ours (left by a dead process) was detached before mounting. */
  stale: [message: string];
  /** An operation was refused because it could not be replicated (code ERR_RFS_PATH_TOO_LONG: a path below the directory reaching PATH_MAX; the application got ENAMETOOLONG). */
  refused: [error: RfsError];
  /** Something worth a line in the module log that needs no action (e.g. O_DIRECT refused by the file system). */
  notice: [message: string];
  /** The FUSE session ended without {@link Interceptor.unmount} (someone unmounted it). */
  closed: [error: RfsSessionEndedError];
  error: [error: HaError];
}

/** Options of {@link mountInterceptor}. @public */
export interface MountInterceptorInit {
  /** The replicated directory (made absolute and canonical). */
  dir: string;
  /** Where changes go: a native sink handle, a {@link TestSink}, or `'test'` for a new test sink. */
  sink: 'test' | RfsSinkHandle | TestSink;
  /** FUSE worker threads (they block while a change is being acknowledged). Default 32. */
  maxThreads?: number;
  /** Kernel attribute / entry cache, seconds. Default 86400 (we are the only writer while primary). */
  attrTimeoutS?: number;
  entryTimeoutS?: number;
  /**
   * Use the kernel's writeback cache (default false). false (strict): every `write()` reaches the
   * interceptor and returns only once the sink acknowledged it. true: `write()` returns once the
   * data is in the kernel's page cache; the data reaches the sink (and the secondary) at
   * `fsync`/`fdatasync`, `O_SYNC`/`O_DSYNC` writes, `close` and background writeback, and those
   * calls return only once it is acknowledged. Risk: writes not yet at such a point are lost if
   * the node or this process dies, as they would be in any page cache; between sync points the
   * secondary receives data in writeback order, not in `write()` order.
   */
  writeback?: boolean;
  /**
   * At most this many inode fds stay open in the interceptor (the least recently used are closed
   * and reopened on use), so a tree of millions of files does not exhaust the descriptor limit.
   * Default: half of the process's RLIMIT_NOFILE.
   */
  maxInodeFds?: number;
  /**
   * Large aligned writes (at least 128 KiB, offset and length multiples of 4 KiB) of write-only
   * handles, and with `writeback` the kernel's writeback of cached pages, go to the real file with
   * O_DIRECT (default true): the primary's own copy skips its page cache, which halves the memory
   * traffic of replicated streaming writes, and the disk write runs while the same bytes travel to
   * the secondary. Smaller or unaligned writes, and other handles open for reading too, stay
   * buffered; where the file system refuses O_DIRECT every write is buffered (event `notice`).
   */
  directLocalWrites?: boolean;
  /**
   * Overlapped local writes (default true): such an O_DIRECT write of a plain `write()` (not
   * O_SYNC/O_DSYNC, no `writeback`) is answered once the secondary has its bytes, even if the
   * local disk write is still running, so the disk writes one `write()` while the next travels.
   * Reads, stat, truncate, fsync, close and later writes of the same bytes wait for it. Its space
   * is reserved first (fallocate, keeping the size), so a full disk still fails the `write()`
   * itself. A local I/O error after the answer is reported by the next fsync or close of the file
   * (as the kernel reports a failed writeback), and the secondary is given back what the file
   * holds. False: every answer waits for the local write too.
   */
  overlapLocalWrites?: boolean;
}

/** Options of {@link Interceptor.unmount}. @public */
export interface UnmountOptions {
  /** If files are still open: detach the mount, wait `timeoutMs` for them to close, then abort the connection. Default false (reject with {@link RfsBusyError}). */
  lazy?: boolean;
  /** Default 5000. */
  timeoutMs?: number;
}

/** Base of the interceptor's errors (`code` ERR_RFS_...). @public */
export class RfsError extends HaError {}
/** Invalid argument (names what and where). @public */
export class InvalidRfsArgumentError extends RfsError { constructor(message: string) { super('ERR_RFS_ARG', message); } }
/** Mounting failed (not root, no /dev/fuse, directory missing, already mounted by a live interceptor). @public */
export class RfsMountError extends RfsError {}
/** Unmount refused: files are open under the mount (use `lazy`). @public */
export class RfsBusyError extends RfsError {}
/** Unmounting failed. @public */
export class RfsUnmountError extends RfsError {}
/** The read-only bind could not be made or undone. @public */
export class RfsBindError extends RfsError {}
/** The FUSE session ended without unmount(). @public */
export class RfsSessionEndedError extends RfsError {}

function wrapNative(err: unknown, where: string): HaError {
  const e = err as { code?: unknown; message?: string };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_RFS';
  const msg = `${where}: ${e?.message ?? String(err)}`;
  const opts = { cause: err };
  switch (code) {
    case 'ERR_RFS_ARG': return new InvalidRfsArgumentError(msg);
    case 'ERR_RFS_MOUNT': case 'ERR_RFS_DIR': case 'ERR_RFS_MOUNTED': return new RfsMountError(code, msg, opts);
    case 'ERR_RFS_BUSY': return new RfsBusyError(code, msg, opts);
    case 'ERR_RFS_UNMOUNT': return new RfsUnmountError(code, msg, opts);
    case 'ERR_RFS_BIND': case 'ERR_RFS_NOT_BOUND': return new RfsBindError(code, msg, opts);
    default: return new RfsError(code, msg, opts);
  }
}

interface NativeEvent { kind: string; code: string; message: string }
type Handle = { readonly __rfsMount: true };

/** A record as seen by the {@link TestSink} (data summarised). @public */
export interface TestSinkRecord {
  seq: number;
  op: string;
  path: string;
  path2: string;
  name: string;
  offset: number;
  length: number;
  mode: number;
  flags: number;
  /** 4294967295 = unchanged. */
  uid: number;
  gid: number;
  rdev: number;
  atime: { sec: number; nsec: number };
  mtime: { sec: number; nsec: number };
  dataLength: number;
  /** FNV-1a 64 of the data, 16 hex digits ({@link fnv1a64}); zeros when hashing is off. */
  dataHash: string;
  /** The data itself when at most 256 bytes (xattr values, small writes). */
  data?: Buffer;
}

/** Options of {@link createTestSink}. @public */
export interface TestSinkOptions {
  /** Delay before each acknowledgement, µs. */
  ackDelayUs?: number;
  /** Refuse acknowledgements: WaitAcked returns false (the change is "not replicated"). */
  refuse?: boolean;
  /** Hash written data (default true; off for throughput runs). */
  hash?: boolean;
  /** Keep records (default true); false counts nothing, only acknowledges. */
  keep?: boolean;
}

/** The binding's part for this module. */
interface RfsFuseBinding {
  rfsFuseMount(dir: string, sink: RfsSinkHandle, opts: { maxThreads?: number; attrTimeout?: number; entryTimeout?: number; writeback?: boolean; maxInodeFds?: number; directLocalWrites?: boolean; overlapLocalWrites?: boolean }, onEvent: (e: NativeEvent) => void): Handle;
  rfsFuseUnmount(h: Handle, lazy: boolean, timeoutMs: number): Promise<void>;
  rfsFuseStats(h: Handle): InterceptorStats;
  rfsStaleMountCleanup(dir: string): number;
  rfsReadOnlyBind(dir: string): void;
  rfsUndoReadOnlyBind(dir: string): void;
  rfsTestSinkCreate(opts: TestSinkOptions): RfsSinkHandle;
  rfsTestSinkConfigure(h: RfsSinkHandle, opts: TestSinkOptions): void;
  rfsTestSinkTake(h: RfsSinkHandle): { records: TestSinkRecord[]; beforeApply: number };
}

function b(): RfsFuseBinding { return binding<RfsFuseBinding>(); }

/** FNV-1a 64-bit hash as 16 hex digits (what {@link TestSinkRecord.dataHash} holds). @public */
export function fnv1a64(data: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of data) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

function checkTestSinkOptions(o: TestSinkOptions, where: string): TestSinkOptions {
  if (o === null || typeof o !== 'object') throw new InvalidRfsArgumentError(`${where}: options must be an object`);
  if (o.ackDelayUs !== undefined && (!Number.isInteger(o.ackDelayUs) || o.ackDelayUs < 0 || o.ackDelayUs > 60_000_000)) throw new InvalidRfsArgumentError(`${where}: ackDelayUs must be an integer from 0 to 60000000, got ${o.ackDelayUs}`);
  for (const k of ['refuse', 'hash', 'keep'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new InvalidRfsArgumentError(`${where}: ${k} must be a boolean`);
  return o;
}

/**
 * A change sink for tests: records every record (data summarised by length and hash) and
 * acknowledges at once, after a delay, or never (`refuse`).
 * @public
 */
export class TestSink {
  /** The native handle, to pass as `sink` to {@link mountInterceptor}. */
  readonly handle: RfsSinkHandle;
  private beforeApplyCalls = 0;
  /** @internal */
  constructor(handle: RfsSinkHandle) { this.handle = handle; }
  /** Records received since the last call, in sequence order; removes them from the sink. */
  takeRecords(): TestSinkRecord[] {
    const r = b().rfsTestSinkTake(this.handle);
    this.beforeApplyCalls = r.beforeApply;
    return r.records;
  }
  /** BeforeApply calls so far (as of the last {@link TestSink.takeRecords}). */
  get beforeApply(): number { return this.beforeApplyCalls; }
  /** Changes the acknowledgement behaviour. */
  configure(opts: TestSinkOptions): void { b().rfsTestSinkConfigure(this.handle, checkTestSinkOptions(opts, 'TestSink.configure')); }
}

/** Creates a {@link TestSink}. @public */
export function createTestSink(opts: TestSinkOptions = {}): TestSink {
  return new TestSink(b().rfsTestSinkCreate(checkTestSinkOptions(opts, 'createTestSink')));
}

function canonicalDir(dir: unknown, where: string): string {
  if (typeof dir !== 'string' || dir.length === 0) throw new InvalidRfsArgumentError(`${where}: dir must be a non-empty string, got ${JSON.stringify(dir)}`);
  if (dir.includes('\0') || dir.includes('\n')) throw new InvalidRfsArgumentError(`${where}: dir ${JSON.stringify(dir)} contains a NUL or newline`);
  const abs = isAbsolute(dir) ? dir : resolve(dir);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch (err) {
    // A dead FUSE mount answers ENOTCONN: keep the path as given (made absolute).
    if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') return abs;
    throw new InvalidRfsArgumentError(`${where}: dir ${abs} is not accessible: ${(err as Error).message}`);
  }
  let isDir = false;
  try { isDir = statSync(real).isDirectory(); } catch (err) { if ((err as NodeJS.ErrnoException).code === 'ENOTCONN') return real; throw err; }
  if (!isDir) throw new InvalidRfsArgumentError(`${where}: ${real} is not a directory`);
  return real;
}

function optNumber(v: unknown, name: string, min: number, max: number, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new InvalidRfsArgumentError(`mountInterceptor: ${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

/**
 * A mounted write interceptor. Get one from {@link mountInterceptor}; {@link Interceptor.unmount}
 * when done (an env cleanup hook also unmounts at process exit).
 * @public
 */
export class Interceptor extends EventEmitter<InterceptorEvents> {
  /** The replicated directory (canonical). */
  readonly dir: string;
  /** The test sink when mounted with `sink: 'test'` or a TestSink. */
  readonly testSink: TestSink | undefined;
  private readonly handle: Handle;
  private unmounting: Promise<void> | undefined;

  /** @internal Made by {@link mountInterceptor}; `mount` is an internal function (typed `unknown` to keep the binding's types private). */
  constructor(dir: string, testSink: TestSink | undefined, mount: unknown) {
    super();
    this.dir = dir;
    this.testSink = testSink;
    this.handle = (mount as (onEvent: (e: NativeEvent) => void) => Handle)((e) => this.onNative(e));
  }

  private onNative(e: NativeEvent): void {
    switch (e.kind) {
      case 'replication': this.emit('replication', e.message === 'restored'); break;
      case 'stale': this.emit('stale', e.message); break;
      case 'notice': this.emit('notice', e.message); break;
      case 'refused': this.emit('refused', new RfsError(e.code || 'ERR_RFS_REFUSED', e.message)); break;
      case 'closed': this.emit('closed', new RfsSessionEndedError(e.code || 'ERR_RFS_SESSION_ENDED', e.message)); break;
      default: if (this.listenerCount('error') > 0) this.emit('error', new RfsError(e.code || 'ERR_RFS', e.message));
    }
  }

  /** Counters (cheap: atomics read on the JS thread). */
  stats(): InterceptorStats { return b().rfsFuseStats(this.handle); }

  /** True until unmounted. */
  get mounted(): boolean { return this.stats().mounted; }

  /**
   * Unmounts, waiting for in-flight operations (off the JS thread). Rejects with
   * {@link RfsBusyError} while files are open under the mount, unless `lazy`. If the session has
   * not ended `timeoutMs` after the unmount, the FUSE connection is aborted (pending requests fail
   * with an error). That is what ends a session whose mount lives on elsewhere: a copy of it in a
   * mount namespace made while it was mounted (`ip netns exec`, `unshare -m`, a container), where
   * mounts are not shared. The abort goes through the kernel's FUSE control file system; where
   * it is not mounted on /sys/fs/fuse/connections, a thread mounts it in a mount namespace of its
   * own for the abort, which nothing else sees and which goes with the thread. If even then an operation stuck in the interceptor keeps it from ending within
   * 5 s, rejects with code `ERR_RFS_UNMOUNT` ("did not end"), leaving the session to end on its
   * own: the directory is already detached, and a later call waits again and resolves once it has.
   */
  unmount(opts: UnmountOptions = {}): Promise<void> {
    const lazy = opts.lazy ?? false;
    const timeoutMs = opts.timeoutMs ?? 5000;
    if (typeof lazy !== 'boolean') return Promise.reject(new InvalidRfsArgumentError('unmount: lazy must be a boolean'));
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 600_000) return Promise.reject(new InvalidRfsArgumentError(`unmount: timeoutMs must be an integer from 0 to 600000, got ${timeoutMs}`));
    if (this.unmounting) return this.unmounting;
    const p = b().rfsFuseUnmount(this.handle, lazy, timeoutMs).catch((err: unknown) => { throw wrapNative(err, `unmount ${this.dir}`); });
    this.unmounting = p;
    p.catch(() => { if (this.unmounting === p) this.unmounting = undefined; });
    return p;
  }
}

/**
 * Mounts the write interceptor over `init.dir` (root; /dev/fuse). A stale mount of ours left
 * there by a dead process is detached first (event `stale`). Every change made through the
 * directory is then handed to the sink before the operation returns to the application.
 *
 * @example
 * ```ts
 * const icpt = mountInterceptor({ dir: '/srv/data', sink: 'test' })
 * await writeFile('/srv/data/a', 'hello')              // through the interceptor
 * icpt.testSink!.takeRecords()                          // [{ op: 'create', path: 'a' ...}, { op: 'write' ...}]
 * await icpt.unmount()
 * ```
 * @public
 */
export function mountInterceptor(init: MountInterceptorInit): Interceptor {
  if (init === null || typeof init !== 'object') throw new InvalidRfsArgumentError('mountInterceptor: init must be an object');
  const dir = canonicalDir(init.dir, 'mountInterceptor');
  let testSink: TestSink | undefined;
  let sink: RfsSinkHandle;
  if (init.sink === 'test') { testSink = createTestSink(); sink = testSink.handle; }
  else if (init.sink instanceof TestSink) { testSink = init.sink; sink = init.sink.handle; }
  else if (init.sink !== null && typeof init.sink === 'object') sink = init.sink;
  else throw new InvalidRfsArgumentError(`mountInterceptor: sink must be 'test', a TestSink or a native sink handle, got ${JSON.stringify(init.sink)}`);
  const maxThreads = optNumber(init.maxThreads, 'maxThreads', 1, 1024, true);
  const attrTimeout = optNumber(init.attrTimeoutS, 'attrTimeoutS', 0, 1e9, false);
  const entryTimeout = optNumber(init.entryTimeoutS, 'entryTimeoutS', 0, 1e9, false);
  if (init.writeback !== undefined && typeof init.writeback !== 'boolean') throw new InvalidRfsArgumentError(`mountInterceptor: writeback must be a boolean, got ${JSON.stringify(init.writeback)}`);
  const maxInodeFds = optNumber(init.maxInodeFds, 'maxInodeFds', 16, 1 << 24, true);
  if (init.directLocalWrites !== undefined && typeof init.directLocalWrites !== 'boolean') throw new InvalidRfsArgumentError(`mountInterceptor: directLocalWrites must be a boolean, got ${JSON.stringify(init.directLocalWrites)}`);
  const opts: { maxThreads?: number; attrTimeout?: number; entryTimeout?: number; writeback?: boolean; maxInodeFds?: number; directLocalWrites?: boolean; overlapLocalWrites?: boolean } = {};
  if (init.directLocalWrites !== undefined) opts.directLocalWrites = init.directLocalWrites;
  if (init.overlapLocalWrites !== undefined && typeof init.overlapLocalWrites !== 'boolean') throw new InvalidRfsArgumentError(`mountInterceptor: overlapLocalWrites must be a boolean, got ${JSON.stringify(init.overlapLocalWrites)}`);
  if (init.overlapLocalWrites !== undefined) opts.overlapLocalWrites = init.overlapLocalWrites;
  if (maxInodeFds !== undefined) opts.maxInodeFds = maxInodeFds;
  if (init.writeback !== undefined) opts.writeback = init.writeback;
  if (maxThreads !== undefined) opts.maxThreads = maxThreads;
  if (attrTimeout !== undefined) opts.attrTimeout = attrTimeout;
  if (entryTimeout !== undefined) opts.entryTimeout = entryTimeout;
  const bind = b();
  try {
    return new Interceptor(dir, testSink, (onEvent: (e: NativeEvent) => void) => bind.rfsFuseMount(dir, sink, opts, onEvent));
  } catch (err) {
    if (err instanceof HaError) throw err;
    throw wrapNative(err, `mount interceptor over ${dir}`);
  }
}

/**
 * Detaches stale interceptor mounts at `dir` (ours, whose process died: ENOTCONN), e.g. from a
 * lifeline after the process was SIGKILLed, or before starting. Returns how many were detached
 * (0 if none). Throws {@link RfsMountError} if a LIVE interceptor is mounted there.
 * @public
 */
export function staleMountCleanup(dir: string): number {
  const d = canonicalDir(dir, 'staleMountCleanup');
  try { return b().rfsStaleMountCleanup(d); } catch (err) { throw wrapNative(err, `stale mount cleanup of ${d}`); }
}

/**
 * Makes `dir` read-only for every process (the secondary's replicated directories): a bind
 * mount of the directory over itself, remounted read-only. An fd opened on `dir` before still
 * writes underneath (the applier). Idempotent.
 * @public
 */
export function readOnlyBind(dir: string): void {
  const d = canonicalDir(dir, 'readOnlyBind');
  try { b().rfsReadOnlyBind(d); } catch (err) { throw wrapNative(err, `read-only bind of ${d}`); }
}

/** Removes the read-only bind made by {@link readOnlyBind}. @public */
export function undoReadOnlyBind(dir: string): void {
  const d = canonicalDir(dir, 'undoReadOnlyBind');
  try { b().rfsUndoReadOnlyBind(d); } catch (err) { throw wrapNative(err, `undo read-only bind of ${d}`); }
}
