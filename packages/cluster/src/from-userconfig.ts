/**
 * Turns a SafeKit-style `userconfig.xml` plus `cluster.xml` into a {@link ClusterInit}, so a module
 * configured for the reference product runs here with its own shell scripts.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ModuleLog } from '@ha/interface';
import type { NetworkInit } from '@ha/membership';
import type { VipInit } from '@ha/vip';
import { execChecker, interfaceChecker, ipChecker, pingChecker, processChecker, tcpChecker, type CheckerAction, type CheckerRule, type WitnessInit, type WitnessTarget } from '@ha/checkers';
import type { FarmRule } from '@ha/farm-filter';
import type { ClusterInit, FarmInit } from './cluster.js';
import { ConfigError, checkUserConfigAgainstCluster, formatConfigWarning, type ClusterDescription, type ConfigLocation, type UserConfig } from './config/index.js';
import { isPlaceholder } from './config/read.js';

/** Options of {@link fromUserConfig}. @public */
export interface FromUserConfigOptions {
  /** This node's name in cluster.xml. */
  node: string;
  key: string | Uint8Array;
  stateDir: string;
  logDir?: string;
  /** Module name (default: 'mirror', or 'farm' for a farm module). */
  module?: string;
  /** Directory of start_prim / stop_prim (default: `bin/` beside userconfig.xml if it exists, else that directory). */
  scriptsDir?: string;
  /** Overrides `<heart pulse timeout>` with a named preset. */
  preset?: ClusterInit['preset'];
  /** Default heartbeat UDP port when neither cluster.xml nor the lan gives one (default 8888). */
  defaultPort?: number;
  log?: ModuleLog;
  /**
   * Accept stock placeholders (`VIRTUAL_IP_ADDR_TO_BE_DEFINED`, `TCP_PORT_TO_BE_DEFINED`) in a farm
   * module, leaving them out of the result with a note (`ha check`). Default false: they are errors.
   */
  allowPlaceholders?: boolean;
}

/** Builds a {@link ClusterInit} from a loaded userconfig.xml and cluster.xml. Throws ConfigError. @public */
export function fromUserConfig(config: UserConfig, cluster: ClusterDescription, opts: FromUserConfigOptions): { init: ClusterInit; notes: string[] } {
  const file = config.source ?? 'userconfig.xml';
  const notes: string[] = config.warnings.map(formatConfigWarning);
  checkUserConfigAgainstCluster(config, cluster);
  const nodes = new Set(cluster.lans.flatMap((l) => l.nodes.map((n) => n.name)));
  if (!nodes.has(opts.node)) {
    throw new ConfigError(`${cluster.source ?? 'cluster.xml'}: this node '${opts.node}' is not in the cluster (nodes: ${[...nodes].join(', ')})`, {
      file: cluster.source ?? 'cluster.xml', line: 1, column: 1, path: 'cluster', reason: 'reference', value: opts.node,
    });
  }
  if (config.mode === 'farm') return { init: farmInit(config, cluster, opts, notes), notes };
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
  const { checkers, witness } = checkersFromUserConfig(config, notes);
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
      ...(checkers.length ? { checkers: { checkers, maxloop: config.maxloop, loopIntervalMs: config.loopIntervalHours * 3600_000 } } : {}),
      ...(witness ? { witness } : {}),
      ...(user ? { niceStopTimeoutMs: user.niceStopTimeoutS * 1000, forceStopTimeoutMs: user.forceStopTimeoutS * 1000 } : {}),
    },
  };
  return { init, notes };
}

const PLACEHOLDER = /TO_BE_DEFINED|^[A-Z][A-Z0-9_]*_[A-Z0-9_]*$/;
const ACTIONS: readonly string[] = ['restart', 'stopstart', 'stop', 'wait', 'none'];

/**
 * `<errd><proc>` and `<check>` to checker rules, `<check><splitbrain>` to the witness. Checkers
 * still holding a placeholder of the stock file are skipped with a note.
 */
