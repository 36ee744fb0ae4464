/**
 * Turns a SafeKit-style `userconfig.xml` plus `cluster.xml` into a {@link ClusterInit}, so a module
 * configured for the reference product runs here with its own shell scripts.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ModuleLog } from '@ha/interface';
import type { NetworkInit } from '@ha/membership';
import type { VipInit } from '@ha/vip';
import type { ClusterInit } from './cluster.js';
import { ConfigError, checkUserConfigAgainstCluster, formatConfigWarning, type ClusterDescription, type UserConfig } from './config/index.js';

/** Options of {@link fromUserConfig}. @public */
export interface FromUserConfigOptions {
  /** This node's name in cluster.xml. */
  node: string;
  key: string | Uint8Array;
  stateDir: string;
  logDir?: string;
  /** Module name (default: 'mirror'). */
  module?: string;
  /** Directory of start_prim / stop_prim (default: `bin/` beside userconfig.xml if it exists, else that directory). */
  scriptsDir?: string;
  /** Overrides `<heart pulse timeout>` with a named preset. */
  preset?: ClusterInit['preset'];
  /** Default heartbeat UDP port when neither cluster.xml nor the lan gives one (default 8888). */
  defaultPort?: number;
  log?: ModuleLog;
}

/** Builds a {@link ClusterInit} from a loaded userconfig.xml and cluster.xml. Throws ConfigError. @public */
export function fromUserConfig(config: UserConfig, cluster: ClusterDescription, opts: FromUserConfigOptions): { init: ClusterInit; notes: string[] } {
  const file = config.source ?? 'userconfig.xml';
  const notes: string[] = config.warnings.map(formatConfigWarning);
  if (config.mode !== 'mirror') {
    throw new ConfigError(`${file}: mode="${config.mode}" is not supported by this version of the daemon (mirror only; the farm module comes in a later release)`, {
      file, line: 1, column: 1, path: 'safe/service', reason: 'invalid-value', attribute: 'mode', value: config.mode,
    });
  }
  checkUserConfigAgainstCluster(config, cluster);
  const nodes = new Set(cluster.lans.flatMap((l) => l.nodes.map((n) => n.name)));
  if (!nodes.has(opts.node)) {
    throw new ConfigError(`${cluster.source ?? 'cluster.xml'}: this node '${opts.node}' is not in the cluster (nodes: ${[...nodes].join(', ')})`, {
      file: cluster.source ?? 'cluster.xml', line: 1, column: 1, path: 'cluster', reason: 'reference', value: opts.node,
    });
  }
  const heartbeats = config.heart?.heartbeats.length ? config.heart.heartbeats : [{ name: cluster.lans[0]!.name }];
  const networks: NetworkInit[] = heartbeats.map((hb) => {
    const lan = cluster.lans.find((l) => l.name === hb.name)!;
    return {
      name: hb.name,
      port: lan.port ?? cluster.port ?? opts.defaultPort ?? 8888,
      addresses: Object.fromEntries(lan.nodes.map((n) => [n.name, n.addr])),
    };
  });
  const vipAddr = config.vip?.interfaces.flatMap((i) => i.realInterface?.addrs ?? [])[0];
  let vip: VipInit | undefined;
  if (vipAddr) {
    const ifName = config.vip?.interfaces.find((i) => i.realInterface?.addrs.includes(vipAddr))?.realInterface?.name;
    vip = { address: vipAddr.addr, ...(ifName ? { interface: ifName } : {}) };
  }
  if ((config.vip?.interfaces.flatMap((i) => i.realInterface?.addrs ?? []).length ?? 0) > 1) {
    notes.push(`${file}: several virtual addresses are configured; this version manages the first (${vipAddr?.addr}) only`);
  }
  if (config.errd?.procs.length) notes.push(`${file}: <errd> process checkers are parsed but not enforced by this version (they come with @ha/checkers)`);
  if (config.check && Object.values(config.check).some((a) => Array.isArray(a) && a.length)) notes.push(`${file}: <check> checkers are parsed but not enforced by this version (they come with @ha/checkers)`);
  // <rfs>: the data plane is built by the caller (the `ha` daemon uses @ha/replicator), so that
  // @ha/cluster does not depend on the native replication code.

  const base = config.source ? dirname(config.source) : process.cwd();
  const scriptsDir = opts.scriptsDir ?? (existsSync(join(base, 'bin')) ? join(base, 'bin') : base);
  const user = config.user;
  const init: ClusterInit = {
    node: opts.node,
    key: opts.key,
    networks,
    stateDir: opts.stateDir,
    ...(opts.logDir ? { logDir: opts.logDir } : {}),
    ...(opts.preset ? { preset: opts.preset } : {
      ...(config.heart?.pulseMs ? { pulseMs: config.heart.pulseMs } : {}),
      ...(config.heart?.timeoutMs ? { timeoutMs: config.heart.timeoutMs } : {}),
    }),
    mirror: {
      name: opts.module ?? 'mirror',
      ...(vip ? { vip } : {}),
      ...(config.defaultPrimary ? { defaultPrimary: config.defaultPrimary } : {}),
      failover: config.failover,
      scripts: { dir: scriptsDir },
      ...(user ? { niceStopTimeoutMs: user.niceStopTimeoutS * 1000, forceStopTimeoutMs: user.forceStopTimeoutS * 1000 } : {}),
    },
  };
  return { init, notes };
}
