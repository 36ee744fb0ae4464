/**
 * A small Node HTTP service that embeds `createCluster()`: the node that is primary serves
 * `GET /` on port 8080 (reached through the virtual IP) and answers with its own name; the
 * secondary stands by. Events are printed as JSON lines on stdout (the demo, the lab tests and the
 * failover benchmark read them).
 *
 *   node --conditions=development --import tsx examples/embedded-http/server.ts \
 *     --node node0 --addresses node0=198.18.0.1,node1=198.18.0.2 --vip 198.18.0.100 \
 *     --state-dir /tmp/ha-node0 [--preset default|fast] [--default-primary node0] [--prim]
 *
 * The key comes from HA_CLUSTER_KEY (any string of 16 bytes or more, the same on both nodes).
 * `--block-ms 500 --block-every 2000` makes the service block its own event loop on purpose
 * (used by the benchmark's stress period: the cluster must not be fooled by it).
 */
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import { openSync, writeSync, fdatasyncSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createCluster, serveControl } from '@ha/cluster';
import { replicator } from '@ha/replicator';

const { values } = parseArgs({
  options: {
    node: { type: 'string' }, addresses: { type: 'string' }, vip: { type: 'string' }, 'state-dir': { type: 'string' },
    preset: { type: 'string' }, 'default-primary': { type: 'string' }, port: { type: 'string' }, 'hb-port': { type: 'string' },
    prim: { type: 'boolean' }, 'block-ms': { type: 'string' }, 'block-every': { type: 'string' }, socket: { type: 'string' },
    data: { type: 'string' }, 'data-port': { type: 'string' }, writer: { type: 'string' }, 'writer-every': { type: 'string' },
  },
});
const node = values.node ?? 'node0';
const addresses = Object.fromEntries((values.addresses ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const port = Number(values.port ?? 8080);
const print = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ t: Date.now(), mono: Number(process.hrtime.bigint() / 1000n), node, ...o }) + '\n');

let server: Server | undefined;

// --writer N: the application appends numbered records to <data>/records.log, one fdatasync each,
// and prints every record whose fdatasync returned ("acknowledged"), up to record N. A node that
// takes over continues after the last record in the file.
let writer: NodeJS.Timeout | undefined;
function startWriter(): void {
  if (!values.writer || !values.data) return;
  const file = join(values.data, 'records.log');
  const last = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).length : 0;
  const fd = openSync(file, 'a');
  let n = last;
  const max = Number(values.writer);
  const tick = () => {
    if (n >= max) { closeSync(fd); print({ ev: 'writer:done', n }); writer = undefined; return; }
    n++;
    writeSync(fd, `record ${n} from ${node}\n`);
    fdatasyncSync(fd);
    print({ ev: 'acked', n });
    writer = setTimeout(tick, Number(values['writer-every'] ?? 2));
  };
  writer = setTimeout(tick, 0);
}
function stopWriter(): void { if (writer) clearTimeout(writer); writer = undefined; }
const cluster = await createCluster({
  node,
  key: process.env.HA_CLUSTER_KEY ?? '',
  networks: [{ name: 'default', port: Number(values['hb-port'] ?? 8888), addresses }],
  preset: (values.preset ?? 'default') as 'default',
  stateDir: values['state-dir'] ?? `/tmp/ha-${node}`,
  autoStart: !values.prim,
  start: false, // attach the listeners below first, then start
  onLog: (e) => {
    if (e.level === 'debug') return;
    const { ts: _ts, level: _level, ...rest } = e;
    print({ ev: 'log', ...rest });
  },
  mirror: {
    name: 'web',
    ...(values.vip ? { vip: values.vip } : {}),
    ...(values['default-primary'] ? { defaultPrimary: values['default-primary'] } : {}),
    ...(values.data ? { data: replicator({ dirs: [values.data], port: Number(values['data-port'] ?? 5600) }) } : {}),
    niceStopTimeoutMs: 5000,
    forceStopTimeoutMs: 5000,
    app: {
      // Became primary: serve.
      start: () => new Promise<void>((resolve, reject) => {
        server = createServer((req, res) => {
          res.setHeader('connection', 'close');
          res.end(JSON.stringify({ node }) + '\n');
        });
        server.once('error', reject);
        server.listen(port, '0.0.0.0', () => { startWriter(); resolve(); });
      }),
      // Leaving the primary role: stop serving (a forced stop closes every connection at once).
      stop: ({ force }) => new Promise<void>((resolve) => {
        stopWriter();
        const s = server;
        server = undefined;
        if (!s) { resolve(); return; }
        if (force) s.closeAllConnections();
        s.close(() => resolve());
      }),
    },
  },
});
cluster.on('state', (e) => print({ ev: 'state', state: e.state, previous: e.previous, ready: e.ready, reason: e.reason }));
cluster.on('vip:acquired', (e) => print({ ev: 'vip:acquired', ms: e.ms }));
cluster.on('failover', (e) => print({ ev: 'failover', reason: e.reason }));
// Reintegration progress, every ~200 ms while a returning secondary catches up (filesKept: what an
// interruption would not copy again).
cluster.on('replica:progress', (e) => print({ ev: 'replica:progress', ...e }));
await cluster.start();
if (values.prim) await cluster.command('prim');
const control = values.socket ? await serveControl(cluster, values.socket) : undefined;

const blockMs = Number(values['block-ms'] ?? 0);
if (blockMs > 0) {
  // Stress: block this process's event loop on purpose, as a busy application would.
  setInterval(() => { const end = Date.now() + blockMs; while (Date.now() < end) { /* busy */ } }, Number(values['block-every'] ?? 2000));
}

const stop = async () => { await control?.close(); await cluster.stop(); process.exit(0); };
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
print({ ev: 'ready' });
