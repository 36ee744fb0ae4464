/**
 * The only place that loads the addon's `.node` file; declares the binding's type. Typed,
 * validating wrappers: the ARP functions below, and rfs-*.ts for the replicated file system.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/**
 * The binding as exported by the addon (every module's functions). Typed wrappers that validate
 * arguments live beside this file (arp below, rfs-*.ts); they get the binding from
 * {@link binding}. @internal
 */
export interface NativeBinding {
  version: number;
  // --- arp (src/arp.cc) ---
  arpProbe(ifname: string, ip: string, windowMs: number, probes: number): Promise<{ inUse: boolean; mac?: string; ms: number }>;
  arpAnnounce(ifname: string, ip: string, count: number): void;
  // --- rfs interceptor (src/rfs/fuse*.cc): declared in rfs-fuse.ts as RfsFuseBinding ---
  // --- rfs transport (src/rfs/transport*.cc): declared in rfs-transport.ts as RfsTransportBinding ---
}

/** Result of {@link arpProbe}. @public */
export interface NativeProbeResult {
  /** Another host answers for (or probes for) the address. */
  inUse: boolean;
  /** Its MAC address, lower case. */
  mac?: string;
  /** Duration of the probe in ms. */
  ms: number;
}

const ADDON = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'ha_native.node');
let loaded: NativeBinding | undefined;
let loadError: string | undefined;

function load(): NativeBinding | undefined {
  if (loaded || loadError) return loaded;
  if (!existsSync(ADDON)) { loadError = `native addon not built (${ADDON} is missing: run \`npm run build:native\`)`; return undefined; }
  try {
    loaded = createRequire(import.meta.url)(ADDON) as NativeBinding;
  } catch (err) {
    loadError = `native addon ${ADDON} failed to load: ${(err as Error).message}`;
  }
  return loaded;
}

/** The loaded binding; throws with the reason when the addon is not available. @internal */
export function binding<T = NativeBinding>(): T {
  const b = load();
  if (!b) throw new Error(loadError);
  return b as unknown as T;
}

/** True if the addon is built and loads. @public */
export function nativeAvailable(): boolean { return load() !== undefined; }

/** Why the addon is not available (undefined when it is). @public */
export function nativeUnavailableReason(): string | undefined { return load() ? undefined : loadError; }

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function check(ifname: string, ip: string): NativeBinding {
  if (typeof ifname !== 'string' || !IFNAME.test(ifname)) throw new TypeError(`invalid interface name ${JSON.stringify(ifname)}`);
  if (typeof ip !== 'string' || !IPV4.test(ip)) throw new TypeError(`not an IPv4 address: ${JSON.stringify(ip)}`);
  const b = load();
  if (!b) throw new Error(loadError);
  return b;
}

/**
 * RFC 5227 ARP probe: asks the link whether another host answers for `ip`, listening `windowMs`
 * (default 20; a LAN answers ARP in well under 1 ms) and sending `probes` probes spread over the
 * window (default 2, so one lost frame does not hide a conflict). Needs CAP_NET_RAW.
 * @public
 */
export function arpProbe(ifname: string, ip: string, opts: { windowMs?: number; probes?: number } = {}): Promise<NativeProbeResult> {
  const b = check(ifname, ip);
  const windowMs = opts.windowMs ?? 20;
  const probes = opts.probes ?? 2;
  if (!Number.isInteger(windowMs) || windowMs < 1 || windowMs > 60_000) throw new RangeError(`windowMs must be an integer from 1 to 60000, got ${windowMs}`);
  if (!Number.isInteger(probes) || probes < 1 || probes > 10) throw new RangeError(`probes must be an integer from 1 to 10, got ${probes}`);
  return b.arpProbe(ifname, ip, windowMs, probes);
}

/** Sends `count` gratuitous ARP announcements for `ip` from `ifname` (default 1). Needs CAP_NET_RAW. @public */
export function arpAnnounce(ifname: string, ip: string, count = 1): void {
  const b = check(ifname, ip);
  if (!Number.isInteger(count) || count < 1 || count > 10) throw new RangeError(`count must be an integer from 1 to 10, got ${count}`);
  b.arpAnnounce(ifname, ip, count);
}
