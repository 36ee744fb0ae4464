/**
 * The real daemon (`ha run`) with the stock farm.userconfig.xml (VIP and port filled in) and
 * start_both / stop_both scripts on three lab nodes; and one daemon per node running a mirror module
 * (examples/userconfig-module) and a farm module side by side, each with its own VIP.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { controlRequest, type ClusterStatus } from '@ha/cluster';
import { createLab, REPO_ROOT, waitFor, type Lab } from './lab/index.js';
import { labTest } from './lab/ava.js';
import { addClientAddresses, runClient } from '../packages/farm-filter/test/helpers/lab.js';

const test = labTest.serial;
const BIN = join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts');
const FARM_XML = join(REPO_ROOT, 'packages', 'cluster', 'test', 'fixtures', 'farm.userconfig.xml');
const EXAMPLE = join(REPO_ROOT, 'examples', 'userconfig-module');
const PORT = 9090;

const SERVER = `import net from 'node:net';
const [node, port] = process.argv.slice(2);
const server = net.createServer((s) => { s.on('error', () => {}); s.end(node + '\\n'); });
server.listen(Number(port), '0.0.0.0');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;
const START = `#!/bin/sh
echo "Running start_both $* on $HA_NODE (module $HA_MODULE, vip $HA_VIP)"
here=$(cd "$(dirname "$0")/.." && pwd)
state=\${HA_APP_STATE:-/tmp/ha-app-$HA_NODE}
mkdir -p "$state"
node "$here/app/tcp.mjs" "$HA_NODE" ${PORT} &
echo $! > "$state/farm.pid"
`;
const STOP = `#!/bin/sh
echo "Running stop_both $*"
state=\${HA_APP_STATE:-/tmp/ha-app-$HA_NODE}
[ -f "$state/farm.pid" ] || exit 0
kill -KILL "$(cat "$state/farm.pid")" 2>/dev/null
rm -f "$state/farm.pid"
exit 0
`;

/** A farm module directory: the stock userconfig.xml with `vip` and PORT, bin/start_both, bin/stop_both, app/tcp.mjs. */
function farmModule(dir: string, vip: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'app'));
  writeFileSync(join(dir, 'userconfig.xml'), readFileSync(FARM_XML, 'utf8').replaceAll('VIRTUAL_IP_ADDR_TO_BE_DEFINED', vip).replaceAll('TCP_PORT_TO_BE_DEFINED', String(PORT)));
  writeFileSync(join(dir, 'app', 'tcp.mjs'), SERVER);
  writeFileSync(join(dir, 'bin', 'start_both'), START); chmodSync(join(dir, 'bin', 'start_both'), 0o755);
  writeFileSync(join(dir, 'bin', 'stop_both'), STOP); chmodSync(join(dir, 'bin', 'stop_both'), 0o755);
  return join(dir, 'userconfig.xml');
}

function files(lab: Lab, dir: string) {
  writeFileSync(join(dir, 'cluster.xml'), `<cluster name="farm-daemon" port="8888"><lans><lan name="default">
${lab.nodes.map((n, i) => `  <node name="node${i}" addr="${n.ip}"/>`).join('\n')}
</lan></lans></cluster>
`);
  writeFileSync(join(dir, 'cluster.key'), randomBytes(24).toString('hex') + '\n', { mode: 0o600 });
  return { cluster: join(dir, 'cluster.xml'), key: join(dir, 'cluster.key'), socket: (i: number) => join(dir, `node${i}`, 'ha.sock') };
}

function daemon(lab: Lab, i: number, dir: string, f: ReturnType<typeof files>, configs: string[]): { child: ChildProcess; stderr: () => string } {
  const child = lab.nodes[i]!.spawnTs(BIN, [
    'run', '--cluster', f.cluster, ...configs.flatMap((c) => ['--config', c]), '--node', `node${i}`, '--key-file', f.key,
    '--state-dir', join(dir, `node${i}`, 'state'), '--socket', f.socket(i), '--json',
  ], { env: { ...process.env, HA_APP_STATE: join(dir, `node${i}`, 'app') } });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-5000); });
  child.stdout!.resume();
  return { child, stderr: () => err };
}

const status = (socket: string) => controlRequest(socket, { cmd: 'state' }, 5000).then((s) => s as ClusterStatus, () => undefined);
const tally = (r: string[]) => r.reduce<Record<string, number>>((m, x) => { m[x] = (m[x] ?? 0) + 1; return m; }, {});

