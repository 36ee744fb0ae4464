/**
 * `createCluster()`: wires membership, the virtual IP, the lifeline and the mirror module by name,
 * checks that every component has what it needs at construction, and runs them with a Startable
 * lifecycle (if start fails, what started is stopped and the error rethrown).
 */
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { HaError, StatusGuard, type DataFactory, type DataReplication, type LogEntry, type ModuleLog } from '@ha/interface';
import { membership as membershipFactory, resolveTiming, type Membership, type MembershipInit, type NetworkInit } from '@ha/membership';
import { CheckerSet, witness as witnessFactory, type CheckerSetInit, type Witness, type WitnessInit } from '@ha/checkers';
import { lifeline as lifelineFactory, vip as vipFactory, type Lifeline, type Vip, type VipInit } from '@ha/vip';
import { AppRunner, type AppCallbacks, type AppScripts } from './app.js';
import { formatEntry, PersistentLog } from './module-log.js';
import { StateStore } from './state-store.js';
import { MirrorModule, type Command, type MirrorEvents, type MirrorStatus } from './mirror/mirror.js';
import type { Announce } from './mirror/decide.js';
import { farmFilter, type FarmRule } from '@ha/farm-filter';
import { FarmModule, type FarmCommand, type FarmEvents, type FarmStateChange, type FarmStatus } from './farm/farm.js';
import type { FarmAnnounce } from './farm/decide.js';
import { TcpCheck, type TcpCheckInit } from './farm/tcp-check.js';

/** The mirror module's configuration. @public */
export interface MirrorInit {
  /** Module name (default 'mirror'). Also names its state and log files. */
  name?: string;
  /** The virtual IP: an IPv4 address, or the full {@link VipInit}. */
  vip?: string | VipInit;
  /** Preferred primary (defaultprim): takes the role back automatically after it returns. */
  defaultPrimary?: string;
  /** Automatic failover when the primary is lost (default true; failover="off" in userconfig.xml). */
  failover?: boolean;
  /** Application callbacks (embedded). */
  app?: AppCallbacks;
  /** Application scripts (start_prim / stop_prim), when not embedded. */
  scripts?: AppScripts;
  /** Graceful stop bound (default 30 s). */
  niceStopTimeoutMs?: number;
  /** Forced stop bound, after which the application's processes are killed (default 30 s). */
  forceStopTimeoutMs?: number;
  /** Start bound (default 120 s). */
  startTimeoutMs?: number;
  /**
   * The data plane: replication of directories. Give `replicator({ dirs })` from `@ha/replicator`
   * (a factory the cluster calls with its context), or a ready {@link DataReplication}.
   */
  data?: DataFactory | DataReplication;
  /** Checkers, their rules and the restart policy (`maxloop`, `loopIntervalMs`), from `@ha/checkers`. */
  checkers?: CheckerSetInit;
  /** Split-brain witness asked before becoming ALONE without hearing the peer: `witness({ targets })` from `@ha/checkers`, or its init. */
  witness?: Witness | WitnessInit;
}

/** A farm module's configuration (N nodes, every node serves its share of the VIP's connections). @public */
export interface FarmInit {
  /** Module name (default 'farm'; [A-Za-z0-9_]). Names its log directory and nft tables. */
  name?: string;
  /** The VIP, held by every node with a virtual MAC. */
  vip: string;
  /** Interface of the VIP (default: the one whose subnet contains it). */
  interface?: string;
  /** Virtual MAC (default derived from the VIP). */
  vmac?: string;
  /** Load-balanced ports (`<loadbalancing_list>`). */
  rules: FarmRule[];
  /** Hash buckets (default 4096), the same on every node. */
  buckets?: number;
  /** Application callbacks (embedded), run on every node. */
  app?: AppCallbacks;
  /** Application scripts (default names start_both / stop_both). */
  scripts?: AppScripts;
  /** A tcp checker: while it fails, the node leaves the farm (WAIT) and its share moves to the others. */
  check?: TcpCheckInit;
  niceStopTimeoutMs?: number;
  forceStopTimeoutMs?: number;
  startTimeoutMs?: number;
}

