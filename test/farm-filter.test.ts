/**
 * The farm data plane alone (no membership): three nodes hold the same VIP with a virtual MAC,
 * each accepts only its buckets; real TCP from a client namespace.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLab } from './lab/index.js';
import { labTest } from './lab/ava.js';
import { ownedBuckets } from '../packages/farm-filter/src/index.js';
import { Agent, addClientAddresses, runClient } from '../packages/farm-filter/test/helpers/lab.js';

const test = labTest.serial;
const execFileP = promisify(execFile);
const NODES = ['node0', 'node1', 'node2'];

function tally(results: string[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const r of results) m[r] = (m[r] ?? 0) + 1;
  return m;
}

test('[lab] farm filter: 600 connections on_port and 600 from 60 addresses on_addr, each answered by exactly one node, even shares', async (t) => {
  const lab = await createLab({ nodes: 3, client: true });
  t.teardown(() => lab.destroy());
  const vip = lab.vip(0);
  const agents = await Promise.all(lab.nodes.map((h, i) => Agent.start(h, {
    name: 'web', node: NODES[i]!, vip, port: 8080,
    rules: [{ port: 8080, proto: 'tcp', filter: 'on_port' }, { port: 8081, proto: 'tcp', filter: 'on_addr' }],
  })));
  await Promise.all(agents.map((a, i) => a.setBuckets(ownedBuckets(NODES[i]!, NODES))));

  // The bridge never learns the virtual MAC (it must keep flooding it to every node).
  const conns = Array.from({ length: 600 }, (_, i) => ({ port: 20_000 + i }));
  const results = await runClient(lab.client, { vip, port: 8080, conns });
  const counts = tally(results);
  t.log('on_port', counts);
  t.deepEqual(Object.keys(counts).sort(), NODES, `every connection answered by a node: ${JSON.stringify(counts)}`);
  const accepted = await Promise.all(agents.map((a) => a.accepted()));
  t.is(accepted.reduce((x, y) => x + y, 0), 600, `server-side accepts ${accepted.join(', ')}: each connection accepted by exactly one node`);
  for (const n of NODES) t.true(Math.abs(counts[n]! - 200) <= 40, `${n}: ${counts[n]} of 600 (even 200 ± 20%)`);

  // on_addr: 60 client addresses, 10 connections each: one node per address, even shares.
  const addrs = await addClientAddresses(lab.client, 60);
  const byAddr = await runClient(lab.client, { vip, port: 8081, conns: addrs.flatMap((addr) => Array.from({ length: 10 }, () => ({ addr }))) });
  const c2 = tally(byAddr);
  t.log('on_addr', c2);
  t.deepEqual(Object.keys(c2).sort(), NODES, `every connection answered by a node: ${JSON.stringify(c2)}`);
  const accepted2 = await Promise.all(agents.map((a) => a.accepted()));
  t.is(accepted2.reduce((x, y) => x + y, 0), 1200, `server-side accepts ${accepted2.join(', ')}`);
  for (let i = 0; i < 60; i++) {
    const mine = new Set(byAddr.slice(i * 10, i * 10 + 10));
    t.is(mine.size, 1, `address ${addrs[i]} was served by ${[...mine].join(', ')}`);
  }
  for (const n of NODES) t.true(Math.abs(c2[n]! - 200) <= 40, `on_addr ${n}: ${c2[n]} of 600 (even 200 ± 20%)`);

  const fdb = await execFileP('ip', ['netns', 'exec', lab.switchNs, 'bridge', 'fdb', 'show', 'br', 'br0']);
  t.false(/02:48:41/i.test(fdb.stdout), 'the bridge has not learnt the virtual MAC');
  const neigh = await lab.client.exec('ip', ['neigh', 'show', vip]);
  t.regex(neigh.stdout, /lladdr 02:48:41:12:00:64/, 'the client resolved the VIP to the virtual MAC');
  await Promise.all(agents.map((a) => a.stop()));
});