export function checkersFromUserConfig(config: UserConfig, notes: string[]): { checkers: CheckerRule[]; witness?: WitnessInit } {
  const file = config.source ?? 'userconfig.xml';
  const checkers: CheckerRule[] = [];
  const when = (cls: string | undefined): 'primary' | 'always' => (cls === undefined || cls === 'prim' ? 'primary' : 'always');
  const action = (a: string | undefined, dflt: CheckerAction, where: string): CheckerAction => {
    if (a === undefined) return dflt;
    if (ACTIONS.includes(a)) return a as CheckerAction;
    notes.push(`${file}: ${where}: action="${a}" is not supported (restart, stopstart, stop, wait); using ${dflt}`);
    return dflt;
  };
  const ms = (s: number | undefined) => (s === undefined ? undefined : s * 1000);
  const poll = (to: { interval?: number; timeout?: number } | undefined) => ({
    ...(to?.interval ? { intervalMs: ms(to.interval)! } : {}), ...(to?.timeout ? { timeoutMs: ms(to.timeout)! } : {}),
  });
  for (const p of config.errd?.procs ?? []) {
    const at = `<proc name="${p.name}">${p.loc ? ` (line ${p.loc.line})` : ''}`;
    if (PLACEHOLDER.test(p.name)) { notes.push(`${file}: ${at}: placeholder name: checker skipped`); continue; }
    checkers.push({
      checker: processChecker({ name: `process.${p.name}`, process: p.name, ...(p.atleast !== undefined ? { atleast: p.atleast } : {}), ...(p.atmost !== undefined ? { atmost: p.atmost } : {}) }),
      action: action(p.action, 'restart', at), when: when(p.class),
      ...(p.startAfter ? { graceMs: p.startAfter * (config.errd?.polltimer ?? 10) * 1000 } : {}),
    });
  }
  // <vip><interface check="on"> (the default): the VIP's interface is up with a carrier (else wait),
  // and while primary the VIP is on this node and answered by no other host (else stop here so
  // the peer takes over).
  for (const itf of config.vip?.interfaces ?? []) {
    if (!itf.check || !itf.realInterface) continue;
    const name = itf.realInterface.name;
    if (name) checkers.push({ checker: interfaceChecker({ name: `intf.${name}`, interface: name }), action: 'wait', when: 'always' });
    const addr = itf.realInterface.addrs[0]?.addr;
    if (addr && !PLACEHOLDER.test(addr)) checkers.push({ checker: ipChecker({ name: `ip.${addr}`, address: addr }), action: 'stopstart', when: 'primary' });
  }
  const c = config.check;
  let witness: WitnessInit | undefined;
  if (c) {
    for (const k of c.tcp) {
      const at = `<tcp ident="${k.ident}">`;
      if (PLACEHOLDER.test(k.to.addr) || k.to.port === undefined) { notes.push(`${file}: ${at}: placeholder address or port: checker skipped`); continue; }
      checkers.push({ checker: tcpChecker({ name: k.ident, host: k.to.addr, port: k.to.port, ...poll(k.to) }), action: action(k.action, 'restart', at), when: when(k.when) });
    }
    for (const k of c.ping) {
      const at = `<ping ident="${k.ident}">`;
      if (!k.to?.addr || PLACEHOLDER.test(k.to.addr)) { notes.push(`${file}: ${at}: no address: checker skipped`); continue; }
      checkers.push({ checker: pingChecker({ name: k.ident, address: k.to.addr, ...poll(k.to) }), action: action(k.action, 'wait', at), when: when(k.when ?? 'both') });
    }
    for (const k of c.intf) {
      const name = k.to?.localId ?? k.arg ?? k.ident;
      checkers.push({ checker: interfaceChecker({ name: k.ident, interface: name, ...poll(k.to) }), action: action(k.action, 'wait', `<intf ident="${k.ident}">`), when: when(k.when ?? 'both') });
    }
    for (const k of c.ip) {
      const addr = k.to?.addr ?? config.vip?.interfaces.flatMap((i) => i.realInterface?.addrs ?? [])[0]?.addr;
      if (!addr) { notes.push(`${file}: <ip ident="${k.ident}">: no address: checker skipped`); continue; }
      checkers.push({ checker: ipChecker({ name: k.ident, address: addr, ...poll(k.to) }), action: action(k.action, 'stopstart', `<ip ident="${k.ident}">`), when: when(k.when) });
    }
    for (const k of c.custom) {
      checkers.push({ checker: execChecker({ name: k.ident, file: k.exec!, ...(k.arg ? { args: k.arg.split(/\s+/).filter(Boolean) } : {}), ...poll(k.to) }), action: action(k.action, 'restart', `<custom ident="${k.ident}">`), when: when(k.when) });
    }
    for (const k of c.module) notes.push(`${file}: <module name="${k.ident}">: module checkers need the other module's state in this process: use moduleChecker() when embedding; skipped`);
    const targets: WitnessTarget[] = c.splitbrain.map((k): WitnessTarget => {
      const exe = k.exec ?? '';
      const arg = k.arg ?? k.to?.addr ?? '';
      if (/(^|\/)ping$/.test(exe) && arg) return { ping: arg };
      const args = arg.split(/\s+/).filter(Boolean);
      return { name: k.ident, check: async (signal) => (await execForWitness(exe, args, signal)) };
    });
    if (targets.length) witness = { targets };
  }
  return { checkers, ...(witness ? { witness } : {}) };
}

