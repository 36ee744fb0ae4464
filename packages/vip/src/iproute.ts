/** Adding, removing and listing IPv4 addresses with iproute2's `ip` (JSON output for reading). */
import type { InterfaceInfo, InterfaceAddress } from './address.js';
import { CommandError, NoSuchInterfaceError } from './errors.js';
import { run } from './exec.js';

/** One address to add or remove. @public */
export interface AddressSpec { address: string; prefix: number; interface: string; label?: string }

interface IpJsonAddr { family?: string; local?: string; prefixlen?: number; label?: string; secondary?: boolean }
interface IpJsonLink { ifname?: string; address?: string; flags?: string[]; addr_info?: IpJsonAddr[] }

/** Parses `ip -j addr show` output into {@link InterfaceInfo}s (IPv4 only). Pure. @internal */
export function parseIpAddrJson(json: string): InterfaceInfo[] {
  let data: unknown;
  try { data = JSON.parse(json); } catch (err) {
    throw new CommandError(`could not parse the JSON of "ip -j addr show": ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(data)) throw new CommandError('"ip -j addr show" did not print a JSON array');
  return (data as IpJsonLink[]).filter((l) => typeof l.ifname === 'string').map((l) => {
    const addresses: InterfaceAddress[] = (l.addr_info ?? [])
      .filter((a) => a.family === 'inet' && typeof a.local === 'string' && typeof a.prefixlen === 'number')
      .map((a) => ({
        address: a.local!, prefix: a.prefixlen!,
        ...(a.label !== undefined ? { label: a.label } : {}),
        ...(a.secondary === true ? { secondary: true } : {}),
      }));
    return {
      name: l.ifname!,
      ...(typeof l.address === 'string' ? { mac: l.address.toLowerCase() } : {}),
      up: (l.flags ?? []).includes('UP'),
      addresses,
    };
  });
}

/** Lists this node's interfaces with their IPv4 addresses. @public */
export async function listInterfaces(): Promise<InterfaceInfo[]> {
  const r = await run('ip', ['-j', '-4', 'addr', 'show']);
  if (r.code !== 0) throw new CommandError(`"ip -j -4 addr show" failed (exit ${r.code}): ${r.stderr.trim()}`);
  // `ip -4` omits interfaces without IPv4 addresses; list links too so they can be named.
  const links = await run('ip', ['-j', 'link', 'show']);
  const withAddr = parseIpAddrJson(r.stdout);
  if (links.code !== 0) return withAddr;
  const all = parseIpAddrJson(links.stdout);
  return all.map((l) => withAddr.find((w) => w.name === l.name) ?? l);
}

/** Lists the IPv4 addresses of one interface. @throws {@link NoSuchInterfaceError} @public */
export async function listAddresses(iface: string): Promise<InterfaceAddress[]> {
  const r = await run('ip', ['-j', '-4', 'addr', 'show', 'dev', iface]);
  if (r.code !== 0) {
    if (/does not exist/i.test(r.stderr)) throw new NoSuchInterfaceError(`no such interface "${iface}" on this node`, { details: { interface: iface } });
    throw new CommandError(`"ip -j -4 addr show dev ${iface}" failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return parseIpAddrJson(r.stdout)[0]?.addresses ?? [];
}

/** True if `address` is configured on `iface`. @public */
export async function hasAddress(iface: string, address: string): Promise<boolean> {
  return (await listAddresses(iface)).some((a) => a.address === address);
}

/**
 * Adds the address. Returns false if it was already there (idempotent).
 * @throws {@link CommandError} for any other failure.
 * @public
 */
export async function addAddress(spec: AddressSpec): Promise<boolean> {
  const args = ['addr', 'add', `${spec.address}/${spec.prefix}`, 'dev', spec.interface];
  if (spec.label !== undefined) args.push('label', spec.label);
  const r = await run('ip', args);
  if (r.code === 0) return true;
  if (/File exists|already assigned/i.test(r.stderr)) return false;
  if (/does not exist|Cannot find device/i.test(r.stderr)) {
    throw new NoSuchInterfaceError(`cannot add ${spec.address}/${spec.prefix}: no such interface "${spec.interface}"`, { details: { ...spec } });
  }
  throw new CommandError(`"ip ${args.join(' ')}" failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { ...spec } });
}

/**
 * Removes the address. Returns false if it was not there (idempotent).
 * @throws {@link CommandError} for any other failure.
 * @public
 */
export async function deleteAddress(spec: AddressSpec): Promise<boolean> {
  const args = ['addr', 'del', `${spec.address}/${spec.prefix}`, 'dev', spec.interface];
  const r = await run('ip', args);
  if (r.code === 0) return true;
  if (/Cannot assign requested address|not found|does not exist|Cannot find device/i.test(r.stderr)) return false;
  throw new CommandError(`"ip ${args.join(' ')}" failed (exit ${r.code}): ${r.stderr.trim()}`, { details: { ...spec } });
}
