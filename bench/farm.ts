/**
 * `npm run bench:farm [-- --quick]` (root): farm figures in the network-namespace lab.
 *
 * Three farm nodes (packages/farm-filter/test/helpers/farm-node.ts: a cluster with a farm module,
 * on_port, default failure-detection preset) share one VIP; a fourth namespace runs HAProxy (from
 * the system's packages, `mode tcp`, round robin) in front of the same three nodes; a client
 * namespace makes the load. Real TCP only, addresses in 198.18.0.0/15.
 *  - exactly one: N connections from distinct client ports; each must be answered, and the nodes'
 *    accept counters must add up to N (a connection accepted by two nodes counts against it);
 *    share deviation from these N.
 *  - throughput and latency: wrk (new connection per request: `Connection: close`) against the VIP,
 *    against node0's own address (direct, no load balancing), and through HAProxy.
 *  - recovery: a probe makes rounds of new connections; node2 is SIGKILLed; recovery is the time
 *    from the kill to the start of the first round after which every connection is served.
 *  - join: long-lived connections on node0/node1 while node2 starts again: how many break.
 *
 * The last line printed is one JSON object with the figures.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { createLab, jsonLines, labSkipReason, waitFor, type Lab } from '../test/lab/index.js';
import { runClient } from '../packages/farm-filter/test/helpers/lab.js';

const quick = process.argv.includes('--quick');
const CONNECTIONS = quick ? 600 : 3000;
const WRK_S = quick ? 5 : 10;
/** wrk rounds per target, in rotating order; the best round counts (the VM is shared and noisy). */
const WRK_ROUNDS = quick ? 2 : 3;
const TRIALS = quick ? 3 : 7;
const LONG = quick ? 100 : 300;
const PORT = 8080;
const HTTP_PORT = 8081;
const HELPERS = new URL('../packages/farm-filter/test/helpers/', import.meta.url);
const FARM_NODE = fileURLToPath(new URL('farm-node.ts', HELPERS));
const PROBE = fileURLToPath(new URL('probe.ts', HELPERS));
const LONG_TS = fileURLToPath(new URL('long.ts', HELPERS));
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

const reason = labSkipReason();
if (reason) { console.error(`bench:farm: ${reason}`); process.exit(1); }

interface FarmNode { child: ChildProcess; lines: Array<Record<string, unknown>> }

const lab = await createLab({ nodes: 4, client: true });
const dir = mkdtempSync(join(tmpdir(), 'ha-bench-farm-'));
const vip = lab.vip(0);
const farmIdx = [0, 1, 2];
const addresses = Object.fromEntries(farmIdx.map((i) => [`node${i}`, lab.nodes[i]!.ip]));
const nodes: Array<FarmNode | undefined> = [];

async function startNode(i: number): Promise<FarmNode> {
  const child = lab.nodes[i]!.spawnTs(FARM_NODE, [JSON.stringify({ node: `node${i}`, addresses, vip, port: PORT, httpPort: HTTP_PORT, stateDir: join(dir, `node${i}`) })]);
  const lines = jsonLines(child);
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-2000); });
  await waitFor(`node${i} ready (${err})`, () => lines.some((l) => l.ready), 30_000);
  const n = { child, lines };
  nodes[i] = n;
  return n;
}
const share = (n: FarmNode | undefined) => (n?.lines.filter((l) => l.event === 'share').at(-1)?.buckets as number | undefined) ?? 0;
const evenShares = () => waitFor('three even shares', () => farmIdx.every((i) => Math.abs(share(nodes[i]) - 4096 / 3) < 4096 / 3 * 0.15) && farmIdx.reduce((a, i) => a + share(nodes[i]), 0) === 4096, 15_000, 20);
async function accepted(n: FarmNode): Promise<number> {
  const before = n.lines.length;
  n.child.stdin!.write('{"count":true}\n');
  await waitFor('accept count', () => n.lines.slice(before).some((l) => 'accepted' in l), 5_000, 10);
  return n.lines.slice(before).find((l) => 'accepted' in l)!.accepted as number;
}

