/**
 * Local health ("awareness", after memberlist): before accusing a peer, know whether WE were
 * running and connected. Two signals:
 * - the stall meter: how late the detector's own ticks are (the thread was descheduled,
 *   blocked, or the process stopped); the accumulated stall extends every member's deadline;
 * - the carrier of the interfaces owning our local addresses: when no local network has carrier,
 *   we are isolated, and silence from peers says nothing about them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { stallFromTick } from './timing.js';

/** Accumulates the lateness of periodic ticks into a monotonic stall counter (ms). */
export class StallMeter {
  #last: number | undefined;
  #total = 0;
  constructor(readonly expectedMs: number, readonly graceMs: number) {}

  /** Total stall so far. */
  get total(): number { return this.#total; }

  /** Records a tick at `now`; returns the stall it added. */
  tick(now: number): number {
    const last = this.#last;
    this.#last = now;
    if (last === undefined) return 0;
    const s = stallFromTick(this.expectedMs, now - last, this.graceMs);
    this.#total += s;
    return s;
  }

  /** Adds time during which peers cannot be judged (e.g. local isolation). */
  add(ms: number): void { if (ms > 0) this.#total += ms; }
}

/** The interface that owns the IPv4 `address` (127.0.0.0/8 is the loopback's), or undefined. */
export function interfaceOf(address: string): string | undefined {
  const all = networkInterfaces();
  for (const [name, addrs] of Object.entries(all)) {
    if (addrs?.some((a) => a.family === 'IPv4' && a.address === address)) return name;
  }
  if (address.startsWith('127.')) {
    for (const [name, addrs] of Object.entries(all)) if (addrs?.some((a) => a.internal && a.family === 'IPv4')) return name;
  }
  return undefined;
}

/**
 * Like {@link interfaceOf}, but also finds interfaces that are down or without carrier (which
 * libuv's list omits) by asking `ip`; used only when the quick lookup fails.
 */
export function interfaceOfAny(address: string): string | undefined {
  const quick = interfaceOf(address);
  if (quick !== undefined) return quick;
  try {
    const out = execFileSync('ip', ['-j', '-4', 'addr', 'show'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const links = JSON.parse(out) as Array<{ ifname: string; addr_info?: Array<{ local?: string; label?: string }> }>;
    for (const l of links) if (l.addr_info?.some((a) => a.local === address)) return l.ifname;
  } catch { /* no ip, or unparsable: cannot judge */ }
  return undefined;
}

/** Reads one sysfs attribute of an interface, or undefined (e.g. carrier of an admin-down link). */
function sysfs(iface: string, attr: string): string | undefined {
  try { return readFileSync(`/sys/class/net/${iface}/${attr}`, 'utf8').trim(); } catch { return undefined; }
}

/** True if `iface` has carrier and is operationally up (loopback reports 'unknown'). */
export function hasCarrier(iface: string): boolean {
  if (sysfs(iface, 'carrier') !== '1') return false;
  const op = sysfs(iface, 'operstate');
  return op === 'up' || op === 'unknown' || op === undefined;
}

/** Carrier of each local network, found from its local address. */
export class CarrierWatch {
  #ifaces: Array<string | undefined> = [];
  #refreshedAt = -Infinity;
  constructor(readonly addresses: readonly string[], readonly refreshMs = 1000,
    /** Test hook: override the carrier check. */
    readonly probe: (iface: string) => boolean = hasCarrier,
    /** Test hook: override how the interface owning an address is found. */
    readonly resolve: (address: string) => string | undefined = interfaceOfAny) {}

  /**
   * Carrier of each network now (true = has carrier). When the interface owning an address
   * cannot be found we cannot judge, and count it as having carrier: isolation is only
   * declared on positive evidence.
   */
  check(now: number): boolean[] {
    if (now - this.#refreshedAt >= this.refreshMs) {
      // os.networkInterfaces() (libuv) leaves out interfaces that are not UP and RUNNING, i.e.
      // exactly those that lost carrier: keep the last interface known to own the address, or a
      // refresh right after a cut would "forget" it and count the network as connected.
      this.#ifaces = this.addresses.map((a, i) => this.resolve(a) ?? this.#ifaces[i]);
      this.#refreshedAt = now;
    }
    return this.#ifaces.map((i) => i === undefined || this.probe(i));
  }

  /** The interface names found for each network. */
  get interfaces(): ReadonlyArray<string | undefined> { return this.#ifaces; }
}

/** Isolated = every local network lacks carrier. */
export function isIsolated(carriers: readonly boolean[]): boolean {
  return carriers.length > 0 && carriers.every((c) => !c);
}
