/**
 * Lab tests of the VIP: real namespaces, real `ip` and `arping`, agents (test/fixtures/vip-agent.ts)
 * running inside the node namespaces. Need root; skipped with a visible reason otherwise.
 */
import { readFileSync } from 'node:fs';
import { createLab, waitFor } from '../../../test/lab/index.js';
import { labTest } from '../../../test/lab/ava.js';
import { Agent, clientNeigh, hasAddr, tcpHello } from './helpers.js';

const test = labTest.serial;

test('[lab] acquire makes the VIP reachable, release removes it, takeover updates the client ARP cache by gratuitous ARP', async (t) => {
  const lab = await createLab({ nodes: 2, client: true });
  t.teardown(() => lab.destroy());
  const V = lab.vip(0);
  const [n0, n1] = [lab.nodes[0]!, lab.nodes[1]!];
  const a0 = new Agent(n0, { vip: { address: V }, name: 'node0' });
  const a1 = new Agent(n1, { vip: { address: V }, name: 'node1' });
  await Promise.all([a0.ready(), a1.ready()]);
  t.deepEqual(await a0.do('start'), { interface: 'eth0', prefix: 24 });
  await a1.do('start');
  await a0.do('serve', { port: 7000 });
  await a1.do('serve', { port: 7000 });

  t.is(await tcpHello(lab.client, V), undefined, 'nobody holds the VIP yet');
  await a0.do('acquire');
  t.true(await hasAddr(n0, V));
  t.true(await a0.do('held') as boolean);
  const acquired = a0.events('vip:acquired')[0]!;
  t.is(acquired.interface, 'eth0');
  t.log(`node0 acquired: probe ${String(acquired.probeMs)} ms, add ${String(acquired.addMs)} ms`);
  t.is(await tcpHello(lab.client, V), 'node0');
  const mac0 = await n0.mac();
  const mac1 = await n1.mac();
  t.is(await clientNeigh(lab.client, V), mac0);

  // Release: gone from the node and unreachable.
  await a0.do('release');
  t.false(await hasAddr(n0, V));
  t.false(await a0.do('held') as boolean);
  t.is(a0.events('vip:released').length, 1);
  await a0.do('release'); // idempotent
  t.false(await hasAddr(n0, V));

  // Control: a takeover WITHOUT gratuitous ARP leaves the client's cache on node0's MAC.
  const quiet = new Agent(n1, { vip: { address: V, garpCount: 0 } });
  await quiet.ready();
  await quiet.do('start');
  await a0.do('acquire');
  t.is(await tcpHello(lab.client, V), 'node0');
  await n0.exec('ip', ['addr', 'del', `${V}/24`, 'dev', 'eth0']);
  await quiet.do('acquire');
  t.is(await clientNeigh(lab.client, V), mac0, 'without gratuitous ARP the client still points at node0');
  await quiet.do('stop');
  await a0.do('release');

  // node0 holds it again, the client talks to it (fresh ARP entry, inside the 1 s locktime) ...
  await a0.do('acquire');
  t.is(await tcpHello(lab.client, V), 'node0');
  t.is(await clientNeigh(lab.client, V), mac0);
  // ... then node0 "dies" (its VIP is removed behind the agent's back) and node1 takes over.
  await n0.exec('ip', ['addr', 'del', `${V}/24`, 'dev', 'eth0']);
  await a1.do('acquire');
  // The client has sent nothing since: only the gratuitous ARP can have changed its cache.
  const after = await clientNeigh(lab.client, V);
  t.is(after, mac1, `client cache must point at node1 (${mac1}) right after the takeover, not node0 (${mac0})`);
  t.is(await tcpHello(lab.client, V), 'node1');
  await a1.do('stop');
  t.false(await hasAddr(n1, V));
});

