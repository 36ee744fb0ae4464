/**
 * The nftables rulesets of a farm filter, as text for `nft -f` (pure functions).
 *
 * Two tables per farm, both named `ha_farm_<name>` and touching nothing else:
 * - `netdev`: on the interface's ingress, frames to the virtual MAC are marked for this host
 *   (`meta pkttype set host`: the stack drops frames to another MAC otherwise); on its egress,
 *   every ARP packet that speaks for the VIP carries the virtual MAC as sender hardware address,
 *   so neighbours map the VIP to the virtual MAC, while the frames themselves leave from the
 *   node's own MAC (switches never learn the virtual MAC and keep flooding it to every node).
 * - `inet`: in prerouting after connection tracking, for each load-balanced port of the VIP:
 *   packets of a connection this node already tracks pass (so established connections stay with
 *   their node when buckets move); a new connection (a TCP SYN without ACK, or a new UDP flow)
 *   passes only if its hash falls in this node's buckets; everything else to that port is
 *   dropped without a reply, in particular a mid-stream packet of a connection another node
 *   serves (a reset from here would break it). TCP/UDP to other ports of the VIP is dropped;
 *   ICMP passes, and so does the node's own traffic to the VIP (over `lo`: its checkers).
 */
import { isIPv4 } from '@ha/vip';
import { toRanges, DEFAULT_BUCKETS } from './buckets.js';
import { FarmFilterConfigError } from './errors.js';

/** How a rule hashes: the client address (session affinity) or address and port (stateless). @public */
export type FarmHash = 'on_addr' | 'on_port';

/** One load-balanced port of the VIP. @public */
export interface FarmRule {
  port: number;
  /** Default 'tcp'. */
  proto?: 'tcp' | 'udp';
  /** Default 'on_addr'. */
  filter?: FarmHash;
}

/** What the rulesets are made of. @public */
export interface FarmRulesetSpec {
  /** Farm name: tables are `ha_farm_<name>` ([A-Za-z0-9_], up to 32 characters). */
  name: string;
  vip: string;
  vmac: string;
  /** The interface carrying the VIP. */
  interface: string;
  rules: readonly FarmRule[];
  /** Number of hash buckets (default {@link DEFAULT_BUCKETS}). */
  buckets?: number;
  /** jhash seed, the same on every node (default 0x4841). */
  seed?: number;
}

const NAME_RE = /^[A-Za-z0-9_]{1,32}$/;
const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const IFACE_RE = /^[A-Za-z0-9_.@-]{1,15}$/;

/** The table name of a farm. @public */
export function tableName(name: string): string { return `ha_farm_${name}`; }

/** A locally administered unicast MAC derived from the VIP: 02:48:41 followed by its last three bytes. Pure. @public */
export function virtualMac(vip: string): string {
  if (!isIPv4(vip)) throw new FarmFilterConfigError('vip', `not an IPv4 address: ${JSON.stringify(vip)}`);
  const p = vip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
  return `02:48:41:${p[1]}:${p[2]}:${p[3]}`;
}

/** Checks a spec; throws {@link FarmFilterConfigError} naming the field. Returns the normalised spec. @public */
export function checkSpec(spec: FarmRulesetSpec): Required<FarmRulesetSpec> {
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) throw new FarmFilterConfigError('name', `must be 1-32 characters of [A-Za-z0-9_], got ${JSON.stringify(spec.name)}`);
  if (!isIPv4(spec.vip)) throw new FarmFilterConfigError('vip', `not an IPv4 address: ${JSON.stringify(spec.vip)}`);
  const vmac = typeof spec.vmac === 'string' ? spec.vmac.toLowerCase() : '';
  if (!MAC_RE.test(vmac)) throw new FarmFilterConfigError('vmac', `not a MAC address (aa:bb:cc:dd:ee:ff): ${JSON.stringify(spec.vmac)}`);
  if ((parseInt(vmac.slice(0, 2), 16) & 1) !== 0) throw new FarmFilterConfigError('vmac', `${vmac} is a multicast address; use a unicast one (e.g. 02:...)`);
  if (typeof spec.interface !== 'string' || !IFACE_RE.test(spec.interface)) throw new FarmFilterConfigError('interface', `not an interface name: ${JSON.stringify(spec.interface)}`);
  if (!Array.isArray(spec.rules) || spec.rules.length === 0) throw new FarmFilterConfigError('rules', 'at least one load-balanced port is needed');
  const seen = new Set<string>();
  const rules = spec.rules.map((r, i): FarmRule => {
    const proto = r.proto ?? 'tcp';
    const filter = r.filter ?? 'on_addr';
    if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new FarmFilterConfigError(`rules[${i}].port`, `must be an integer 1-65535, got ${JSON.stringify(r.port)}`);
    if (proto !== 'tcp' && proto !== 'udp') throw new FarmFilterConfigError(`rules[${i}].proto`, `must be 'tcp' or 'udp', got ${JSON.stringify(proto)}`);
    if (filter !== 'on_addr' && filter !== 'on_port') throw new FarmFilterConfigError(`rules[${i}].filter`, `must be 'on_addr' or 'on_port', got ${JSON.stringify(filter)}`);
    const key = `${proto}/${r.port}`;
    if (seen.has(key)) throw new FarmFilterConfigError(`rules[${i}]`, `${key} is load-balanced twice`);
    seen.add(key);
    return { port: r.port, proto, filter };
  });
  const buckets = spec.buckets ?? DEFAULT_BUCKETS;
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 65536) throw new FarmFilterConfigError('buckets', `must be an integer 1-65536, got ${JSON.stringify(spec.buckets)}`);
  const seed = spec.seed ?? 0x4841;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new FarmFilterConfigError('seed', `must be a 32-bit unsigned integer, got ${JSON.stringify(spec.seed)}`);
  return { name: spec.name, vip: spec.vip, vmac, interface: spec.interface, rules, buckets, seed };
}

