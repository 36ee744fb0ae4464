/**
 * The replication transport (native, src/rfs/transport*.cc, channel*.cc, applier*.cc): a sender on
 * the primary that streams change records to the secondary over TCP, and a receiver on the
 * secondary that applies them in order to the real directory and acknowledges them.
 *
 * The channel is authenticated with the shared cluster key (a handshake with fresh nonces from
 * both sides and HMAC proofs, keys from HKDF-SHA256, domain `ha-sdk/rfs/v1`); every frame is
 * sealed with AES-256-GCM and a counter nonce, so a tampered, replayed, reordered or forged frame
 * closes the connection (`ERR_RFS_AUTH`) and changes nothing. The hot path (encrypting, sending,
 * applying, acknowledging) runs on native threads; JS only hears events.
 */
import { isAbsolute, resolve } from 'node:path';
import { statSync } from 'node:fs';
import { EventEmitter } from 'eventemitter3';
import { HaError } from '@ha/interface';
import { binding } from './native.js';
import type { RfsSinkHandle } from './rfs-fuse.js';

/**
 * When the secondary acknowledges a change: `received` (it holds the bytes in memory) or
 * `written` (applied to its files; for an fsync, made durable there). @public
 */
export type RfsAckMode = 'received' | 'written';

/** Change kinds (the wire values of record.h's `Op`). @public */
export const RFS_OPS = {
  write: 1, truncate: 2, fallocate: 3, create: 4, mkdir: 5, mknod: 6, symlink: 7, unlink: 8, rmdir: 9,
  rename: 10, chmod: 11, chown: 12, utimens: 13, setxattr: 14, removexattr: 15, link: 16, fsync: 17,
  barrier: 18, syncEntry: 19, dirList: 20,
} as const;

/** Name of a change kind. @public */
export type RfsOpName = keyof typeof RFS_OPS;

/** A timestamp as [seconds, nanoseconds]. @public */
export type RfsTimespec = [sec: number, nsec: number];

/**
 * One change, as the write interceptor describes it (paths relative to the replicated directory,
 * no leading '/'; '' is the directory itself). See native/src/rfs/record.h for each op's fields.
 * @public
 */
export interface RfsRecord {
  op: RfsOpName;
  path?: string;
  /** Rename/link: the new name; symlink / syncEntry: the link's target. */
  path2?: string;
  /** xattr name. */
  name?: string;
  offset?: number;
  length?: number;
  mode?: number;
  flags?: number;
  uid?: number;
  gid?: number;
  rdev?: number;
  atime?: RfsTimespec;
  mtime?: RfsTimespec;
  /** Write bytes, xattr value, or (dirList) the names, each followed by a NUL byte. */
  data?: Uint8Array;
}

/** A change submitted but not acknowledged (for the dirty tracker). @public */
export interface RfsUnackedRecord {
  seq: number;
  op: RfsOpName;
  path: string;
  path2?: string;
  offset: number;
  /** Write: the data length; truncate: the new size; fallocate: the length. */
  length: number;
}

/** Base of the transport's errors; `code` is one of ERR_RFS_AUTH, ERR_RFS_CONNECT, ERR_RFS_LISTEN, ERR_RFS_DIR, ERR_RFS_LINK, ERR_RFS_FRAME, ERR_RFS_BAD_RECORD, ERR_RFS_APPLY, ERR_RFS_ACK_TIMEOUT, ERR_RFS_QUEUE_FULL, ERR_RFS_CLOSED, ERR_RFS_TRANSPORT_ARG. @public */
export class RfsTransportError extends HaError {}
/** An invalid argument (the message names the field). @public */
export class InvalidRfsTransportArgumentError extends RfsTransportError {
  constructor(message: string) { super('ERR_RFS_TRANSPORT_ARG', message); }
}

/** Options of {@link startReceiver}. @public */
export interface RfsReceiverInit {
  /** The secondary's copy of the replicated directory (opened once, before anything is mounted over it). */
  dir: string;
  /** Address to listen on (numeric IPv4/IPv6). Default '127.0.0.1'. */
  bind?: string;
  /** TCP port; 0 (default) picks a free one (see {@link RfsReceiver.port}). */
  port?: number;
  /** The shared cluster key (a string is taken as UTF-8; at least 16 bytes). */
  key: string | Uint8Array;
  /** `written` (default): fsync records, and writes the application made synchronous (`O_SYNC`/`O_DSYNC`, `RWF_DSYNC`), are made durable on the secondary before they are acknowledged as applied; `received`: they only order. */
  mode?: RfsAckMode;
}

