/**
 * The mirror module's driver: it feeds what membership hears into {@link decide}, carries out the
 * transitions (persist, VIP, application), announces its state in every heartbeat, and runs the
 * operator's commands. Transitions are serialised: one at a time, in order.
 */
import { EventEmitter } from 'eventemitter3';
import { HaError, type DataReplication, type ModuleLog, type ReintegrationProgress } from '@ha/interface';
import type { Membership } from '@ha/membership';
import type { Vip } from '@ha/vip';
import type { CheckerActionRequest, CheckerFault, CheckerSet, ResourceChange, ResourceStatus, Witness } from '@ha/checkers';
import type { AppRunner } from '../app.js';
import type { StateStore } from '../state-store.js';
import { colourOf, decide, needsWitness, witnessUnreachable, PRIMARY_STATES, type Announce, type Colour, type MirrorState, type PeerView, type SelfView } from './decide.js';

/** A state change. @public */
export interface StateChange {
  module: string;
  node: string;
  state: MirrorState;
  previous: MirrorState;
  colour: Colour;
  ready: boolean;
  reason: string;
  at: string;
}

/** Events of a mirror module. @public */
export interface MirrorEvents {
  state: [StateChange];
  failover: [{ module: string; node: string; from: string; reason: string; at: string }];
  'vip:acquired': [{ module: string; address: string; ms: number }];
  'vip:released': [{ module: string; address: string }];
  'app:started': [{ module: string; ms: number }];
  'app:stopped': [{ module: string; ms: number; forced: boolean }];
  'app:failed': [{ module: string; error: Error }];
  'replica:synced': [{ module: string; peer: string; ms: number }];
  'replica:progress': [{ module: string; peer: string } & ReintegrationProgress];
  'replica:lost': [{ module: string; peer: string; reason: string }];
  /** A checked resource changed state (up, down, unknown). */
  resource: [ResourceChange & { module: string }];
  /** A checker itself hung or threw. */
  'checker:fault': [CheckerFault & { module: string }];
  /** A checker's rule fired an action (restart, stopstart, stop). */
  'checker:action': [{ module: string; action: string; resource: string; reason: string; escalated: boolean }];
  /** The application was restarted locally by a checker action; `ms` from the resource seen down to the restart begun. */
  'checker:restarted': [{ module: string; resource: string; ms: number }];
  /** The split-brain witness was asked before taking the primary role. */
  witness: [{ module: string; reachable: boolean; targets: Array<{ target: string; reachable: boolean }>; ms: number }];
  /** Changes this node made while it was a primary, about to be overwritten by the peer's, were kept aside. */
  'replica:diverged': [{ module: string; dir: string; files: string[]; keptIn: string }];
}

/** What `ha state` shows of a module. @public */
export interface MirrorStatus {
  module: string;
  node: string;
  state: MirrorState;
  colour: Colour;
  ready: boolean;
  waitReason?: string | undefined;
  since: string;
  lastReason: string;
  uptodate: boolean;
  epoch: number;
  preferred?: string | undefined;
  failover: boolean;
  vip?: { address: string; interface: string; held: boolean } | undefined;
  app: { running: boolean };
  peer: { name: string; heard: boolean; state?: MirrorState | undefined; ready?: boolean | undefined; epoch?: number | undefined };
  /** Checked resources (when checkers are configured). */
  resources?: Array<ResourceStatus & { action: string; when: string; running: boolean }> | undefined;
  /** Replication per directory (when a data plane is configured): see `@ha/replicator`'s `status()`. */
  replication?: unknown[] | undefined;
}

/** A command was refused in the current state. @public */
export class CommandRefusedError extends HaError {
  constructor(command: string, why: string) { super('ERR_COMMAND_REFUSED', `${command}: ${why}`, { details: { command } }); }
}

export interface MirrorOptions {
  name: string;
  node: string;
  peer: string;
  preferred?: string | undefined;
  failover: boolean;
  discoveryMs: number;
  tickMs: number;
}

export interface MirrorParts {
  membership: Membership;
  vip?: Vip | undefined;
  app: AppRunner;
  store: StateStore;
  log: ModuleLog;
  data?: DataReplication | undefined;
  /** Checkers and their rules. */
  checks?: CheckerSet | undefined;
  /** Split-brain witness. */
  witness?: Witness | undefined;
  /** Called with every change of this module's announcement (the cluster merges modules). */
  announce(a: Announce): void;
}