test('[lab] conflict: the VIP is not added while another host answers for it; acquired once it is released', async (t) => {
  const lab = await createLab({ nodes: 2, client: false });
  t.teardown(() => lab.destroy());
  const V = lab.vip(1);
  const [n0, n1] = [lab.nodes[0]!, lab.nodes[1]!];
  const a0 = new Agent(n0, { vip: { address: V } });
  const a1 = new Agent(n1, { vip: { address: V, retryIntervalMs: 200 } });
  await Promise.all([a0.ready(), a1.ready()]);
  await a0.do('start');
  await a1.do('start');
  await a0.do('acquire');
  const mac0 = await n0.mac();

  const pending = a1.call('acquire', {}, 60_000);
  await a1.waitLine('two conflicts', () => a1.events('vip:conflict').length >= 2);
  const conflict = a1.events('vip:conflict')[0]!;
  t.is(conflict.by, mac0, 'the conflict names the MAC that answered');
  t.is(conflict.address, V);
  t.false(await hasAddr(n1, V), 'node1 must not add an address another host answers for');
  const why = a1.logs('vip:conflict')[0]!;
  t.is(why.level, 'warn');
  t.regex(String(why.msg), new RegExp(`not adding VIP ${V.replace(/\./g, '\\.')} on eth0: host ${mac0} answers for it`));

  await a0.do('release');
  const r = await pending;
  t.true(r.ok, JSON.stringify(r.error));
  t.true(await hasAddr(n1, V));
  t.false(await hasAddr(n0, V));
  t.is(a1.events('vip:acquired').length, 1);
  t.log(`node1 saw ${a1.events('vip:conflict').length} conflicts before acquiring`);
  await a1.do('stop');
});

test('[lab] config errors: not IPv4, no such interface, outside the subnet', async (t) => {
  const lab = await createLab({ nodes: 1, client: false });
  t.teardown(() => lab.destroy());
  const n0 = lab.nodes[0]!;

  const bad = new Agent(n0, { vip: { address: '198.18.0.300' } });
  const fatal = await bad.ready();
  t.is(fatal.type, 'fatal');
  t.like(fatal.error as object, { code: 'ERR_VIP_INVALID_ADDRESS' });
  t.regex((fatal.error as { message: string }).message, /"198\.18\.0\.300" part 4 is 300, above 255/);

  const cases: Array<[object, string, RegExp]> = [
    [{ address: lab.vip(0), interface: 'eth7' }, 'ERR_VIP_NO_SUCH_INTERFACE', /no such interface "eth7" on this node \(interfaces: lo, eth0\)/],
    [{ address: '198.51.100.10' }, 'ERR_VIP_NOT_IN_SUBNET', /198\.51\.100\.10: no interface of this node has a subnet containing it \(subnets: 127\.0\.0\.0\/8 on lo, 198\.18\.0\.0\/24 on eth0\)/],
    [{ address: '198.51.100.10', interface: 'eth0' }, 'ERR_VIP_NOT_IN_SUBNET', /outside the subnets of interface eth0 \(198\.18\.0\.0\/24\)/],
    [{ address: n0.ip }, 'ERR_VIP_LOCAL_ADDRESS', /already configured on eth0/],
  ];
  for (const [cfg, code, re] of cases) {
    const a = new Agent(n0, { vip: cfg as { address: string } });
    t.is((await a.ready()).type, 'ready');
    const r = await a.call('start');
    t.false(r.ok);
    t.is(r.error?.code, code, JSON.stringify(cfg));
    t.regex(r.error?.message ?? '', re);
  }
  t.deepEqual(await n0.addresses(), [n0.ip], 'nothing was added');
});

test('[lab] start removes a stale copy of the VIP left by a crashed run', async (t) => {
  const lab = await createLab({ nodes: 1, client: false });
  t.teardown(() => lab.destroy());
  const n0 = lab.nodes[0]!;
  const V = lab.vip(2);
  await n0.exec('ip', ['addr', 'add', `${V}/24`, 'dev', 'eth0', 'label', 'eth0:ha']);
  const a = new Agent(n0, { vip: { address: V } });
  await a.ready();
  await a.do('start');
  t.false(await hasAddr(n0, V));
  t.is(a.logs('vip:stale-removed').length, 1);
  await a.do('stop');
});

