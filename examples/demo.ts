/**
 * The demo (`npm run demo`, as root): two nodes in network namespaces run the embedded HTTP
 * service (examples/embedded-http/server.ts); a client in a third namespace calls the virtual IP
 * every 10 ms; the primary is killed with SIGKILL; the client is served by the other node; the
 * killed node comes back as secondary. The timeline is printed. Everything is torn down at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, jsonLines, labSkipReason, waitFor, type LabHost } from '../test/lab/index.js';

const reason = labSkipReason();
if (reason) {
  console.error(`demo: ${reason}`);
  process.exit(1);
}

const key = randomBytes(24).toString('hex');
const tmp = mkdtempSync(join(tmpdir(), 'ha-demo-'));
const lab = await createLab({ nodes: 2, client: true });
const mono = () => Number(process.hrtime.bigint() / 1000n);
let t0 = mono();
const ms = (t: number) => `${((t - t0) / 1000).toFixed(0).padStart(6)} ms`;
const say = (t: number, s: string) => console.log(`${ms(t)}  ${s}`);

try {
  const vip = lab.vip(0);
  const addresses = lab.nodes.map((n, i) => `node${i}=${n.ip}`).join(',');
  const startNode = (i: number) => {
    const host = lab.nodes[i] as LabHost;
    const child = host.spawnTs('examples/embedded-http/server.ts', [
      '--node', `node${i}`, '--addresses', addresses, '--vip', vip, '--state-dir', join(tmp, `node${i}`),
    ], { env: { ...process.env, HA_CLUSTER_KEY: key } });
    const events = jsonLines(child);
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[node${i}] ${d}`));
    return { child, events };
  };
  const stateOf = (ev: Array<Record<string, unknown>>) => [...ev].reverse().find((e) => e.ev === 'state')?.state as string | undefined;

  console.log(`lab: node0 ${lab.nodes[0]!.ip}, node1 ${lab.nodes[1]!.ip}, client ${lab.client.ip}, virtual IP ${vip}\n`);
  const n0 = startNode(0);
  const n1 = startNode(1);
  await waitFor('a primary and a secondary', () => {
    const s = [stateOf(n0.events), stateOf(n1.events)];
    return s.includes('PRIM') && s.includes('SECOND');
  }, 20_000);
  const primIdx = stateOf(n0.events) === 'PRIM' ? 0 : 1;
  const prim = primIdx === 0 ? n0 : n1;
  const second = primIdx === 0 ? n1 : n0;
  console.log(`node${primIdx} is PRIM (holds ${vip}, runs the service); node${1 - primIdx} is SECOND\n`);

  const probe = lab.client.spawnTs('test/lab/probe.ts', ['--target', vip, '--every', '10', '--timeout', '1000']);
  const answers = jsonLines(probe);
  await waitFor('the client to be served', () => answers.some((a) => a.ev === 'answer' && a.node === `node${primIdx}`), 10_000);
  await new Promise((r) => setTimeout(r, 500));

  console.log('timeline (from the kill):');
  const seen = second.events.length;
  t0 = mono();
  process.kill(prim.child.pid!, 'SIGKILL');
  say(t0, `SIGKILL node${primIdx} (pid ${prim.child.pid})`);
  await waitFor('the client to be served by the other node', () => answers.some((a) => a.ev === 'answer' && a.node === `node${1 - primIdx}` && (a.mono as number) > t0), 10_000);
  for (const e of second.events.slice(seen)) {
    if (e.ev === 'log' && ['peer:down', 'state', 'vip:acquired', 'app:started'].includes(e.event as string)) say(e.mono as number, `node${1 - primIdx} ${e.event}: ${e.msg}`);
  }
  const firstErr = answers.find((a) => a.ev === 'error' && (a.mono as number) > t0);
  if (firstErr) say(firstErr.mono as number, `client: first failed request (${firstErr.why})`);
  const served = answers.find((a) => a.ev === 'answer' && a.node === `node${1 - primIdx}` && (a.mono as number) > t0)!;
  say(served.mono as number, `client: served by node${1 - primIdx} again`);
  const outage = ((served.mono as number) - t0) / 1000;

  console.log(`\nrestarting node${primIdx}: it returns as secondary`);
  const back = startNode(primIdx);
  await waitFor('the returning node to be SECOND', () => stateOf(back.events) === 'SECOND' && back.events.some((e) => e.ev === 'state' && e.ready === true), 20_000);
  console.log(`node${primIdx} is SECOND (Ready); node${1 - primIdx} is ${stateOf(second.events)}`);
  console.log(`\nresult: the client was served again ${outage.toFixed(0)} ms after the primary was killed.`);
  probe.kill('SIGKILL');
} finally {
  await lab.destroy();
  rmSync(tmp, { recursive: true, force: true });
}