/** A component factory (js-libp2p style) that may name the components it needs. @public */
export type ComponentFactory<T> = ((components: ClusterComponents) => T) & { dependencies?: readonly string[] };

/** The components wired by {@link createCluster}, by name. @public */
export interface ClusterComponents {
  log: ModuleLog;
  lifeline?: Lifeline;
  membership?: Membership;
  vip?: Vip;
  [name: string]: unknown;
}

/** Configuration of {@link createCluster}. @public */
export interface ClusterInit {
  /** This node's name (must appear in every network's addresses). */
  node: string;
  /** Shared cluster key (at least 16 bytes): authenticates all cluster traffic. */
  key: string | Uint8Array;
  /** Heartbeat networks: one or more (a second, dedicated link keeps the pair together if one is cut). */
  networks: NetworkInit[];
  /** Failure-detection preset ('default' detects within 500 ms; 'fast' for quiet networks). */
  preset?: MembershipInit['preset'];
  pulseMs?: number;
  timeoutMs?: number;
  /** Where the persisted state and the module log live. */
  stateDir: string;
  /** Logs directory (module and application logs); default: stateDir. */
  logDir?: string;
  /** The mirror module (two nodes). At least one of `mirror` and `farm` is needed. */
  mirror?: MirrorInit;
  /** Farm modules (two nodes or more), each with its own VIP. */
  farm?: FarmInit | FarmInit[];
  /** Also send every module-log entry here (e.g. to the service's own logger). */
  onLog?: (entry: LogEntry) => void;
  /** Start the module when the cluster starts (default true); false leaves it STOP until `start`. */
  autoStart?: boolean;
  /** Start right away (default true). */
  start?: boolean;
  /** Replace built-in components (advanced; e.g. a custom membership). */
  components?: {
    membership?: ComponentFactory<Membership>;
    vip?: ComponentFactory<Vip>;
    lifeline?: ComponentFactory<Lifeline> | false;
  };
}

/** Events of a cluster: the mirror's, plus membership's. @public */
export type ClusterEvents = MirrorEvents & {
  /** A farm module changed state. */
  'farm:state': [FarmStateChange];
  /** A farm module's share on this node changed. */
  'farm:share': FarmEvents['share'];
  'member:up': [{ id: string; incarnation: number }];
  'member:down': [{ id: string; reason: string; silentMs: number }];
  /**
   * The node could not go on (its membership failed) and has stopped itself so that the peer
   * takes over. A daemon should exit non-zero so its supervisor restarts it.
   */
  fatal: [Error];
};

/** A configuration error in {@link ClusterInit}. @public */
export class ClusterConfigError extends HaError {
  constructor(field: string, message: string) { super('ERR_CLUSTER_CONFIG', `cluster config: ${field}: ${message}`, { details: { field } }); }
}

/** A component needs another one that is not configured. @public */
export class MissingComponentError extends HaError {
  constructor(component: string, missing: string) {
    super('ERR_MISSING_COMPONENT', `component '${component}' needs component '${missing}', which is not configured`, { details: { component, missing } });
  }
}

/** Status of the cluster on this node. @public */
export interface ClusterStatus {
  node: string;
  /** The mirror module (empty when there is none). */
  modules: MirrorStatus[];
  /** The farm modules, with each node's share. */
  farms?: FarmStatus[];
  members: ReturnType<Membership['members']>;
  stats: ReturnType<Membership['stats']>;
}

