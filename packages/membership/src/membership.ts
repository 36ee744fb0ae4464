/**
 * The main-thread side of the membership: validates the init, runs the {@link Engine} in a
 * worker thread (or inline for unit tests), relays events and keeps the latest snapshot.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { EventEmitter } from 'eventemitter3';
import { HaError, StatusGuard, nullLog, type ModuleLog, type Startable } from '@ha/interface';
import { resolveConfig, type MembershipInit, type ResolvedConfig } from './config.js';
import { Engine, type EngineSink } from './engine.js';
import {
  MembershipBindError, MembershipEncodeError, MembershipWorkerError, UnknownMemberError,
} from './errors.js';
import { DROP_REASONS, MAX_APP_BODY_BYTES, MAX_CHANNEL_LENGTH, MAX_PAYLOAD_BYTES, encodeValue, type DropReason } from './messages.js';
import type { WorkerInit, WorkerReport, WorkerRequest } from './protocol.js';
import type { MemberInfo, MembershipEvents, MembershipStats } from './types.js';

/** Components of a {@link Membership}. @public */
export interface MembershipComponents {
  log?: ModuleLog;
}

/** How long stop() waits for the worker to send LEAVE and close its sockets. */
const STOP_TIMEOUT_MS = 2000;
/** How long start() waits for the worker to bind its sockets. */
const START_TIMEOUT_MS = 15_000;

/**
 * The worker: `worker.js` next to this file when built; from the TypeScript sources (tsx, in
 * development) a small bootstrap registers tsx inside the worker first, because loader hooks
 * given with `--import tsx` are not applied to worker threads on Node 20.
 */
