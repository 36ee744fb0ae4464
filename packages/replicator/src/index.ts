/**
 * Real-time synchronous byte-level replication of directories for the mirror module. On the
 * primary, a FUSE write interceptor (native, `@ha/native`) sits over each replicated directory:
 * every change is applied locally, streamed to the secondary over an authenticated, encrypted
 * channel, and the application's write() returns once the secondary has it. Changes that could
 * not be replicated (the secondary away) are tracked persistently by zone, so a returning node
 * copies only what changed, while the application keeps running.
 *
 * @example
 * ```ts
 * import { createCluster } from '@ha/cluster'
 * import { replicator } from '@ha/replicator'
 *
 * const cluster = await createCluster({
 *   node: 'node1', key: process.env.HA_CLUSTER_KEY!, stateDir: '/var/lib/my-service/ha',
 *   networks: [{ name: 'default', port: 8888, addresses: { node1: '10.0.0.1', node2: '10.0.0.2' } }],
 *   mirror: {
 *     vip: '10.0.0.100',
 *     data: replicator({ dirs: ['/var/lib/my-service/data'] }),   // replicated to the secondary
 *     app: { start: async () => {}, stop: async () => {} },
 *   },
 * })
 * cluster.on('replica:progress', (p) => console.log(`reintegration ${p.bytesDone}/${p.bytesTotal} bytes`))
 * ```
 *
 * The first synchronisation of a node (or after `prim` forced one) asks the secondary for its
 * block checksums (SHA-256 per 64 KiB block) and sends only the blocks that differ; `verify()`
 * compares both copies the same way and lists every difference (`ha verify`).
 *
 * @packageDocumentation
 */
export { replicator, ReplicatorConfigError, ReintegrationError, VerifyUnavailableError } from './replicator.js';
export type { ReplicatorInit, ReplicatorApi, DirVerifyReport, DirReplicationStatus } from './replicator.js';
export { keepAside } from './keep-aside.js';
export type { DivergedFile, DivergedReport, KeepAsideInit } from './keep-aside.js';
