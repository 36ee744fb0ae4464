/**
 * One farm node for the lab tests and the benchmark: a cluster running a farm module whose
 * application is a TCP server answering the node's name.
 *   farm-node.ts '<json>' where json = { node, addresses: {name: ip}, vip, port, stateDir, filter?, check?, httpPort?, preset? }
 * `httpPort`: also a minimal HTTP server there (load-balanced too; one response per connection, for wrk).
 * stdin lines: {"status":true} -> {"status":...}; {"count":true} -> {"accepted": connections accepted on port};
 * {"service":"down"|"up"} closes/reopens the server
 * (the module is not told: its tcp checker must notice). stdout: JSON lines of events.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { createCluster } from '@ha/cluster';

const cfg = JSON.parse(process.argv[2]!) as { node: string; addresses: Record<string, string>; vip: string; port: number; stateDir: string; filter?: 'on_addr' | 'on_port'; check?: boolean; httpPort?: number; preset?: 'default' | 'fast' };
const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
let server: net.Server | undefined;
let http: net.Server | undefined;
let accepted = 0;
const sockets = new Set<net.Socket>();
const RESPONSE = `HTTP/1.1 200 OK\r\nContent-Length: ${cfg.node.length + 1}\r\nConnection: close\r\n\r\n${cfg.node}\n`;
const listenHttp = () => new Promise<void>((resolve, reject) => {
  if (!cfg.httpPort) { resolve(); return; }
  http = net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.end(RESPONSE)); });
  http.once('error', reject);
  http.listen(cfg.httpPort, () => resolve());
});
const listen = () => new Promise<void>((resolve, reject) => {
  server = net.createServer((s) => { accepted++; sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); s.write(`${cfg.node}\n`); s.on('data', (d) => s.write(`${cfg.node}:${String(d)}`)); });
  server.once('error', reject);
  server.listen(cfg.port, () => resolve());
}).then(listenHttp);
const close = () => new Promise<void>((r) => {
  for (const s of sockets) s.destroy();
  http?.close(); http = undefined;
  server ? server.close(() => r()) : r(); server = undefined;
});

const cluster = await createCluster({
  node: cfg.node, key: 'farm lab test cluster key 0123456789', stateDir: cfg.stateDir,
  networks: [{ name: 'lan', port: 7890, addresses: cfg.addresses }],
  ...(cfg.preset ? { preset: cfg.preset } : {}),
  farm: {
    name: 'web', vip: cfg.vip, rules: [{ port: cfg.port, proto: 'tcp', filter: cfg.filter ?? 'on_port' }, ...(cfg.httpPort ? [{ port: cfg.httpPort, proto: 'tcp' as const, filter: cfg.filter ?? 'on_port' }] : [])],
    app: { start: listen, stop: close },
    ...(cfg.check ? { check: { host: cfg.vip, port: cfg.port, intervalMs: 200, timeoutMs: 500, failures: 2 } } : {}),
  },
  start: false,
});
cluster.on('farm:state', (e) => out({ event: 'state', state: e.state, reason: e.reason }));
cluster.on('farm:share', (e) => out({ event: 'share', buckets: e.buckets, view: e.view, at: Date.now() }));
await cluster.start();
out({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const m = JSON.parse(line) as { status?: boolean; count?: boolean; service?: 'up' | 'down'; stop?: boolean };
  if (m.status) out({ status: (await cluster.getStatus()).farms?.[0] });
  if (m.count) out({ accepted });
  if (m.service === 'down') { await close(); out({ service: 'down' }); }
  if (m.service === 'up') { await listen(); out({ service: 'up' }); }
  if (m.stop) { await cluster.stop(); out({ stopped: true }); process.exit(0); }
}