/** Counters of a {@link RfsReceiver}. @public */
export interface RfsReceiverStats {
  recordsApplied: number;
  /** Write bytes applied. */
  bytesApplied: number;
  lastSeqReceived: number;
  lastSeqApplied: number;
  /** Records received and not yet applied. */
  lag: number;
  /** Authenticated streams so far. */
  connections: number;
  /**
   * Acknowledgements sent as frames arrived. A large write travels as parts of 512 KiB; only its
   * last part is acknowledged (acknowledgements are cumulative), so a 2 MiB write costs one.
   */
  receivedAcks: number;
  connected: boolean;
  peer?: string;
}

/** Events of a {@link RfsReceiver}. @public */
export interface RfsReceiverEvents {
  /** An authenticated primary connected (it replaces the previous one). */
  connected: [info: { peer: string }];
  /** The stream ended (`code`: why). */
  disconnected: [info: { peer: string; code?: string; message?: string }];
  /** A rejected connection (ERR_RFS_AUTH), a bad frame (ERR_RFS_FRAME) or record (ERR_RFS_BAD_RECORD). */
  error: [error: RfsTransportError];
  /** A record could not be applied (ENOSPC, EIO...): nothing more is applied nor acknowledged on this stream; the secondary's copy is not up to date. */
  'apply-failed': [info: { path: string; errno: number; seq: number; message: string }];
}

interface NativeEvent { peer?: string; code?: string; message?: string; path?: string; errno?: number; seq?: number }
declare const handleBrand: unique symbol;
interface NativeHandle { readonly [handleBrand]: 'RfsTransportHandle' }

/** The binding's transport functions. */
interface RfsTransportBinding {
  rfsReceiverStart(o: { dir: string; bind: string; port: number; key: Buffer; durable: boolean; onEvent: (type: string, e: NativeEvent) => void }): NativeHandle;
  rfsReceiverPort(h: NativeHandle): number;
  rfsReceiverStats(h: NativeHandle): RfsReceiverStats;
  rfsReceiverClose(h: NativeHandle, drain?: boolean): void;
  rfsSenderConnect(o: { host: string; port: number; key: Buffer; mode: RfsAckMode; ackTimeoutMs: number; maxQueueBytes: number; connectTimeoutMs: number; onEvent: (type: string, e: NativeEvent) => void }): Promise<{ handle: NativeHandle; peer: string }>;
  rfsSenderSink(h: NativeHandle): RfsSinkHandle;
  rfsSenderSubmit(h: NativeHandle, r: Omit<RfsRecord, 'op'> & { op: number }): number;
  rfsSenderWaitAcked(h: NativeHandle, seq: number): Promise<boolean>;
  rfsSenderBench(h: NativeHandle, path: string, count: number, size: number, sync: boolean): Promise<{ ok: boolean; ns: number }>;
  rfsSenderStats(h: NativeHandle): RfsSenderStats;
  rfsSenderTakeUnacked(h: NativeHandle): Array<Omit<RfsUnackedRecord, 'op'> & { op: number }>;
  rfsSenderClose(h: NativeHandle): void;
  rfsCipherImplementation(): string;
}

const OP_NAMES = new Map<number, RfsOpName>(Object.entries(RFS_OPS).map(([k, v]) => [v, k as RfsOpName]));

function fail(message: string): never { throw new InvalidRfsTransportArgumentError(message); }

function keyBuffer(key: unknown, where: string): Buffer {
  let b: Buffer;
  if (typeof key === 'string') b = Buffer.from(key, 'utf8');
  else if (key instanceof Uint8Array) b = Buffer.from(key);
  else fail(`${where}.key must be a string or a Uint8Array`);
  if (b.length < 16) fail(`${where}.key must be at least 16 bytes, got ${b.length}`);
  return b;
}

function intIn(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return v;
}

function modeOf(v: unknown, name: string, dflt: RfsAckMode): RfsAckMode {
  if (v === undefined) return dflt;
  if (v !== 'received' && v !== 'written') fail(`${name} must be 'received' or 'written', got ${JSON.stringify(v)}`);
  return v;
}

function nativeError(code: string | undefined, message: string | undefined, details: Record<string, unknown> = {}): RfsTransportError {
  return new RfsTransportError(code ?? 'ERR_RFS_TRANSPORT', message ?? 'replication transport error', { details });
}

function rethrow(err: unknown): never {
  const e = err as { code?: string; message?: string };
  if (e && typeof e.code === 'string' && e.code.startsWith('ERR_RFS_')) throw nativeError(e.code, e.message);
  throw err;
}

const IP = /^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;

