/**
 * Farm load balancing without a proxy. Every node of a farm holds the same virtual IP with a
 * virtual MAC that no node ever sends from, so the LAN floods frames for it to every node; ARP for
 * the VIP answers with that MAC; on each node an nftables chain accepts a new connection only if
 * the hash of the client address (`on_addr`: session affinity) or of address and port
 * (`on_port`) falls in one of the node's buckets. Connections that a node already serves stay
 * with it when buckets move (connection tracking); a node never answers a packet of a connection
 * another node serves. Bucket ownership ({@link assignBuckets}) is rendezvous hashing over the
 * nodes that are up: only a leaving node's buckets move, a joining node takes an even share.
 *
 * Needs root (CAP_NET_ADMIN), `nft` (nftables) and `ip`. Touches only its own tables `ha_farm_<name>`.
 *
 * @example
 * ```ts
 * import { farmFilter, ownedBuckets } from '@ha/farm-filter'
 * import { consoleLog } from '@ha/interface'
 *
 * const f = farmFilter({ name: 'web', vip: '198.18.0.100', rules: [{ port: 80, proto: 'tcp', filter: 'on_addr' }] })({ log: consoleLog('farm') })
 * await f.start()                                  // VIP + virtual MAC; accepts nothing yet
 * await f.setBuckets(ownedBuckets('n1', ['n1', 'n2', 'n3']))  // this node's third of the buckets
 * // ... when the view changes: setBuckets again (one atomic nft transaction)
 * await f.stop()                                   // VIP and tables removed
 * ```
 *
 * @packageDocumentation
 */

export { farmFilter, FarmFilter } from './filter.js';
export type { FarmFilterInit, FarmFilterComponents } from './filter.js';
export { DEFAULT_BUCKETS, bucketOwner, assignBuckets, ownedBuckets, toRanges, encodeBuckets, decodeBuckets } from './buckets.js';
export { tableName, virtualMac, checkSpec, renderNetdevTable, renderFilterTable, renderDelete } from './rules.js';
export type { FarmHash, FarmRule, FarmRulesetSpec } from './rules.js';
export { FarmFilterConfigError, NftError } from './errors.js';
