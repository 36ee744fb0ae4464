/**
 * Pure IPv4 maths and validation of a VIP's configuration against the addresses of a node's
 * interfaces. No I/O here: the interface list comes from `iproute.ts`.
 */
import { InvalidAddressError, InvalidPrefixError, NoSuchInterfaceError, NotInSubnetError } from './errors.js';

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Parses a dotted-quad IPv4 address ("198.18.0.1") to an unsigned 32-bit number.
 * Strict: four decimal parts 0..255 without leading zeros (so "010.0.0.1", octal to some
 * tools, is refused), no spaces, no CIDR suffix.
 * @throws {@link InvalidAddressError} naming the input and `where` it came from.
 * @public
 */
export function parseIPv4(text: unknown, where = 'address'): number {
  if (typeof text !== 'string') {
    throw new InvalidAddressError(`${where}: expected an IPv4 address as a string like "198.18.0.100", got ${describe(text)}`,
      { details: { value: text, where } });
  }
  const m = DOTTED.exec(text);
  if (m === null) {
    throw new InvalidAddressError(`${where}: "${text}" is not an IPv4 address (expected four numbers 0-255 separated by dots, e.g. "198.18.0.100")`,
      { details: { value: text, where } });
  }
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith('0')) {
      throw new InvalidAddressError(`${where}: "${text}" has a leading zero in part ${i} ("${part}"); write it without leading zeros`,
        { details: { value: text, where } });
    }
    const v = Number(part);
    if (v > 255) {
      throw new InvalidAddressError(`${where}: "${text}" part ${i} is ${v}, above 255`, { details: { value: text, where } });
    }
    n = n * 256 + v;
  }
  return n;
}

/** True if `text` is a strict dotted-quad IPv4 address. @public */
export function isIPv4(text: unknown): text is string {
  try { parseIPv4(text); return true; } catch { return false; }
}

/** Formats an unsigned 32-bit number as a dotted quad. @public */
export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Checks a prefix length: an integer in `min`..32.
 * @throws {@link InvalidPrefixError}
 * @public
 */
export function assertPrefix(prefix: unknown, where = 'prefix', min = 0): asserts prefix is number {
  if (typeof prefix !== 'number' || !Number.isInteger(prefix) || prefix < min || prefix > 32) {
    throw new InvalidPrefixError(`${where}: expected an integer prefix length ${min}-32, got ${describe(prefix)}`,
      { details: { value: prefix, where } });
  }
}

/** The netmask of a prefix length as an unsigned 32-bit number (24 -> 0xffffff00). @public */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The network address of `address`/`prefix` ("198.18.0.7", 24 -> "198.18.0.0"). @public */
export function networkOf(address: string, prefix: number): string {
  return formatIPv4((parseIPv4(address) & prefixMask(prefix)) >>> 0);
}

/** The broadcast address of `address`/`prefix` ("198.18.0.7", 24 -> "198.18.0.255"). @public */
export function broadcastOf(address: string, prefix: number): string {
  return formatIPv4((parseIPv4(address) | ~prefixMask(prefix)) >>> 0);
}

/** True if `address` lies in the subnet `network`/`prefix` (`network` may be any address of it). @public */
export function inSubnet(address: string, network: string, prefix: number): boolean {
  const mask = prefixMask(prefix);
  return ((parseIPv4(address) & mask) >>> 0) === ((parseIPv4(network) & mask) >>> 0);
}

/**
 * Parses "a.b.c.d/p" into its address and prefix.
 * @throws {@link InvalidAddressError} or {@link InvalidPrefixError}
 * @public
 */
export function parseCidr(text: string, where = 'cidr'): { address: string; prefix: number } {
  const slash = text.indexOf('/');
  if (slash < 0) throw new InvalidAddressError(`${where}: "${text}" is not in CIDR form "a.b.c.d/prefix"`, { details: { value: text, where } });
  const address = text.slice(0, slash);
  parseIPv4(address, where);
  const p = text.slice(slash + 1);
  const prefix = /^\d{1,2}$/.test(p) ? Number(p) : Number.NaN;
  assertPrefix(prefix, `${where} ("${text}")`);
  return { address, prefix };
}

/**
 * Checks that `address` can be a virtual IP: a unicast host address, not 0.0.0.0/8,
 * loopback, link-local... and (given its subnet's prefix) neither that subnet's network nor
 * its broadcast address.
 * @throws {@link InvalidAddressError}
 * @public
 */
export function assertUsableVip(address: string, prefix?: number, where = 'address'): void {
  const n = parseIPv4(address, where);
  const first = n >>> 24;
  const bad = (why: string) => new InvalidAddressError(`${where}: "${address}" cannot be a virtual IP: ${why}`,
    { details: { value: address, where } });
  if (first === 0) throw bad('0.0.0.0/8 means "this network"');
  if (first === 127) throw bad('it is a loopback address (127.0.0.0/8)');
  if (first >= 224 && first <= 239) throw bad('it is a multicast address (224.0.0.0/4)');
  if (first >= 240) throw bad(n === 0xffffffff ? 'it is the limited broadcast address' : 'it is in the reserved range 240.0.0.0/4');
  if (first === 169 && ((n >>> 16) & 255) === 254) throw bad('it is a link-local address (169.254.0.0/16)');
  if (prefix !== undefined && prefix <= 30) {
    if (networkOf(address, prefix) === address) throw bad(`it is the network address of ${address}/${prefix}`);
    if (broadcastOf(address, prefix) === address) throw bad(`it is the broadcast address of ${networkOf(address, prefix)}/${prefix}`);
  }
}

