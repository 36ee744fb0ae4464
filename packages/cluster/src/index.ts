/**
 * `createCluster()`: embed high availability in a Node service. Two nodes run a mirror module; the
 * primary holds a virtual IP and runs the application; when it dies, the secondary takes the VIP
 * and starts the application. States STOP, WAIT, ALONE, PRIM, SECOND; commands start, prim,
 * second, stop, swap, restart; a persistent module log that explains every decision.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http'
 * import { createCluster } from '@ha/cluster'
 *
 * let server: ReturnType<typeof createServer> | undefined
 * const cluster = await createCluster({
 *   node: 'node1',                                   // this node's name
 *   key: process.env.HA_CLUSTER_KEY!,                // shared by both nodes, >= 16 bytes
 *   networks: [{ name: 'default', port: 8888, addresses: { node1: '198.18.0.1', node2: '198.18.0.2' } }],
 *   stateDir: '/var/lib/my-service/ha',
 *   mirror: {
 *     vip: '198.18.0.100',
 *     app: {
 *       start: async () => { server = createServer((_, res) => res.end('hello\n')).listen(8080) },
 *       stop: async () => { await new Promise((r) => server?.close(r)) },
 *     },
 *   },
 * })
 * cluster.on('state', (e) => console.log(`${e.previous} -> ${e.state}: ${e.reason}`))
 * process.on('SIGTERM', () => void cluster.stop())
 * ```
 *
 * @packageDocumentation
 */
export { createCluster, Cluster, ClusterConfigError, MissingComponentError } from './cluster.js';
export type { ClusterInit, ClusterEvents, ClusterStatus, ClusterComponents, ComponentFactory, MirrorInit, FarmInit } from './cluster.js';
export { FarmModule } from './farm/farm.js';
export type { FarmStatus, FarmEvents, FarmStateChange, FarmMemberShare, FarmCommand, FarmOptions, FarmDeps } from './farm/farm.js';
export { farmView, decideBuckets, extractFarmAnnounce } from './farm/decide.js';
export type { FarmState, FarmAnnounce, FarmPeer } from './farm/decide.js';
export { TcpCheck } from './farm/tcp-check.js';
export type { TcpCheckInit } from './farm/tcp-check.js';
export { MirrorModule, CommandRefusedError, extractAnnounce } from './mirror/mirror.js';
export type { Command, MirrorEvents, MirrorStatus, StateChange, MirrorOptions, MirrorParts } from './mirror/mirror.js';
export type { DataReplication, DataContext, DataFactory, ReintegrationProgress } from '@ha/interface';
export { decide, electPrimary, colourOf } from './mirror/decide.js';
export type { MirrorState, Colour, Announce, Decision, SelfView, PeerView } from './mirror/decide.js';
export { AppStartError, AppScriptError, AppRunner } from './app.js';
export type { AppRunnerInit } from './app.js';
export type { AppCallbacks, AppContext, AppScripts } from './app.js';
export { StateFileError, StateStore } from './state-store.js';
export type { PersistedState } from './state-store.js';
export { formatEntry, PersistentLog } from './module-log.js';
export { serveControl, controlRequest, ControlError, CONTROL_COMMANDS } from './control.js';
export type { ControlCommand, ControlRequest, ControlResponse } from './control.js';
export * from './config/index.js';
export { fromUserConfig, mergeClusterInits } from './from-userconfig.js';
export type { FromUserConfigOptions } from './from-userconfig.js';