/** A running cluster node. @public */
export class Cluster extends EventEmitter<ClusterEvents> {
  readonly node: string;
  readonly #mirror: MirrorModule | undefined;
  /** The farm modules. */
  readonly farms: FarmModule[] = [];
  readonly membership: Membership;
  readonly vip: Vip | undefined;
  readonly lifeline: Lifeline | undefined;
  readonly moduleLog: PersistentLog;
  readonly log: ModuleLog;
  readonly #store: StateStore;
  readonly #guard = new StatusGuard('cluster');
  readonly #init: ClusterInit;
  readonly #announces: Record<string, Announce> = {};
  readonly #farmAnnounces: Record<string, FarmAnnounce> = {};

  /** The mirror module. @throws {@link ClusterConfigError} if this cluster runs farm modules only (see {@link Cluster.hasMirror}). */
  get mirror(): MirrorModule {
    if (!this.#mirror) throw new ClusterConfigError('mirror', 'this cluster has no mirror module');
    return this.#mirror;
  }
  /** True if a mirror module is configured. */
  get hasMirror(): boolean { return this.#mirror !== undefined; }

  constructor(init: ClusterInit) {
    super();
    validateInit(init);
    this.#init = init;
    this.node = init.node;
    const mi = init.mirror;
    const farmInits = init.farm === undefined ? [] : Array.isArray(init.farm) ? init.farm : [init.farm];
    const name = mi ? mi.name ?? 'mirror' : farmInits[0]?.name ?? 'farm';
    const logDir = init.logDir ?? init.stateDir;
    this.moduleLog = new PersistentLog(join(logDir, name, 'module.log'), 'cluster', init.onLog);
    this.log = this.moduleLog.log;
    this.#store = new StateStore(init.stateDir, name);

    const components: ClusterComponents = { log: this.log };
    const wire = <T>(cname: string, f: ComponentFactory<T>): T => {
      for (const dep of f.dependencies ?? []) {
        if (components[dep] === undefined) throw new MissingComponentError(cname, dep);
      }
      const c = f({ ...components, log: this.log.child(cname) });
      components[cname] = c;
      return c;
    };

    const lf = init.components?.lifeline;
    this.lifeline = lf === false ? undefined : wire('lifeline', lf ?? lifelineFactory({ logFile: join(logDir, name, 'lifeline.log') }));
    const peers = new Set(init.networks.flatMap((n) => Object.keys(n.addresses)));
    peers.delete(init.node);
    if (mi && peers.size !== 1) throw new ClusterConfigError('networks', `a mirror module needs exactly two nodes; found ${peers.size + 1} (${[init.node, ...peers].join(', ')})`);
    const peer = [...peers][0]!;
    if (mi?.defaultPrimary !== undefined && mi.defaultPrimary !== init.node && mi.defaultPrimary !== peer) {
      throw new ClusterConfigError('mirror.defaultPrimary', `'${mi.defaultPrimary}' is not a node of this cluster (${init.node}, ${peer})`);
    }
    this.membership = wire('membership', init.components?.membership ?? membershipFactory({
      nodeId: init.node, networks: init.networks, key: init.key, clusterName: name,
      ...(init.preset ? { preset: init.preset } : {}),
      ...(init.pulseMs ? { pulseMs: init.pulseMs } : {}),
      ...(init.timeoutMs ? { timeoutMs: init.timeoutMs } : {}),
    }));
    if (mi?.vip !== undefined) {
      const t = this.#timing();
      // The duplicate-address probe is on the failover path: keep its window a small part of the
      // detection timeout (a LAN answers ARP in well under 1 ms).
      const probeTimeoutMs = Math.max(5, Math.min(20, Math.floor(t.timeoutMs / 6)));
      // A free pre-probe (made when the primary went silent for half the timeout) stays valid for
      // one timeout: the takeover follows it by at most that.
      const defaults = { probeTimeoutMs, preProbeMaxAgeMs: t.timeoutMs };
      const vinit: VipInit = typeof mi.vip === 'string' ? { address: mi.vip, ...defaults } : { ...defaults, ...mi.vip };
      this.vip = wire('vip', init.components?.vip ?? vipFactory(vinit));
    }
    const mirrorDeps: ComponentFactory<MirrorModule> = Object.assign((c: ClusterComponents) => {
      const mi = init.mirror!;
      const app = new AppRunner({
        module: name, node: init.node, callbacks: mi.app, scripts: mi.scripts,
        niceStopTimeoutMs: mi.niceStopTimeoutMs ?? 30_000, forceStopTimeoutMs: mi.forceStopTimeoutMs ?? 30_000,
        startTimeoutMs: mi.startTimeoutMs ?? 120_000, appLogFile: join(logDir, name, 'app.log'),
        env: { HA_VIP: this.vip?.address ?? '' },
      }, c.log.child('app'), c.lifeline);
      const timing = this.#timing();
      const first = init.networks[0]!;
      const data: DataReplication | undefined = typeof mi.data === 'function'
        ? mi.data({
          module: name, node: init.node, peer,
          localAddress: first.addresses[init.node]!, peerAddress: first.addresses[peer]!,
          key: init.key, stateDir: join(init.stateDir, name, 'data'), log: c.log.child('data'),
          messages: c.membership as Membership, lifeline: c.lifeline,
        })
        : mi.data;
      return new MirrorModule({
        name, node: init.node, peer, preferred: mi.defaultPrimary, failover: mi.failover ?? true,
        discoveryMs: Math.max(3 * timing.timeoutMs, 300), tickMs: Math.max(timing.pulseMs, 20),
      }, {
        membership: c.membership as Membership, vip: c.vip as Vip | undefined, app, store: this.#store,
        log: c.log, data,
        checks: mi.checkers ? new CheckerSet(mi.checkers, c.log.child('checkers')) : undefined,
        witness: mi.witness && !('check' in mi.witness) ? witnessFactory(mi.witness) : mi.witness as Witness | undefined,
        announce: (a) => { this.#announces[name] = a; this.#publish(); },
      });
    }, { dependencies: ['membership'] as const });
    this.#mirror = mi ? wire('mirror', mirrorDeps) : undefined;

    for (const [i, fi] of farmInits.entries()) {
      const fname = fi.name ?? (farmInits.length > 1 ? `farm${i}` : 'farm');
      const flog = this.log.child(fname);
      const filter = farmFilter({ name: fname, vip: fi.vip, rules: fi.rules, ...(fi.interface ? { interface: fi.interface } : {}), ...(fi.vmac ? { vmac: fi.vmac } : {}), ...(fi.buckets ? { buckets: fi.buckets } : {}) })({ log: flog.child('filter'), ...(this.lifeline ? { lifeline: this.lifeline } : {}) });
      const app = new AppRunner({
        module: fname, node: init.node, callbacks: fi.app,
        scripts: fi.scripts ? { start: 'start_both', stop: 'stop_both', ...fi.scripts } : undefined,
        niceStopTimeoutMs: fi.niceStopTimeoutMs ?? 30_000, forceStopTimeoutMs: fi.forceStopTimeoutMs ?? 30_000,
        startTimeoutMs: fi.startTimeoutMs ?? 120_000, appLogFile: join(logDir, fname, 'app.log'), env: { HA_VIP: fi.vip },
      }, flog.child('app'), this.lifeline);
      const farm = new FarmModule({ name: fname, node: init.node, tickMs: this.#timing().pulseMs }, {
        membership: this.membership, filter, app, log: flog, ...(fi.check ? { check: new TcpCheck(fi.check, flog.child('check')) } : {}),
        announce: (a) => { this.#farmAnnounces[fname] = a; this.#publish(); },
      });
      farm.on('state', (e) => this.emit('farm:state', e));
      farm.on('share', (e) => this.emit('farm:share', e));
      this.farms.push(farm);
    }

    for (const ev of ['state', 'failover', 'vip:acquired', 'vip:released', 'app:started', 'app:stopped', 'app:failed', 'replica:synced', 'replica:progress', 'replica:lost', 'resource', 'checker:fault', 'checker:action', 'checker:restarted', 'witness', 'replica:diverged'] as const) {
      if (this.#mirror) (this.#mirror.on as (n: string, f: (e: unknown) => void) => unknown)(ev, (e) => (this.emit as (n: string, e: unknown) => boolean)(ev, e));
    }
    this.membership.on('member:up', (e) => this.emit('member:up', e));
    this.membership.on('member:down', (e) => this.emit('member:down', { id: e.id, reason: e.reason, silentMs: e.silentMs }));
    this.membership.on('error', (err) => {
      this.log.error('membership:error', `membership failed: ${err.message}; stopping this node so the peer can take over`);
      void this.stop().catch(() => {}).then(() => this.emit('fatal', err));
    });
  }

  #publish(): void {
    this.membership.setPayload({ v: 1, m: this.#announces, ...(this.farms.length ? { f: this.#farmAnnounces } : {}) });
  }

  #timing(): { pulseMs: number; timeoutMs: number } {
    const i = this.#init;
    return resolveTiming({ preset: i.preset, pulseMs: i.pulseMs, timeoutMs: i.timeoutMs });
  }

  get status(): string { return this.#guard.status; }

  async start(): Promise<void> {
    await this.#guard.start(async () => {
      const started: Array<{ stop(): Promise<void> | void }> = [];
      try {
        const st = await this.#store.load();
        this.log.info('cluster:start', `node ${this.node} starting (persisted: ${st.uptodate ? 'up to date' : 'not up to date'}, epoch ${st.epoch}, last role ${st.lastRole || 'none'})`, { persisted: st });
        if (this.lifeline) { await this.lifeline.start(); started.push(this.lifeline); }
        if (this.vip) { await this.vip.start(); started.push(this.vip); }
        this.#mirror?.attach();
        await this.membership.start();
        started.push(this.membership);
        for (const f of this.farms) { f.attach(); started.push({ stop: () => f.command('stop').finally(() => f.detach()) }); }
        if (this.#init.autoStart ?? true) {
          await this.#mirror?.command('start');
          for (const f of this.farms) await f.command('start');
        }
      } catch (err) {
        this.#mirror?.detach();
        for (const s of started.reverse()) await Promise.resolve(s.stop()).catch(() => {});
        this.log.error('cluster:start-failed', `start failed: ${(err as Error).message}`);
        await this.moduleLog.close();
        throw err;
      }
    });
  }

  async stop(): Promise<void> {
    await this.#guard.stop(async () => {
      try {
        await this.#mirror?.command('stop');
        for (const f of this.farms) await f.command('stop');
        // Let the STOP announcement reach the peer before leaving.
        await new Promise((r) => setTimeout(r, Math.min(3 * this.#timing().pulseMs, 200)));
      } catch (err) {
        this.log.error('cluster:stop', `stopping the module failed: ${(err as Error).message}`);
      }
      this.#mirror?.detach();
      for (const f of this.farms) f.detach();
      await Promise.resolve(this.membership.stop()).catch(() => {});
      if (this.vip) await Promise.resolve(this.vip.stop()).catch(() => {});
      if (this.lifeline) await Promise.resolve(this.lifeline.stop()).catch(() => {});
      this.log.info('cluster:stop', `node ${this.node} stopped`);
      await this.moduleLog.close();
    });
  }

  /** Runs a command on the mirror module, or on the farm module named `module` (farms take start, stop, restart). */
  command(cmd: Command, module?: string): Promise<void> {
    this.#guard.assertStarted(cmd);
    const farm = this.farms.find((f) => f.name === module) ?? (!this.#mirror && module === undefined ? this.farms[0] : undefined);
    if (farm) {
      if (cmd !== 'start' && cmd !== 'stop' && cmd !== 'restart') return Promise.reject(new ClusterConfigError('command', `'${cmd}' does not apply to farm module '${farm.name}' (start, stop, restart)`));
      return farm.command(cmd as FarmCommand);
    }
    if (!this.#mirror || (module !== undefined && module !== this.#mirror.name)) return Promise.reject(new ClusterConfigError('module', `no module named '${module ?? 'mirror'}'`));
    return this.#mirror.command(cmd);
  }

  /** `ha verify`: compares the mirror module's replicated directories with the secondary's copies. */
  verify(): Promise<unknown[]> {
    this.#guard.assertStarted('verify');
    if (!this.#mirror) return Promise.reject(new ClusterConfigError('module', 'no mirror module: nothing is replicated'));
    return this.#mirror.verify();
  }

  async getStatus(): Promise<ClusterStatus> {
    const modules = this.#mirror ? [await this.#mirror.status()] : [];
    return { node: this.node, modules, farms: this.farms.map((f) => f.status()), members: this.membership.members(), stats: this.membership.stats() };
  }

  /** The last `n` module-log lines, formatted for humans. */
  logs(n = 100): string[] {
    return this.moduleLog.recent.slice(-n).map(formatEntry);
  }
}

function validateInit(init: ClusterInit): void {
  if (!init || typeof init !== 'object') throw new ClusterConfigError('init', 'expected an object');
  if (typeof init.node !== 'string' || !init.node) throw new ClusterConfigError('node', 'must be a non-empty string (this node\'s name)');
  if (typeof init.stateDir !== 'string' || !init.stateDir) throw new ClusterConfigError('stateDir', 'must be a directory path');
  if (!Array.isArray(init.networks) || init.networks.length === 0) throw new ClusterConfigError('networks', 'at least one heartbeat network is needed');
  if (init.farm !== undefined) {
    const farms = Array.isArray(init.farm) ? init.farm : [init.farm];
    for (const [i, f] of farms.entries()) {
      if (!f || typeof f !== 'object') throw new ClusterConfigError(`farm[${i}]`, 'expected an object');
      if (f.app && f.scripts) throw new ClusterConfigError(`farm[${i}]`, 'give either app callbacks or scripts, not both');
    }
    const names = farms.map((f, i) => f.name ?? (farms.length > 1 ? `farm${i}` : 'farm'));
    if (new Set(names).size !== names.length) throw new ClusterConfigError('farm', `module names must differ (${names.join(', ')})`);
    if (init.mirror && names.includes(init.mirror.name ?? 'mirror')) throw new ClusterConfigError('farm', `a farm module has the mirror module's name '${init.mirror.name ?? 'mirror'}'`);
  }
  if (init.mirror === undefined) {
    if (init.farm === undefined) throw new ClusterConfigError('mirror', 'no module: give a mirror module, a farm module, or both');
    return;
  }
  if (!init.mirror || typeof init.mirror !== 'object') throw new ClusterConfigError('mirror', 'the mirror module\'s configuration is missing');
  if (init.mirror.app && init.mirror.scripts) throw new ClusterConfigError('mirror', 'give either app callbacks or scripts, not both');
  if (init.mirror.app && (typeof init.mirror.app.start !== 'function' || typeof init.mirror.app.stop !== 'function')) {
    throw new ClusterConfigError('mirror.app', 'must have async start() and stop({ force }) functions');
  }
  for (const k of ['niceStopTimeoutMs', 'forceStopTimeoutMs', 'startTimeoutMs'] as const) {
    const v = init.mirror[k];
    if (v !== undefined && (!Number.isFinite(v) || v <= 0)) throw new ClusterConfigError(`mirror.${k}`, `must be a positive number of milliseconds, got ${String(v)}`);
  }
}

/**
 * Creates a cluster node running a mirror module and (unless `start: false`) starts it.
 * @public
 */
export async function createCluster(init: ClusterInit): Promise<Cluster> {
  const c = new Cluster(init);
  if (init.start ?? true) await c.start();
  return c;
}