function spawnWorker(options: WorkerOptions): Worker {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, options);
  const ts = new URL('./worker.ts', import.meta.url).href;
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(ts)}); })` +
    `.catch((err) => { setImmediate(() => { throw err; }); });`;
  return new Worker(boot, { ...options, eval: true });
}

function encodeChecked(what: string, value: unknown, max: number): Buffer {
  let bytes: Buffer;
  try { bytes = encodeValue(value); } catch (err) {
    throw new MembershipEncodeError(`membership: ${what} cannot be encoded with msgpack: ${(err as Error).message}`, { cause: err });
  }
  if (bytes.length > max) {
    throw new MembershipEncodeError(`membership: ${what} is ${bytes.length} bytes encoded; the limit is ${max}`, { details: { size: bytes.length, max } });
  }
  return bytes;
}

/**
 * Heartbeats over UDP on one or more networks, authenticated messages, failure detection
 * and the view of the members. Create it with {@link membership}.
 * @public
 */
export class Membership extends EventEmitter<MembershipEvents> implements Startable {
  /** This node's id. */
  readonly nodeId: string;
  /** This run's incarnation. */
  readonly incarnation: number;
  /** The resolved pulse and timeout. */
  readonly timing: { pulseMs: number; timeoutMs: number };
  readonly #cfg: ResolvedConfig;
  readonly #useWorker: boolean;
  readonly #log: ModuleLog;
  readonly #guard = new StatusGuard('membership');
  #worker: Worker | undefined;
  #engine: Engine | undefined;
  #payload: Uint8Array | undefined;
  #members: MemberInfo[];
  #stats: MembershipStats;
  #stopping = false;
  #failed = false;

  constructor(init: MembershipInit, components: MembershipComponents = {}) {
    super();
    this.#cfg = resolveConfig(init);
    this.nodeId = this.#cfg.nodeId;
    this.incarnation = this.#cfg.incarnation;
    this.timing = { pulseMs: this.#cfg.pulseMs, timeoutMs: this.#cfg.timeoutMs };
    this.#useWorker = init.useWorker ?? true;
    this.#log = (components.log ?? nullLog()).child('membership');
    this.#members = this.#cfg.members.map((id) => ({
      id, state: 'unknown', incarnation: 0, lastHeardMs: 0,
      networks: Object.fromEntries(this.#cfg.networks.map((n) => [n.name, false])), payload: undefined,
    }));
    this.#stats = {
      sent: 0, received: 0, sendErrors: 0, stallMs: 0,
      dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
    };
  }

  /** Lifecycle status. */
  get status(): string { return this.#guard.status; }

  /** Binds the sockets (in the worker) and starts heartbeating. Rejects with MembershipBindError if a socket cannot bind. */
  async start(): Promise<void> {
    await this.#guard.start(async () => {
      this.#stopping = false;
      this.#failed = false;
      if (this.#useWorker) await this.#startWorker();
      else await this.#startInline();
    });
  }

  /** Sends LEAVE to every peer on every network and stops. */
  async stop(): Promise<void> {
    await this.#guard.stop(async () => {
      this.#stopping = true;
      if (this.#engine) {
        await this.#engine.stop();
        this.#engine = undefined;
      }
      const w = this.#worker;
      if (w) {
        this.#worker = undefined;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, STOP_TIMEOUT_MS);
          w.on('message', (m: WorkerReport) => { if (m.kind === 'stopped') { clearTimeout(timer); resolve(); } });
          w.once('exit', () => { clearTimeout(timer); resolve(); });
          try { w.postMessage({ kind: 'stop' } satisfies WorkerRequest); } catch { resolve(); }
        });
        await w.terminate();
      }
    });
  }

  /** The latest view of every member (self excluded). */
  members(): MemberInfo[] {
    if (this.#engine) return this.#engine.members();
    return this.#members.map((m) => ({ ...m, networks: { ...m.networks } }));
  }

  /** Counters (the latest pushed by the worker). */
  stats(): MembershipStats {
    if (this.#engine) return this.#engine.stats();
    return { ...this.#stats, dropped: { ...this.#stats.dropped } };
  }

  /**
   * Sets the value sent in every heartbeat (small: at most 1024 bytes encoded) and sends a
   * heartbeat at once. Peers get `member:payload` when it changes. May be called before start.
   */
  setPayload(payload: unknown): void {
    const bytes = payload === undefined ? undefined : encodeChecked('payload', payload, MAX_PAYLOAD_BYTES);
    this.#payload = bytes;
    this.#engine?.setPayload(bytes);
    this.#post({ kind: 'setPayload', bytes });
  }

  /**
   * Sends an application message (best effort, once on every network) to member `to` or
   * to every member with `'*'`. Peers get a `message` event.
   */
  send(to: string, channel: string, body: unknown): void {
    this.#guard.assertStarted('send');
    if (to !== '*' && !this.#cfg.members.includes(to)) throw new UnknownMemberError(to);
    if (typeof channel !== 'string' || channel.length === 0 || channel.length > MAX_CHANNEL_LENGTH) {
      throw new MembershipEncodeError(`membership: channel must be a non-empty string of at most ${MAX_CHANNEL_LENGTH} characters`);
    }
    const bytes = encodeChecked(`message body on channel '${channel}'`, body, MAX_APP_BODY_BYTES);
    if (this.#engine) this.#engine.send(to, channel, bytes);
    else this.#post({ kind: 'send', to, channel, body: bytes });
  }

  /** @internal Test hook: stop (or resume) sending on one network, to simulate a cut link. */
  muteNetwork(network: string, muted: boolean): void {
    this.#engine?.mute(network, muted);
    this.#post({ kind: 'mute', network, muted });
  }

  /** @internal Test hook: kills the heartbeat worker as a crash would. */
  async crashWorkerForTesting(): Promise<void> {
    await this.#worker?.terminate();
  }

  #post(m: WorkerRequest): void {
    try { this.#worker?.postMessage(m); } catch (err) {
      this.#log.warn('worker:post', `could not pass ${m.kind} to the heartbeat worker: ${(err as Error).message}`);
    }
  }

  #sink(): EngineSink {
    return {
      event: (e) => { this.emit(e.name, e.data as never); },
      snapshot: (members, stats) => { this.#members = members; this.#stats = stats; },
      log: (level, event, msg, fields) => this.#log.log(level, event, msg, fields),
    };
  }

  async #startInline(): Promise<void> {
    const engine = new Engine(this.#cfg, this.#sink(), this.#payload);
    await engine.start();
    this.#engine = engine;
  }

  async #startWorker(): Promise<void> {
    const sink = this.#sink();
    const init: WorkerInit = { cfg: this.#cfg, payload: this.#payload };
    const worker = spawnWorker({ workerData: init, execArgv: process.execArgv, name: `membership:${this.nodeId}` });
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(new MembershipWorkerError(`membership: the heartbeat worker did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        void worker.terminate();
        reject(err);
      };
      worker.on('message', (m: WorkerReport) => {
        switch (m.kind) {
          case 'started':
            if (!settled) { settled = true; clearTimeout(timer); resolve(); }
            break;
          case 'startFailed': {
            const e = m.error;
            fail(e.code === 'ERR_MEMBERSHIP_BIND'
              ? new MembershipBindError(e.message, { details: e.details ?? {} })
              : new HaError(e.code ?? 'ERR_MEMBERSHIP_WORKER', e.message, { details: e.details ?? {} }));
            break;
          }
          case 'event': sink.event({ name: m.name, data: m.data } as Parameters<EngineSink['event']>[0]); break;
          case 'snapshot': sink.snapshot(m.members, m.stats); break;
          case 'log': sink.log(m.level, m.event, m.msg, m.fields); break;
          case 'stopped': break;
        }
      });
      worker.on('error', (err) => {
        if (!settled) return fail(new MembershipWorkerError(`membership: the heartbeat worker failed to start: ${err.message}`, { cause: err }));
        this.#workerFailed(`the heartbeat worker threw: ${err.message}`, err);
      });
      worker.on('exit', (code) => {
        if (!settled) return fail(new MembershipWorkerError(`membership: the heartbeat worker exited (code ${code}) before starting`));
        if (this.#worker === worker) this.#worker = undefined;
        if (!this.#stopping) this.#workerFailed(`the heartbeat worker exited unexpectedly (code ${code})`);
      });
    });
    this.#worker = worker;
  }

  #workerFailed(msg: string, cause?: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    const err = new MembershipWorkerError(`membership: ${msg}; the membership has failed`, { cause });
    this.#log.error('worker:failed', err.message, { nodeId: this.nodeId });
    this.emit('error', err);
  }
}

/**
 * Creates a membership factory (js-libp2p style): `membership(init)(components)`.
 * Throws MembershipConfigError (code ERR_MEMBERSHIP_CONFIG) when `init` is invalid.
 * @public
 */
export function membership(init: MembershipInit): (components?: MembershipComponents) => Membership {
  resolveConfig(init);
  return (components = {}) => new Membership(init, components);
}
