/**
 * The `ha` command: run a module as a daemon from a cluster description and a `userconfig.xml`,
 * and control the local daemon.
 *
 * @example
 * ```sh
 * # on each node (HA_CLUSTER_KEY or --key-file holds the shared cluster key)
 * ha run --cluster cluster.xml --config userconfig.xml --node node1 --state-dir /var/lib/ha
 * ha state            # this node's module: state, colour, peer, VIP
 * ha swap             # exchange the primary and secondary roles
 * ```
 * ```ts
 * import { main } from '@ha/cli'
 * process.exitCode = await main(['state', '--socket', '/run/ha/mirror.sock'])
 * ```
 *
 * @packageDocumentation
 */
export { main, UsageError, DaemonRunningError, ControlSocketError, formatStatus, formatVerify, formatReplication } from './main.js';
