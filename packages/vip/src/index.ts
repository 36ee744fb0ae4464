/**
 * Virtual IP management for the mirror module: the VIP is added on the primary's interface
 * after an ARP probe shows no other host answers for it, announced with gratuitous ARP so
 * clients switch at once, removed on stop or loss of the role, and removed by a watchdog
 * (the {@link Lifeline}) within milliseconds if this process dies, even by SIGKILL, together
 * with the application's processes.
 *
 * Needs root (CAP_NET_ADMIN, CAP_NET_RAW), iproute2's `ip` and iputils' `arping`.
 *
 * @example
 * ```ts
 * import { vip, lifeline } from '@ha/vip'
 * import { consoleLog, startAll, stopAll } from '@ha/interface'
 *
 * const log = consoleLog('example')
 * const ll = lifeline({ logFile: '/tmp/ha-lifeline.log' })({ log })
 * const v = vip({ address: '198.18.0.100' })({ log, lifeline: ll })  // interface and prefix found from the subnet
 * v.on('vip:conflict', ({ by }) => console.log(`another host (${by}) answers for the VIP; waiting`))
 * await startAll([ll, v])      // validates the config: bad address / interface / subnet throw here
 * await v.acquire()            // probe, add, gratuitous ARP; if we are SIGKILLed now, the lifeline removes it
 * console.log(await v.held())  // true
 * await stopAll([ll, v])       // removes the VIP, then the watchdog exits without doing anything
 * ```
 *
 * @packageDocumentation
 */

export { vip } from './vip.js';
export type { Vip, VipInit, VipComponents, VipEvents } from './vip.js';
export { lifeline } from './lifeline.js';
export type { Lifeline, LifelineInit, LifelineComponents } from './lifeline.js';
export type { LifelineState, LifelineVip, LifelineCommand } from './lifeline-protocol.js';
export {
  parseIPv4, formatIPv4, isIPv4, parseCidr, prefixMask, networkOf, broadcastOf, inSubnet,
  assertPrefix, assertUsableVip, resolveVipConfig,
} from './address.js';
export type { InterfaceInfo, InterfaceAddress, ResolvedVipConfig } from './address.js';
export { listInterfaces, listAddresses, hasAddress, addAddress, deleteAddress } from './iproute.js';
export type { AddressSpec } from './iproute.js';
export { probe, gratuitousArp, defaultProbeWindowMs } from './arp.js';
export type { ProbeResult } from './arp.js';
export { garpDelays, DEFAULT_GARP_DELAYS, defaultLabel } from './schedule.js';
export {
  InvalidAddressError, NoSuchInterfaceError, NotInSubnetError, InvalidPrefixError, LocalAddressError,
  CommandError, InvalidOptionError, AcquireAbortedError,
} from './errors.js';
