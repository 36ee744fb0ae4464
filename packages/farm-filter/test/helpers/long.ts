/**
 * Long-lived connections for the farm tests: opens n connections to vip:port from ports from..,
 * writes to each every `everyMs` and checks each answer; prints {"open":n} once all are
 * established, and on "done" on stdin {"report":{ok, broken}} (broken: errored, closed, or an
 * answer missing for over 2 s).
 */
import net from 'node:net';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]!) as { vip: string; port: number; n: number; from: number; everyMs: number };
interface C { s: net.Socket; broken: boolean; lastAnswer: number; opened: boolean }
const conns: C[] = [];
for (let i = 0; i < cfg.n; i++) {
  const c: C = { s: net.connect({ host: cfg.vip, port: cfg.port, localPort: cfg.from + i }), broken: false, lastAnswer: Date.now(), opened: false };
  c.s.on('data', () => { c.lastAnswer = Date.now(); c.opened = true; });
  c.s.on('error', () => { c.broken = true; });
  c.s.on('close', () => { c.broken = true; });
  conns.push(c);
}
let announced = false;
const timer = setInterval(() => {
  const now = Date.now();
  for (const c of conns) {
    if (c.opened && !c.broken) c.s.write('ping');
    if (c.opened && now - c.lastAnswer > 2000) c.broken = true;
  }
  if (!announced && conns.every((c) => c.opened)) { announced = true; process.stdout.write(JSON.stringify({ open: conns.length }) + '\n'); }
}, cfg.everyMs);
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== 'done') continue;
  clearInterval(timer);
  const broken = conns.filter((c) => c.broken || !c.opened).length;
  for (const c of conns) c.s.removeAllListeners('close');
  process.stdout.write(JSON.stringify({ report: { ok: conns.length - broken, broken } }) + '\n');
  for (const c of conns) c.s.destroy();
  process.exit(0);
}