export type Command = 'start' | 'stop' | 'prim' | 'second' | 'swap' | 'restart';

export class MirrorModule extends EventEmitter<MirrorEvents> {
  #state: MirrorState = 'STOP';
  #since = new Date().toISOString();
  #lastReason = 'not started';
  #waitReason: string | undefined;
  #waitSince = Date.now();
  #ready = true;
  #yielding = false;
  #wantSecond = false;
  #forced = false;
  #isolated = false;
  #peer: Announce | undefined;
  #peerHeard = false;
  #queue: Promise<void> = Promise.resolve();
  #reconciling = false;
  #again = false;
  #tick: NodeJS.Timeout | undefined;
  #vipAbort: AbortController | undefined;
  #attachAbort: AbortController | undefined;
  #attaching = false;
  /** Primary: replication to the secondary attached and in sync. */
  #synced = false;
  #attachStartedAt = 0;
  #lastSwapAsk = 0;
  #takeoverT: { t0: number; persistMs: number } | undefined;
  #closed = false;
  #witnessAsked = 0;
  /** WAIT because the witness was unreachable when this node, a Ready secondary, was about to take over. */
  #witnessWait = false;

  constructor(readonly opts: MirrorOptions, private readonly parts: MirrorParts) {
    super();
  }

  get state(): MirrorState { return this.#state; }
  get name(): string { return this.opts.name; }

  /** Attaches to membership and restores the persisted state (does not start the module). */
  attach(): void {
    const m = this.parts.membership;
    m.on('member:up', (e) => {
      if (e.id !== this.opts.peer) return;
      this.#peerHeard = true;
      this.parts.log.info('peer:up', `peer ${e.id} is heard (incarnation ${e.incarnation})`);
      // A returning peer may have answered for the VIP while we could not hear each other (an
      // isolation): re-announce it so that no client keeps pointing at the peer.
      if (PRIMARY_STATES.has(this.#state)) void this.parts.vip?.announce();
      this.kick();
    });
    m.on('member:down', (e) => {
      if (e.id !== this.opts.peer) return;
      this.#peerHeard = false;
      this.#peer = undefined;
      this.parts.log.warn('peer:down', e.reason === 'left' ? `peer ${e.id} left the cluster (clean stop)` : `peer ${e.id} not heard for ${e.silentMs} ms (timeout): considered down`, { reason: e.reason, silentMs: e.silentMs });
      this.kick();
    });
    m.on('member:suspect', (e) => {
      // The primary has been silent for half the timeout: probe the VIP now, so that a takeover
      // (if it comes) need not wait for a probe. A probe that still finds it answered is ignored.
      if (e.id !== this.opts.peer || this.#state !== 'SECOND' || !this.#ready || !this.opts.failover || !this.parts.vip) return;
      this.parts.log.info('peer:suspect', `peer ${e.id} silent for ${e.silentMs} ms: pre-probing the VIP`);
      void this.parts.vip.preProbe();
    });
    m.on('member:payload', (e) => {
      if (e.id !== this.opts.peer) return;
      const a = extractAnnounce(e.payload, this.opts.name);
      this.#peer = a;
      this.kick();
    });
    m.on('local:isolated', () => { this.#isolated = true; this.parts.log.warn('local:isolated', 'all heartbeat networks of this node lost carrier: this node is isolated'); this.kick(); });
    m.on('local:recovered', () => { this.#isolated = false; this.parts.log.info('local:recovered', 'a heartbeat network of this node has carrier again'); this.kick(); });
    m.on('message', (e) => {
      if (e.from !== this.opts.peer || typeof e.channel !== 'string' || e.channel !== `mirror/${this.opts.name}`) return;
      const body = e.body as { cmd?: unknown } | undefined;
      if (body && body.cmd === 'swap') {
        this.parts.log.info('command', `swap requested by peer ${e.from}`);
        this.command('swap').catch((err) => this.parts.log.warn('command', `swap requested by peer refused: ${(err as Error).message}`));
      }
    });
    this.parts.data?.on('lost', (err) => {
      if (!this.#synced && !this.#attaching) return;
      this.#synced = false;
      this.parts.log.warn('replica:lost', `replication to ${this.opts.peer} is lost: ${err.message}`);
      this.emit('replica:lost', { module: this.opts.name, peer: this.opts.peer, reason: err.message });
      this.kick();
    });
    // Optional data-plane event: this node's own divergent changes were kept aside before a resync.
    (this.parts.data as { on?(ev: 'diverged', f: (e: { dir: string; keptIn: string; files: Array<{ path: string }> }) => void): unknown } | undefined)?.on?.('diverged', (e) => {
      this.emit('replica:diverged', { module: this.opts.name, dir: e.dir, files: e.files.map((f) => f.path), keptIn: e.keptIn });
    });
    this.#attachCheckers();
    this.#tick = setInterval(() => { if (this.#state === 'WAIT' || this.#state === 'SECOND') this.kick(); }, this.opts.tickMs);
    this.#tick.unref();
    this.#publish();
  }

  #attachCheckers(): void {
    const checks = this.parts.checks;
    if (!checks) return;
    const module = this.opts.name;
    checks.on('resource', (r) => this.emit('resource', { module, ...r }));
    checks.on('fault', (f) => this.emit('checker:fault', { module, ...f }));
    checks.on('hold', () => this.kick());
    checks.handler = (req) => this.#checkerAction(req);
  }

  /** Carries out a checker's action (one at a time: the set does not ask for another meanwhile). */
  async #checkerAction(req: CheckerActionRequest): Promise<void> {
    const { log } = this.parts;
    this.emit('checker:action', { module: this.opts.name, action: req.action, resource: req.resource, reason: req.reason, escalated: req.escalated });
    if (req.action === 'restart') {
      await this.#enqueue(async () => {
        if (!PRIMARY_STATES.has(this.#state)) return;
        const ms = Math.round(performance.now() - req.downAt);
        log.warn('checker:restart', `restarting the application on this node: ${req.reason}`, { resource: req.resource });
        this.emit('checker:restarted', { module: this.opts.name, resource: req.resource, ms });
        await this.parts.app.stop(`checker: ${req.resource} is down`);
        try {
          await this.parts.app.start();
        } catch (err) {
          this.emit('app:failed', { module: this.opts.name, error: err as Error });
          log.error('app:failed', `the application failed to restart (${(err as Error).message}): stopping the module on this node so the peer can take over`);
          await this.#stopHere('application failed to restart');
          return;
        }
        await this.parts.checks?.rearm();
      });
      return;
    }
    log.warn('checker:' + req.action, `${req.action === 'stop' ? 'stopping the module on this node' : 'stopping the module here (the peer takes over), then starting it again'}: ${req.reason}`, { resource: req.resource, escalated: req.escalated });
    await this.command('stop');
    if (req.action === 'stopstart') await this.command('start');
  }

  /** Stops the module on this node after a failure (the peer takes over). */
  async #stopHere(reason: string): Promise<void> {
    await this.parts.checks?.setPhase('stopped');
    await this.#leavePrimary(reason);
    await this.parts.store.update({ uptodate: false, state: 'STOP' });
    this.#setState('STOP', reason);
  }

  detach(): void {
    void this.parts.checks?.stop();
    this.#closed = true;
    if (this.#tick) clearInterval(this.#tick);
    this.#vipAbort?.abort();
    this.#attachAbort?.abort();
  }

  /** Current status (for `ha state`, the admin API, tests). */
  async status(): Promise<MirrorStatus> {
    const p = this.parts.store.current;
    const vip = this.parts.vip;
    return {
      module: this.opts.name,
      node: this.opts.node,
      state: this.#state,
      colour: colourOf(this.#state, this.#ready),
      ready: this.#state === 'SECOND' ? this.#ready : this.#state !== 'STOP' && this.#state !== 'WAIT',
      waitReason: this.#state === 'WAIT' ? this.#waitReason : undefined,
      since: this.#since,
      lastReason: this.#lastReason,
      uptodate: p.uptodate,
      epoch: p.epoch,
      preferred: this.opts.preferred,
      failover: this.opts.failover,
      vip: vip ? { address: vip.address, interface: vip.interface, held: await vip.held().catch(() => false) } : undefined,
      app: { running: this.parts.app.running },
      peer: {
        name: this.opts.peer,
        heard: this.#peerHeard,
        state: this.#peer?.s,
        ready: this.#peer?.s === 'SECOND' ? this.#peer.r !== false : undefined,
        epoch: this.#peer?.e,
      },
      resources: this.parts.checks?.status(),
      replication: this.parts.data?.status?.(),
    };
  }

  /**
   * Compares the replicated directories with the secondary's copies by block checksums (on the
   * primary, while the secondary is attached). Throws {@link CommandRefusedError} otherwise.
   */
  async verify(): Promise<unknown[]> {
    if (!this.parts.data?.verify) throw new CommandRefusedError('verify', 'this module replicates no directories');
    if (this.#state !== 'PRIM') throw new CommandRefusedError('verify', `this node is ${this.#state}: run verify on the primary (PRIM) while its secondary is attached`);
    return this.parts.data.verify();
  }

  /** Runs an operator command (start, stop, prim, second, swap, restart). */
  command(cmd: Command): Promise<void> {
    // A stop must not wait behind a VIP acquisition that retries while the address is in use.
    if (cmd === 'stop') this.#vipAbort?.abort();
    return this.#enqueue(() => this.#command(cmd));
  }

  /** Re-evaluates the situation (after any event). Coalesces bursts. */
  kick(): void {
    if (this.#closed) return;
    if (this.#reconciling) { this.#again = true; return; }
    this.#reconciling = true;
    void this.#enqueue(async () => {
      try {
        do {
          this.#again = false;
          await this.#reconcileOnce();
        } while (this.#again && !this.#closed);
      } finally {
        this.#reconciling = false;
      }
    }).catch((err) => this.parts.log.error('mirror:error', `unexpected error while deciding: ${(err as Error).stack ?? err}`));
  }

  #enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => {});
    return p;
  }

  #selfView(): SelfView {
    const p = this.parts.store.current;
    return {
      name: this.opts.node, s: this.#state, e: p.epoch, u: p.uptodate, l: p.lastRole,
      r: this.#state === 'SECOND' ? this.#ready : undefined,
      y: this.#yielding || undefined, w: this.#wantSecond || undefined, f: this.#forced || undefined,
      preferred: this.opts.preferred, failover: this.opts.failover, isolated: this.#isolated,
      synced: this.parts.data ? this.#synced : undefined,
      waitedMs: Date.now() - this.#waitSince, discoveryMs: this.opts.discoveryMs,
      held: this.parts.checks?.hold,
      witnessWait: this.#witnessWait || undefined,
    };
  }

  #peerView(): PeerView | undefined {
    if (!this.#peerHeard || !this.#peer) return undefined;
    return { ...this.#peer, name: this.opts.peer };
  }

  async #reconcileOnce(): Promise<void> {
    for (let i = 0; i < 8 && !this.#closed; i++) {
      const me = this.#selfView();
      const peer = this.#peerView();
      if (this.#yielding && peer && PRIMARY_STATES.has(peer.s)) {
        this.#yielding = false; // the peer took the role: stop yielding so it can see us as its secondary
        this.#publish();
      }
      this.#followReadiness(peer);
      await this.#followAttachment(peer);
      let d = decide(me, peer);
      if (this.parts.witness && needsWitness(me, peer, d) && !(await this.#witnessOk())) {
        // A complete (Ready) secondary held back only by the witness may take over once it reaches it again.
        if (me.s === 'SECOND' && me.r !== false) this.#witnessWait = true;
        d = witnessUnreachable(me, d, this.parts.witness.description);
      }
      if (d.attach) this.#startAttach();
      if (this.#state === 'WAIT' && d.waitReason && d.waitReason !== this.#waitReason) {
        this.#waitReason = d.waitReason;
        this.parts.log.info('wait', `waiting: ${d.waitReason}`);
      }
      if (!d.next || d.next === this.#state) {
        this.#maybeFailback(me, peer);
        return;
      }
      await this.#transition(d.next, d.reason, { takeover: d.takeover === true, peer, waitReason: d.waitReason });
    }
  }

  /** Asks the witness (at most every 2 s while it stays unreachable). */
  async #witnessOk(): Promise<boolean> {
    const w = this.parts.witness!;
    if (Date.now() - this.#witnessAsked < 2000) return false;
    const r = await w.check();
    this.emit('witness', { module: this.opts.name, ...r });
    if (r.reachable) {
      this.#witnessAsked = 0;
      this.parts.log.info('witness', `split-brain witness reached (${r.targets.filter((x) => x.reachable).map((x) => x.target).join(', ')}) in ${r.ms} ms: this node may take the primary role`, { ms: r.ms });
      return true;
    }
    this.#witnessAsked = Date.now();
    this.parts.log.warn('witness', `split-brain witness unreachable (${r.targets.map((x) => x.target).join(', ')}; ${r.ms} ms)`, { ms: r.ms });
    return false;
  }

  /** The preferred primary, back as a ready secondary, asks for its role (automatic failback). */
  #maybeFailback(me: SelfView, peer: PeerView | undefined): void {
    if (me.s !== 'SECOND' || !this.#ready || !this.opts.preferred || this.opts.preferred !== this.opts.node) return;
    if (!peer || peer.s !== 'PRIM' || peer.y) return;
    const now = Date.now();
    if (now - this.#lastSwapAsk < 1000) return;
    this.#lastSwapAsk = now;
    this.parts.log.info('failback', `this node is the preferred primary (defaultprim) and is a ready secondary: asking ${peer.name} to swap roles`);
    this.parts.membership.send(this.opts.peer, `mirror/${this.opts.name}`, { cmd: 'swap' });
  }

  async #transition(next: MirrorState, reason: string, ctx: { takeover: boolean; peer: PeerView | undefined; waitReason?: string | undefined }): Promise<void> {
    const prev = this.#state;
    const { store, log } = this.parts;
    const wasPrimary = PRIMARY_STATES.has(prev);

    if (next === 'ALONE' && !wasPrimary) {
      // Take over: persist first, so a crash after taking the VIP still knows it was primary.
      const epoch = Math.max(store.current.epoch, ctx.peer?.e ?? 0, this.#peer?.e ?? 0) + 1;
      const tPersist = performance.now();
      await store.update({ uptodate: true, lastRole: 'ALONE', epoch, state: 'ALONE' });
      this.#takeoverT = { t0: tPersist, persistMs: performance.now() - tPersist };
      this.#synced = false;
      this.#setState('ALONE', reason);
      if (prev === 'SECOND') await this.#stopSecondary();
      if (prev === 'SECOND' || ctx.takeover) {
        this.emit('failover', { module: this.opts.name, node: this.opts.node, from: this.opts.peer, reason, at: new Date().toISOString() });
      }
      await this.#becomePrimary();
      return;
    }
    if (next === 'ALONE' && prev === 'PRIM') {
      await store.update({ uptodate: true, lastRole: 'ALONE', state: 'ALONE' });
      this.#setState('ALONE', reason);
      return;
    }
    if (next === 'PRIM') {
      await store.update({ uptodate: false, lastRole: 'PRIM', state: 'PRIM' });
      this.#setState('PRIM', reason);
      return;
    }
    if (next === 'SECOND') {
      if (wasPrimary) await this.#leavePrimary(reason);
      this.#forced = false;
      this.#wantSecond = false;
      await store.update({ uptodate: false, lastRole: 'SECOND', state: 'SECOND' });
      this.#ready = false;
      await this.#startSecondary();
      this.#setState('SECOND', reason);
      return;
    }
    if (next === 'WAIT') {
      if (wasPrimary) {
        // A forced `prim` was carried out when this node took the role; losing it ends it.
        this.#forced = false;
        await this.#leavePrimary(reason);
        // A PRIM whose secondary may take over is no longer known up to date; an ALONE still is.
        await store.update({ uptodate: prev === 'ALONE', state: 'WAIT' });
      } else {
        if (prev === 'SECOND') await this.#stopSecondary();
        await store.update({ state: 'WAIT' });
      }
      this.#waitReason = ctx.waitReason;
      this.#setState('WAIT', reason);
      return;
    }
    throw new Error(`no transition ${prev} -> ${next}`);
  }

  async #becomePrimary(): Promise<void> {
    const { vip, app, log } = this.parts;
    const tVip = performance.now();
    if (vip) {
      const ac = new AbortController();
      this.#vipAbort = ac;
      const t0 = Date.now();
      try {
        await vip.acquire({ signal: ac.signal });
        this.emit('vip:acquired', { module: this.opts.name, address: vip.address, ms: Date.now() - t0 });
      } catch (err) {
        if (ac.signal.aborted) return;
        log.error('vip:error', `virtual IP ${vip.address} could not be added: ${(err as Error).message}`);
      } finally {
        if (this.#vipAbort === ac) this.#vipAbort = undefined;
      }
    }
    if (!PRIMARY_STATES.has(this.#state)) return;
    const t0 = Date.now();
    const tApp = performance.now();
    try {
      // The replicated directories are intercepted before the application can write to them.
      if (this.parts.data) {
        try { await this.parts.data.startPrimary(); } catch (err) {
          throw new Error(`replicated directories could not be set up: ${(err as Error).message}`, { cause: err });
        }
      }
      await app.start();
      this.emit('app:started', { module: this.opts.name, ms: Date.now() - t0 });
      await this.parts.checks?.setPhase('primary');
      const tk = this.#takeoverT;
      this.#takeoverT = undefined;
      if (tk) {
        const r = (x: number) => Math.round(x * 10) / 10;
        const end = performance.now();
        log.info('takeover:done', `primary role taken in ${r(end - tk.t0)} ms (persist ${r(tk.persistMs)}, VIP ${r(tApp - tVip)}, application ${r(end - tApp)})`,
          { totalMs: r(end - tk.t0), persistMs: r(tk.persistMs), vipMs: r(tApp - tVip), appMs: r(end - tApp) });
      }
    } catch (err) {
      this.emit('app:failed', { module: this.opts.name, error: err as Error });
      log.error('app:failed', `the application failed to start on this primary (${(err as Error).message}): stopping the module on this node so the peer can take over`);
      await this.#stopHere('application failed to start on this node');
    }
  }

  /** Stops the application, then releases the VIP (in that order: stop_prim still sees its VIP). */
  async #leavePrimary(reason: string): Promise<void> {
    const { vip, app } = this.parts;
    this.#vipAbort?.abort();
    // Primary-only checkers stop first: the application's planned stop is not a failure.
    if (this.parts.checks?.phase === 'primary') await this.parts.checks.setPhase('started');
    if (app.running) {
      const r = await app.stop(reason);
      this.emit('app:stopped', { module: this.opts.name, ms: r.ms, forced: r.forced });
    }
    if (this.parts.data) {
      this.#attachAbort?.abort();
      this.#synced = false;
      await this.parts.data.detachSecondary().catch((err) => this.parts.log.error('replica:error', `detaching the secondary failed: ${(err as Error).message}`));
      await this.parts.data.stopPrimary().catch((err) => this.parts.log.error('replica:error', `stopping the interception of the replicated directories failed: ${(err as Error).message}`));
    }
    if (vip) {
      await vip.release().catch((err) => this.parts.log.error('vip:error', `virtual IP ${vip.address} could not be removed: ${(err as Error).message}`));
      this.emit('vip:released', { module: this.opts.name, address: vip.address });
    }
  }

  async #startSecondary(): Promise<void> {
    if (!this.parts.data) return;
    try { await this.parts.data.startSecondary(); } catch (err) {
      this.parts.log.error('replica:error', `replicated directories could not be set up as secondary: ${(err as Error).message}`);
    }
  }

  async #stopSecondary(): Promise<void> {
    this.#ready = false;
    if (!this.parts.data) return;
    try { await this.parts.data.stopSecondary(); } catch (err) {
      this.parts.log.error('replica:error', `stopping the secondary side of replication failed: ${(err as Error).message}`);
    }
  }

  /** A secondary is Ready when its primary is PRIM: the primary has reintegrated it and replicates to it. */
  #followReadiness(peer: PeerView | undefined): void {
    if (this.#state !== 'SECOND') return;
    const ready = peer?.s === 'PRIM' && !peer.y;
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) {
      const ms = Date.now() - Date.parse(this.#since);
      this.parts.log.info('replica:synced', `primary ${this.opts.peer} is PRIM: this secondary is up to date and receives every change (Ready)`, { ms });
      this.emit('replica:synced', { module: this.opts.name, peer: this.opts.peer, ms });
      void this.parts.data?.secondaryInSync?.().catch((err: Error) => this.parts.log.warn('replica:error', `recording the synchronisation failed: ${err.message}`));
      this.#setState('SECOND', 'in sync with the primary', true);
    } else {
      this.#setState('SECOND', peer ? `primary ${peer.name} is ${peer.s}${peer.y ? ' (handing over)' : ''}: not in sync` : 'primary not heard: not in sync', true);
    }
  }

  /** A primary whose peer stopped being its secondary detaches replication. */
  async #followAttachment(peer: PeerView | undefined): Promise<void> {
    if (!this.parts.data || !PRIMARY_STATES.has(this.#state)) return;
    if (peer?.s === 'SECOND' && !peer.y) return;
    if (!this.#attaching && !this.#synced) return;
    this.#attachAbort?.abort();
    this.#synced = false;
    await this.parts.data.detachSecondary().catch((err) => this.parts.log.error('replica:error', `detaching the secondary failed: ${(err as Error).message}`));
  }

  /** Primary: connect to the secondary, reintegrate it, then go PRIM (kick). Retries on failure. */
  #startAttach(): void {
    const data = this.parts.data;
    if (!data || this.#attaching || this.#synced) return;
    this.#attaching = true;
    const ac = new AbortController();
    this.#attachAbort = ac;
    const t0 = Date.now();
    this.#attachStartedAt = t0;
    this.parts.log.info('replica:attach', `peer ${this.opts.peer} is our secondary: connecting and reintegrating it (copying what changed while it was away)`);
    let lastLog = 0;
    data.attachSecondary(this.opts.peer, ac.signal, (p) => {
      this.emit('replica:progress', { module: this.opts.name, peer: this.opts.peer, ...p });
      const now = Date.now();
      if (now - lastLog >= 5000) {
        lastLog = now;
        this.parts.log.info('replica:progress', `reintegration of ${this.opts.peer}: ${p.filesDone}/${p.filesTotal} files, ${p.bytesDone}/${p.bytesTotal} bytes, ${Math.round(p.rate)} B/s, about ${Math.round(p.etaS)} s left`, { ...p });
      }
    }).then(() => {
      this.#attaching = false;
      if (ac.signal.aborted) return;
      this.#synced = true;
      const ms = Date.now() - t0;
      this.parts.log.info('replica:synced', `${this.opts.peer} reintegrated in ${ms} ms: every change is now replicated synchronously`, { ms });
      this.kick();
    }, (err: Error) => {
      this.#attaching = false;
      if (ac.signal.aborted) return;
      this.parts.log.error('replica:error', `reintegration of ${this.opts.peer} failed: ${err.message}; retrying in 1 s`);
      setTimeout(() => this.kick(), 1000).unref();
    });
  }

  #setState(next: MirrorState, reason: string, sameStateNote = false): void {
    const prev = this.#state;
    this.#state = next;
    if (next !== 'WAIT') this.#witnessWait = false;
    if (!sameStateNote) this.#since = new Date().toISOString();
    this.#lastReason = reason;
    if (next === 'WAIT' && prev !== 'WAIT') this.#waitSince = Date.now();
    const change: StateChange = {
      module: this.opts.name, node: this.opts.node, state: next, previous: prev,
      colour: colourOf(next, this.#ready), ready: next === 'SECOND' ? this.#ready : next !== 'STOP' && next !== 'WAIT',
      reason, at: new Date().toISOString(),
    };
    this.parts.log.info('state', `${prev} -> ${next}${next === 'SECOND' ? (this.#ready ? ' (Ready)' : ' (Transient: resynchronising)') : ''}: ${reason}`, { from: prev, to: next, epoch: this.parts.store.current.epoch, uptodate: this.parts.store.current.uptodate });
    this.#publish();
    this.emit('state', change);
  }

  #publish(): void {
    const me = this.#selfView();
    const a: Announce = { s: me.s, e: me.e, u: me.u, l: me.l };
    if (me.s === 'SECOND') a.r = this.#ready;
    if (this.#yielding) a.y = true;
    if (this.#wantSecond) a.w = true;
    if (this.#forced) a.f = true;
    this.parts.announce(a);
  }

  async #command(cmd: Command): Promise<void> {
    const { log, store } = this.parts;
    const s = this.#state;
    log.info('command', `command ${cmd} (state ${s})`);
    switch (cmd) {
      case 'start':
        if (s !== 'STOP') throw new CommandRefusedError('start', `module is already ${s}`);
        this.#wantSecond = false; this.#forced = false;
        await this.parts.checks?.setPhase('started');
        this.#setState('WAIT', 'start command');
        break;
      case 'second':
        if (s !== 'STOP' && s !== 'WAIT') throw new CommandRefusedError('second', `module is ${s}; stop it first`);
        this.#wantSecond = true; this.#forced = false;
        await store.update({ uptodate: false });
        if (s === 'STOP') { await this.parts.checks?.setPhase('started'); this.#setState('WAIT', 'second command: start as secondary only'); }
        else this.#publish();
        break;
      case 'prim': {
        if (s !== 'STOP' && s !== 'WAIT') throw new CommandRefusedError('prim', `module is ${s}; stop it first`);
        const peer = this.#peerView();
        if (peer && PRIMARY_STATES.has(peer.s)) throw new CommandRefusedError('prim', `peer ${peer.name} is ${peer.s}: two primaries would diverge; stop it first`);
        this.#forced = true; this.#wantSecond = false;
        await store.update({ uptodate: true });
        log.warn('prim', 'forced primary: this node\'s data becomes the reference; the peer will resynchronise from it');
        if (s === 'STOP') { await this.parts.checks?.setPhase('started'); this.#setState('WAIT', 'prim command'); }
        break;
      }
      case 'stop': {
        if (s === 'STOP') return;
        if (PRIMARY_STATES.has(s)) {
          const peer = this.#peerView();
          const peerCanTakeOver = peer?.s === 'SECOND' && peer.r !== false;
          await this.#leavePrimary('stop command');
          await store.update({ uptodate: s === 'ALONE' || !peerCanTakeOver, state: 'STOP' });
        } else {
          if (s === 'SECOND') await this.#stopSecondary();
          await store.update({ state: 'STOP' });
        }
        this.#wantSecond = false; this.#forced = false; this.#yielding = false;
        await this.parts.checks?.setPhase('stopped');
        this.#setState('STOP', 'stop command');
        break;
      }
      case 'swap': {
        const peer = this.#peerView();
        if (s === 'SECOND') {
          if (!peer || !PRIMARY_STATES.has(peer.s)) throw new CommandRefusedError('swap', 'no primary to swap with');
          if (!this.#ready) throw new CommandRefusedError('swap', 'this secondary is still resynchronising');
          this.parts.membership.send(this.opts.peer, `mirror/${this.opts.name}`, { cmd: 'swap' });
          log.info('swap', `asked primary ${peer.name} to swap roles`);
          return;
        }
        if (s !== 'PRIM') throw new CommandRefusedError('swap', `needs PRIM and a ready SECOND; this node is ${s}`);
        if (!peer || peer.s !== 'SECOND' || peer.r === false) throw new CommandRefusedError('swap', `peer is not a ready secondary (${peer ? peer.s : 'not heard'})`);
        this.#yielding = true;
        this.#publish();
        log.info('swap', `swap: stopping the application here before ${peer.name} starts it`);
        await this.#leavePrimary('swap');
        await store.update({ uptodate: false, lastRole: 'SECOND', state: 'SECOND' });
        this.#ready = false;
        await this.#startSecondary();
        this.#setState('SECOND', `swap: handing the primary role to ${peer.name}`);
        // #yielding stays set until the peer announces a primary state (see #reconcileOnce).
        break;
      }
      case 'restart': {
        if (!PRIMARY_STATES.has(s)) throw new CommandRefusedError('restart', `restarts the application on the primary; this node is ${s}`);
        if (this.parts.checks?.phase === 'primary') await this.parts.checks.setPhase('started');
        await this.parts.app.stop('restart command');
        try { await this.parts.app.start(); } catch (err) {
          this.emit('app:failed', { module: this.opts.name, error: err as Error });
          throw err;
        }
        await this.parts.checks?.setPhase('primary');
        break;
      }
    }
    this.kick();
  }
}

/** Reads this module's announcement out of a peer's heartbeat payload; undefined if absent or malformed. */
export function extractAnnounce(payload: unknown, module: string): Announce | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const m = (payload as { m?: unknown }).m;
  if (typeof m !== 'object' || m === null) return undefined;
  const a = (m as Record<string, unknown>)[module];
  if (typeof a !== 'object' || a === null) return { s: 'STOP', e: 0, u: false, l: '' };
  const x = a as Record<string, unknown>;
  const states: MirrorState[] = ['STOP', 'WAIT', 'ALONE', 'PRIM', 'SECOND'];
  if (!states.includes(x.s as MirrorState) || typeof x.e !== 'number' || typeof x.u !== 'boolean' || typeof x.l !== 'string') return undefined;
  const out: Announce = { s: x.s as MirrorState, e: x.e, u: x.u, l: x.l };
  if (typeof x.r === 'boolean') out.r = x.r;
  if (x.y === true) out.y = true;
  if (x.w === true) out.w = true;
  if (x.f === true) out.f = true;
  return out;
}
