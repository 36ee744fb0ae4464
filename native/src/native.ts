/**
 * The SDK's native addon (C++, node-addon-api, built by cmake-js from `native/`). This file is the
 * only place that loads the `.node` file; it declares the binding's type and validates arguments
 * before they reach C++. Blocking work (an ARP probe's listening window) runs on the libuv thread
 * pool, never on the JS thread.
 *
 * @example
 * ```ts
 * import { nativeAvailable, arpProbe, arpAnnounce } from '@ha/native'
 *
 * if (nativeAvailable()) {
 *   const r = await arpProbe('eth0', '198.18.0.100', { windowMs: 20 })   // needs CAP_NET_RAW
 *   if (!r.inUse) arpAnnounce('eth0', '198.18.0.100')                       // after adding the address
 * }
 * ```
 *
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** The binding as exported by the addon. @internal */
interface NativeBinding {
  version: number;
  arpProbe(ifname: string, ip: string, windowMs: number, probes: number): Promise<{ inUse: boolean; mac?: string; ms: number }>;
  arpAnnounce(ifname: string, ip: string, count: number): void;
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
let binding: NativeBinding | undefined;
let loadError: string | undefined;

function load(): NativeBinding | undefined {
  if (binding || loadError) return binding;
  if (!existsSync(ADDON)) { loadError = `native addon not built (${ADDON} is missing: run \`npm run build:native\`)`; return undefined; }
  try {
    binding = createRequire(import.meta.url)(ADDON) as NativeBinding;
  } catch (err) {
    loadError = `native addon ${ADDON} failed to load: ${(err as Error).message}`;
  }
  return binding;
}

/** True if the addon is built and loads. @public */
export function nativeAvailable(): boolean { return load() !== undefined; }

/** Why the addon is not available (undefined when it is). @public */
export function nativeUnavailableReason(): string | undefined { load(); return binding ? undefined : loadError; }

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
