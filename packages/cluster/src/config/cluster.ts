import { readFile } from 'node:fs/promises';
import { ConfigError, ConfigReadError, type ConfigLocation, type ConfigWarning } from './errors.js';
import { Attrs, childrenOf, uniqueNames } from './read.js';
import type { UserConfig } from './userconfig.js';
import { Doc, type XmlElement } from './xml.js';

/** A node on one lan of the cluster. @public */
export interface ClusterNode {
  name: string;
  /** IP address or host name on that lan. */
  addr: string;
  loc?: ConfigLocation;
}

/** A network of the cluster (`default`, and optionally e.g. `replication` for a second heartbeat network). @public */
export interface ClusterLan {
  name: string;
  /** `<lan port>`: UDP port of the cluster traffic on this lan (overrides the cluster's). */
  port?: number;
  nodes: ClusterNode[];
  extra?: Record<string, string>;
  loc?: ConfigLocation;
}

/** The nodes of a cluster and their addresses, from SafeKit's `cluster.xml`. @public */
export interface ClusterDescription {
  /** `<cluster name>`, default `cluster`. */
  name: string;
  /** `<cluster port>`: default UDP port of the cluster traffic. */
  port?: number;
  lans: ClusterLan[];
  /** e.g. a node present on one lan but missing from another; unknown elements. */
  warnings: ConfigWarning[];
  source?: string;
}

/** Options of {@link parseClusterDescription}. @public */
export interface ParseClusterOptions {
  /** Named in errors and warnings; also stored as `source`. Default label `cluster.xml`. */
  file?: string;
  /** Unknown elements and attributes are errors instead of warnings. */
  strict?: boolean;
}

/**
 * Parses the text of a `cluster.xml`:
 * `<cluster name? port?><lans><lan name port?><node name addr/>...</lan>...</lans></cluster>`.
 * Throws {@link ConfigError} naming file, line, column and path on malformed XML, a missing or
 * duplicate name, a bad address or port, a lan without nodes. A node missing from some lans is a warning.
 * @public
 */
export function parseClusterDescription(xml: string, opts: ParseClusterOptions = {}): ClusterDescription {
  const doc = new Doc(xml, { file: opts.file ?? 'cluster.xml', strict: opts.strict ?? false });
  const root = doc.root;
  if (root.name !== 'cluster') doc.fail(root, 'syntax', `the root element must be <cluster>, not <${root.name}>`);
  const ca = new Attrs(doc, root, ['name', 'port']);
  const lansEl = childrenOf(doc, root, { lans: 'one' }).get('lans')?.[0];
  if (lansEl === undefined) return doc.fail(root, 'missing', '<cluster> has no <lans> element');
  new Attrs(doc, lansEl, []);
  const lanEls = childrenOf(doc, lansEl, { lan: 'many' }).get('lan') ?? [];
  if (lanEls.length === 0) doc.fail(lansEl, 'missing', '<lans> has no <lan name="..."> element');

  const lans = lanEls.map((l): ClusterLan => {
    const la = new Attrs(doc, l, ['name', 'port'], ['console', 'command', 'framework']);
    const name = la.required('name');
    const port = la.int('port', { min: 1, max: 65535, what: 'a port number' });
    const nodeEls = childrenOf(doc, l, { node: 'many' }).get('node') ?? [];
    if (nodeEls.length === 0) doc.fail(l, 'missing', `lan '${name}' has no <node name="..." addr="..."/>`);
    const nodes = nodeEls.map((n): ClusterNode => {
      const na = new Attrs(doc, n, ['name', 'addr']);
      childrenOf(doc, n, {});
      const nodeName = na.required('name');
      na.required('addr');
      return { name: nodeName, addr: na.addr('addr') as string, loc: doc.loc(n) };
    });
    uniqueNames(doc, nodes.map((n, i) => ({ el: nodeEls[i] as XmlElement, name: n.name, value: n })), 'name', `node name on lan '${name}'`);
    uniqueNames(doc, nodes.map((n, i) => ({ el: nodeEls[i] as XmlElement, name: n.addr, value: n })), 'addr', `address on lan '${name}'`);
    const extra = la.extra();
    return { name, ...(port !== undefined ? { port } : {}), nodes, ...(extra ? { extra } : {}), loc: doc.loc(l) };
  });
  uniqueNames(doc, lans.map((l, i) => ({ el: lanEls[i] as XmlElement, name: l.name, value: l })), 'name', 'lan name');

  // Every node should be on every lan: a node missing from a heartbeat lan cannot use that heartbeat network.
  const allNodes = new Set(lans.flatMap((l) => l.nodes.map((n) => n.name)));
  lans.forEach((l, i) => {
    const here = new Set(l.nodes.map((n) => n.name));
    for (const node of allNodes) {
      if (!here.has(node)) doc.warn(lanEls[i] as XmlElement, `node '${node}' is not on lan '${l.name}' (it is on another lan)`);
    }
  });

  const port = ca.int('port', { min: 1, max: 65535, what: 'a port number' });
  return {
    name: ca.str('name') ?? 'cluster',
    ...(port !== undefined ? { port } : {}),
    lans,
    warnings: doc.warnings,
    ...(opts.file !== undefined ? { source: opts.file } : {}),
  };
}