test('[lab] ha run with the stock farm.userconfig.xml on three nodes: every node UP with a third of the buckets; each client address served by exactly one node', async (t) => {
  const lab = await createLab({ nodes: 3, client: true });
  const dir = mkdtempSync(join(tmpdir(), 'ha-farm-daemon-'));
  t.teardown(async () => { await lab.destroy(); rmSync(dir, { recursive: true, force: true }); });
  const vip = lab.vip(0);
  const config = farmModule(join(dir, 'farm'), vip);
  const f = files(lab, dir);
  const ds = [0, 1, 2].map((i) => daemon(lab, i, dir, f, [config]));
  await waitFor(`three farm nodes UP sharing every bucket (${ds.map((d) => d.stderr()).join(' | ')})`, async () => {
    const sts = await Promise.all([0, 1, 2].map((i) => status(f.socket(i))));
    return sts.every((s) => s?.farms?.[0]?.state === 'UP') && sts.reduce((a, s) => a + (s?.farms?.[0]?.buckets ?? 0), 0) === 4096
      && sts.every((s) => s!.farms![0]!.buckets > 1000);
  }, 30_000, 200);

  // `ha state -m farm` shows every node's share.
  const st = await lab.nodes[0]!.exec(process.execPath, ['--conditions=development', '--import', 'tsx', BIN, 'state', '-m', 'farm', '--socket', f.socket(0)], { allowFail: true, timeoutMs: 60_000 });
  t.is(st.code, 0, st.stderr);
  t.log(st.stdout);
  t.regex(st.stdout, /module farm \(farm\) on node0: UP/);
  for (const n of ['node0', 'node1', 'node2']) t.regex(st.stdout, new RegExp(`${n} +UP +\\d+ buckets, 3\\d(\\.\\d)?%`));

  // on_addr: 40 client addresses, 3 connections each; every connection answered, one node per address.
  const addrs = await addClientAddresses(lab.client, 40);
  const conns = addrs.flatMap((addr) => [{ addr }, { addr }, { addr }]);
  const r = await runClient(lab.client, { vip, port: PORT, conns });
  t.log(tally(r));
  t.true(r.every((x) => /^node[012]$/.test(x)), JSON.stringify(tally(r)));
  for (let i = 0; i < addrs.length; i++) t.true(r[3 * i] === r[3 * i + 1] && r[3 * i] === r[3 * i + 2], `${addrs[i]} went to ${r.slice(3 * i, 3 * i + 3).join(', ')}`);
  t.is(Object.keys(tally(r)).length, 3, 'all three nodes serve');
});

test('[lab] one daemon runs a mirror module and a farm module, each with its own VIP', async (t) => {
  const lab = await createLab({ nodes: 2, client: true });
  const dir = mkdtempSync(join(tmpdir(), 'ha-farm-mirror-'));
  t.teardown(async () => { await lab.destroy(); rmSync(dir, { recursive: true, force: true }); });
  const mirrorVip = lab.vip(0);
  const farmVip = lab.vip(1);
  const m = join(dir, 'mirror');
  mkdirSync(join(m, 'bin'), { recursive: true }); mkdirSync(join(m, 'app'));
  for (const s of ['start_prim', 'stop_prim']) { copyFileSync(join(EXAMPLE, 'bin', s), join(m, 'bin', s)); chmodSync(join(m, 'bin', s), 0o755); }
  copyFileSync(join(EXAMPLE, 'app', 'server.mjs'), join(m, 'app', 'server.mjs'));
  writeFileSync(join(m, 'userconfig.xml'), readFileSync(join(EXAMPLE, 'userconfig.xml'), 'utf8').replace('addr="198.18.0.100"', `addr="${mirrorVip}"`));
  const farmConfig = farmModule(join(dir, 'farm'), farmVip);
  const f = files(lab, dir);
  const ds = [0, 1].map((i) => daemon(lab, i, dir, f, [join(m, 'userconfig.xml'), farmConfig]));
  await waitFor(`PRIM + SECOND and both farm nodes UP (${ds.map((d) => d.stderr()).join(' | ')})`, async () => {
    const sts = await Promise.all([0, 1].map((i) => status(f.socket(i))));
    const roles = sts.map((s) => s?.modules[0]?.state).sort().join();
    return roles === 'PRIM,SECOND' && sts.every((s) => s?.farms?.[0]?.state === 'UP' && s.farms[0].buckets > 0);
  }, 30_000, 200);
  const sts = (await Promise.all([0, 1].map((i) => status(f.socket(i)))))!;
  const prim = sts.findIndex((s) => s?.modules[0]?.state === 'PRIM');
  t.deepEqual(sts.map((s) => s?.farms?.[0]?.module), ['farm', 'farm']);
  t.is(sts[0]!.farms![0]!.buckets + sts[1]!.farms![0]!.buckets, 4096);

  // The mirror's VIP on the primary only; the farm's VIP on both.
  const addrs = await Promise.all([0, 1].map((i) => lab.nodes[i]!.addresses()));
  t.true(addrs[prim]!.includes(mirrorVip));
  t.false(addrs[1 - prim]!.includes(mirrorVip));
  t.true(addrs.every((a) => a.includes(farmVip)));

  // The mirror's application answers on its VIP; the farm's on its own, from both nodes.
  const get = `require('http').get({host:${JSON.stringify(mirrorVip)},port:8080,agent:false,timeout:1500},(res)=>{let b='';res.on('data',(d)=>b+=d);res.on('end',()=>{process.stdout.write(b);process.exit(0)})}).on('error',()=>process.exit(2));`;
  let body = '';
  await waitFor('the mirror application answers on its VIP', async () => { const r = await lab.client.exec(process.execPath, ['-e', get], { allowFail: true, timeoutMs: 10_000 }); body = r.stdout; return r.code === 0; }, 15_000, 200);
  t.is((JSON.parse(body) as { node: string }).node, `node${prim}`);
  const clients = await addClientAddresses(lab.client, 20);
  const r = await runClient(lab.client, { vip: farmVip, port: PORT, conns: clients.map((addr) => ({ addr })) });
  t.log(tally(r));
  t.true(r.every((x) => x === 'node0' || x === 'node1'), JSON.stringify(tally(r)));
  t.is(Object.keys(tally(r)).length, 2, 'both nodes serve the farm');

  // Control commands reach the named module: stopping the farm on one node leaves the mirror as it was.
  const stop = await controlRequest(f.socket(1 - prim), { cmd: 'stop', module: 'farm' }, 30_000) as ClusterStatus;
  t.is(stop.farms?.[0]?.state, 'STOP');
  t.is(stop.modules[0]?.state, 'SECOND');
});
