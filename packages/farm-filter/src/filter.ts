/**
 * `farmFilter()`: the data plane of a farm on one node. Puts the VIP on the interface, installs
 * the virtual-MAC and ARP tables, and keeps an nft chain that accepts new connections only in
 * this node's buckets ({@link FarmFilter.setBuckets}, one atomic transaction per change).
 */
import { StatusGuard, type ModuleLog, type Startable } from '@ha/interface';
import { addAddress, deleteAddress, gratuitousArp, listInterfaces, resolveVipConfig, type Lifeline } from '@ha/vip';
import { DEFAULT_BUCKETS } from './buckets.js';
import { FarmFilterConfigError } from './errors.js';
import { nftApply, nftBinary } from './nft.js';
import { checkSpec, renderDelete, renderFilterTable, renderNetdevTable, virtualMac, type FarmRule, type FarmRulesetSpec } from './rules.js';

/** Configuration of {@link farmFilter}. @public */
export interface FarmFilterInit {
  /** Farm name (tables `ha_farm_<name>`; [A-Za-z0-9_], up to 32 characters). */
  name: string;
  /** The virtual IP shared by every node. */
  vip: string;
  /** Interface carrying the VIP (default: the one whose subnet contains it). */
  interface?: string;
  /** Virtual MAC (default {@link virtualMac}(vip)). Must be the same on every node. */
  vmac?: string;
  /** Load-balanced ports. */
  rules: FarmRule[];
  /** Number of hash buckets, the same on every node (default 4096). */
  buckets?: number;
  /** jhash seed, the same on every node. */
  seed?: number;
}

/** Components of a {@link FarmFilter}. @public */
export interface FarmFilterComponents {
  log: ModuleLog;
  /** If given, the VIP and the tables are removed by the watchdog if this process dies. */
  lifeline?: Lifeline;
}

/** The farm filter of one node. @public */
export class FarmFilter implements Startable {
  readonly init: FarmFilterInit;
  readonly bucketCount: number;
  readonly #log: ModuleLog;
  readonly #lifeline: Lifeline | undefined;
  readonly #guard = new StatusGuard('farm filter');
  #spec: FarmRulesetSpec | undefined;
  #owned: number[] = [];
  #queue: Promise<void> = Promise.resolve();

  constructor(init: FarmFilterInit, components: FarmFilterComponents) {
    this.init = init;
    this.bucketCount = init.buckets ?? DEFAULT_BUCKETS;
    this.#log = components.log;
    this.#lifeline = components.lifeline;
    // Validate what can be validated without the node's interfaces, at construction.
    checkSpec({ name: init.name, vip: init.vip, vmac: init.vmac ?? virtualMac(init.vip), interface: init.interface ?? 'eth0', rules: init.rules, buckets: this.bucketCount, ...(init.seed !== undefined ? { seed: init.seed } : {}) });
  }

  get status(): string { return this.#guard.status; }
  /** The buckets this node accepts now (sorted). */
  get owned(): readonly number[] { return this.#owned; }
  /** The resolved spec (interface, vmac), once started. */
  get spec(): FarmRulesetSpec | undefined { return this.#spec; }

  async start(): Promise<void> {
    await this.#guard.start(async () => {
      const res = resolveVipConfig(await listInterfaces(), { address: this.init.vip, ...(this.init.interface ? { interface: this.init.interface } : {}) });
      const spec = checkSpec({
        name: this.init.name, vip: this.init.vip, vmac: this.init.vmac ?? virtualMac(this.init.vip), interface: res.interface,
        rules: this.init.rules, buckets: this.bucketCount, ...(this.init.seed !== undefined ? { seed: this.init.seed } : {}),
      });
      this.#spec = spec;
      const addr = { address: spec.vip, prefix: 32, interface: spec.interface };
      // If we die, the watchdog removes the VIP first (the node stops accepting at once), then the tables.
      this.#lifeline?.update(`farm:${spec.name}`, { vips: [addr], onDeath: [{ cmd: nftBinary(), args: ['delete', 'table', 'inet', `ha_farm_${spec.name}`] }, { cmd: nftBinary(), args: ['delete', 'table', 'netdev', `ha_farm_${spec.name}`] }] });
      try {
        // Accept nothing until buckets are given, then the VIP, then the MAC/ARP handling.
        await nftApply(renderFilterTable(spec, []));
        await addAddress(addr);
        await nftApply(renderNetdevTable(spec));
        this.#owned = [];
        await gratuitousArp(spec.interface, spec.vip).catch((e: Error) => this.#log.warn('farm:garp', `gratuitous ARP for ${spec.vip} failed: ${e.message}`));
        this.#log.info('farm:filter-up', `VIP ${spec.vip} on ${spec.interface} with virtual MAC ${spec.vmac}; ports ${spec.rules.map((r) => `${r.proto ?? 'tcp'}/${r.port} ${r.filter ?? 'on_addr'}`).join(', ')}`, { vip: spec.vip, vmac: spec.vmac });
      } catch (err) {
        await this.#teardown().catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Sets the buckets this node accepts new connections in (replacing the previous set) in one
   * atomic nft transaction. Calls are applied in order. Connections already established keep
   * going whatever their bucket.
   */
  setBuckets(owned: Iterable<number>): Promise<void> {
    this.#guard.assertStarted('setBuckets');
    const list = [...new Set(owned)].sort((a, b) => a - b);
    for (const b of list) {
      if (!Number.isInteger(b) || b < 0 || b >= this.bucketCount) throw new FarmFilterConfigError('buckets', `bucket ${b} is outside 0..${this.bucketCount - 1}`);
    }
    const spec = this.#spec!;
    const p = this.#queue.then(async () => {
      await nftApply(renderFilterTable(spec, list));
      this.#owned = list;
    });
    this.#queue = p.catch(() => {});
    return p;
  }

  async stop(): Promise<void> {
    await this.#guard.stop(async () => {
      await this.#queue;
      await this.#teardown();
      this.#log.info('farm:filter-down', `VIP ${this.init.vip} and tables removed`);
    });
  }

  async #teardown(): Promise<void> {
    const spec = this.#spec;
    if (!spec) return;
    this.#owned = [];
    await deleteAddress({ address: spec.vip, prefix: 32, interface: spec.interface }).catch((e: Error) => this.#log.warn('farm:vip-del', e.message));
    await nftApply(renderDelete(spec.name)).catch((e: Error) => this.#log.warn('farm:nft-del', e.message));
    this.#lifeline?.update(`farm:${spec.name}`, undefined);
  }
}

/**
 * Creates a farm filter component (js-libp2p style).
 * @example
 * ```ts
 * const f = farmFilter({ name: 'web', vip: '198.18.0.100', rules: [{ port: 80, filter: 'on_addr' }] })({ log })
 * await f.start()
 * await f.setBuckets(ownedBuckets('node1', ['node1', 'node2', 'node3']))
 * ```
 * @public
 */
export function farmFilter(init: FarmFilterInit): (components: FarmFilterComponents) => FarmFilter {
  return (components) => new FarmFilter(init, components);
}
