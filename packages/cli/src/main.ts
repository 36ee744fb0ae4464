import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { HaError, isHaError, type LogEntry } from '@ha/interface';
import { replicator, type DirReplicationStatus, type DirVerifyReport } from '@ha/replicator';
import {
  controlRequest, createCluster, formatEntry, fromUserConfig, loadClusterDescription, loadUserConfig, mergeClusterInits, serveControl,
  type ClusterInit, type ClusterStatus, type MirrorStatus,
} from '@ha/cluster';

/** Bad command-line arguments. @public */
export class UsageError extends HaError {
  constructor(message: string) { super('ERR_USAGE', message); }
}

/** `ha run`: another daemon already answers on the control socket. @public */
export class DaemonRunningError extends HaError {
  constructor(message: string) { super('ERR_DAEMON_RUNNING', message); }
}

/** `ha run`: the control socket cannot be served. @public */
export class ControlSocketError extends HaError {
  constructor(message: string, cause?: unknown) { super('ERR_CONTROL_SOCKET', message, { cause }); }
}

const USAGE = `usage: ha <command> [options]

commands:
  run       run a module as a daemon (foreground) from a cluster description and a userconfig.xml
  check     load and check cluster.xml + userconfig.xml, print warnings
  state     show this node's module state
  start | stop | prim | second | swap | restart
            control the local daemon's module
  logs      show the module log (-n lines)
  verify    compare the replicated directories with the secondary's copies by block checksums
            (on the primary); exit code 3 when they differ

options for run and check:
  --cluster FILE     cluster description (cluster.xml: nodes and their addresses)      [required]
  --config FILE      module configuration (userconfig.xml), mirror or farm              [required]
                     (repeat it to run several modules in one daemon: one mirror, farms)
  --node NAME        this node's name in cluster.xml                                    [required for run]
  --key-file FILE    shared cluster key (or the HA_CLUSTER_KEY environment variable)    [required for run]
  --state-dir DIR    persisted state and logs (default /var/lib/ha)
  --log-dir DIR      module and application logs (default: the state dir)
  --scripts DIR      start_prim / stop_prim directory (default: bin/ beside userconfig.xml)
  --module NAME      module name (default mirror, or farm for a farm module)
  --preset NAME      failure-detection preset: default | fast | lan | wan (overrides <heart pulse timeout>)
  --no-autostart     stay STOP until \`ha start\`
options for control commands:
  --module NAME | -m NAME   module (default mirror); also picks the module in a daemon running several
  --socket PATH      control socket (default /run/ha/<module>.sock; run: named by its first module)
  --json             print JSON
  -n N               number of log lines (logs)
`;

const OPTIONS: ParseArgsConfig['options'] = {
  cluster: { type: 'string' }, config: { type: 'string', multiple: true }, node: { type: 'string' }, 'key-file': { type: 'string' },
  'state-dir': { type: 'string' }, 'log-dir': { type: 'string' }, scripts: { type: 'string' }, module: { type: 'string', short: 'm' },
  preset: { type: 'string' }, 'no-autostart': { type: 'boolean' }, socket: { type: 'string' }, json: { type: 'boolean' },
  n: { type: 'string' }, help: { type: 'boolean', short: 'h' },
};

type Values = Record<string, string | boolean | string[] | undefined>;