/**
 * The secondary's receiver: applies the records of one authenticated primary at a time to `dir`.
 * Close it with {@link RfsReceiver.close} (it keeps the process alive until then).
 * @public
 */
export class RfsReceiver extends EventEmitter<RfsReceiverEvents> {
  /** The TCP port it listens on. */
  readonly port: number;
  readonly #b: RfsTransportBinding;
  readonly #h: NativeHandle;
  #closed = false;

  /** @internal Made by {@link startReceiver} (`b`, `h`: the binding and the native handle, kept private). */
  constructor(b: unknown, h: unknown) {
    super();
    this.#b = b as RfsTransportBinding;
    this.#h = h as NativeHandle;
    this.port = this.#b.rfsReceiverPort(this.#h);
  }

  /** @internal The native side's events (`e`: the binding's event object). */
  _event(type: string, ev: unknown): void {
    const e = ev as NativeEvent;
    switch (type) {
      case 'connected': this.emit('connected', { peer: e.peer ?? '' }); break;
      case 'disconnected': this.emit('disconnected', { peer: e.peer ?? '', ...(e.code ? { code: e.code } : {}), ...(e.message ? { message: e.message } : {}) }); break;
      case 'apply-failed': this.emit('apply-failed', { path: e.path ?? '', errno: e.errno ?? 0, seq: e.seq ?? 0, message: e.message ?? '' }); break;
      default: {
        const err = nativeError(e.code, e.message, { peer: e.peer, path: e.path, seq: e.seq });
        if (this.listenerCount('error') > 0) this.emit('error', err);
      }
    }
  }