async function execForWitness(file: string, args: string[], signal: AbortSignal): Promise<boolean> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const ch = spawn(file, args, { stdio: 'ignore', signal });
    ch.once('error', () => resolve(false));
    ch.once('close', (code) => resolve(code === 0));
  });
}

function configError(file: string, loc: ConfigLocation | undefined, path: string, message: string, attribute?: string, value?: string): ConfigError {
  return new ConfigError(`${file}${loc ? `:${loc.line}:${loc.column}` : ''}: ${message}`, {
    file, line: loc?.line ?? 1, column: loc?.column ?? 1, path: loc?.path ?? path, reason: 'invalid-value',
    ...(attribute ? { attribute } : {}), ...(value !== undefined ? { value } : {}),
  });
}

/** A farm module: `<farm><lan/>` (membership over N nodes), `<virtual_addr>`, `<loadbalancing_list>`, `<tcp>` checker. */
function farmInit(config: UserConfig, cluster: ClusterDescription, opts: FromUserConfigOptions, notes: string[]): ClusterInit {
  const file = config.source ?? 'userconfig.xml';
  const lanNames = config.farm?.lans.length ? config.farm.lans.map((l) => l.name) : [cluster.lans[0]!.name];
  const networks: NetworkInit[] = lanNames.map((name) => {
    const lan = cluster.lans.find((l) => l.name === name)!;
    return { name, port: lan.port ?? cluster.port ?? opts.defaultPort ?? 8888, addresses: Object.fromEntries(lan.nodes.map((n) => [n.name, n.addr])) };
  });
  if (config.heart) notes.push(`${file}: <heart> is ignored in a farm module (its membership runs over the <farm> lans)`);
  const itfs = (config.vip?.interfaces ?? []).filter((i) => i.virtualInterface);
  const addrs = itfs.flatMap((i) => i.virtualInterface!.addrs.map((a) => ({ a, itf: i })));
  if (config.vip?.interfaces.some((i) => i.realInterface)) notes.push(`${file}: <real_interface> is ignored in a farm module (the VIP is a <virtual_interface>)`);
  const first = addrs[0];
  if (!first) throw configError(file, config.vip?.interfaces[0]?.loc ?? config.loc, 'safe/service/vip', 'a farm module needs <vip><interface_list><interface><virtual_interface><virtual_addr addr="..."/>');
  if (addrs.length > 1) notes.push(`${file}: several virtual addresses are configured; this version load-balances the first (${first.a.addr}) only`);
  const placeholderVip = isPlaceholder(first.a.addr);
  if (placeholderVip && !opts.allowPlaceholders) throw configError(file, first.a.loc, 'virtual_addr', `addr="${first.a.addr}" on <virtual_addr> is not defined yet: give the farm's virtual IP address`, 'addr', first.a.addr);
  const type = first.itf.virtualInterface!.type;
  if (type !== undefined && type !== 'vmac_directed') notes.push(`${file}: <virtual_interface type="${type}">: this version always uses a virtual MAC (vmac_directed)`);

  const rules: FarmRule[] = [];
  for (const g of config.vip?.loadBalancing ?? []) {
    for (const r of g.rules) {
      if (r.port === undefined) {
        if (!opts.allowPlaceholders) throw configError(file, r.loc, 'rule', `port on <rule> of group '${g.group}' is not defined yet: give the load-balanced port`, 'port');
        continue;
      }
      if (r.filter === 'on_ipid') throw configError(file, r.loc, 'rule', `filter="on_ipid" on <rule port="${r.port}"> of group '${g.group}' is not supported by this version (on_addr or on_port)`, 'filter', r.filter);
      rules.push({ port: r.port, proto: r.proto, filter: r.filter });
    }
  }
  if (!rules.length && !opts.allowPlaceholders) throw configError(file, config.loc, 'safe/service/vip', 'a farm module needs <loadbalancing_list><group><rule port="..." proto="tcp" filter="on_addr|on_port"/>');

  const tcp = config.check?.tcp ?? [];
  let check: FarmInit['check'];
  const t0 = tcp[0];
  if (t0) {
    if (t0.to.port === undefined || isPlaceholder(t0.to.addr)) {
      if (!opts.allowPlaceholders) throw configError(file, t0.loc, 'tcp', `<tcp ident="${t0.ident}">: <to addr port> is not defined yet`);
    } else {
      check = {
        host: t0.to.addr, port: t0.to.port,
        ...(t0.to.interval ? { intervalMs: t0.to.interval * 1000 } : {}),
        ...(t0.to.timeout ? { timeoutMs: t0.to.timeout * 1000 } : {}),
      };
    }
    if (tcp.length > 1) notes.push(`${file}: several <tcp> checkers; this version runs the first ('${t0.ident}') only`);
  }
  const c = config.check;
  if (c && [c.ping, c.intf, c.ip, c.custom, c.module, c.splitbrain].some((a) => a.length)) notes.push(`${file}: <check> checkers other than <tcp> are parsed but not enforced by this version`);
  if (config.errd?.procs.length) notes.push(`${file}: <errd> process checkers are parsed but not enforced by this version (they come with @ha/checkers)`);

  const base = config.source ? dirname(config.source) : process.cwd();
  const scriptsDir = opts.scriptsDir ?? (existsSync(join(base, 'bin')) ? join(base, 'bin') : base);
  const user = config.user;
  const itfName = first.itf.extra?.name;
  const farm: FarmInit = {
    name: opts.module ?? 'farm',
    vip: first.a.addr,
    ...(itfName ? { interface: itfName } : {}),
    rules,
    scripts: { dir: scriptsDir },
    ...(check ? { check } : {}),
    ...(user ? { niceStopTimeoutMs: user.niceStopTimeoutS * 1000, forceStopTimeoutMs: user.forceStopTimeoutS * 1000 } : {}),
  };
  return {
    node: opts.node,
    key: opts.key,
    networks,
    stateDir: opts.stateDir,
    ...(opts.logDir ? { logDir: opts.logDir } : {}),
    ...(opts.preset ? { preset: opts.preset } : {}),
    farm,
  };
}

