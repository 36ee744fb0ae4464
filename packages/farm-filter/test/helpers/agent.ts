/**
 * A farm filter on one lab node, driven over stdin, with a TCP service on every rule's port that answers its name:
 *   agent.ts '<json>' where json = { name, node, vip, rules, port }
 * stdin lines: {"buckets":[...]} -> setBuckets; {"count":true} -> {"accepted":n}; {"stop":true} -> stop and exit.
 * stdout lines: {"ready":true}, {"applied":n}, {"accepted":n}, {"error":msg}.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';
import { nullLog } from '@ha/interface';
import { farmFilter, type FarmRule } from '../../src/index.js';

const cfg = JSON.parse(process.argv[2]!) as { name: string; node: string; vip: string; rules: FarmRule[]; port: number };
const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
let accepted = 0;
const server = net.createServer((s) => { accepted++; s.on('error', () => {}); s.write(`${cfg.node}\n`); s.on('data', (d) => s.write(`${cfg.node}:${String(d)}`)); });
const servers = [server, ...cfg.rules.filter((r) => r.port !== cfg.port).map(() => net.createServer(server.listeners('connection')[0] as (s: net.Socket) => void))];
await Promise.all(servers.map((sv, i) => new Promise<void>((r) => sv.listen(i === 0 ? cfg.port : cfg.rules.filter((x) => x.port !== cfg.port)[i - 1]!.port, r))));
const f = farmFilter({ name: cfg.name, vip: cfg.vip, rules: cfg.rules })({ log: nullLog() });
await f.start();
out({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  try {
    const m = JSON.parse(line) as { buckets?: number[]; stop?: boolean; count?: boolean };
    if (m.count) out({ accepted });
    if (m.buckets) { await f.setBuckets(m.buckets); out({ applied: m.buckets.length }); }
    if (m.stop) { await f.stop(); for (const sv of servers) sv.close(); out({ stopped: true }); process.exit(0); }
  } catch (e) { out({ error: (e as Error).message }); }
}
