/**
 * The membership loop: sockets, heartbeats, receive checks, failure detection and local
 * awareness. Runs inside the worker thread (or on the main thread for unit tests).
 */
import type { RemoteInfo } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { CarrierWatch, isIsolated, StallMeter } from './awareness.js';
import type { ResolvedConfig } from './config.js';
import { Detector, type DetectorEvent } from './detector.js';
import {
  DROP_REASONS, MessageType, decodePacket, decodeValue, encodePacket,
  type DropReason, type Message,
} from './messages.js';
import { ReplayGuard } from './replay.js';
import { tickInterval } from './timing.js';
import { Transport } from './transport.js';
import type { LogLevel } from '@ha/interface';
import type { MemberInfo, MembershipEvents, MembershipEventName, MembershipStats } from './types.js';

/** An event as the engine reports it. */
export interface EngineEvent<K extends MembershipEventName = MembershipEventName> {
  name: K;
  data: Parameters<MembershipEvents[K]>[0];
}

/** Where the engine reports to. */
export interface EngineSink {
  event(e: EngineEvent): void;
  snapshot(members: MemberInfo[], stats: MembershipStats): void;
  log(level: LogLevel, event: string, msg: string, fields?: Record<string, unknown>): void;
}

/** Copies of LEAVE sent on each network by stop(). */
export const LEAVE_COPIES = 3;
/** At most this many `dropped` events per second. */
const DROPPED_EVENTS_PER_SECOND = 10;
/** Snapshot pushed at least this often (ms), and at once after any change. */
const SNAPSHOT_EVERY_MS = 250;

/** Extra engine options (tests). */
export interface EngineOptions {
  /** Override the carrier probe (tests). */
  carrierProbe?: (iface: string) => boolean;
}

/** The membership loop. */
export class Engine {
  readonly cfg: ResolvedConfig;
  readonly #sink: EngineSink;
  readonly #transport: Transport;
  readonly #detector: Detector;
  readonly #replay = new ReplayGuard();
  readonly #stall: StallMeter;
  readonly #carrier: CarrierWatch;
  readonly #tickMs: number;
  readonly #seq: number[];
  #mid = 0;
  #payload: Uint8Array | undefined;
  #hbTimer: NodeJS.Timeout | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #running = false;
  #isolated = false;
  #lastCheck: number | undefined;
  #dirty = true;
  #lastSnapshot = -Infinity;
  #droppedTokens = DROPPED_EVENTS_PER_SECOND;
  #droppedRefill = 0;
  readonly #stats: MembershipStats;