  /** Counters (records/bytes applied, last seqs, lag). */
  stats(): RfsReceiverStats {
    if (this.#closed) fail('stats(): the receiver is closed');
    return this.#b.rfsReceiverStats(this.#h);
  }

  /** Stops listening, ends the current stream (records not yet applied are dropped) and joins the threads. */
  /**
   * Stops receiving. With `drain`, every record already received is applied first (blocking
   * until done, bounded by the receiver's apply queue): a secondary that takes over must apply
   * what it acknowledged as received. Without, records not yet applied are dropped.
   */
  close(opts: { drain?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#b.rfsReceiverClose(this.#h, opts.drain === true);
  }
}

/**
 * Which AES-256-GCM code seals and opens replication frames in this process:
 * `'intel-ipsec-mb (avx512)'` where the addon was built with Intel's intel-ipsec-mb (Debian:
 * `libipsec-mb-dev`, linked statically) and the CPU has VAES and VPCLMULQDQ (about 2.5 times
 * OpenSSL 3.0's speed), else `'openssl'`. Both produce the same frames, so the two nodes may differ.
 * `HA_RFS_AES=openssl` in the environment forces OpenSSL (read when a link is established).
 * @public
 */
export function aesGcmImplementation(): string {
  return binding<RfsTransportBinding>().rfsCipherImplementation();
}

/**
 * Starts the secondary's receiver on `bind`:`port` for directory `dir`.
 * @example
 * ```ts
 * const rcv = startReceiver({ dir: '/srv/data', bind: '198.18.0.2', port: 7410, key })
 * rcv.on('apply-failed', (f) => console.error('secondary not up to date', f))
 * ```
 * @public
 */
export function startReceiver(init: RfsReceiverInit): RfsReceiver {
  if (!init || typeof init !== 'object') fail('startReceiver(init): init must be an object');
  if (typeof init.dir !== 'string' || init.dir === '') fail('startReceiver: dir must be a non-empty string');
  const dir = isAbsolute(init.dir) ? init.dir : resolve(init.dir);
  let st;
  try { st = statSync(dir); } catch (err) { fail(`startReceiver: dir ${dir} does not exist (${(err as Error).message})`); }
  if (!st.isDirectory()) fail(`startReceiver: dir ${dir} is not a directory`);
  const bind = init.bind ?? '127.0.0.1';
  if (typeof bind !== 'string' || !IP.test(bind)) fail(`startReceiver: bind must be a numeric IP address, got ${JSON.stringify(bind)}`);
  const port = intIn(init.port, 'startReceiver: port', 0, 65535, 0);
  const key = keyBuffer(init.key, 'startReceiver');
  const mode = modeOf(init.mode, 'startReceiver: mode', 'written');
  const b = binding<RfsTransportBinding>();
  let rcv: RfsReceiver | undefined;
  const pending: Array<[string, NativeEvent]> = [];
  let h: NativeHandle;
  try {
    h = b.rfsReceiverStart({ dir, bind, port, key, durable: mode === 'written', onEvent: (t, e) => { if (rcv) rcv._event(t, e); else pending.push([t, e]); } });
  } catch (err) { rethrow(err); }
  rcv = new RfsReceiver(b, h);
  for (const [t, e] of pending) rcv._event(t, e);
  return rcv;
}

/** Options of {@link connectSender}. @public */
export interface RfsSenderInit {
  /** The receiver's address (IP or host name). */
  host: string;
  port: number;
  /** The shared cluster key (a string is taken as UTF-8; at least 16 bytes). */
  key: string | Uint8Array;
  /** Which acknowledgement {@link RfsSender.waitAcked} (and the interceptor) waits for. Default `written`. */
  mode?: RfsAckMode;
  /** A change not acknowledged within this many ms makes replication lost. Default 2000. */
  ackTimeoutMs?: number;
  /** Bound on bytes submitted but not acknowledged; beyond it replication is lost. Default 64 MiB. */
  maxQueueBytes?: number;
  /** Bound on connect + handshake. Default 5000. */
  connectTimeoutMs?: number;
}

/** Counters of a {@link RfsSender}. @public */
export interface RfsSenderStats {
  /** Last seq assigned. */
  submitted: number;
  /** Acknowledged as received up to. */
  received: number;
  /** Acknowledged as applied up to. */
  applied: number;
  /** Bytes submitted and not acknowledged. */
  pendingBytes: number;
  /** Records not yet sent. */
  queuedRecords: number;
  bytesSent: number;
  framesSent: number;
  lost: boolean;
  lostCode?: string;
  lostReason?: string;
}

/** Events of a {@link RfsSender}. @public */
export interface RfsSenderEvents {
  /** Replication is lost (final: reconnecting means a new sender). `error.code`: ERR_RFS_LINK, ERR_RFS_ACK_TIMEOUT, ERR_RFS_QUEUE_FULL, ERR_RFS_APPLY, ERR_RFS_AUTH, ERR_RFS_FRAME, or ERR_RFS_CLOSED after {@link RfsSender.close}. */
  lost: [error: RfsTransportError];
}

/**
 * The primary's sender: a native change sink ({@link RfsSender.sinkHandle}, for the write
 * interceptor) streaming to one receiver.
 * @public
 */
export class RfsSender extends EventEmitter<RfsSenderEvents> {
  /** The receiver's address:port. */
  readonly peer: string;
  readonly #b: RfsTransportBinding;
  readonly #h: NativeHandle;
  #sink: RfsSinkHandle | undefined;
  #closed = false;

  /** @internal Made by {@link connectSender} (`b`, `h`: the binding and the native handle, kept private). */
  constructor(b: unknown, h: unknown, peer: string) {
    super();
    this.#b = b as RfsTransportBinding;
    this.#h = h as NativeHandle;
    this.peer = peer;
  }

  /** @internal The native side's events (`e`: the binding's event object). */
  _event(type: string, ev: unknown): void {
    const e = ev as NativeEvent;
    if (type === 'lost') this.emit('lost', nativeError(e.code, e.message));
  }

  /** The native change sink to give the write interceptor (`mountInterceptor({ sink })`). */
  get sinkHandle(): RfsSinkHandle {
    this.#sink ??= this.#b.rfsSenderSink(this.#h);
    return this.#sink;
  }

  /** Submits one change as the interceptor would (for tests without FUSE); returns its seq. */
  submitForTest(record: RfsRecord): number {
    this.#open('submitForTest');
    return this.#b.rfsSenderSubmit(this.#h, checkRecord(record));
  }

  /** Resolves true when `seq` is acknowledged (per the mode), false when replication is lost (link down, ack timeout, queue overflow). Waits on the thread pool. */
  waitAcked(seq: number): Promise<boolean> {
    this.#open('waitAcked');
    intIn(seq, 'waitAcked: seq', 1, Number.MAX_SAFE_INTEGER, 1);
    return this.#b.rfsSenderWaitAcked(this.#h, seq);
  }

  /** Throughput helper: `count` writes of `size` bytes to `path` submitted natively (offsets wrap at 64 MiB), each waited for if `sync`. */
  benchForTest(path: string, count: number, size: number, sync: boolean): Promise<{ ok: boolean; ns: number }> {
    this.#open('benchForTest');
    checkPath(path, 'benchForTest: path', false);
    intIn(count, 'benchForTest: count', 1, 1e7, 1);
    intIn(size, 'benchForTest: size', 1, 4 << 20, 1);
    return this.#b.rfsSenderBench(this.#h, path, count, size, sync === true);
  }

  /** Counters and the lost state. */
  stats(): RfsSenderStats {
    this.#open('stats');
    return this.#b.rfsSenderStats(this.#h);
  }

  /** Once lost: removes and returns every change submitted and not acknowledged, in seq order. While replicating: a snapshot of the changes in flight. */
  takeUnacked(): RfsUnackedRecord[] {
    this.#open('takeUnacked');
    return this.#b.rfsSenderTakeUnacked(this.#h).map((r) => ({ ...r, op: OP_NAMES.get(r.op) ?? 'barrier' }));
  }

  /** Stops the threads and closes the connection (a `lost` event with ERR_RFS_CLOSED if it was up). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#b.rfsSenderClose(this.#h);
  }

  #open(what: string): void {
    if (this.#closed) fail(`${what}(): the sender is closed`);
  }
}

function checkPath(p: unknown, name: string, allowRoot: boolean): string {
  if (typeof p !== 'string') fail(`${name} must be a string`);
  if (p === '' && allowRoot) return p;
  if (p === '' || p.startsWith('/') || p.split('/').some((c) => c === '' || c === '.' || c === '..') || p.includes('\0'))
    fail(`${name} must be a relative path without empty, '.' or '..' components, got ${JSON.stringify(p)}`);
  return p;
}

const U32 = 0xffffffff;

function checkRecord(r: RfsRecord): Omit<RfsRecord, 'op'> & { op: number } {
  if (!r || typeof r !== 'object') fail('record must be an object');
  const op = RFS_OPS[r.op];
  if (op === undefined) fail(`record.op must be one of ${Object.keys(RFS_OPS).join(', ')}, got ${JSON.stringify(r.op)}`);
  // Paths are validated for type here; their confinement is the receiver's job (it must also
  // refuse a hostile sender's paths), so tests can submit bad paths on purpose.
  for (const k of ['path', 'path2', 'name'] as const) if (r[k] !== undefined && typeof r[k] !== 'string') fail(`record.${k} must be a string`);
  for (const k of ['offset', 'length', 'rdev'] as const) intIn(r[k], `record.${k}`, 0, Number.MAX_SAFE_INTEGER, 0);
  for (const k of ['mode', 'flags', 'uid', 'gid'] as const) intIn(r[k], `record.${k}`, 0, U32, 0);
  for (const k of ['atime', 'mtime'] as const) {
    const t = r[k];
    if (t !== undefined && (!Array.isArray(t) || t.length !== 2 || !t.every((x) => Number.isInteger(x)))) fail(`record.${k} must be [sec, nsec]`);
  }
  if (r.data !== undefined && !(r.data instanceof Uint8Array)) fail('record.data must be a Uint8Array');
  return { ...r, op };
}

/**
 * Connects the primary's sender to a receiver (handshake included).
 * @example
 * ```ts
 * const sender = await connectSender({ host: '198.18.0.2', port: 7410, key, mode: 'written' })
 * sender.on('lost', (err) => console.warn('replication lost', err.code, sender.takeUnacked().length))
 * const itc = await mountInterceptor({ dir: '/srv/data', sink: sender.sinkHandle })
 * ```
 * @public
 */
export async function connectSender(init: RfsSenderInit): Promise<RfsSender> {
  if (!init || typeof init !== 'object') fail('connectSender(init): init must be an object');
  if (typeof init.host !== 'string' || init.host === '' || init.host.length > 253) fail('connectSender: host must be a non-empty string');
  const port = intIn(init.port, 'connectSender: port', 1, 65535, 0);
  const key = keyBuffer(init.key, 'connectSender');
  const mode = modeOf(init.mode, 'connectSender: mode', 'written');
  const ackTimeoutMs = intIn(init.ackTimeoutMs, 'connectSender: ackTimeoutMs', 1, 600_000, 2000);
  const maxQueueBytes = intIn(init.maxQueueBytes, 'connectSender: maxQueueBytes', 1 << 16, 2 ** 40, 64 << 20);
  const connectTimeoutMs = intIn(init.connectTimeoutMs, 'connectSender: connectTimeoutMs', 1, 600_000, 5000);
  const b = binding<RfsTransportBinding>();
  let sender: RfsSender | undefined;
  const pending: Array<[string, NativeEvent]> = [];
  let res: { handle: NativeHandle; peer: string };
  try {
    res = await b.rfsSenderConnect({ host: init.host, port, key, mode, ackTimeoutMs, maxQueueBytes, connectTimeoutMs, onEvent: (t, e) => { if (sender) sender._event(t, e); else pending.push([t, e]); } });
  } catch (err) { rethrow(err); }
  sender = new RfsSender(b, res.handle, res.peer);
  for (const [t, e] of pending) sender._event(t, e);
  return sender;
}
