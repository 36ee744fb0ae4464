import { readFile } from 'node:fs/promises';
import { ConfigReadError, type ConfigLocation, type ConfigWarning } from './errors.js';
import { Attrs, childrenOf, isPlaceholder, uniqueNames } from './read.js';
import { Doc, type XmlElement } from './xml.js';

/** Attributes found in the file that we do not model (documented SafeKit ones, and unknown ones that were warned about). @public */
export type ExtraAttributes = Record<string, string>;

/** `<heartbeat name="default" ident="flow"/>`: one heartbeat network over the cluster.xml lan `name`. @public */
export interface HeartbeatConfig {
  name: string;
  ident?: string;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<heart pulse timeout>` (milliseconds). @public */
export interface HeartConfig {
  pulseMs?: number;
  timeoutMs?: number;
  heartbeats: HeartbeatConfig[];
  extra?: ExtraAttributes;
}

/** `<farm><lan name="default"/></farm>`: the lans the farm membership protocol runs over. @public */
export interface FarmConfig {
  lans: Array<{ name: string; extra?: ExtraAttributes; loc?: ConfigLocation }>;
}

/** `<virtual_addr addr where/>`. `addr` may still be a stock placeholder (a warning was recorded). @public */
export interface VirtualAddrConfig {
  addr: string;
  where?: string;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<interface check arpreroute>` with a `<real_interface>` (mirror) or `<virtual_interface>` (farm). @public */
export interface VipInterfaceConfig {
  /** `check="on|off"`, default on. */
  check: boolean;
  /** `arpreroute="on|off"`, default off. */
  arpreroute: boolean;
  realInterface?: { name?: string; addrs: VirtualAddrConfig[]; extra?: ExtraAttributes };
  virtualInterface?: { type?: string; addrs: VirtualAddrConfig[]; extra?: ExtraAttributes };
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** Load-balancing filter of a farm rule. @public */
export type LoadBalancingFilter = 'on_addr' | 'on_port' | 'on_ipid';

/** `<rule port proto filter/>`. `port` is undefined while it is a placeholder (a warning was recorded). @public */
export interface LoadBalancingRule {
  port: number | undefined;
  proto: 'tcp' | 'udp';
  filter: LoadBalancingFilter;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<vip>`. @public */
export interface VipConfig {
  interfaces: VipInterfaceConfig[];
  loadBalancing?: Array<{ group: string; rules: LoadBalancingRule[]; extra?: ExtraAttributes; loc?: ConfigLocation }>;
}

/** What the process checker does when a process count is out of bounds. @public */
export type ErrdAction = 'restart' | 'stopstart' | 'stop' | 'wait';

/** `<proc name atleast atmost action class start_after stop_before/>`. @public */
export interface ProcCheckConfig {
  name: string;
  /** Minimum number of running instances. */
  atleast?: number;
  /** Maximum number of running instances; `atmost="-1"` (no limit) gives undefined. */
  atmost?: number;
  action: ErrdAction;
  /** When the check runs: `prim`, `both`, `pre`... (SafeKit classes; kept as written). */
  class: string;
  /** `start_after`: polling cycles after the module start before the process is checked. */
  startAfter?: number;
  /** `stop_before`: polling cycles before the module stop when checking ends. */
  stopBefore?: number;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<errd polltimer>` (seconds). @public */
export interface ErrdConfig {
  polltimer?: number;
  procs: ProcCheckConfig[];
  extra?: ExtraAttributes;
}

/** `<replicated dir mode>` with its `<notreplicated path|regexpath>` exclusions. @public */
export interface ReplicatedDirConfig {
  dir: string;
  mode?: string;
  notReplicated: Array<{ path?: string; regexpath?: string }>;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<rfs>`: file replication of a mirror module. @public */
export interface RfsConfig {
  mountover: boolean;
  async?: string;
  acl: boolean;
  nbrei?: number;
  replicated: ReplicatedDirConfig[];
  extra?: ExtraAttributes;
}

/** `<to addr port interval timeout local_id/>` of a checker (interval and timeout in seconds). @public */
export interface CheckTargetConfig {
  addr?: string;
  port?: number;
  interval?: number;
  timeout?: number;
  localId?: string;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** A checker of `<check>`: `<tcp|ping|intf|ip|custom|module|splitbrain ident when ...>`. @public */
export interface CheckerConfig {
  /** `ident` (for `<module>`, its `name`). */
  ident: string;
  when?: string;
  to?: CheckTargetConfig;
  /** custom / splitbrain: program and argument. */
  exec?: string;
  arg?: string;
  action?: string;
  extra?: ExtraAttributes;
  loc?: ConfigLocation;
}

/** `<tcp>` checker: `to.addr` is set; `to.port` is undefined while it is a placeholder. @public */
export interface TcpCheckConfig extends CheckerConfig {
  to: CheckTargetConfig & { addr: string };
}

/** `<check>`. @public */
export interface CheckConfig {
  tcp: TcpCheckConfig[];
  ping: CheckerConfig[];
  intf: CheckerConfig[];
  ip: CheckerConfig[];
  custom: CheckerConfig[];
  module: CheckerConfig[];
  splitbrain: CheckerConfig[];
}

/** `<user>`: user scripts. Timeouts in seconds. @public */
export interface UserScriptsConfig {
  /** `nicestoptimeout`, default 300 s: after it the stop script is called again with `force`. */
  niceStopTimeoutS: number;
  /** `forcestoptimeout`, default 300 s: after it the processes are killed. */
  forceStopTimeoutS: number;
  /** `logging`, e.g. `userlog` (script output to the application log) or `none`. */
  logging?: string;
  /** `<var name value/>`: environment variables for the scripts. */
  vars: Array<{ name: string; value: string }>;
  extra?: ExtraAttributes;
}

/** A module's configuration, loaded from SafeKit's `userconfig.xml`. @public */
export interface UserConfig {
  mode: 'mirror' | 'farm';
  /** `defaultprim`: preferred primary node name; `alone` (SafeKit's default) gives undefined. */
  defaultPrimary?: string;
  /** Where `defaultprim` is written (for errors about it). */
  defaultPrimaryLoc?: ConfigLocation;
  /** `failover="on|off"`, default on. */
  failover: boolean;
  /** Default 3. */
  maxloop: number;
  /** `loop_interval`, default 24 h. */
  loopIntervalHours: number;
  heart?: HeartConfig;
  farm?: FarmConfig;
  vip?: VipConfig;
  errd?: ErrdConfig;
  rfs?: RfsConfig;
  check?: CheckConfig;
  user?: UserScriptsConfig;
  /** Unmodelled attributes of `<service>`. */
  extra?: ExtraAttributes;
  /** Where `<service>` is (for errors about the module as a whole, e.g. an unsupported mode). */
  loc?: ConfigLocation;
  /** Unknown elements/attributes, placeholders. */
  warnings: ConfigWarning[];
  /** The file it was loaded from. */
  source?: string;
}

/** Options of {@link parseUserConfig}. @public */
export interface ParseUserConfigOptions {
  /** Named in errors and warnings; also stored as `source`. Default label `userconfig.xml`. */
  file?: string;
  /** Unknown elements and attributes are errors instead of warnings. */
  strict?: boolean;
}

const DEFAULT_MAXLOOP = 3;
const DEFAULT_LOOP_INTERVAL_H = 24;
const DEFAULT_STOP_TIMEOUT_S = 300;

/** True if `dir` is absolute (POSIX, or a Windows drive path as SafeKit's Windows files have). */
function isAbsoluteDir(dir: string): boolean {
  return dir.startsWith('/') || /^[A-Za-z]:[\\/]/.test(dir);
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/**
 * Parses the text of a SafeKit `userconfig.xml`. Throws {@link ConfigError} (naming file, line,
 * column and element path) on malformed XML, typographic quotes, invalid or missing values.
 * Unknown elements and attributes, and stock placeholders such as `VIRTUAL_TO_BE_DEFINED`, are
 * returned in `warnings` (unknown ones are errors with `strict: true`).
 * @public
 */
export function parseUserConfig(xml: string, opts: ParseUserConfigOptions = {}): UserConfig {
  const doc = new Doc(xml, { file: opts.file ?? 'userconfig.xml', strict: opts.strict ?? false });
  const root = doc.root;
  if (root.name !== 'safe') doc.fail(root, 'syntax', `the root element must be <safe>, not <${root.name}>`);
  new Attrs(doc, root, []);
  const top = childrenOf(doc, root, { service: 'one' });
  const service = top.get('service')?.[0];
  if (service === undefined) return doc.fail(root, 'missing', '<safe> has no <service> element');

  const a = new Attrs(doc, service, ['mode', 'defaultprim', 'maxloop', 'loop_interval', 'failover'], ['boot', 'boot_delay']);
  if (!a.has('mode')) doc.fail(service, 'missing', `attribute 'mode' on <service> is missing (mirror or farm)`);
  const mode = a.oneOf('mode', ['mirror', 'farm'] as const);
  if (mode === undefined) return doc.fail(service, 'missing', `attribute 'mode' on <service> is empty (mirror or farm)`, 'mode');
  const defaultprim = a.str('defaultprim');
  const kids = childrenOf(
    doc,
    service,
    { heart: 'one', farm: 'one', vip: 'one', errd: 'one', rfs: 'one', check: 'one', user: 'one' },
    ['failover'],
  );
  const one = (name: string): XmlElement | undefined => kids.get(name)?.[0];

  const cfg: UserConfig = {
    mode,
    ...opt('defaultPrimary', defaultprim === undefined || defaultprim === 'alone' ? undefined : defaultprim),
    ...opt('defaultPrimaryLoc', defaultprim === undefined || defaultprim === 'alone' ? undefined : doc.loc(service, 'defaultprim')),
    failover: a.bool('failover', true),
    maxloop: a.int('maxloop', { min: 0, what: 'a number of restarts' }) ?? DEFAULT_MAXLOOP,
    loopIntervalHours: a.int('loop_interval', { min: 1, what: 'a number of hours' }) ?? DEFAULT_LOOP_INTERVAL_H,
    loc: doc.loc(service),
    warnings: doc.warnings,
    ...opt('extra', a.extra()),
    ...opt('source', opts.file),
  };

  const heart = one('heart');
  if (heart) cfg.heart = readHeart(doc, heart);
  const farm = one('farm');
  if (farm) cfg.farm = readFarm(doc, farm);
  const vip = one('vip');
  if (vip) cfg.vip = readVip(doc, vip);
  const errd = one('errd');
  if (errd) cfg.errd = readErrd(doc, errd);
  const rfs = one('rfs');
  if (rfs) {
    cfg.rfs = readRfs(doc, rfs);
    if (mode === 'farm') doc.warn(rfs, '<rfs> (file replication) is ignored in a farm module');
  }
  const check = one('check');
  if (check) cfg.check = readCheck(doc, check);
  const user = one('user');
  if (user) cfg.user = readUser(doc, user);
  return cfg;
}

/**
 * Reads and parses a `userconfig.xml` file. Throws {@link ConfigReadError} if it cannot be read,
 * {@link ConfigError} if it cannot be used.
 * @public
 */
export async function loadUserConfig(file: string, opts: Omit<ParseUserConfigOptions, 'file'> = {}): Promise<UserConfig> {
  let xml: string;
  try {
    xml = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigReadError(file, err);
  }
  return parseUserConfig(xml, { ...opts, file });
}

function readHeart(doc: Doc, el: XmlElement): HeartConfig {
  const a = new Attrs(doc, el, ['pulse', 'timeout'], ['permanent_arp']);
  const pulseMs = a.int('pulse', { min: 1, what: 'a number of milliseconds' });
  const timeoutMs = a.int('timeout', { min: 1, what: 'a number of milliseconds' });
  if (pulseMs !== undefined && timeoutMs !== undefined && timeoutMs <= pulseMs) {
    doc.fail(el, 'invalid-value', `timeout="${timeoutMs}" on <heart> must be greater than pulse="${pulseMs}" (both in milliseconds)`, 'timeout', String(timeoutMs));
  }
  const kids = childrenOf(doc, el, { heartbeat: 'many' });
  const hbEls = kids.get('heartbeat') ?? [];
  if (hbEls.length === 0) doc.fail(el, 'missing', '<heart> has no <heartbeat name="..."/> (one per heartbeat network)');
  const heartbeats = hbEls.map((h): HeartbeatConfig => {
    const ha = new Attrs(doc, h, ['name', 'ident']);
    childrenOf(doc, h, {});
    return { name: ha.required('name'), ...opt('ident', ha.str('ident')), ...opt('extra', ha.extra()), loc: doc.loc(h) };
  });
  uniqueNames(doc, heartbeats.map((h, i) => ({ el: hbEls[i] as XmlElement, name: h.name, value: h })), 'name', 'heartbeat name');
  return { ...opt('pulseMs', pulseMs), ...opt('timeoutMs', timeoutMs), heartbeats, ...opt('extra', a.extra()) };
}

function readFarm(doc: Doc, el: XmlElement): FarmConfig {
  new Attrs(doc, el, []);
  const lanEls = childrenOf(doc, el, { lan: 'many' }).get('lan') ?? [];
  if (lanEls.length === 0) doc.fail(el, 'missing', '<farm> has no <lan name="..."/>');
  const lans = lanEls.map((l) => {
    const a = new Attrs(doc, l, ['name'], ['console', 'command', 'framework']);
    childrenOf(doc, l, {});
    return { name: a.required('name'), ...opt('extra', a.extra()), loc: doc.loc(l) };
  });
  uniqueNames(doc, lans.map((l, i) => ({ el: lanEls[i] as XmlElement, name: l.name, value: l })), 'name', 'farm lan');
  return { lans };
}

function readVirtualAddrs(doc: Doc, el: XmlElement): VirtualAddrConfig[] {
  const kids = childrenOf(doc, el, { virtual_addr: 'many' }, ['real_addr']);
  return (kids.get('virtual_addr') ?? []).map((v) => {
    const a = new Attrs(doc, v, ['addr', 'where'], ['check', 'connections']);
    childrenOf(doc, v, {});
    a.required('addr');
    const addr = a.addr('addr') as string;
    return { addr, ...opt('where', a.str('where')), ...opt('extra', a.extra()), loc: doc.loc(v, 'addr') };
  });
}

function readVip(doc: Doc, el: XmlElement): VipConfig {
  new Attrs(doc, el, []);
  const kids = childrenOf(doc, el, { interface_list: 'one', loadbalancing_list: 'one' });
  const interfaces: VipInterfaceConfig[] = [];
  const list = kids.get('interface_list')?.[0];
  if (list) {
    new Attrs(doc, list, []);
    for (const itf of childrenOf(doc, list, { interface: 'many' }).get('interface') ?? []) {
      const a = new Attrs(doc, itf, ['check', 'arpreroute'], ['arpinterval', 'name']);
      const ik = childrenOf(doc, itf, { real_interface: 'one', virtual_interface: 'one' });
      const out: VipInterfaceConfig = { check: a.bool('check', true), arpreroute: a.bool('arpreroute', false), ...opt('extra', a.extra()), loc: doc.loc(itf) };
      const real = ik.get('real_interface')?.[0];
      if (real) {
        const ra = new Attrs(doc, real, ['name']);
        out.realInterface = { ...opt('name', ra.str('name')), addrs: readVirtualAddrs(doc, real), ...opt('extra', ra.extra()) };
      }
      const virt = ik.get('virtual_interface')?.[0];
      if (virt) {
        const va = new Attrs(doc, virt, ['type'], ['addr']);
        out.virtualInterface = { ...opt('type', va.str('type')), addrs: readVirtualAddrs(doc, virt), ...opt('extra', va.extra()) };
      }
      if (!real && !virt) doc.fail(itf, 'missing', '<interface> needs a <real_interface> or a <virtual_interface> with <virtual_addr addr="..."/>');
      interfaces.push(out);
    }
  }
  const vip: VipConfig = { interfaces };
  const lb = kids.get('loadbalancing_list')?.[0];
  if (lb) {
    new Attrs(doc, lb, []);
    const groupEls = childrenOf(doc, lb, { group: 'many' }).get('group') ?? [];
    vip.loadBalancing = groupEls.map((g) => {
      const ga = new Attrs(doc, g, ['name']);
      const gk = childrenOf(doc, g, { rule: 'many' }, ['cluster']);
      const rules = (gk.get('rule') ?? []).map((r): LoadBalancingRule => {
        const ra = new Attrs(doc, r, ['port', 'proto', 'filter']);
        childrenOf(doc, r, {});
        ra.required('port');
        const port = ra.port('port');
        const proto = ra.oneOf('proto', ['tcp', 'udp'] as const) ?? 'tcp';
        const filter = ra.oneOf('filter', ['on_addr', 'on_port', 'on_ipid'] as const) ?? 'on_addr';
        return { port, proto, filter, ...opt('extra', ra.extra()), loc: doc.loc(r) };
      });
      return { group: ga.required('name'), rules, ...opt('extra', ga.extra()), loc: doc.loc(g) };
    });
    uniqueNames(doc, vip.loadBalancing.map((g, i) => ({ el: groupEls[i] as XmlElement, name: g.group, value: g })), 'name', 'load-balancing group');
  }
  return vip;
}

function readErrd(doc: Doc, el: XmlElement): ErrdConfig {
  const a = new Attrs(doc, el, ['polltimer']);
  const polltimer = a.int('polltimer', { min: 1, what: 'a number of seconds' });
  const procs = (childrenOf(doc, el, { proc: 'many' }).get('proc') ?? []).map((p): ProcCheckConfig => {
    const pa = new Attrs(doc, p, ['name', 'atleast', 'atmost', 'action', 'class', 'start_after', 'stop_before'], ['nameregex', 'argregex', 'argstartswith']);
    childrenOf(doc, p, {});
    const name = pa.required('name');
    if (isPlaceholder(name)) doc.warn(p, `name="${name}" on <proc> is not defined yet (placeholder of the stock file)`, 'name');
    const atleast = pa.int('atleast', { min: 0, what: 'a number of processes' });
    let atmost = pa.int('atmost', { min: -1, what: 'a number of processes (-1: no limit)' });
    if (atmost === -1) atmost = undefined;
    if (atleast !== undefined && atmost !== undefined && atmost < atleast) {
      doc.fail(p, 'invalid-value', `atmost="${atmost}" on <proc> is smaller than atleast="${atleast}"`, 'atmost', String(atmost));
    }
    pa.required('action');
    const action = pa.oneOf('action', ['restart', 'stopstart', 'stop', 'wait'] as const) as ErrdAction;
    return {
      name,
      ...opt('atleast', atleast),
      ...opt('atmost', atmost),
      action,
      class: pa.required('class'),
      ...opt('startAfter', pa.int('start_after', { min: 0, what: 'a number of polling cycles' })),
      ...opt('stopBefore', pa.int('stop_before', { min: 0, what: 'a number of polling cycles' })),
      ...opt('extra', pa.extra()),
      loc: doc.loc(p),
    };
  });
  return { ...opt('polltimer', polltimer), procs, ...opt('extra', a.extra()) };
}

const RFS_TOLERATED = [
  'locktimeout', 'sendtimeout', 'reconnect', 'scripts', 'packetsize', 'allocthreshold', 'nbremconn',
  'namespacepolicy', 'ruzone_blocksize', 'syncdelta', 'syncat', 'boot_ontimeout', 'checktime', 'nbrtimeout',
];

function readRfs(doc: Doc, el: XmlElement): RfsConfig {
  const a = new Attrs(doc, el, ['mountover', 'async', 'acl', 'nbrei'], RFS_TOLERATED);
  const dirEls = childrenOf(doc, el, { replicated: 'many' }).get('replicated') ?? [];
  const replicated = dirEls.map((r): ReplicatedDirConfig => {
    const ra = new Attrs(doc, r, ['dir', 'mode']);
    const dir = ra.required('dir');
    if (!isAbsoluteDir(dir)) doc.fail(r, 'invalid-value', `dir="${dir}" on <replicated> must be an absolute path`, 'dir', dir);
    const notReplicated = (childrenOf(doc, r, { notreplicated: 'many' }, ['tocheck']).get('notreplicated') ?? []).map((n) => {
      const na = new Attrs(doc, n, ['path', 'regexpath']);
      const path = na.str('path');
      const regexpath = na.str('regexpath');
      if (path === undefined && regexpath === undefined) doc.fail(n, 'missing', `<notreplicated> needs a 'path' or a 'regexpath' attribute`);
      return { ...opt('path', path), ...opt('regexpath', regexpath) };
    });
    return { dir, ...opt('mode', ra.str('mode')), notReplicated, ...opt('extra', ra.extra()), loc: doc.loc(r, 'dir') };
  });
  uniqueNames(doc, replicated.map((r, i) => ({ el: dirEls[i] as XmlElement, name: r.dir, value: r })), 'dir', 'replicated directory');
  return {
    mountover: a.bool('mountover', false),
    ...opt('async', a.str('async')),
    acl: a.bool('acl', false),
    ...opt('nbrei', a.int('nbrei', { min: 1, what: 'a number of threads' })),
    replicated,
    ...opt('extra', a.extra()),
  };
}

const CHECK_KINDS = ['tcp', 'ping', 'intf', 'ip', 'custom', 'module', 'splitbrain'] as const;

function readTarget(doc: Doc, el: XmlElement, required: readonly string[]): CheckTargetConfig {
  const a = new Attrs(doc, el, ['addr', 'port', 'interval', 'timeout', 'local_id']);
  childrenOf(doc, el, {});
  for (const r of required) a.required(r);
  return {
    ...opt('addr', a.addr('addr')),
    ...opt('port', a.port('port')),
    ...opt('interval', a.int('interval', { min: 1, what: 'a number of seconds' })),
    ...opt('timeout', a.int('timeout', { min: 1, what: 'a number of seconds' })),
    ...opt('localId', a.str('local_id')),
    ...opt('extra', a.extra()),
    loc: doc.loc(el),
  };
}

function readCheck(doc: Doc, el: XmlElement): CheckConfig {
  new Attrs(doc, el, []);
  const kids = childrenOf(doc, el, Object.fromEntries(CHECK_KINDS.map((k) => [k, 'many' as const])));
  const out: CheckConfig = { tcp: [], ping: [], intf: [], ip: [], custom: [], module: [], splitbrain: [] };
  const all: Array<{ el: XmlElement; name: string; value: CheckerConfig }> = [];
  for (const kind of CHECK_KINDS) {
    for (const c of kids.get(kind) ?? []) {
      const identAttr = kind === 'module' ? 'name' : 'ident';
      const a = new Attrs(doc, c, [identAttr, 'when', 'exec', 'arg', 'action']);
      const to = childrenOf(doc, c, { to: 'one' }, ['fail']).get('to')?.[0];
      const checker: CheckerConfig = {
        ident: a.required(identAttr),
        ...opt('when', a.str('when')),
        ...opt('exec', a.str('exec')),
        ...opt('arg', a.str('arg')),
        ...opt('action', a.str('action')),
        ...opt('extra', a.extra()),
        loc: doc.loc(c),
      };
      if (kind === 'tcp' && !to) return doc.fail(c, 'missing', `<tcp ident="${checker.ident}"> needs <to addr="..." port="..."/>`);
      if (to) checker.to = readTarget(doc, to, kind === 'tcp' ? ['addr', 'port'] : []);
      if ((kind === 'custom' || kind === 'splitbrain') && checker.exec === undefined) {
        doc.fail(c, 'missing', `<${kind} ident="${checker.ident}"> needs an 'exec' attribute`);
      }
      out[kind].push(checker as TcpCheckConfig);
      all.push({ el: c, name: checker.ident, value: checker });
    }
  }
  uniqueNames(doc, all.filter((x) => x.el.name !== 'module').sort((x, y) => x.el.start - y.el.start), 'ident', 'checker ident');
  return out;
}

function readUser(doc: Doc, el: XmlElement): UserScriptsConfig {
  const a = new Attrs(doc, el, ['nicestoptimeout', 'forcestoptimeout', 'logging'], ['userlogsize', 'userlogalways']);
  const varEls = childrenOf(doc, el, { var: 'many' }).get('var') ?? [];
  const vars = varEls.map((v) => {
    const va = new Attrs(doc, v, ['name', 'value']);
    childrenOf(doc, v, {});
    const name = va.required('name');
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      doc.fail(v, 'invalid-value', `name="${name}" on <var> must be an environment variable name (letters, digits, _)`, 'name', name);
    }
    return { name, value: v.attrs.get('value') ?? '' };
  });
  uniqueNames(doc, vars.map((v, i) => ({ el: varEls[i] as XmlElement, name: v.name, value: v })), 'name', 'variable');
  return {
    niceStopTimeoutS: a.int('nicestoptimeout', { min: 0, what: 'a number of seconds' }) ?? DEFAULT_STOP_TIMEOUT_S,
    forceStopTimeoutS: a.int('forcestoptimeout', { min: 0, what: 'a number of seconds' }) ?? DEFAULT_STOP_TIMEOUT_S,
    ...opt('logging', a.str('logging')),
    vars,
    ...opt('extra', a.extra()),
  };
}