/** The netdev table (virtual MAC in, ARP for the VIP out), as one `nft -f` script that (re)creates it. Pure. @public */
export function renderNetdevTable(spec: FarmRulesetSpec): string {
  const s = checkSpec(spec);
  const t = tableName(s.name);
  return [
    `table netdev ${t} {}`,
    `delete table netdev ${t}`,
    `table netdev ${t} {`,
    `  chain vmac_in {`,
    `    type filter hook ingress device "${s.interface}" priority -500; policy accept;`,
    `    ether daddr ${s.vmac} meta pkttype set host`,
    `  }`,
    `  chain arp_out {`,
    `    type filter hook egress device "${s.interface}" priority 0; policy accept;`,
    `    arp saddr ip ${s.vip} arp saddr ether set ${s.vmac}`,
    `  }`,
    `}`,
    '',
  ].join('\n');
}

function hashExpr(r: FarmRule, s: Required<FarmRulesetSpec>): string {
  const key = r.filter === 'on_port' ? `ip saddr . ${r.proto} sport` : 'ip saddr';
  return `jhash ${key} mod ${s.buckets} seed 0x${s.seed.toString(16)}`;
}

/**
 * The inet table with this node's buckets, as one `nft -f` transaction (creates the table if
 * needed, flushes the chain and refills it: atomic, no packet sees a half-updated chain). Pure.
 * @public
 */
export function renderFilterTable(spec: FarmRulesetSpec, owned: Iterable<number>): string {
  const s = checkSpec(spec);
  const t = tableName(s.name);
  const own = [...owned].filter((b) => Number.isInteger(b) && b >= 0 && b < s.buckets);
  const set = own.length ? `{ ${toRanges(own)} }` : '';
  const lines = [
    `table inet ${t} {`,
    `  chain lb {`,
    // After conntrack (-200), before anything that could answer.
    `    type filter hook prerouting priority -140; policy accept;`,
    `  }`,
    `}`,
    `flush chain inet ${t} lb`,
  ];
  const add = (rule: string) => lines.push(`add rule inet ${t} lb ip daddr ${s.vip} ${rule}`);
  // The node's own connections to the VIP (its checkers) are its own to answer.
  lines.push(`add rule inet ${t} lb iif "lo" accept`);
  for (const r of s.rules) {
    const m = `${r.proto} dport ${r.port}`;
    add(`${m} ct state established,related accept`);
    if (set) {
      if (r.proto === 'tcp') add(`${m} tcp flags & (fin|syn|rst|ack) == syn ${hashExpr(r, s)} ${set} accept`);
      else add(`${m} ct state new ${hashExpr(r, s)} ${set} accept`);
    }
    add(`${m} drop`);
  }
  add('meta l4proto { tcp, udp } drop');
  lines.push('');
  return lines.join('\n');
}

/** The script that removes both tables (for stop and for the lifeline). Pure. @public */
export function renderDelete(name: string): string {
  const t = tableName(name);
  return `table netdev ${t} {}\ndelete table netdev ${t}\ntable inet ${t} {}\ndelete table inet ${t}\n`;
}