/**
 * Reads and parses a `cluster.xml` file. Throws {@link ConfigReadError} if it cannot be read,
 * {@link ConfigError} if it cannot be used.
 * @public
 */
export async function loadClusterDescription(file: string, opts: Omit<ParseClusterOptions, 'file'> = {}): Promise<ClusterDescription> {
  let xml: string;
  try {
    xml = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigReadError(file, err);
  }
  return parseClusterDescription(xml, { ...opts, file });
}

function refError(loc: ConfigLocation | undefined, fallbackFile: string, message: string, value: string): ConfigError {
  const l = loc ?? { file: fallbackFile, line: 1, column: 1, path: '' };
  const where = l.path ? ` (at ${l.path})` : '';
  return new ConfigError(`${l.file}:${l.line}:${l.column}: ${message}${where}`, { ...l, reason: 'reference', value });
}

/**
 * Checks the references from a userconfig.xml to a cluster.xml: each `<heartbeat name>` and
 * `<farm><lan name>` must be a lan of the cluster, `defaultprim` a node of it, and a mirror
 * module runs on exactly two nodes. Throws {@link ConfigError} at the referring line.
 * @public
 */
export function checkUserConfigAgainstCluster(config: UserConfig, cluster: ClusterDescription): void {
  const file = config.source ?? 'userconfig.xml';
  const lanNames = cluster.lans.map((l) => l.name);
  const known = lanNames.map((n) => `'${n}'`).join(', ');
  const clusterFile = cluster.source ?? 'cluster.xml';
  for (const hb of config.heart?.heartbeats ?? []) {
    if (!lanNames.includes(hb.name)) throw refError(hb.loc, file, `heartbeat '${hb.name}' refers to no lan of ${clusterFile} (lans: ${known})`, hb.name);
  }
  for (const lan of config.farm?.lans ?? []) {
    if (!lanNames.includes(lan.name)) throw refError(lan.loc, file, `farm lan '${lan.name}' refers to no lan of ${clusterFile} (lans: ${known})`, lan.name);
  }
  const nodes = [...new Set(cluster.lans.flatMap((l) => l.nodes.map((n) => n.name)))];
  if (config.defaultPrimary !== undefined && !nodes.includes(config.defaultPrimary)) {
    const msg = `defaultprim="${config.defaultPrimary}" is not a node of ${clusterFile} (nodes: ${nodes.join(', ')}; or "alone")`;
    throw refError(config.defaultPrimaryLoc, file, msg, config.defaultPrimary);
  }
  if (config.mode === 'mirror' && nodes.length !== 2) {
    const lan = cluster.lans[0];
    throw refError(lan?.loc, clusterFile, `a mirror module runs on exactly 2 nodes; ${clusterFile} has ${nodes.length} (${nodes.join(', ')})`, String(nodes.length));
  }
}