  constructor(cfg: ResolvedConfig, sink: EngineSink, payload?: Uint8Array, opts: EngineOptions = {}) {
    this.cfg = cfg;
    this.#sink = sink;
    this.#payload = payload;
    this.#tickMs = tickInterval(cfg);
    this.#stall = new StallMeter(this.#tickMs, Math.max(this.#tickMs, 10));
    this.#carrier = new CarrierWatch(cfg.networks.map((n) => n.localAddress), 1000, opts.carrierProbe);
    this.#seq = cfg.networks.map(() => 0);
    this.#detector = new Detector(cfg.nodeId, cfg.incarnation, cfg.members, cfg.networks.map((n) => n.name), cfg.timeoutMs, decodeValue);
    this.#transport = new Transport(
      cfg.networks.map((n) => ({ name: n.name, localAddress: n.localAddress, port: n.port })),
      (net, buf, from) => this.#receive(net, buf, from),
      (net, err) => this.#sink.log('warn', 'socket:error', `socket of network '${this.cfg.networks[net]?.name}' reported: ${err.message}`, { network: this.cfg.networks[net]?.name }),
    );
    const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
    this.#stats = { sent: 0, received: 0, dropped, sendErrors: 0, stallMs: 0 };
  }

  /** Binds the sockets and starts the timers. */
  async start(): Promise<void> {
    await this.#transport.start();
    this.#running = true;
    this.#sendHeartbeats();
    this.#hbTimer = setInterval(() => this.#sendHeartbeats(), this.cfg.pulseMs);
    this.#tickTimer = setInterval(() => this.#onTick(), this.#tickMs);
    this.#sink.log('info', 'membership:started', `membership started as '${this.cfg.nodeId}' incarnation ${this.cfg.incarnation}: pulse ${this.cfg.pulseMs} ms, timeout ${this.cfg.timeoutMs} ms, check every ${this.#tickMs} ms`, {
      nodeId: this.cfg.nodeId, incarnation: this.cfg.incarnation, pulseMs: this.cfg.pulseMs, timeoutMs: this.cfg.timeoutMs,
      networks: this.cfg.networks.map((n) => `${n.name}=${n.localAddress}:${n.port}`),
    });
    this.#pushSnapshot(performance.now());
  }

  /** Sends LEAVE on every network (a few copies), then closes the sockets. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#hbTimer);
    clearInterval(this.#tickTimer);
    if (this.#immediate) clearImmediate(this.#immediate);
    for (let c = 0; c < LEAVE_COPIES; c++) {
      for (const n of this.cfg.networks) {
        const buf = this.#encode(n.index, MessageType.LEAVE, { acks: this.#detector.acks() });
        for (const [, addr] of n.peers) this.#send(n.index, buf, addr, n.port);
      }
    }
    // Let the datagrams leave before closing the sockets.
    await new Promise((r) => setTimeout(r, 5));
    this.#transport.stop();
    this.#pushSnapshot(performance.now());
    this.#sink.log('info', 'membership:stopped', 'membership stopped; LEAVE sent to every peer', {});
  }

  /** Sets the payload sent in every heartbeat and sends a heartbeat at once. */
  setPayload(bytes: Uint8Array | undefined): void {
    this.#payload = bytes;
    if (this.#running) this.#sendHeartbeats();
  }

  /** Sends an application message once on every network that reaches `to`. */
  send(to: string, channel: string, body: Uint8Array): void {
    if (!this.#running) return;
    const mid = ++this.#mid;
    for (const n of this.cfg.networks) {
      const targets = n.peers.filter(([id]) => to === '*' || id === to);
      if (targets.length === 0) continue;
      const buf = this.#encode(n.index, MessageType.APP, { acks: this.#detector.acks(), to, channel, mid, body });
      for (const [, addr] of targets) this.#send(n.index, buf, addr, n.port);
    }
  }

  /** Test hook: stop (or resume) sending on one network. */
  mute(network: string, muted: boolean): void {
    const n = this.cfg.networks.find((x) => x.name === network);
    if (!n) return;
    if (muted) this.#transport.muted.add(n.index); else this.#transport.muted.delete(n.index);
  }

  members(now = performance.now()): MemberInfo[] {
    const wall = Date.now();
    return this.#detector.view().map((m) => ({
      id: m.id, state: m.state, incarnation: m.incarnation,
      lastHeardMs: m.lastHeard === undefined ? 0 : Math.round(wall - (now - m.lastHeard)),
      networks: m.networks, payload: m.payload,
    }));
  }

  stats(): MembershipStats {
    return { ...this.#stats, dropped: { ...this.#stats.dropped }, sendErrors: this.#transport.sendErrors, stallMs: Math.round(this.#stall.total) };
  }

  #encode(net: number, type: number, body: Record<string, unknown>): Buffer {
    const seq = ++this.#seq[net]!;
    return encodePacket(this.cfg.macKey, {
      type, cluster: this.cfg.clusterName, sender: this.cfg.nodeId, incarnation: this.cfg.incarnation, net, seq, body,
    } as unknown as Message);
  }

  #send(net: number, buf: Uint8Array, address: string, port: number): void {
    this.#stats.sent++;
    this.#transport.send(net, buf, address, port);
  }

  #sendHeartbeats(): void {
    if (!this.#running) return;
    const acks = this.#detector.acks();
    for (const n of this.cfg.networks) {
      if (n.peers.length === 0) continue;
      const buf = this.#encode(n.index, MessageType.HEARTBEAT, { acks, payload: this.#payload });
      for (const [, addr] of n.peers) this.#send(n.index, buf, addr, n.port);
    }
  }

  #drop(reason: DropReason, from: RemoteInfo): void {
    this.#stats.dropped[reason]++;
    this.#dirty = true;
    const now = performance.now();
    if (now - this.#droppedRefill >= 1000) { this.#droppedRefill = now; this.#droppedTokens = DROPPED_EVENTS_PER_SECOND; }
    if (this.#droppedTokens > 0) {
      this.#droppedTokens--;
      this.#emit({ name: 'dropped', data: { reason, from: `${from.address}:${from.port}` } });
    }
  }

  /** Every received datagram goes through here; nothing in it may throw. */
  #receive(net: number, buf: Buffer, from: RemoteInfo): void {
    try {
      this.#receiveUnsafe(net, buf, from);
    } catch (err) {
      this.#drop('malformed', from);
      this.#sink.log('error', 'receive:bug', `unexpected error while handling a packet (dropped): ${(err as Error).message}`, { stack: (err as Error).stack });
    }
  }

  #receiveUnsafe(net: number, buf: Buffer, from: RemoteInfo): void {
    if (!this.#running) return;
    this.#stats.received++;
    const r = decodePacket(this.cfg.macKey, buf);
    if (!r.ok) return this.#drop(r.reason, from);
    const msg = r.msg;
    if (msg.cluster !== this.cfg.clusterName) return this.#drop('wrongCluster', from);
    if (msg.sender === this.cfg.nodeId) return this.#drop('fromSelf', from);
    if (!this.#detector.has(msg.sender)) return this.#drop('unknownNode', from);
    if (msg.net !== net) return this.#drop('malformed', from);
    const n = this.cfg.networks[net]!;
    const expected = n.peers.find(([id]) => id === msg.sender)?.[1];
    if (expected === undefined || expected !== from.address) return this.#drop('unknownNode', from);
    const verdict = this.#replay.accept(msg.sender, msg.incarnation, net, msg.seq);
    if (verdict !== 'ok') return this.#drop(verdict, from);
    const now = performance.now();
    switch (msg.type) {
      case MessageType.HEARTBEAT:
        this.#apply(this.#detector.onHeartbeat(msg.sender, msg.incarnation, net, msg.body.acks, msg.body.payload, now, this.#stall.total));
        return;
      case MessageType.APP: {
        this.#detector.noteIncarnation(msg.sender, msg.incarnation);
        if (!this.#detector.isFresh(msg.body.acks)) return this.#drop('unacked', from);
        const { to, channel, mid } = msg.body;
        if (to !== '*' && to !== this.cfg.nodeId) return;
        if (!this.#replay.acceptApp(msg.sender, mid)) return; // the same message heard on another network
        let body: unknown;
        try { body = decodeValue(msg.body.body); } catch { return this.#drop('malformed', from); }
        this.#emit({ name: 'message', data: { from: msg.sender, channel, body } });
        return;
      }
      case MessageType.LEAVE:
        this.#detector.noteIncarnation(msg.sender, msg.incarnation);
        if (!this.#detector.isFresh(msg.body.acks)) return this.#drop('unacked', from);
        this.#apply(this.#detector.onLeave(msg.sender, msg.incarnation, now));
        return;
    }
  }

  #emit(e: EngineEvent): void {
    try { this.#sink.event(e); } catch (err) {
      this.#sink.log('error', 'event:failed', `reporting event ${e.name} failed: ${(err as Error).message}`);
    }
  }

  #apply(events: DetectorEvent[]): void {
    if (events.length === 0) return;
    // The snapshot goes first, so that members() is already up to date in the event listeners.
    this.#pushSnapshot(performance.now());
    for (const e of events) {
      const { type, ...data } = e;
      if (type === 'member:up' || type === 'member:down' || type === 'member:restarted') {
        this.#sink.log(type === 'member:down' ? 'warn' : 'info', type, describe(e), data);
      } else if (type === 'network:up' || type === 'network:down' || type === 'member:suspect') {
        this.#sink.log('info', type, describe(e), data);
      }
      this.#emit({ name: type, data } as EngineEvent);
    }
  }

  /** Timer phase: measure our own lateness; the check itself runs after pending datagrams are read. */
  #onTick(): void {
    const now = performance.now();
    const added = this.#stall.tick(now);
    if (added > 0) this.#sink.log('debug', 'local:stall', `heartbeat thread stalled ${Math.round(added)} ms: deadlines extended`, { stallMs: Math.round(added) });
    if (this.#immediate) return;
    this.#immediate = setImmediate(() => {
      this.#immediate = undefined;
      this.#check();
    });
  }

  #check(): void {
    if (!this.#running) return;
    const now = performance.now();
    const carriers = this.#carrier.check(now);
    const isolated = isIsolated(carriers);
    if (this.#isolated && this.#lastCheck !== undefined) this.#stall.add(now - this.#lastCheck);
    this.#lastCheck = now;
    if (isolated !== this.#isolated) {
      this.#isolated = isolated;
      this.#pushSnapshot(now);
      const networks = this.cfg.networks.filter((_, i) => (isolated ? !carriers[i] : carriers[i])).map((n) => n.name);
      if (isolated) {
        this.#sink.log('warn', 'local:isolated', `no local network has carrier (${networks.join(', ')}): peers are not declared down while isolated`, { networks });
        this.#emit({ name: 'local:isolated', data: { networks } });
      } else {
        this.#sink.log('info', 'local:recovered', `carrier back on ${networks.join(', ')}`, { networks });
        this.#emit({ name: 'local:recovered', data: { networks } });
      }
    }
    this.#apply(this.#detector.tick(now, this.#stall.total, isolated));
    if (this.#dirty || now - this.#lastSnapshot >= SNAPSHOT_EVERY_MS) this.#pushSnapshot(now);
  }

  #pushSnapshot(now: number): void {
    this.#dirty = false;
    this.#lastSnapshot = now;
    try { this.#sink.snapshot(this.members(now), this.stats()); } catch (err) {
      this.#sink.log('error', 'snapshot:failed', `pushing the snapshot failed: ${(err as Error).message}`);
    }
  }
}

function describe(e: DetectorEvent): string {
  switch (e.type) {
    case 'member:up': return `member '${e.id}' is up (incarnation ${e.incarnation})`;
    case 'member:down': return e.reason === 'left'
      ? `member '${e.id}' left (sent LEAVE)`
      : `member '${e.id}' is down: not heard for ${e.silentMs} ms on any network`;
    case 'member:restarted': return `member '${e.id}' restarted (new incarnation ${e.incarnation})`;
    case 'network:up': return `member '${e.id}' heard on network '${e.network}'`;
    case 'network:down': return `member '${e.id}' no longer heard on network '${e.network}'`;
    case 'member:payload': return `member '${e.id}' payload changed`;
    case 'member:suspect': return `member '${e.id}' silent for ${e.silentMs} ms (half the timeout): suspect`;
  }
}
