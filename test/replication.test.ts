/**
 * Mirror with file replication, end to end in the lab: two nodes (each with its own copy of the
 * replicated directory, seen at the same path through a private bind mount), the embedded example
 * appending numbered records with an fdatasync each; the primary is SIGKILLed mid-stream.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { MirrorPair } from './lab/mirror-pair.js';
import { controlRequest, type ClusterStatus } from '../packages/cluster/src/index.js';
import { treeHash } from './lab/tree.js';

const test = labTest;


test.serial('[lab] replication: every record acknowledged before SIGKILL of the primary is on the new primary; the returning node ends byte-identical', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ha-repl-'));
  const data = join(root, 'data'); // the replicated path, the same on both nodes
  const copies = [join(root, 'node0'), join(root, 'node1')];
  for (const d of [data, ...copies]) mkdirSync(d, { recursive: true });
  // Enough records that the writer is still running when the primary is killed, even on a slow machine.
  const pair = await MirrorPair.create({ args: ['--data', data, '--writer', '5000', '--writer-every', '5'] });
  t.teardown(async () => { await pair.destroy(); rmSync(root, { recursive: true, force: true }); });
  const socks = [join(root, 'ctl0.sock'), join(root, 'ctl1.sock')];
  const start = (i: number) => pair.start(i, ['--socket', socks[i]!], { binds: [[copies[i]!, data]] });
  start(0); start(1);
  const { prim, second } = await pair.waitPrimSecond(60_000);
  const acked = () => Math.max(0, ...pair.procs[prim]!.events.filter((e) => e.ev === 'acked').map((e) => e.n as number));
  await waitFor('300 acknowledged records', () => acked() >= 300, 60_000);
  await pair.kill(prim);
  const lastAcked = acked();
  t.true(lastAcked < 5000, 'the primary was killed while the application was writing');
  await pair.waitState(second, 'ALONE', 10_000);
  const lines = readFileSync(join(copies[second]!, 'records.log'), 'utf8').split('\n').filter(Boolean);
  const numbers = lines.map((l) => Number(/^record (\d+)/.exec(l)?.[1]));
  t.log(`primary killed after ${lastAcked} acknowledged records; the new primary's copy had ${numbers.length}`);
  const missing: number[] = [];
  for (let n = 1; n <= lastAcked; n++) if (numbers[n - 1] !== n) missing.push(n);
  t.deepEqual(missing.slice(0, 10), [], 'no acknowledged record lost, none out of order');

  // The killed node returns: it becomes SECOND, is reintegrated while the writer goes on, then the
  // copies are byte-identical once the writer has finished.
  start(prim);
  await waitFor('returning node Ready', () => pair.secondReady(prim), 60_000);
  await waitFor('the writer to finish', () => pair.procs[second]!.events.some((e) => e.ev === 'writer:done'), 240_000);
  await new Promise((r) => setTimeout(r, 500));
  t.deepEqual(treeHash(copies[prim]!), treeHash(copies[second]!));

  // `ha state` shows the replication of the directory; `ha verify` (the control socket's verify)
  // compares both copies by block checksums and finds no difference.
  const st = await controlRequest(socks[second]!, { cmd: 'state' }) as ClusterStatus;
  const repl = st.modules[0]!.replication as Array<{ dir: string; role: string }> | undefined;
  t.is(repl?.[0]?.dir, data);
  t.is(repl?.[0]?.role, 'primary');
  const reports = await controlRequest(socks[second]!, { cmd: 'verify' }, 120_000) as Array<{ differences: unknown[]; entries: number }>;
  t.is(reports.length, 1);
  t.deepEqual(reports[0]!.differences, [], 'verify: the copies do not differ');
  t.true(reports[0]!.entries >= 1);
  // On the secondary, verify is refused with a clear reason.
  await t.throwsAsync(controlRequest(socks[prim]!, { cmd: 'verify' }), { message: /run verify on the primary/ });
});