/** Runs the `ha` command with `argv` (without node and script); returns the exit code. @public */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n'), err: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<number> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] });
  } catch (e) {
    err(`ha: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const cmd = positionals[0];
  if (values.help || !cmd) { (cmd || values.help ? out : err)(USAGE); return values.help ? 0 : 2; }
  if (positionals.length > 1) { err(`ha: unexpected argument '${positionals[1]}'\n\n${USAGE}`); return 2; }
  const module = (values.module as string | undefined) ?? 'mirror';
  const socket = (values.socket as string | undefined) ?? `/run/ha/${module}.sock`;
  const target = values.module ? { module: values.module as string } : {};
  try {
    switch (cmd) {
      case 'run': return await run(values, out, err);
      case 'check': return await check(values, out);
      case 'state': {
        const st = await controlRequest(socket, { cmd: 'state' }) as ClusterStatus;
        out(values.json ? JSON.stringify(st) : formatStatus(st));
        return 0;
      }
      case 'verify': {
        const reports = await controlRequest(socket, { cmd: 'verify' }, 6 * 3600_000) as DirVerifyReport[];
        out(values.json ? JSON.stringify(reports) : formatVerify(reports));
        return reports.some((r) => r.differences.length > 0) ? 3 : 0;
      }
      case 'logs': {
        const n = values.n === undefined ? 100 : Number(values.n);
        if (!Number.isInteger(n) || n <= 0) throw new UsageError(`-n must be a positive whole number, got '${values.n}'`);
        const lines = await controlRequest(socket, { cmd: 'logs', lines: n }) as string[];
        out(lines.join('\n'));
        return 0;
      }
      case 'start': case 'stop': case 'prim': case 'second': case 'swap': case 'restart': {
        const st = await controlRequest(socket, { cmd, ...target }) as ClusterStatus;
        out(values.json ? JSON.stringify(st) : `${cmd}: done\n${formatStatus(st)}`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) { err(`ha: ${e.message}\n\n${USAGE}`); return 2; }
    err(`ha ${cmd}: ${isHaError(e) ? `${e.message} [${e.code}]` : (e as Error).stack ?? e}`);
    return 1;
  }
}

function need(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || !v) throw new UsageError(`--${name} is required`);
  return v;
}

async function loadConfigs(values: Values) {
  const clusterFile = need(values, 'cluster');
  const files = (values.config as string[] | undefined) ?? [];
  if (!files.length) throw new UsageError('--config is required');
  const cluster = await loadClusterDescription(clusterFile);
  const configs = await Promise.all(files.map((f) => loadUserConfig(f)));
  return { cluster, configs };
}

/** Module names: --module for a single config, else each module's mode (farm, farm2, ... when several farms). */
function moduleNames(values: Values, modes: Array<'mirror' | 'farm'>): string[] {
  if (modes.length === 1 && typeof values.module === 'string') return [values.module];
  if (modes.length > 1 && typeof values.module === 'string') throw new UsageError('--module names one module; with several --config files each module is named after its mode (mirror, farm, farm2, ...)');
  let farms = 0;
  return modes.map((m) => (m === 'mirror' ? 'mirror' : ++farms === 1 ? 'farm' : `farm${farms}`));
}

async function check(values: Values, out: (s: string) => void): Promise<number> {
  const { cluster, configs } = await loadConfigs(values);
  const nodes = [...new Set(cluster.lans.flatMap((l) => l.nodes.map((n) => n.name)))];
  const node = (values.node as string | undefined) ?? nodes[0]!;
  const names = moduleNames(values, configs.map((c) => c.mode));
  const built = configs.map((config, i) => ({ config, ...fromUserConfig(config, cluster, { node, key: 'x'.repeat(32), stateDir: '/nonexistent', module: names[i]!, allowPlaceholders: true }) }));
  if (built.length > 1) mergeClusterInits(built.map((b) => b.init));
  for (const { config, notes } of built) {
    out(`ok: ${config.source}: ${config.mode} module on ${nodes.join(', ')}`);
    for (const n of notes) out(`warning: ${n}`);
  }
  for (const w of cluster.warnings) out(`warning: ${w.file}:${w.line}:${w.column}: ${w.message} (at ${w.path})`);
  return 0;
}

async function readKey(values: Values): Promise<string> {
  const f = values['key-file'];
  if (typeof f === 'string') {
    const k = (await readFile(f, 'utf8').catch((e: Error) => { throw new UsageError(`--key-file ${f}: ${e.message}`); })).trim();
    if (Buffer.byteLength(k) < 16) throw new UsageError(`--key-file ${f}: the cluster key must be at least 16 bytes`);
    return k;
  }
  const env = process.env.HA_CLUSTER_KEY;
  if (env) {
    if (Buffer.byteLength(env) < 16) throw new UsageError('HA_CLUSTER_KEY: the cluster key must be at least 16 bytes');
    return env;
  }
  throw new UsageError('a shared cluster key is required: --key-file FILE or the HA_CLUSTER_KEY environment variable');
}

async function run(values: Values, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const node = need(values, 'node');
  const key = await readKey(values);
  const { cluster: desc, configs } = await loadConfigs(values);
  const preset = values.preset as string | undefined;
  if (preset !== undefined && !['default', 'fast', 'lan', 'wan'].includes(preset)) throw new UsageError(`--preset must be default, fast, lan or wan; got '${preset}'`);
  if (configs.length > 1 && values.scripts) throw new UsageError('--scripts applies to one module; with several --config files each module uses bin/ beside its userconfig.xml');
  const names = moduleNames(values, configs.map((c) => c.mode));
  const module = names[0]!;
  const socket = (values.socket as string | undefined) ?? `/run/ha/${module}.sock`;
  const built = configs.map((config, i) => fromUserConfig(config, desc, {
    node, key, module: names[i]!,
    stateDir: (values['state-dir'] as string | undefined) ?? '/var/lib/ha',
    ...(values['log-dir'] ? { logDir: values['log-dir'] as string } : {}),
    ...(values.scripts ? { scriptsDir: values.scripts as string } : {}),
    ...(preset ? { preset: preset as 'default' } : {}),
  }));
  const init: ClusterInit = built.length === 1 ? built[0]!.init : mergeClusterInits(built.map((b) => b.init));
  const notes = built.flatMap((b) => b.notes);
  const config = configs.find((c) => c.mode === 'mirror');
  // Refuse to take over the control socket of a daemon that is running (serveControl replaces the
  // socket file, which would leave that daemon running but unreachable).
  const other = await controlRequest(socket, { cmd: 'state' }, 3000).then((st) => st as ClusterStatus, () => undefined);
  if (other) throw new DaemonRunningError(`a daemon (node ${other.node}) is already running on the control socket ${socket}; stop it first, or give this one another --socket`);
  const dirs = config?.rfs?.replicated.map((r) => r.dir) ?? [];
  if (dirs.length && init.mirror) {
    // <rfs async="second"> (the stock file): the secondary acknowledges on receipt; "none": once written.
    const async = config?.rfs?.async;
    const mode = async === 'none' ? 'written' : 'received';
    if (async !== undefined && async !== 'none' && async !== 'second') notes.push(`<rfs async="${async}"> is not known (second, none): replication acknowledged once received`);
    init.mirror.data = replicator({ dirs, mode });
  }
  const print = (e: LogEntry) => out(values.json ? JSON.stringify(e) : formatEntry(e));
  const cluster = await createCluster({ ...init, onLog: print, autoStart: !values['no-autostart'], start: false });
  for (const n of notes) cluster.log.warn('config', n);
  // The control socket first: if it cannot be served, nothing has started (no VIP, no application),
  // and the daemon exits instead of running on without a way to control it.
  let control: Awaited<ReturnType<typeof serveControl>>;
  try {
    control = await serveControl(cluster, socket);
  } catch (e) {
    await cluster.moduleLog.close();
    throw isHaError(e) ? e : new ControlSocketError(`cannot serve the control socket ${socket}: ${(e as Error).message}`, e);
  }
  try {
    await cluster.start();
  } catch (e) {
    await control.close().catch(() => {});
    throw e;
  }
  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    cluster.log.info('daemon', `${sig} received: stopping (a primary hands over to its secondary)`);
    await control.close().catch(() => {});
    try {
      await cluster.stop();
    } catch (e) {
      err(`ha run: stop failed: ${(e as Error).message}`);
      process.exit(1);
    }
    process.exit(0);
  };
  cluster.on('fatal', (e) => {
    err(`ha run: the node stopped itself: ${e.message}`);
    void control.close().catch(() => {}).then(() => process.exit(1));
  });
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  err(`ha: node ${node} running module${names.length > 1 ? 's' : ''} ${names.join(', ')}; control socket ${socket}`);
  await new Promise<never>(() => {});
  return 0;
}

/** Human-readable status. */
export function formatStatus(st: ClusterStatus): string {
  return st.modules.map((m: MirrorStatus) => {
    const lines = [
      `module ${m.module} on ${m.node}: ${m.state}${m.state === 'SECOND' ? (m.ready ? ' (Ready)' : ' (Transient: resynchronising)') : ''} [${m.colour}] since ${m.since}`,
      `  ${m.waitReason ? `waiting: ${m.waitReason}` : `last decision: ${m.lastReason}`}`,
      `  data: ${m.uptodate ? 'up to date' : 'not known up to date'}, epoch ${m.epoch}${m.preferred ? `, preferred primary ${m.preferred}` : ''}${m.failover ? '' : ', failover off'}`,
      `  peer ${m.peer.name}: ${m.peer.heard ? `${m.peer.state ?? '?'}${m.peer.state === 'SECOND' ? (m.peer.ready ? ' (Ready)' : ' (Transient)') : ''}` : 'not heard'}`,
    ];
    lines.push(...formatReplication((m as MirrorStatus & { replication?: DirReplicationStatus[] }).replication));
    for (const r of m.resources ?? []) {
      lines.push(`  resource ${r.resource} (${r.kind}, ${r.when}, action ${r.action}): ${r.running ? r.state : 'not checked in this state'}${r.running && r.reason ? ` - ${r.reason}` : ''}${r.faults ? ` [${r.faults} checker faults]` : ''}`);
    }
    if (m.vip) lines.push(`  vip ${m.vip.address} on ${m.vip.interface}: ${m.vip.held ? 'held by this node' : 'not held'}`);
    lines.push(`  application: ${m.app.running ? 'running' : 'stopped'}`);
    return lines.join('\n');
  }).concat((st.farms ?? []).map((f) => [
    `module ${f.module} (farm) on ${f.node}: ${f.state} [${f.colour}] since ${f.since}`,
    `  last decision: ${f.lastReason}`,
    ...(f.vip ? [`  vip ${f.vip.address} on ${f.vip.interface}, virtual MAC ${f.vip.vmac}`] : []),
    `  share (of ${f.bucketCount} buckets):`,
    ...f.shares.map((s) => `    ${s.node.padEnd(12)} ${String(s.state).padEnd(7)} ${s.alive ? '' : '(not heard) '}${s.buckets} buckets, ${s.pct}%`),
  ].join('\n'))).join('\n');
}

function mib(n: number): string { return `${(n / 1048576).toFixed(1)} MiB`; }

/** `ha state` lines for the replicated directories (when the daemon reports them). @public */
export function formatReplication(dirs: DirReplicationStatus[] | undefined): string[] {
  if (!Array.isArray(dirs)) return [];
  return dirs.map((d) => {
    let line = `  replication ${d.dir}: ${d.role}${d.state ? ` ${d.state}` : ''}`;
    const p = d.progress;
    if (p) {
      const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 0;
      line += `, ${p.kind === 'full' ? 'first synchronisation' : 'reintegration'} ${pct}%: ${p.filesDone}/${p.filesTotal} entries, ${mib(p.bytesDone)}/${mib(p.bytesTotal)}, ${mib(p.rate)}/s, ETA ${p.etaS < 0 ? '?' : `${Math.round(p.etaS)} s`}`;
    } else if (d.last) {
      line += `, last ${d.last.kind === 'full' ? 'first synchronisation' : 'reintegration'} ${d.last.at}: ${d.last.entries} entries, ${mib(d.last.bytesSent)} sent in ${Math.round(d.last.ms)} ms`;
    }
    if (d.dirtyEntries) line += `, ${d.dirtyEntries} entries to copy`;
    return line;
  });
}

/** `ha verify` output: one line per difference, then a summary per directory. @public */
export function formatVerify(reports: DirVerifyReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    for (const d of r.differences) lines.push(`${r.dir}/${d.path}: ${d.kind}: ${d.detail}`);
    lines.push(`${r.dir}: ${r.differences.length === 0 ? 'identical' : `${r.differences.length} difference(s)`} (${r.entries} entries, ${mib(r.bytes)} compared in ${Math.round(r.ms)} ms)`);
  }
  return lines.join('\n');
}
