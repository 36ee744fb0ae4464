/**
 * Recovery probe for the farm benchmark, run in the client namespace:
 *   probe.ts '<json>' where json = { vip, port, batch, timeoutMs }
 * Rounds of `batch` new connections (ephemeral client ports: spread over every bucket), each
 * reading the server's first line within `timeoutMs`; prints one JSON line per round:
 * {"t": start ms (epoch), "ok": n, "fail": n}. Stops on "done" on stdin.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]!) as { vip: string; port: number; batch: number; timeoutMs: number };
let running = true;
const one = () => new Promise<boolean>((resolve) => {
  const s = net.connect({ host: cfg.vip, port: cfg.port });
  const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
  const t = setTimeout(() => done(false), cfg.timeoutMs);
  s.once('data', () => done(true));
  s.once('error', () => done(false));
});
void (async () => {
  while (running) {
    const t = Date.now();
    const r = await Promise.all(Array.from({ length: cfg.batch }, one));
    const ok = r.filter(Boolean).length;
    process.stdout.write(JSON.stringify({ t, ok, fail: r.length - ok }) + '\n');
    await new Promise((res) => setTimeout(res, 10));
  }
})();
for await (const line of createInterface({ input: process.stdin })) if (line.trim() === 'done') { running = false; process.exit(0); }
