/**
 * The farm module on one node: N nodes run the same application (`start_both` / `stop_both`
 * on every node) behind one VIP; each node's {@link FarmFilter} accepts only its share of new
 * connections; shares follow the membership view (see decide.ts). States: STOP (stopped),
 * WAIT (started, not serving: the application failed to start or its tcp checker fails),
 * UP (serving its share).
 */
import { EventEmitter } from 'eventemitter3';
import type { ModuleLog } from '@ha/interface';
import type { Membership } from '@ha/membership';
import type { FarmFilter } from '@ha/farm-filter';
import type { AppRunner } from '../app.js';
import type { Colour } from '../mirror/decide.js';
import { decideBuckets, extractFarmAnnounce, farmView, type FarmAnnounce, type FarmPeer, type FarmState } from './decide.js';
import type { TcpCheck } from './tcp-check.js';

/** A farm state change. @public */
export interface FarmStateChange { module: string; node: string; state: FarmState; previous: FarmState; colour: Colour; reason: string; at: string }

/** Events of a farm module. @public */
export interface FarmEvents {
  state: [FarmStateChange];
  /** This node's buckets changed (after the nft transaction). */
  share: [{ module: string; buckets: number; of: number; view: string[] }];
  'app:failed': [{ module: string; error: Error }];
}

/** One node's share as seen from here. @public */
export interface FarmMemberShare { node: string; state: FarmState | 'unknown'; alive: boolean; buckets: number; pct: number }

/** What `ha state` shows of a farm module. @public */
export interface FarmStatus {
  module: string;
  mode: 'farm';
  node: string;
  state: FarmState;
  colour: Colour;
  ready: boolean;
  since: string;
  lastReason: string;
  vip?: { address: string; interface: string; vmac: string } | undefined;
  /** Buckets this node holds now, of `bucketCount`. */
  buckets: number;
  bucketCount: number;
  /** Every node's share (from its announced view; this node's is what it holds). */
  shares: FarmMemberShare[];
}

/** Commands of a farm module. @public */
export type FarmCommand = 'start' | 'stop' | 'restart';

export interface FarmOptions { name: string; node: string; tickMs: number }
export interface FarmDeps {
  membership: Membership;
  filter: FarmFilter;
  app: AppRunner;
  log: ModuleLog;
  check?: TcpCheck | undefined;
  announce(a: FarmAnnounce): void;
}

const colourOf = (s: FarmState): Colour => (s === 'UP' ? 'green' : 'red');

/** The farm module. @public */
export class FarmModule extends EventEmitter<FarmEvents> {
  readonly name: string;
  readonly #o: FarmOptions;
  readonly #d: FarmDeps;
  #state: FarmState = 'STOP';
  #since = new Date().toISOString();
  #reason = 'not started';
  #checkOk = true;
  #view: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> = Promise.resolve();
  #reconciling = false;
  #again = false;
  #attached = false;
  readonly #kick = () => { void this.#reconcile(); };

