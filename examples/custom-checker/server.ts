/**
 * A mirror node with checkers and a split-brain witness (used by the lab tests and the
 * benchmark). The application is an HTTP server on port 8080 plus a worker process named
 * `--proc` (a copy of `sleep` under that name) that a process checker watches; the custom
 * TypeScript checker of ./health-file-checker.ts checks `/health`. Events are JSON lines on stdout.
 *
 *   node --conditions=development --import tsx examples/custom-checker/server.ts \
 *     --node node0 --addresses node0=198.18.0.1,node1=198.18.0.2 --vip 198.18.0.100 \
 *     --state-dir /tmp/ha-node0 --proc hawork0 [--witness 198.18.0.200] [--data /srv/data] [--maxloop 3]
 *
 * SIGUSR2 closes the HTTP listener (the tcp checker then fires its action).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { processChecker, tcpChecker, type CheckerRule } from '@ha/checkers';
import { createCluster } from '@ha/cluster';
import { replicator } from '@ha/replicator';
import { healthChecker } from './health-file-checker.js';

const { values } = parseArgs({
  options: {
    node: { type: 'string' }, addresses: { type: 'string' }, vip: { type: 'string' }, 'state-dir': { type: 'string' },
    proc: { type: 'string' }, witness: { type: 'string' }, data: { type: 'string' }, maxloop: { type: 'string' },
    'tcp-action': { type: 'string' }, preset: { type: 'string' }, prim: { type: 'boolean' }, health: { type: 'boolean' },
  },
});
const node = values.node ?? 'node0';
const stateDir = values['state-dir'] ?? `/tmp/ha-${node}`;
const addresses = Object.fromEntries((values.addresses ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const print = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ t: Date.now(), mono: Number(process.hrtime.bigint() / 1000n), node, ...o }) + '\n');

// The worker process: `sleep` under a unique name, so the process checker finds it by name.
const procName = values.proc ?? `hawork-${node}`;
mkdirSync(join(stateDir, 'bin'), { recursive: true });
const procPath = join(stateDir, 'bin', procName);
if (!existsSync(procPath)) symlinkSync('/bin/sleep', procPath);

let server: Server | undefined;
let worker: ChildProcess | undefined;
const checkers: CheckerRule[] = [
  { checker: processChecker({ process: procName, atleast: 1 }), action: 'restart' },
  { checker: tcpChecker({ name: 'tcp.app', host: '127.0.0.1', port: 8080, intervalMs: 300, timeoutMs: 300 }), action: (values['tcp-action'] ?? 'restart') as 'restart' },
];
if (values.health) checkers.push({ checker: healthChecker({ url: 'http://127.0.0.1:8080/health', dir: stateDir }), action: 'restart' });

const cluster = await createCluster({
  node, key: process.env.HA_CLUSTER_KEY ?? '',
  networks: [{ name: 'default', port: 8888, addresses }],
  preset: (values.preset ?? 'default') as 'default',
  stateDir, start: false, autoStart: !values.prim,
  onLog: (e) => { if (e.level !== 'debug') { const { ts: _t, level: _l, ...rest } = e; print({ ev: 'log', ...rest }); } },
  mirror: {
    name: 'web',
    ...(values.vip ? { vip: values.vip } : {}),
    ...(values.data ? { data: replicator({ dirs: [values.data] }) } : {}),
    ...(values.witness ? { witness: { targets: [{ ping: values.witness }], timeoutMs: 1000 } } : {}),
    checkers: { checkers, maxloop: Number(values.maxloop ?? 3), loopIntervalMs: 3600_000 },
    niceStopTimeoutMs: 3000, forceStopTimeoutMs: 3000,
    app: {
      start: async () => {
        worker = spawn(procPath, ['3600'], { stdio: 'ignore' });
        print({ ev: 'app:proc', pid: worker.pid });
        await new Promise<void>((resolve, reject) => {
          server = createServer((req, res) => { res.setHeader('connection', 'close'); res.end(JSON.stringify({ node }) + '\n'); });
          server.once('error', reject);
          server.listen(8080, '0.0.0.0', () => resolve());
        });
      },
      stop: async ({ force }) => {
        worker?.kill('SIGKILL');
        worker = undefined;
        const s = server;
        server = undefined;
        if (s) await new Promise<void>((r) => { if (force) s.closeAllConnections(); s.close(() => r()); });
      },
    },
  },
});
for (const ev of ['state', 'resource', 'checker:action', 'checker:restarted', 'checker:fault', 'witness', 'replica:diverged', 'app:started', 'failover'] as const) {
  (cluster.on as (n: string, f: (e: Record<string, unknown>) => void) => unknown)(ev, (e) => print({ ...e, ev }));
}
process.on('SIGUSR2', () => { const s = server; server = undefined; s?.closeAllConnections(); s?.close(); print({ ev: 'listener:closed' }); });
await cluster.start();
if (values.prim) await cluster.command('prim');
const stop = async () => { worker?.kill('SIGKILL'); await cluster.stop(); process.exit(0); };
process.on('SIGTERM', () => void stop());
print({ ev: 'ready' });
