/**
 * Configuration loading: SafeKit's `userconfig.xml` (a module's configuration) and `cluster.xml`
 * (the nodes and their addresses on each lan), with errors and warnings that name file, line,
 * column and element path.
 *
 * @example
 * ```ts
 * import { parseUserConfig, parseClusterDescription, checkUserConfigAgainstCluster, formatConfigWarning } from './config/index.js'
 *
 * const cluster = parseClusterDescription(`<cluster><lans><lan name="default">
 *   <node name="node1" addr="198.18.0.1"/><node name="node2" addr="198.18.0.2"/>
 * </lan></lans></cluster>`)
 * const config = parseUserConfig(`<!DOCTYPE safe><safe><service mode="mirror" defaultprim="node1">
 *   <heart pulse="700" timeout="30000"><heartbeat name="default"/></heart>
 * </service></safe>`)
 * checkUserConfigAgainstCluster(config, cluster) // heartbeat lans and defaultprim exist
 * for (const w of config.warnings) console.warn(formatConfigWarning(w))
 * console.log(config.mode, config.heart?.timeoutMs) // mirror 30000
 * ```
 *
 * Re-exported by `@ha/cluster`.
 */
export { ConfigError, ConfigReadError, formatConfigWarning } from './errors.js';
export type { ConfigErrorDetails, ConfigErrorReason, ConfigLocation, ConfigWarning } from './errors.js';
export { loadUserConfig, parseUserConfig } from './userconfig.js';
export type {
  CheckConfig,
  CheckerConfig,
  CheckTargetConfig,
  ErrdAction,
  ErrdConfig,
  ExtraAttributes,
  FarmConfig,
  HeartbeatConfig,
  HeartConfig,
  LoadBalancingFilter,
  LoadBalancingRule,
  ParseUserConfigOptions,
  ProcCheckConfig,
  ReplicatedDirConfig,
  RfsConfig,
  TcpCheckConfig,
  UserConfig,
  UserScriptsConfig,
  VipConfig,
  VipInterfaceConfig,
  VirtualAddrConfig,
} from './userconfig.js';
export { checkUserConfigAgainstCluster, loadClusterDescription, parseClusterDescription } from './cluster.js';
export type { ClusterDescription, ClusterLan, ClusterNode, ParseClusterOptions } from './cluster.js';
