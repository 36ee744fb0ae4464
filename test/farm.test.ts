/**
 * The farm module in the lab: three nodes each run a cluster with a farm module (membership,
 * nft filter, an application answering its name), a client namespace makes real TCP connections.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { createLab, jsonLines, waitFor, type Lab } from './lab/index.js';
import { labTest } from './lab/ava.js';
import { runClient } from '../packages/farm-filter/test/helpers/lab.js';

const test = labTest.serial;
const FARM_NODE = fileURLToPath(new URL('../packages/farm-filter/test/helpers/farm-node.ts', import.meta.url));
const PORT = 8080;

interface Node { name: string; child: ChildProcess; lines: Array<Record<string, unknown>> }

async function startNode(lab: Lab, i: number, dir: string, extra: Record<string, unknown> = {}): Promise<Node> {
  const addresses = Object.fromEntries(lab.nodes.map((n, j) => [`node${j}`, n.ip]));
  const name = `node${i}`;
  const child = lab.nodes[i]!.spawnTs(FARM_NODE, [JSON.stringify({ node: name, addresses, vip: lab.vip(0), port: PORT, stateDir: join(dir, name), ...extra })]);
  const lines = jsonLines(child);
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; });
  await waitFor(`${name} ready (${err.slice(-500)})`, () => lines.some((l) => l.ready), 30_000);
  return { name, child, lines };
}

const upOn = (n: Node, buckets: number) => n.lines.filter((l) => l.event === 'share').at(-1)?.buckets === buckets;
const lastShare = (n: Node) => (n.lines.filter((l) => l.event === 'share').at(-1)?.buckets as number | undefined) ?? 0;
const conns = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ port: from + i }));

test('[lab] farm: 3 nodes share; SIGKILL of one moves only its buckets within the detection time; a joiner breaks no established connection', async (t) => {
  const lab = await createLab({ nodes: 3, client: true });
  const dir = mkdtempSync(join(tmpdir(), 'ha-farm-'));
  t.teardown(async () => { await lab.destroy(); rmSync(dir, { recursive: true, force: true }); });
  const vip = lab.vip(0);
  const nodes = [await startNode(lab, 0, dir), await startNode(lab, 1, dir), await startNode(lab, 2, dir)];
  await waitFor('three even shares', () => nodes.every((n) => Math.abs(lastShare(n) - 4096 / 3) < 4096 / 3 * 0.15) && nodes.reduce((a, n) => a + lastShare(n), 0) === 4096, 10_000);

  const before = await runClient(lab.client, { vip, port: PORT, conns: conns(20_000, 600) });
  const tally = (r: string[]) => r.reduce<Record<string, number>>((m, x) => { m[x] = (m[x] ?? 0) + 1; return m; }, {});
  t.log('before', tally(before));
  t.true(before.every((r) => /^node[012]$/.test(r)), `every connection answered: ${JSON.stringify(tally(before))}`);
  for (const n of ['node0', 'node1', 'node2']) t.true(Math.abs(tally(before)[n]! - 200) <= 40, `${n}: ${tally(before)[n]} of 600`);

  // SIGKILL node2: within 3 s, every new connection is served, by node0 or node1; the
  // connections node0 and node1 served before (same client ports) still go to them.
  const killedAt = Date.now();
  nodes[2]!.child.kill('SIGKILL');
  let after: string[] = [];
  await waitFor('all new connections served by the others', async () => {
    after = await runClient(lab.client, { vip, port: PORT, conns: conns(20_000, 600), timeoutMs: 500, parallel: 50 });
    return after.every((r) => r === 'node0' || r === 'node1');
  }, 5_000, 50);
  const recoveryMs = Date.now() - killedAt;
  t.log(`recovered in ${recoveryMs} ms`, tally(after));
  t.true(recoveryMs < 3000, `recovery took ${recoveryMs} ms`);
  for (let i = 0; i < 600; i++) if (before[i] !== 'node2') t.is(after[i], before[i], `client port ${20_000 + i} moved from ${before[i]} to ${after[i]}`);

  // Long-lived connections on node0/node1, then node2 comes back: none breaks, new ones reach it.
  const longChild = lab.client.spawnTs(fileURLToPath(new URL('../packages/farm-filter/test/helpers/long.ts', import.meta.url)), [JSON.stringify({ vip, port: PORT, n: 100, from: 30_000, everyMs: 50 })]);
  const longLines = jsonLines(longChild);
  await waitFor('long connections open', () => longLines.some((l) => l.open), 10_000);
  nodes[2] = await startNode(lab, 2, dir);
  await waitFor('node2 has its share again', () => lastShare(nodes[2]!) > 1000 && nodes.reduce((a, n) => a + lastShare(n), 0) === 4096, 10_000);
  const joined = await runClient(lab.client, { vip, port: PORT, conns: conns(20_000, 600) });
  t.log('after join', tally(joined));
  t.true(joined.every((r) => /^node[012]$/.test(r)), `every connection answered after the join: ${JSON.stringify(tally(joined))}`);
  t.true((tally(joined).node2 ?? 0) > 100, 'new connections reach the newcomer');
  await new Promise((r) => setTimeout(r, 500));
  longChild.stdin!.write('done\n');
  await waitFor('long connections report', () => longLines.some((l) => l.report), 10_000);
  const report = longLines.find((l) => l.report)!.report as { broken: number; ok: number };
  t.log('long-lived connections', report);
  t.is(report.broken, 0, 'no established connection broke when node2 joined');
  t.is(report.ok, 100);
});

test('[lab] farm: a node whose service stops is taken out by its tcp checker, and comes back', async (t) => {
  const lab = await createLab({ nodes: 3, client: true });
  const dir = mkdtempSync(join(tmpdir(), 'ha-farm-'));
  t.teardown(async () => { await lab.destroy(); rmSync(dir, { recursive: true, force: true }); });
  const vip = lab.vip(0);
  const nodes = [await startNode(lab, 0, dir, { check: true }), await startNode(lab, 1, dir, { check: true }), await startNode(lab, 2, dir, { check: true })];
  await waitFor('three shares', () => nodes.every((n) => lastShare(n) > 1000) && nodes.reduce((a, n) => a + lastShare(n), 0) === 4096, 10_000);
  nodes[1]!.child.stdin!.write(JSON.stringify({ service: 'down' }) + '\n');
  await waitFor('node1 in WAIT', () => nodes[1]!.lines.some((l) => l.event === 'state' && l.state === 'WAIT'), 5_000);
  await waitFor('node1 holds nothing, the others everything', () => lastShare(nodes[1]!) === 0 && lastShare(nodes[0]!) + lastShare(nodes[2]!) === 4096, 5_000);
  const r = await runClient(lab.client, { vip, port: PORT, conns: conns(21_000, 300) });
  t.true(r.every((x) => x === 'node0' || x === 'node2'), `all served by node0/node2: ${[...new Set(r)].join(', ')}`);
  nodes[1]!.child.stdin!.write(JSON.stringify({ service: 'up' }) + '\n');
  await waitFor('node1 UP with a share again', () => lastShare(nodes[1]!) > 1000, 10_000);
  t.true(nodes[1]!.lines.some((l) => l.event === 'state' && l.state === 'UP' && String(l.reason).includes('checker')));
});

test('[lab] farm: a node\'s link cut: the others take its buckets within the detection time, no other bucket moves; healed, it rejoins', async (t) => {
  const lab = await createLab({ nodes: 3, client: true });
  const dir = mkdtempSync(join(tmpdir(), 'ha-farm-'));
  t.teardown(async () => { await lab.destroy(); rmSync(dir, { recursive: true, force: true }); });
  const vip = lab.vip(0);
  const nodes = [await startNode(lab, 0, dir), await startNode(lab, 1, dir), await startNode(lab, 2, dir)];
  await waitFor('three even shares', () => nodes.every((n) => Math.abs(lastShare(n) - 4096 / 3) < 4096 / 3 * 0.15) && nodes.reduce((a, n) => a + lastShare(n), 0) === 4096, 10_000);
  const tally = (r: string[]) => r.reduce<Record<string, number>>((m, x) => { m[x] = (m[x] ?? 0) + 1; return m; }, {});
  const before = await runClient(lab.client, { vip, port: PORT, conns: conns(22_000, 300) });
  t.true(before.every((r) => /^node[012]$/.test(r)), JSON.stringify(tally(before)));

  const cutAt = Date.now();
  await lab.nodes[2]!.linkDown();
  let after: string[] = [];
  await waitFor('all new connections served by node0/node1', async () => {
    after = await runClient(lab.client, { vip, port: PORT, conns: conns(22_000, 300), timeoutMs: 500, parallel: 50 });
    return after.every((r) => r === 'node0' || r === 'node1');
  }, 5_000, 50);
  const recoveryMs = Date.now() - cutAt;
  t.log(`link cut: served by the others after ${recoveryMs} ms`, tally(after));
  t.true(recoveryMs < 3000, `took ${recoveryMs} ms`);
  t.is(lastShare(nodes[0]!) + lastShare(nodes[1]!), 4096, 'node0 and node1 hold every bucket');
  for (let i = 0; i < 300; i++) if (before[i] !== 'node2') t.is(after[i], before[i], `client port ${22_000 + i} moved from ${before[i]} to ${after[i]}`);

  await lab.nodes[2]!.linkUp();
  await waitFor('node2 rejoined with its share, every bucket held once', () => lastShare(nodes[2]!) > 1000 && lastShare(nodes[2]!) < 4096 && nodes.reduce((a, n) => a + lastShare(n), 0) === 4096, 15_000);
  const healed = await runClient(lab.client, { vip, port: PORT, conns: conns(22_000, 300) });
  t.log('healed', tally(healed));
  t.true(healed.every((r) => /^node[012]$/.test(r)), `every connection answered by one node: ${JSON.stringify(tally(healed))}`);
  t.true((tally(healed).node2 ?? 0) > 50, 'node2 serves again');
});
