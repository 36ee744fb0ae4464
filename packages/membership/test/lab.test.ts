/**
 * [lab] tests: two nodes in their own network namespaces (test/lab), each running the member
 * fixture as a separate process.
 */
import { createLab, waitFor, jsonLines, type Lab, type LabHost } from '../../../test/lab/index.js';
import { labTest } from '../../../test/lab/ava.js';
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import type { MembershipInit } from '../src/index.js';
import { KEY, MEMBER_FIXTURE } from './helpers.js';

const PORT = 8888;

interface Running { child: ChildProcess; lines: Array<Record<string, unknown>>; cmd: (l: string) => void }

function startMember(host: LabHost, init: MembershipInit): Running {
  const child = host.spawnTs(MEMBER_FIXTURE, [JSON.stringify(init)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = jsonLines(child);
  return { child, lines, cmd: (l) => child.stdin!.write(l + '\n') };
}

async function pair(t: ExecutionContext, preset: MembershipInit['preset'] = 'default'): Promise<{ lab: Lab; m: Running[] }> {
  const lab = await createLab({ nodes: 2, client: false });
  t.teardown(() => lab.destroy());
  const addresses = { n0: lab.nodes[0]!.ip, n1: lab.nodes[1]!.ip };
  const m = (['n0', 'n1'] as const).map((nodeId, i) =>
    startMember(lab.nodes[i]!, { nodeId, key: KEY, preset, networks: [{ name: 'prod', port: PORT, addresses }] }));
  for (const [i, r] of m.entries()) {
    await waitFor(`n${i} sees its peer up`, () => r.lines.some((e) => e.event === 'member:up'), 15_000);
  }
  return { lab, m };
}

const has = (r: Running, event: string, pred: (e: Record<string, unknown>) => boolean = () => true) =>
  r.lines.some((e) => e.event === event && pred(e));

labTest('[lab] SIGKILL of a member process: the other reports member:down within 500 ms (default preset)', async (t) => {
  const { m } = await pair(t);
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  process.kill(m[1]!.child.pid!, 'SIGKILL');
  await waitFor('n0 reports n1 down', () => has(m[0]!, 'member:down'), 5000);
  const down = m[0]!.lines.find((e) => e.event === 'member:down')!;
  const took = (down.t as number) - t0;
  t.log(`SIGKILL -> member:down in ${took} ms (silentMs ${String(down.silentMs)})`);
  t.is(down.reason, 'timeout');
  t.true(took < 1500, `${took} ms`);
});

labTest('[lab] fast preset: SIGKILL detected in about 100 ms', async (t) => {
  const { m } = await pair(t, 'fast');
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  process.kill(m[1]!.child.pid!, 'SIGKILL');
  await waitFor('n0 reports n1 down', () => has(m[0]!, 'member:down'), 5000);
  const took = (m[0]!.lines.find((e) => e.event === 'member:down')!.t as number) - t0;
  t.log(`fast preset: SIGKILL -> member:down in ${took} ms`);
  t.true(took < 1000, `${took} ms`);
  t.false(has(m[0]!, 'member:down', (e) => e.t as number < t0), 'no false down before the kill');
});

labTest('[lab] link cut: the cut node reports local:isolated and accuses no one; the other declares it down; both recover', async (t) => {
  const { lab, m } = await pair(t);
  await lab.nodes[0]!.linkDown();
  await waitFor('n0 isolated', () => has(m[0]!, 'local:isolated'), 5000);
  await waitFor('n1 sees n0 down', () => has(m[1]!, 'member:down', (e) => e.id === 'n0'), 5000);
  await new Promise((r) => setTimeout(r, 800));
  t.false(has(m[0]!, 'member:down'), 'the isolated node did not accuse its peer');
  await lab.nodes[0]!.linkUp();
  await waitFor('n0 recovered', () => has(m[0]!, 'local:recovered'), 5000);
  await waitFor('n1 sees n0 up again', () => m[1]!.lines.filter((e) => e.event === 'member:up').length === 2, 5000);
  await new Promise((r) => setTimeout(r, 500));
  t.false(has(m[0]!, 'member:down'), 'still no accusation after recovery');
});

labTest('[lab] CPU saturated (4 hogs on 2 cores) and the application blocking its event loop 500 ms at a time: no false down (default preset)', async (t) => {
  const { lab, m } = await pair(t);
  const hog = lab.nodes[0]!.spawn('stress-ng', ['--cpu', '4', '--timeout', '30s', '--quiet'], { stdio: 'ignore' });
  t.teardown(() => { if (hog.exitCode === null && hog.pid) { try { process.kill(hog.pid, 'SIGKILL'); } catch { /* gone */ } } });
  await new Promise((r) => setTimeout(r, 500));
  const end = Date.now() + 10_000;
  let blocks = 0;
  while (Date.now() < end) {
    for (const r of m) r.cmd('block 500');
    blocks++;
    await new Promise((r) => setTimeout(r, 600));
  }
  await new Promise((r) => setTimeout(r, 500));
  const downs = m.flatMap((r, i) => r.lines.filter((e) => e.event === 'member:down').map((e) => ({ node: i, ...e })));
  t.log(`${blocks} blocks of 500 ms on both nodes under CPU load: ${downs.length} member:down`);
  t.deepEqual(downs, []);
  for (const r of m) t.true(r.lines.filter((e) => e.event === 'unblocked').length >= blocks - 1, 'the application really blocked');
});