test('[lab] lifeline: SIGKILL of the holder removes the VIP and kills the application within 1 s; a clean stop leaves nothing to undo', async (t) => {
  const lab = await createLab({ nodes: 1, client: false });
  t.teardown(() => lab.destroy());
  const n0 = lab.nodes[0]!;
  const V = lab.vip(3);
  const logFile = `/tmp/ha-vip-lifeline-${process.pid}-${Date.now()}.log`;
  const a = new Agent(n0, { vip: { address: V }, lifeline: { logFile } });
  await a.ready();
  const started = await a.do('start') as { lifelinePid: number };
  t.true(started.lifelinePid > 0);
  await a.do('acquire');
  const { pid: appPid } = await a.do('spawnApp') as { pid: number };
  const marker = `${logFile}.ondeath`;
  // The "stop script": records whether the VIP was already gone when it ran.
  await a.do('onDeath', { cmd: '/bin/sh', args: ['-c', `ip -4 -o addr show dev eth0 | grep -c ' ${V}/' >> ${marker}; echo force >> ${marker}`] });
  t.true(await hasAddr(n0, V));
  t.true(alive(appPid));
  await new Promise((r) => setTimeout(r, 100)); // let the lifeline read its state (it is a pipe: it would read it anyway)

  const t0 = performance.now();
  process.kill(a.pid, 'SIGKILL');
  await waitFor('VIP removed and application killed', async () => !(await hasAddr(n0, V)) && !alive(appPid), 5000, 5);
  const ms = performance.now() - t0;
  t.log(`VIP gone and application dead ${ms.toFixed(0)} ms after SIGKILL`);
  t.true(ms < 1000, `took ${ms.toFixed(0)} ms`);
  await waitFor('lifeline exit', () => !alive(started.lifelinePid), 5000);
  const { readFileSync, rmSync } = await import('node:fs');
  const entries = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; msg: string });
  t.log(entries.map((e) => `${e.event}: ${e.msg}`).join('\n'));
  t.true(entries.some((e) => e.event === 'lifeline:vip-removed'));
  t.true(entries.some((e) => e.event === 'lifeline:kill' && e.msg.includes(`group ${appPid}: killed`)));
  t.true(entries.some((e) => e.event === 'lifeline:command' && /exit 0/.test(e.msg)));
  t.deepEqual(entries.map((e) => e.event).filter((e) => e !== 'lifeline:ready'),
    ['lifeline:parent-died', 'lifeline:vip-removed', 'lifeline:command', 'lifeline:kill', 'lifeline:done'], 'VIP first, then the command, then the kill');
  t.is(readFileSync(marker, 'utf8'), '0\nforce\n', 'the onDeath command ran after the VIP was removed');
  rmSync(logFile, { force: true });
  rmSync(marker, { force: true });

  // Clean stop: the lifeline exits and leaves the (separately started) application alone.
  const b = new Agent(n0, { vip: { address: V }, lifeline: { logFile } });
  await b.ready();
  const s2 = await b.do('start') as { lifelinePid: number };
  const { pid: app2 } = await b.do('spawnApp') as { pid: number };
  await b.do('acquire');
  await b.do('stop');
  await waitFor('lifeline exit after clean stop', () => !alive(s2.lifelinePid), 5000);
  t.false(await hasAddr(n0, V), 'stop released the VIP');
  process.kill(b.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  t.true(alive(app2), 'the lifeline was told bye: it must not kill anything');
  const log2 = readFileSync(logFile, 'utf8');
  t.regex(log2, /lifeline:bye/);
  t.notRegex(log2, /lifeline:parent-died/);
  process.kill(-app2, 'SIGKILL');
  rmSync(logFile, { force: true });
});

function alive(pid: number): boolean {
  try { process.kill(pid, 0); } catch { return false; }
  // A zombie (killed, not yet reaped by its parent) counts as dead.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch { return false; }
}
