/** Validation of the membership init into a resolved, serialisable configuration. */
import { isIPv4 } from 'node:net';
import { deriveKey } from './auth.js';
import { MembershipConfigError } from './errors.js';
import { resolveTiming, type PresetName } from './timing.js';

/** One heartbeat network. @public */
export interface NetworkInit {
  /** Name used in events and `members()[].networks` (default `net0`, `net1`, ...). */
  name?: string;
  /** UDP port of this network (the same on every node). */
  port: number;
  /** IPv4 address of every node (this one included) on this network, by node id. */
  addresses: Record<string, string>;
}

/** Options of {@link membership}. @public */
export interface MembershipInit {
  /** This node's id: must be in every network's `addresses`. */
  nodeId: string;
  /** One or more networks; a member is alive while ANY network hears it. */
  networks: NetworkInit[];
  /** Shared cluster key (a string is taken as UTF-8), at least 16 bytes. */
  key: string | Uint8Array;
  /** Cluster name carried in every message (default 'ha'); messages of other clusters are dropped. */
  clusterName?: string;
  /** Timing preset (default 'default'). */
  preset?: PresetName;
  /** Overrides the preset's pulse (ms). */
  pulseMs?: number;
  /** Overrides the preset's timeout (ms). */
  timeoutMs?: number;
  /** This run's incarnation (must grow across restarts); default `Date.now()` at construction. */
  incarnation?: number;
  /** Run the UDP loop in a worker thread (default true). `false` is for unit tests only. */
  useWorker?: boolean;
}

/** A network after validation. */
export interface ResolvedNetwork {
  index: number;
  name: string;
  port: number;
  localAddress: string;
  /** Peers (self excluded) and their address on this network. */
  peers: Array<[id: string, address: string]>;
}

/** Validated configuration, passed to the worker. */
export interface ResolvedConfig {
  nodeId: string;
  clusterName: string;
  macKey: Uint8Array;
  pulseMs: number;
  timeoutMs: number;
  incarnation: number;
  networks: ResolvedNetwork[];
  /** Every member id (self excluded), sorted. */
  members: string[];
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Validates `init`; throws {@link MembershipConfigError} naming the field. */
export function resolveConfig(init: MembershipInit): ResolvedConfig {
  if (typeof init !== 'object' || init === null) throw new MembershipConfigError('init', 'must be an object');
  const { nodeId } = init;
  if (typeof nodeId !== 'string' || !ID_RE.test(nodeId)) {
    throw new MembershipConfigError('nodeId', `must be 1-128 characters of letters, digits, '.', '_', ':' or '-' starting with a letter or digit, got ${JSON.stringify(nodeId)}`);
  }
  const clusterName = init.clusterName ?? 'ha';
  if (typeof clusterName !== 'string' || clusterName.length === 0 || clusterName.length > 64) {
    throw new MembershipConfigError('clusterName', `must be a non-empty string of at most 64 characters, got ${JSON.stringify(clusterName)}`);
  }
  const timing = resolveTiming({ preset: init.preset, pulseMs: init.pulseMs, timeoutMs: init.timeoutMs });
  const incarnation = init.incarnation ?? Date.now();
  if (!Number.isSafeInteger(incarnation) || incarnation < 1) {
    throw new MembershipConfigError('incarnation', `must be a positive safe integer, got ${String(incarnation)}`);
  }
  const macKey = deriveKey(init.key);
  if (!Array.isArray(init.networks) || init.networks.length === 0) {
    throw new MembershipConfigError('networks', 'must be a non-empty array');
  }
  const names = new Set<string>();
  const binds = new Set<string>();
  const members = new Set<string>();
  const networks: ResolvedNetwork[] = init.networks.map((n, index) => {
    const where = `networks[${index}]`;
    if (typeof n !== 'object' || n === null) throw new MembershipConfigError(where, 'must be an object');
    const name = n.name ?? `net${index}`;
    if (typeof name !== 'string' || name.length === 0 || name.length > 64) {
      throw new MembershipConfigError(`${where}.name`, `must be a non-empty string of at most 64 characters, got ${JSON.stringify(name)}`);
    }
    if (names.has(name)) throw new MembershipConfigError(`${where}.name`, `duplicate network name '${name}'`);
    names.add(name);
    if (!Number.isInteger(n.port) || n.port < 1 || n.port > 65535) {
      throw new MembershipConfigError(`${where}.port`, `must be an integer 1..65535, got ${String(n.port)}`);
    }
    if (typeof n.addresses !== 'object' || n.addresses === null) {
      throw new MembershipConfigError(`${where}.addresses`, 'must be an object { nodeId: IPv4 address }');
    }
    const seen = new Map<string, string>();
    for (const [id, addr] of Object.entries(n.addresses)) {
      if (!ID_RE.test(id)) throw new MembershipConfigError(`${where}.addresses`, `invalid node id ${JSON.stringify(id)}`);
      if (typeof addr !== 'string' || !isIPv4(addr)) {
        throw new MembershipConfigError(`${where}.addresses.${id}`, `must be an IPv4 address, got ${JSON.stringify(addr)}`);
      }
      const other = seen.get(addr);
      if (other !== undefined) throw new MembershipConfigError(`${where}.addresses.${id}`, `address ${addr} is also given to '${other}'`);
      seen.set(addr, id);
      if (id !== nodeId) members.add(id);
    }
    const localAddress = n.addresses[nodeId];
    if (localAddress === undefined || !Object.hasOwn(n.addresses, nodeId)) {
      throw new MembershipConfigError(`${where}.addresses`, `must contain this node's id '${nodeId}'`);
    }
    const bind = `${localAddress}:${n.port}`;
    if (binds.has(bind)) throw new MembershipConfigError(`${where}`, `binds ${bind} like an earlier network`);
    binds.add(bind);
    const peers = Object.entries(n.addresses).filter(([id]) => id !== nodeId);
    return { index, name, port: n.port, localAddress, peers };
  });
  if (init.useWorker !== undefined && typeof init.useWorker !== 'boolean') {
    throw new MembershipConfigError('useWorker', `must be a boolean, got ${typeof init.useWorker}`);
  }
  return { nodeId, clusterName, macKey, ...timing, incarnation, networks, members: [...members].sort() };
}
