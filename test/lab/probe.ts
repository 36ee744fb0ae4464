/**
 * The lab's client: sends `GET /` to http://<target>:<port>/ every `--every` ms (a new connection
 * each time, each with its own timeout, so a request lost to a dead node does not hold up the
 * next), and prints a JSON line whenever the answering node changes, an error streak starts, or
 * on `--all`. Times are CLOCK_MONOTONIC microseconds (`mono`), comparable across processes.
 *
 *   node --import tsx test/lab/probe.ts --target 198.18.0.100 [--port 8080] [--every 10] [--timeout 1000] [--duration 60000]
 */
import { request } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: {
  target: { type: 'string' }, port: { type: 'string' }, every: { type: 'string' }, timeout: { type: 'string' },
  duration: { type: 'string' }, all: { type: 'boolean' },
} });
const target = values.target ?? '198.18.0.100';
if (!/^198\.1[89]\.\d{1,3}\.\d{1,3}$/.test(target)) {
  // The probe only ever talks to lab addresses.
  process.stderr.write(`probe: refusing target ${target}: only 198.18.0.0/15 lab addresses\n`);
  process.exit(2);
}
const port = Number(values.port ?? 8080);
const every = Number(values.every ?? 10);
const timeout = Number(values.timeout ?? 1000);
const duration = Number(values.duration ?? 600_000);
const mono = () => Number(process.hrtime.bigint() / 1000n);
const out = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + '\n');

let last = '';
let errors = 0;
let ok = 0;
const start = mono();
function probe(): void {
  const sent = mono();
  let done = false;
  const req = request({ host: target, port, path: '/', agent: false, timeout }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => { body += d; });
    res.on('end', () => {
      if (done) return; done = true;
      let node = '?';
      try { node = (JSON.parse(body) as { node: string }).node; } catch { /* keep ? */ }
      ok++;
      const now = mono();
      // Report a change of node, and the first answer after errors (so a reader always knows the
      // latest outcome by the time it was sent).
      if (node !== last || errors > 0 || values.all) out({ ev: 'answer', node, sent, mono: now, previous: last || undefined, errorsBefore: errors });
      last = node;
      errors = 0;
    });
  });
  const fail = (why: string) => {
    if (done) return; done = true;
    errors++;
    if (errors === 1 || values.all) out({ ev: 'error', why, sent, mono: mono(), last });
  };
  req.on('timeout', () => { req.destroy(); fail('timeout'); });
  req.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
  req.end();
}
const timer = setInterval(() => {
  if (mono() - start > duration * 1000) { clearInterval(timer); out({ ev: 'end', ok }); setTimeout(() => process.exit(0), timeout); return; }
  probe();
}, every);
out({ ev: 'start', mono: start, target, port, every });