/** One IPv4 address configured on an interface (from `ip -j addr`). @public */
export interface InterfaceAddress {
  address: string;
  prefix: number;
  /** The address label (`ip addr ... label`), if any. */
  label?: string;
  /** True for a secondary address (another address of the same subnet came first). */
  secondary?: boolean;
}

/** A network interface and its IPv4 addresses. @public */
export interface InterfaceInfo {
  name: string;
  /** Link-layer (MAC) address, lower case, if the link has one. */
  mac?: string;
  /** True if the interface is administratively up. */
  up: boolean;
  addresses: InterfaceAddress[];
}

/** What {@link resolveVipConfig} decides. @public */
export interface ResolvedVipConfig {
  address: string;
  interface: string;
  prefix: number;
  /** The fixed address of the interface whose subnet contains the VIP (undefined if a prefix was given and no fixed address matched). */
  subnetOf?: string;
}

/**
 * Resolves and checks a VIP's configuration against the interfaces of this node (pure).
 * - `address` must be a usable IPv4 unicast address.
 * - `iface`, if given, must exist; otherwise the interface is the one with a (non-VIP)
 *   address whose subnet contains `address`.
 * - `prefix`, if given, must be 1..32; otherwise it is that subnet's prefix. In both cases
 *   `address` must lie in a subnet configured on the interface (else {@link NotInSubnetError}),
 *   because a VIP outside every local subnet is unreachable for the LAN's clients.
 * Addresses equal to the VIP itself are ignored when looking for the subnet (a copy of the VIP
 * left by a crashed run is not a subnet of the interface).
 * @public
 */
export function resolveVipConfig(
  interfaces: readonly InterfaceInfo[],
  init: { address: unknown; interface?: unknown; prefix?: unknown },
): ResolvedVipConfig {
  parseIPv4(init.address, 'VIP address');
  const address = init.address as string;
  if (init.prefix !== undefined) assertPrefix(init.prefix, `VIP ${address}: prefix`, 1);
  if (init.interface !== undefined && (typeof init.interface !== 'string' || init.interface === '')) {
    throw new NoSuchInterfaceError(`VIP ${address}: interface must be a non-empty interface name, got ${describe(init.interface)}`,
      { details: { value: init.interface } });
  }
  const ifaceName = init.interface as string | undefined;
  const prefix = init.prefix as number | undefined;
  const containing = (i: InterfaceInfo) => i.addresses.filter((a) => a.address !== address && a.prefix > 0 && inSubnet(address, a.address, a.prefix));

  let iface: InterfaceInfo | undefined;
  if (ifaceName !== undefined) {
    iface = interfaces.find((i) => i.name === ifaceName);
    if (iface === undefined) {
      const names = interfaces.map((i) => i.name).join(', ') || 'none';
      throw new NoSuchInterfaceError(`VIP ${address}: no such interface "${ifaceName}" on this node (interfaces: ${names})`,
        { details: { interface: ifaceName, interfaces: interfaces.map((i) => i.name) } });
    }
  } else {
    const candidates = interfaces.filter((i) => containing(i).length > 0);
    if (candidates.length === 0) {
      const subnets = interfaces.flatMap((i) => i.addresses.filter((a) => a.address !== address)
        .map((a) => `${networkOf(a.address, a.prefix)}/${a.prefix} on ${i.name}`));
      throw new NotInSubnetError(`VIP ${address}: no interface of this node has a subnet containing it ` +
        `(subnets: ${subnets.join(', ') || 'none'}); give "interface" and use an address of that interface's subnet`,
        { details: { address, subnets } });
    }
    // Most specific subnet wins (longest prefix), like a route lookup.
    candidates.sort((a, b) => Math.max(...containing(b).map((x) => x.prefix)) - Math.max(...containing(a).map((x) => x.prefix)));
    iface = candidates[0]!;
  }

  const matches = containing(iface).sort((a, b) => b.prefix - a.prefix);
  const best = matches[0];
  if (best === undefined) {
    const own = iface.addresses.filter((a) => a.address !== address).map((a) => `${networkOf(a.address, a.prefix)}/${a.prefix}`);
    throw new NotInSubnetError(`VIP ${address}: outside the subnets of interface ${iface.name} (${own.join(', ') || 'it has no IPv4 address'}); ` +
      `clients on that link could not reach it`, { details: { address, interface: iface.name, subnets: own } });
  }
  const finalPrefix = prefix ?? best.prefix;
  if (prefix !== undefined && prefix < best.prefix) {
    // A VIP with a shorter prefix than the interface's subnet claims addresses outside the link.
    throw new NotInSubnetError(`VIP ${address}/${prefix}: prefix /${prefix} is wider than the subnet ` +
      `${networkOf(best.address, best.prefix)}/${best.prefix} of ${iface.name}; use /${best.prefix}..32`,
      { details: { address, prefix, interface: iface.name, subnet: `${networkOf(best.address, best.prefix)}/${best.prefix}` } });
  }
  assertUsableVip(address, best.prefix, 'VIP address');
  return { address, interface: iface.name, prefix: finalPrefix, subnetOf: best.address };
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `"${v}"`;
  if (v === undefined) return 'nothing';
  try { return `${typeof v} ${JSON.stringify(v)}`; } catch { return typeof v; }
}
