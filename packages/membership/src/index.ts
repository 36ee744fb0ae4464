/**
 * Membership for HA clusters: heartbeats over UDP on one or more networks (a member is alive
 * while ANY network hears it), every packet authenticated with HMAC-SHA256 under the shared
 * cluster key and checked against replays, failure detection with presets (`default` detects a
 * dead peer in about 300-350 ms and tolerates a blocked application event loop: the whole UDP
 * loop runs in a worker thread), per-member payloads and best-effort application messages.
 *
 * @example
 * ```ts
 * import { membership } from '@ha/membership'
 * import { consoleLog } from '@ha/interface'
 *
 * // On node 'a' (node 'b' runs the same with nodeId: 'b').
 * const m = membership({
 *   nodeId: 'a',
 *   key: 'a shared cluster key of 16+ bytes',
 *   networks: [
 *     { name: 'prod', port: 8888, addresses: { a: '127.0.0.1', b: '127.0.0.2' } },
 *     { name: 'repl', port: 8889, addresses: { a: '127.0.0.1', b: '127.0.0.2' } },
 *   ],
 *   preset: 'default',
 * })({ log: consoleLog() })
 * m.on('member:up', ({ id }) => console.log(id, 'is up'))
 * m.on('member:down', ({ id, reason }) => console.log(id, 'is down:', reason))
 * m.on('member:payload', ({ id, payload }) => console.log(id, 'says', payload))
 * m.on('message', ({ from, channel, body }) => console.log(from, channel, body))
 * await m.start()
 * m.setPayload({ state: 'PRIM' })
 * setTimeout(() => { void m.stop() }, 1000)   // sends LEAVE: peers see 'left' at once
 * ```
 *
 * @packageDocumentation
 */

export { membership, Membership } from './membership.js';
export type { MembershipComponents } from './membership.js';
export type { MembershipInit, NetworkInit } from './config.js';
export type { MemberInfo, MembershipStats, MembershipEvents } from './types.js';
export type { MemberState, DownReason } from './detector.js';
export { PRESETS, resolveTiming, tickInterval, effectiveSilence, isExpired, deadline, stallFromTick, MIN_PULSE_MS, MIN_PULSES_PER_TIMEOUT } from './timing.js';
export type { Timing, PresetName } from './timing.js';
export { MessageType, WIRE_VERSION, DROP_REASONS, MAX_PAYLOAD_BYTES, MAX_APP_BODY_BYTES } from './messages.js';
export type { DropReason } from './messages.js';
export { deriveKey, MIN_KEY_BYTES } from './auth.js';
export {
  MembershipConfigError, MembershipBindError, MembershipEncodeError, UnknownMemberError, MembershipWorkerError,
} from './errors.js';
