/**
 * The SDK's native addon (C++, node-addon-api, built by cmake-js from `native/`): raw ARP for the
 * VIP, and the replicated file system (write interceptor, replication transport). `native.ts` is
 * the only place that loads the `.node` file; JS wrappers validate arguments before they reach C++. Blocking work (an ARP probe's listening window) runs on the libuv thread
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
export { nativeAvailable, nativeUnavailableReason, arpProbe, arpAnnounce } from './native.js';
export type { NativeProbeResult } from './native.js';
// rfs modules (write interceptor, replication transport) add their exports below.
export * from './rfs-fuse.js';
export * from './rfs-transport.js';
export * from './rfs-dirty.js';
export * from './rfs-repl.js';
export * from './rfs-verify.js';
