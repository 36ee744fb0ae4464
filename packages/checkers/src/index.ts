/**
 * `@ha/checkers`: checkers find software failures and act on them; the split-brain witness keeps
 * a network isolation from making two primaries.
 *
 * Checkers (each a Startable component with a resource state up/down/unknown and `change`
 * events): {@link processChecker} (a named process runs N..M times, death seen within 100 ms),
 * {@link tcpChecker}, {@link pingChecker}, {@link interfaceChecker}, {@link ipChecker},
 * {@link moduleChecker}, {@link customChecker} (your async function), {@link execChecker} (an
 * executable), {@link EventChecker} (a class with start/stop). A {@link CheckerSet} runs them by
 * rule (`when`, `action`) with the restart policy (`maxloop` / `loop_interval`). The
 * {@link witness} is asked before a mirror node becomes ALONE without hearing its peer.
 *
 * @example
 * ```ts
 * import { createCluster } from '@ha/cluster'
 * import { customChecker, processChecker, tcpChecker, witness } from '@ha/checkers'
 *
 * const cluster = await createCluster({
 *   node: 'node1', key: process.env.HA_CLUSTER_KEY!, stateDir: '/var/lib/my-service/ha',
 *   networks: [{ name: 'default', port: 8888, addresses: { node1: '198.18.0.1', node2: '198.18.0.2' } }],
 *   mirror: {
 *     vip: '198.18.0.100',
 *     scripts: { dir: '/opt/my-service/bin' },
 *     checkers: {
 *       maxloop: 3, loopIntervalMs: 24 * 3600_000,
 *       checkers: [
 *         { checker: processChecker({ process: 'my-daemon', atleast: 1 }), action: 'restart' },
 *         { checker: tcpChecker({ host: '127.0.0.1', port: 8080, intervalMs: 2000, timeoutMs: 1000 }), action: 'restart' },
 *         { checker: customChecker({ name: 'disk', check: async () => true }), action: 'stopstart' },
 *       ],
 *     },
 *     witness: witness({ targets: [{ ping: '198.18.0.254' }] }),
 *   },
 * })
 * cluster.on('resource', (r) => console.log(`${r.resource}: ${r.state} (${r.reason})`))
 * ```
 *
 * @packageDocumentation
 */
export { BaseChecker, PollingChecker, CheckerConfigError, CheckTimeoutError } from './checker.js';
export type { Checker, CheckerComponents, CheckerEvents, CheckerFactory, CheckerFault, CheckResult, PollingInit, ResourceChange, ResourceState, ResourceStatus } from './checker.js';
export { processChecker } from './process.js';
export type { ProcessCheckerInit, ProcessCheckerHandle } from './process.js';
export { tcpChecker, pingChecker, interfaceChecker, ipChecker } from './network.js';
export type { TcpCheckerInit, PingCheckerInit, InterfaceCheckerInit, IpCheckerInit } from './network.js';
export { customChecker, execChecker, moduleChecker, EventChecker } from './custom.js';
export type { CustomCheckerInit, ExecCheckerInit, ModuleCheckerInit } from './custom.js';
export { restartVerdict } from './restart-policy.js';
export type { RestartPolicyInit, RestartVerdict } from './restart-policy.js';
export { witness, WitnessConfigError } from './witness.js';
export type { Witness, WitnessInit, WitnessResult, WitnessTarget } from './witness.js';
export { CheckerSet, checkerSet, DuplicateCheckerError } from './checker-set.js';
export type { CheckerAction, CheckerActionRequest, CheckerPhase, CheckerRule, CheckerSetEvents, CheckerSetInit, CheckerWhen } from './checker-set.js';
export { parseStat, ProcTable, procTable } from './proc-table.js';
export type { ProcInfo } from './proc-table.js';