/**
 * Runs several modules in one daemon (one membership): merges what {@link fromUserConfig} built
 * for each module. At most one mirror module; the nodes must be the same; networks of the same
 * name must agree; the mirror's heartbeat timing wins. Throws ConfigError.
 * @public
 */
export function mergeClusterInits(inits: ClusterInit[]): ClusterInit {
  const [head, ...rest] = inits;
  if (!head) throw new ConfigError('no module to run', { file: '(command line)', line: 1, column: 1, path: 'config', reason: 'missing' });
  const mirrors = inits.filter((i) => i.mirror);
  if (mirrors.length > 1) throw new ConfigError(`several mirror modules (${mirrors.map((m) => m.mirror!.name).join(', ')}): one daemon runs at most one mirror module`, { file: '(command line)', line: 1, column: 1, path: 'config', reason: 'invalid-value' });
  const nodesOf = (i: ClusterInit) => [...new Set(i.networks.flatMap((n) => Object.keys(n.addresses)))].sort().join(', ');
  const networks = [...head.networks];
  for (const i of rest) {
    if (nodesOf(i) !== nodesOf(head)) throw new ConfigError(`modules run on different nodes (${nodesOf(head)} / ${nodesOf(i)})`, { file: '(command line)', line: 1, column: 1, path: 'config', reason: 'invalid-value' });
    for (const n of i.networks) {
      const same = networks.find((m) => m.name === n.name);
      if (!same) networks.push(n);
      else if (JSON.stringify(same) !== JSON.stringify(n)) throw new ConfigError(`network '${n.name}' differs between modules`, { file: '(command line)', line: 1, column: 1, path: 'config', reason: 'invalid-value' });
    }
  }
  const timing = mirrors[0] ?? head;
  const farms = inits.flatMap((i) => (i.farm === undefined ? [] : Array.isArray(i.farm) ? i.farm : [i.farm]));
  const { mirror: _m, farm: _f, pulseMs: _p, timeoutMs: _t, ...common } = head;
  return {
    ...common,
    networks,
    ...(timing.pulseMs ? { pulseMs: timing.pulseMs } : {}),
    ...(timing.timeoutMs ? { timeoutMs: timing.timeoutMs } : {}),
    ...(mirrors[0] ? { mirror: mirrors[0].mirror! } : {}),
    ...(farms.length ? { farm: farms } : {}),
  };
}
