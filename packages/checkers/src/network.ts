/**
 * Network checkers: tcp (connect to address:port), ping (an address answers), interface (a
 * network interface is up with carrier), ip (the VIP is on this node and no other host answers
 * for it).
 */
import { isIPv4 } from 'node:net';
import { CheckerConfigError, PollingChecker, type CheckerComponents, type CheckerFactory, type CheckResult, type PollingInit } from './checker.js';
import { execProbe, pingProbe, tcpProbe } from './probes.js';

/** `tcpChecker` options. @public */
export interface TcpCheckerInit extends PollingInit {
  host: string;
  port: number;
}

class TcpChecker extends PollingChecker {
  constructor(readonly init: TcpCheckerInit, c: CheckerComponents) {
    super(init.name ?? `tcp.${init.host}:${init.port}`, 'tcp', init, c, { intervalMs: 10_000, timeoutMs: 5_000 });
    if (typeof init.host !== 'string' || !init.host) throw new CheckerConfigError(this.name, 'host', 'must be a host name or address');
    if (!Number.isInteger(init.port) || init.port < 1 || init.port > 65535) throw new CheckerConfigError(this.name, 'port', `must be a TCP port (1-65535), got ${String(init.port)}`);
  }
  protected describe(): string { return `connect to ${this.init.host}:${this.init.port}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> {
    const ok = await tcpProbe(this.init.host, this.init.port, signal);
    return ok ? { state: 'up', reason: `${this.init.host}:${this.init.port} accepts connections` } : { state: 'down', reason: `${this.init.host}:${this.init.port} refuses or does not answer connections` };
  }
}

/** A checker that connects to host:port every interval (default 10 s, timeout 5 s). @public */
export function tcpChecker(init: TcpCheckerInit): CheckerFactory {
  return (c) => new TcpChecker(init, c);
}

/** `pingChecker` options. @public */
export interface PingCheckerInit extends PollingInit {
  address: string;
}

class PingChecker extends PollingChecker {
  constructor(readonly init: PingCheckerInit, c: CheckerComponents) {
    super(init.name ?? `ping.${init.address}`, 'ping', init, c, { intervalMs: 5_000, timeoutMs: 2_000 });
    if (typeof init.address !== 'string' || !init.address) throw new CheckerConfigError(this.name, 'address', 'must be an address');
  }
  protected describe(): string { return `ping ${this.init.address}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> {
    const ok = await pingProbe(this.init.address, this.timeoutMs, signal);
    return ok ? { state: 'up', reason: `${this.init.address} answers ping` } : { state: 'down', reason: `${this.init.address} does not answer ping` };
  }
}

/** A checker that pings an address (typical action: `wait` while it does not answer). @public */
export function pingChecker(init: PingCheckerInit): CheckerFactory {
  return (c) => new PingChecker(init, c);
}

/** `interfaceChecker` options. @public */
export interface InterfaceCheckerInit extends PollingInit {
  /** Interface name, e.g. eth0. */
  interface: string;
}

/** Reads an interface's state from `ip -j link` (namespace-correct, unlike a stale /sys mount). */
async function linkState(name: string, signal: AbortSignal): Promise<{ exists: boolean; up: boolean; carrier: boolean }> {
  const r = await execProbe('ip', ['-j', 'link', 'show', 'dev', name], signal);
  if (r.code !== 0) return { exists: false, up: false, carrier: false };
  const j = JSON.parse(r.output) as Array<{ flags?: string[]; operstate?: string }>;
  const flags = j[0]?.flags ?? [];
  return { exists: true, up: flags.includes('UP'), carrier: !flags.includes('NO-CARRIER') && flags.includes('LOWER_UP') };
}

class InterfaceChecker extends PollingChecker {
  constructor(readonly init: InterfaceCheckerInit, c: CheckerComponents) {
    super(init.name ?? `intf.${init.interface}`, 'interface', init, c, { intervalMs: 1_000, timeoutMs: 1_000 });
    if (typeof init.interface !== 'string' || !/^[\w.@:-]{1,15}$/.test(init.interface)) throw new CheckerConfigError(this.name, 'interface', `must be an interface name, got ${JSON.stringify(init.interface)}`);
  }
  protected describe(): string { return `interface ${this.init.interface}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> {
    const s = await linkState(this.init.interface, signal);
    if (!s.exists) return { state: 'down', reason: `interface ${this.init.interface} does not exist` };
    if (!s.up) return { state: 'down', reason: `interface ${this.init.interface} is administratively down` };
    if (!s.carrier) return { state: 'down', reason: `interface ${this.init.interface} has no carrier` };
    return { state: 'up', reason: `interface ${this.init.interface} is up with carrier` };
  }
}

/** A checker that a network interface is up and has carrier. @public */
export function interfaceChecker(init: InterfaceCheckerInit): CheckerFactory {
  return (c) => new InterfaceChecker(init, c);
}

/** `ipChecker` options. @public */
export interface IpCheckerInit extends PollingInit {
  /** The address (the VIP) that must be on this node. */
  address: string;
  /** Also check that no other host answers ARP for it (arping -D on this interface). */
  duplicateInterface?: string;
}

class IpChecker extends PollingChecker {
  constructor(readonly init: IpCheckerInit, c: CheckerComponents) {
    super(init.name ?? `ip.${init.address}`, 'ip', init, c, { intervalMs: 2_000, timeoutMs: 2_000 });
    if (!isIPv4(init.address)) throw new CheckerConfigError(this.name, 'address', `must be an IPv4 address, got ${JSON.stringify(init.address)}`);
  }
  protected describe(): string { return `address ${this.init.address}`; }
  protected async check(signal: AbortSignal): Promise<CheckResult> {
    const r = await execProbe('ip', ['-j', '-4', 'addr', 'show'], signal);
    if (r.code !== 0) throw new Error(`ip addr failed: ${r.output}`);
    const present = r.output.includes(`"local":"${this.init.address}"`);
    if (!present) return { state: 'down', reason: `${this.init.address} is not on any interface of this node` };
    if (this.init.duplicateInterface) {
      // arping -D exits 1 when another host replied for the address.
      const d = await execProbe('arping', ['-D', '-q', '-c', '1', '-w', '1', '-I', this.init.duplicateInterface, this.init.address], signal);
      if (d.code === 1) return { state: 'down', reason: `another host answers for ${this.init.address} (duplicate address)` };
    }
    return { state: 'up', reason: `${this.init.address} is on this node` };
  }
}

/** A checker that the VIP is present on this node (and, optionally, not duplicated). @public */
export function ipChecker(init: IpCheckerInit): CheckerFactory {
  return (c) => new IpChecker(init, c);
}

