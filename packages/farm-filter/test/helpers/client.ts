/**
 * Client load for farm tests, run inside the client namespace:
 *   client.ts '<json>' where json = { vip, port, conns: [{ addr?, port? }], timeoutMs?, parallel? }
 * Connects once per entry (from the given local address / port), reads the server's first line
 * (its node name) and prints one JSON line: { results: [name | 'err:CODE' | 'timeout', ...] }.
 */
import net from 'node:net';

interface Job { vip: string; port: number; conns: Array<{ addr?: string; port?: number }>; timeoutMs?: number; parallel?: number }
const job = JSON.parse(process.argv[2]!) as Job;

function one(c: { addr?: string; port?: number }): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: job.vip, port: job.port, ...(c.addr ? { localAddress: c.addr } : {}), ...(c.port ? { localPort: c.port } : {}) });
    let data = '';
    const done = (r: string) => { s.destroy(); resolve(r); };
    s.setEncoding('utf8');
    s.on('data', (d: string) => { data += d; const i = data.indexOf('\n'); if (i >= 0) done(data.slice(0, i)); });
    s.on('error', (e: NodeJS.ErrnoException) => done(`err:${e.code ?? e.message}`));
    s.on('close', () => done(data ? data.trim() : 'err:closed'));
    s.setTimeout(job.timeoutMs ?? 2000, () => done('timeout'));
  });
}

const results: string[] = new Array(job.conns.length);
let next = 0;
await Promise.all(Array.from({ length: job.parallel ?? 20 }, async () => {
  while (next < job.conns.length) { const i = next++; results[i] = await one(job.conns[i]!); }
}));
process.stdout.write(JSON.stringify({ results }) + '\n');