/** wrk with a new connection per request; requests/s, p99 (ms), errors. */
async function wrk(l: Lab, url: string): Promise<{ rps: number; p99: number; errors: number }> {
  const r = await l.client.exec('wrk', ['-t2', '-c32', `-d${WRK_S}s`, '--latency', '--timeout', '2s', '-H', 'Connection: close', url], { timeoutMs: (WRK_S + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const m = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(r.stdout);
  const p99 = m ? Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's']) : NaN;
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const errors = (se ? se.slice(1).reduce((a, x) => a + Number(x), 0) : 0) + Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (!Number.isFinite(rps)) throw new Error(`wrk ${url}: no figures:\n${r.stdout}\n${r.stderr}`);
  log(`wrk ${url}: ${rps} req/s, p99 ${p99} ms, ${errors} errors`);
  return { rps: Math.round(rps), p99: Math.round(p99 * 100) / 100, errors };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };

let result: Record<string, unknown> = {};
try {
  for (const i of farmIdx) await startNode(i);
  await evenShares();
  log('three nodes up with even shares');

  // Exactly one: distinct client ports.
  const acc0 = await Promise.all(farmIdx.map((i) => accepted(nodes[i]!)));
  const conns = Array.from({ length: CONNECTIONS }, (_, i) => ({ port: 20_000 + i }));
  const res = await runClient(lab.client, { vip, port: PORT, conns, parallel: 50 });
  const acc1 = await Promise.all(farmIdx.map((i) => accepted(nodes[i]!)));
  const acceptedTotal = acc1.reduce((a, x, i) => a + x - acc0[i]!, 0);
  const answered = res.filter((r) => /^node\d$/.test(r)).length;
  const exactlyOne = Math.max(0, answered - Math.max(0, acceptedTotal - answered));
  const counts = farmIdx.map((i) => res.filter((r) => r === `node${i}`).length);
  const even = CONNECTIONS / farmIdx.length;
  const maxDev = Math.max(...counts.map((c) => Math.abs(c - even) / even * 100));
  log(`exactly one: answered ${answered}/${CONNECTIONS}, accepted ${acceptedTotal}, per node ${counts.join('/')}`);

  // Throughput: direct, farm, HAProxy (in node3's namespace).
  const cfg = join(dir, 'haproxy.cfg');
  const hp = lab.nodes[3]!.ip;
  writeFileSync(cfg, `global
  maxconn 4000
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend farm
  bind ${hp}:${HTTP_PORT}
  default_backend nodes
backend nodes
  balance roundrobin
${farmIdx.map((i) => `  server node${i} ${lab.nodes[i]!.ip}:${HTTP_PORT}`).join('\n')}
`);
  const haproxy = lab.nodes[3]!.spawn('/usr/sbin/haproxy', ['-db', '-f', cfg]);
  let hpErr = '';
  haproxy.stderr?.setEncoding('utf8').on('data', (d: string) => { hpErr += d; });
  haproxy.stdout?.resume();
  await waitFor(`haproxy listening (${hpErr})`, async () => (await lab.client.exec('bash', ['-c', `exec 3<>/dev/tcp/${hp}/${HTTP_PORT}`], { allowFail: true })).code === 0, 10_000, 100);
  const targets = { direct: `http://${lab.nodes[0]!.ip}:${HTTP_PORT}/`, farm: `http://${vip}:${HTTP_PORT}/`, haproxy: `http://${hp}:${HTTP_PORT}/` };
  const samples: Record<keyof typeof targets, Array<{ rps: number; p99: number; errors: number }>> = { direct: [], farm: [], haproxy: [] };
  const order = Object.keys(targets) as Array<keyof typeof targets>;
  for (let r = 0; r < WRK_ROUNDS; r++) {
    for (let j = 0; j < order.length; j++) { const k = order[(r + j) % order.length]!; samples[k].push(await wrk(lab, targets[k])); }
  }
  const best = (k: keyof typeof targets) => ({ rps: Math.max(...samples[k].map((x) => x.rps)), p99: Math.min(...samples[k].map((x) => x.p99)), errors: samples[k].reduce((a, x) => a + x.errors, 0) });
  const [direct, farm, viaHaproxy] = [best('direct'), best('farm'), best('haproxy')];
  haproxy.kill('SIGTERM');

  // Recovery after SIGKILL of node2, several trials.
  const probe = lab.client.spawnTs(PROBE, [JSON.stringify({ vip, port: PORT, batch: 30, timeoutMs: 200 })]);
  const rounds = jsonLines(probe) as Array<{ t: number; ok: number; fail: number }>;
  await waitFor('probe running', () => rounds.length > 3, 10_000);
  const recoveries: number[] = [];
  for (let k = 0; k < TRIALS; k++) {
    const from = rounds.length;
    const killedAt = Date.now();
    nodes[2]!.child.kill('SIGKILL');
    nodes[2] = undefined;
    // Served again: 1 s of clean rounds after the last failure.
    await waitFor('all new connections served', () => {
      const after = rounds.slice(from).filter((r) => r.t >= killedAt);
      const lastFail = after.findLastIndex((r) => r.fail > 0);
      const tail = after.slice(lastFail + 1);
      return tail.length > 0 && tail.at(-1)!.t - tail[0]!.t >= 1000;
    }, 15_000, 20);
    const after = rounds.slice(from).filter((r) => r.t >= killedAt);
    const firstClean = after[after.findLastIndex((r) => r.fail > 0) + 1]!;
    recoveries.push(firstClean.t - killedAt);
    log(`trial ${k + 1}: recovered in ${firstClean.t - killedAt} ms (${after.filter((r) => r.fail > 0).length} rounds with failures)`);
    if (k < TRIALS - 1) { await startNode(2); await evenShares(); }
  }
  probe.stdin!.write('done\n');

  // Join: long-lived connections on node0/node1 while node2 comes back.
  const longChild = lab.client.spawnTs(LONG_TS, [JSON.stringify({ vip, port: PORT, n: LONG, from: 30_000, everyMs: 50 })]);
  const longLines = jsonLines(longChild);
  await waitFor('long connections open', () => longLines.some((l) => l.open), 15_000);
  await startNode(2);
  await evenShares();
  const joined = await runClient(lab.client, { vip, port: PORT, conns: Array.from({ length: 300 }, (_, i) => ({ port: 24_000 + i })), parallel: 50 });
  await new Promise((r) => setTimeout(r, 1000));
  longChild.stdin!.write('done\n');
  await waitFor('long connections report', () => longLines.some((l) => l.report), 10_000);
  const report = longLines.find((l) => l.report)!.report as { ok: number; broken: number };
  log(`join: ${report.broken} of ${LONG} long-lived connections broken; new connections after the join: node2 served ${joined.filter((r) => r === 'node2').length}/300`);

  const recovery = median(recoveries);
  result = {
    bench: 'farm', quick, nodes: farmIdx.length, connections: CONNECTIONS,
    answered_by_exactly_one_pct: Math.round(exactlyOne / CONNECTIONS * 10000) / 100,
    accepted_total: acceptedTotal,
    max_share_deviation_pct: Math.round(maxDev * 10) / 10,
    rps_farm: farm.rps, rps_direct: direct.rps, rps_haproxy: viaHaproxy.rps,
    p99_ms_farm: farm.p99, p99_ms_direct: direct.p99, p99_ms_haproxy: viaHaproxy.p99,
    wrk_errors: { farm: farm.errors, direct: direct.errors, haproxy: viaHaproxy.errors },
    wrk: { threads: 2, connections: 32, seconds: WRK_S, rounds: WRK_ROUNDS, figure: 'best round (max rps, min p99)', new_connection_per_request: true, rps_samples: Object.fromEntries(order.map((k) => [k, samples[k].map((x) => x.rps)])) },
    recovery_ms_p50: recovery, recovery_ms: recoveries,
    broken_on_join: report.broken, long_lived_connections: LONG,
    goal_exactly_one: exactlyOne === CONNECTIONS,
    goal_share_deviation: maxDev <= 20,
    goal_broken_on_join: report.broken === 0,
    goal_rps_vs_haproxy: farm.rps >= viaHaproxy.rps,
    goal_p99_vs_haproxy: farm.p99 <= viaHaproxy.p99,
    goal_recovery: recovery <= 1500,
  };
} finally {
  await lab.destroy();
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