  constructor(o: FarmOptions, d: FarmDeps) {
    super();
    this.name = o.name;
    this.#o = o;
    this.#d = d;
    d.check?.on('down', ({ reason }) => {
      this.#checkOk = false;
      if (this.#state === 'UP') this.#set('WAIT', `checker failed: ${reason}`);
      this.#kick();
    });
    d.check?.on('up', () => {
      this.#checkOk = true;
      if (this.#state === 'WAIT' && this.#d.app.running) this.#set('UP', 'checker succeeds again');
      this.#kick();
    });
  }

  get state(): FarmState { return this.#state; }

  attach(): void {
    if (this.#attached) return;
    this.#attached = true;
    const m = this.#d.membership;
    for (const ev of ['member:up', 'member:down', 'member:payload', 'member:restarted'] as const) m.on(ev, this.#kick);
    this.#timer = setInterval(this.#kick, Math.max(this.#o.tickMs, 20));
    this.#announce();
  }

  detach(): void {
    if (!this.#attached) return;
    this.#attached = false;
    const m = this.#d.membership;
    for (const ev of ['member:up', 'member:down', 'member:payload', 'member:restarted'] as const) m.off(ev, this.#kick);
    clearInterval(this.#timer);
  }

  /** Runs a command (serialised with the others). */
  command(cmd: FarmCommand): Promise<void> {
    const run = async () => {
      if (cmd === 'start' || cmd === 'restart') {
        if (cmd === 'restart' && this.#state !== 'STOP') await this.#stop('restart');
        if (this.#state !== 'STOP') return;
        await this.#start();
      } else {
        await this.#stop('stop command');
      }
    };
    const p = this.#busy.then(run);
    this.#busy = p.catch(() => {});
    return p;
  }

  async #start(): Promise<void> {
    this.#set('WAIT', 'starting');
    this.#announce();
    await this.#d.filter.start();
    try {
      await this.#d.app.start();
    } catch (err) {
      this.#d.log.error('farm:app-failed', `start_both failed: ${(err as Error).message}; staying in WAIT`);
      this.emit('app:failed', { module: this.name, error: err as Error });
      return;
    }
    this.#d.check?.start();
    if (this.#checkOk) this.#set('UP', 'application started');
    await this.#reconcile();
  }

  async #stop(reason: string): Promise<void> {
    if (this.#state === 'STOP') return;
    // Leave the share first: our claim stands until reconcile has released it and announced it.
    this.#set('STOP', reason);
    this.#d.check?.stop();
    this.#checkOk = true;
    await this.#reconcile();
    await this.#d.app.stop(reason);
    await this.#d.filter.stop().catch((e: Error) => this.#d.log.warn('farm:filter-stop', e.message));
    this.#view = [];
    this.#announce();
  }

  #peers(): FarmPeer[] {
    return this.#d.membership.members().filter((m) => m.id !== this.#o.node).map((m) => ({
      id: m.id, alive: m.state === 'up', announce: extractFarmAnnounce(m.payload, this.name),
    }));
  }

  async #reconcile(): Promise<void> {
    if (this.#reconciling) { this.#again = true; return; }
    this.#reconciling = true;
    try {
      do {
        this.#again = false;
        await this.#reconcileOnce();
      } while (this.#again);
    } catch (err) {
      this.#d.log.error('farm:filter-failed', `could not apply the share: ${(err as Error).message}`);
    } finally {
      this.#reconciling = false;
    }
  }

  async #reconcileOnce(): Promise<void> {
    const f = this.#d.filter;
    const peers = this.#peers();
    const up = this.#state === 'UP';
    const view = farmView(this.#o.node, up, peers);
    const { hold, waiting } = decideBuckets(this.#o.node, view, peers, f.bucketCount);
    if (f.status === 'started') {
      const cur = f.owned;
      const same = cur.length === hold.length && cur.every((b, i) => b === hold[i]);
      if (!same) {
        await f.setBuckets(hold);
        this.#d.log.info('farm:share', `holding ${hold.length}/${f.bucketCount} buckets (view ${view.join(', ') || 'empty'}${waiting ? `; ${waiting} more once released by their owner` : ''})`, { buckets: hold.length, view });
        this.emit('share', { module: this.name, buckets: hold.length, of: f.bucketCount, view });
      }
    }
    // Announce the view only once what it no longer gives us is released.
    if (view.join('\0') !== this.#view.join('\0')) { this.#view = view; this.#announce(); }
  }

  #announce(): void { this.#d.announce({ s: this.#state, v: this.#view }); }

  #set(state: FarmState, reason: string): void {
    if (state === this.#state) return;
    const previous = this.#state;
    this.#state = state;
    this.#since = new Date().toISOString();
    this.#reason = reason;
    this.#d.log.info('farm:state', `${previous} -> ${state}: ${reason}`, { state, previous });
    this.#announce();
    this.emit('state', { module: this.name, node: this.#o.node, state, previous, colour: colourOf(state), reason, at: this.#since });
  }

  status(): FarmStatus {
    const f = this.#d.filter;
    const count = f.bucketCount;
    const peers = this.#peers();
    const shares: FarmMemberShare[] = [{ node: this.#o.node, state: this.#state, alive: true, buckets: f.owned.length, pct: round(100 * f.owned.length / count) }];
    for (const p of peers) {
      const a = p.announce;
      const n = a && p.alive && a.v.includes(p.id) ? decideBuckets(p.id, a.v, [], count).target.length : 0;
      shares.push({ node: p.id, state: a?.s ?? 'unknown', alive: p.alive, buckets: n, pct: round(100 * n / count) });
    }
    const spec = f.spec;
    return {
      module: this.name, mode: 'farm', node: this.#o.node, state: this.#state, colour: colourOf(this.#state), ready: this.#state === 'UP',
      since: this.#since, lastReason: this.#reason,
      vip: spec && f.status === 'started' ? { address: spec.vip, interface: spec.interface, vmac: spec.vmac } : undefined,
      buckets: f.owned.length, bucketCount: count, shares,
    };
  }
}

const round = (x: number) => Math.round(x * 10) / 10;
