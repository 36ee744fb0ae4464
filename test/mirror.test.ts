/**
 * Mirror failover in the network-namespace lab: real processes (the embedded HTTP example), real
 * UDP heartbeats, the VIP moving between namespaces, a client calling the VIP.
 */
import { createSocket } from 'node:dgram';
import { waitFor } from './lab/index.js';
import type { ExecutionContext } from 'ava';
import { labTest } from './lab/ava.js';
import { MirrorPair, now } from './lab/mirror-pair.js';

const test = labTest;

/** A pair with a primary, a ready secondary, and a client already served through the VIP. */
async function servedPair(t: ExecutionContext) {
  const pair = await MirrorPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  pair.startProbe();
  await pair.waitServedBy(prim, 0);
  return { pair, prim, second };
}

test.serial('[lab] SIGKILL of the primary: the secondary takes the VIP and serves; the killed node stops answering for the VIP', async (t) => {
  const { pair, prim, second } = await servedPair(t);
  const t0 = await pair.kill(prim);
  const served = await pair.waitServedBy(second, t0, 5000);
  const outageMs = ((served.mono as number) - t0) / 1000;
  t.log(`served by the new primary ${outageMs.toFixed(0)} ms after SIGKILL`);
  t.true(outageMs < 3000, `outage ${outageMs} ms`);
  await pair.waitState(second, 'ALONE');
  // The dead node must not hold the VIP any more (its lifeline removed it).
  await waitFor('the VIP to be gone from the killed node', async () => !(await pair.lab.nodes[prim]!.addresses()).includes(pair.vip), 2000);
  t.true((await pair.lab.nodes[second]!.addresses()).includes(pair.vip));
  // The client's ARP entry for the VIP points at the new primary.
  const mac = await pair.lab.nodes[second]!.mac();
  const neigh = await pair.lab.client.exec('ip', ['neigh', 'show', pair.vip]);
  t.true(neigh.stdout.includes(mac), `client ARP: ${neigh.stdout}`);

  // The failed node returns as SECOND; the survivor goes PRIM; the application keeps running there.
  pair.start(prim);
  await pair.waitState(second, 'PRIM');
  await waitFor('returning node SECOND ready', () => pair.secondReady(prim), 10_000);
  const tAfter = now();
  await new Promise((r) => setTimeout(r, 300));
  t.truthy(pair.answerFrom(second, 0));
  t.falsy(pair.probe!.events.find((e) => e.ev === 'error' && (e.sent as number) > tAfter), 'no request sent after the reintegration failed');
});

test.serial('[lab] link of the primary cut: the secondary takes over; the isolated primary releases the VIP and returns as SECOND', async (t) => {
  const { pair, prim, second } = await servedPair(t);
  const t0 = now();
  await pair.lab.nodes[prim]!.linkDown();
  const served = await pair.waitServedBy(second, t0, 5000);
  t.log(`served by the new primary ${(((served.mono as number) - t0) / 1000).toFixed(0)} ms after the link cut`);
  await pair.waitState(second, 'ALONE');
  await pair.waitState(prim, 'WAIT', 5000); // no carrier: it cannot serve, it lets go
  await waitFor('isolated node released the VIP', async () => !(await pair.lab.nodes[prim]!.addresses()).includes(pair.vip), 3000);
  await pair.lab.nodes[prim]!.linkUp();
  await waitFor('old primary SECOND ready', () => pair.secondReady(prim), 10_000);
  await pair.waitState(second, 'PRIM');
  t.pass();
});

test.serial('[lab] planned swap: stop on the primary before start on the secondary; clients follow the VIP', async (t) => {
  const pair = await MirrorPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0, ['--socket', `${pair.dir}/n0.sock`]); pair.start(1, ['--socket', `${pair.dir}/n1.sock`]);
  const { prim, second } = await pair.waitPrimSecond();
  pair.startProbe();
  await pair.waitServedBy(prim, 0);
  const t0 = now();
  const { controlRequest } = await import('@ha/cluster');
  await controlRequest(`${pair.dir}/n${prim}.sock`, { cmd: 'swap' });
  await pair.waitServedBy(second, t0, 5000);
  await pair.waitState(second, 'PRIM');
  await waitFor('old primary SECOND ready', () => pair.secondReady(prim), 5000);
  const ev = (i: number, name: string) => pair.procs[i]!.events.find((e) => e.ev === 'log' && e.event === name && (e.mono as number) > t0);
  const stopped = ev(prim, 'app:stopped');
  const started = ev(second, 'app:started');
  t.truthy(stopped); t.truthy(started);
  t.true((stopped!.mono as number) < (started!.mono as number), 'the old primary stopped its application before the new one started it');
});

test.serial('[lab] the preferred primary takes its role back after it returns', async (t) => {
  const pair = await MirrorPair.create({ defaultPrimary: 'node1' });
  t.teardown(() => pair.destroy());
  pair.start(0); pair.start(1);
  await pair.waitState(1, 'PRIM', 20_000);
  await pair.kill(1);
  await pair.waitState(0, 'ALONE');
  pair.start(1);
  await pair.waitState(1, 'PRIM', 15_000);
  await waitFor('node0 SECOND ready', () => pair.secondReady(0), 5000);
  t.true(pair.procs[1]!.events.some((e) => e.ev === 'log' && /preferred primary/.test(String(e.msg))));
});

test.serial('[lab] both nodes stopped: the one restarted alone waits', async (t) => {
  const pair = await MirrorPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  await Promise.all([pair.kill(prim), pair.kill(second)]); // power loss of both
  pair.start(second);
  await pair.waitState(second, 'WAIT');
  await new Promise((r) => setTimeout(r, 1500));
  t.is(pair.state(second), 'WAIT');
  t.false((await pair.lab.nodes[second]!.addresses()).includes(pair.vip));
  pair.start(prim);
  await pair.waitState(prim, 'PRIM', 10_000);
});

test.serial('[lab] forged and malformed heartbeats change nothing', async (t) => {
  const pair = await MirrorPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0); pair.start(1);
  const { prim, second } = await pair.waitPrimSecond();
  const before = [pair.procs[0]!.events.length, pair.procs[1]!.events.length];
  // From the client namespace: garbage, a packet with the right magic and a wrong MAC, and a
  // (captured-style) heartbeat claiming to be the primary in STOP state, signed with the wrong key.
  const { encodeForTest } = await import('./lab/forge.js');
  const packets = encodeForTest('node' + prim, 'wrong-key-wrong-key-wrong-key');
  await pair.lab.client.exec(process.execPath, ['-e', `
    const d = require('node:dgram').createSocket('udp4');
    const pk = ${JSON.stringify(packets.map((p) => p.toString('base64')))}.map((b) => Buffer.from(b, 'base64'));
    const targets = ${JSON.stringify(pair.lab.nodes.map((n) => n.ip))};
    let n = 0;
    for (let i = 0; i < 200; i++) for (const p of pk) for (const h of targets) d.send(p, 8888, h, () => { if (++n === 200 * pk.length * targets.length) d.close(); });
  `]);
  await new Promise((r) => setTimeout(r, 1000));
  t.is(pair.state(prim), 'PRIM');
  t.is(pair.state(second), 'SECOND');
  const changes = [0, 1].flatMap((i) => pair.procs[i]!.events.slice(before[i]).filter((e) => e.ev === 'state'));
  t.deepEqual(changes, []);
  void createSocket;
});
