/**
 * Lab test of a split brain without a witness, with file replication: the link between the two
 * nodes is cut (blackhole routes inside their namespaces), both nodes serve ALONE and each writes a
 * different file into the replicated directory (through its own FUSE interceptor); healed, the
 * election (decide.ts) stops one deterministically, the loser
 * becomes SECOND with data identical to the primary's, and the file it wrote while alone is kept
 * in <stateDir>/diverged/<timestamp>/0/ and named in the module log and the `replica:diverged` event.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { CheckerPair } from './checkers-pair.js';
import { treeHash } from './lab/tree.js';

const run = promisify(execFile);


labTest('[lab] split brain without witness: both serve; heal: the loser resynchronises, its divergent file is kept aside and reported', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  const data = join(pair.dir, 'data'); // the replicated path, the same on both nodes
  const copies = [join(pair.dir, 'copy0'), join(pair.dir, 'copy1')];
  for (const d of [data, ...copies]) mkdirSync(d, { recursive: true });
  const start = (i: number, extra: string[] = []) => pair.start(i, ['--data', data, ...extra], { binds: [[copies[i]!, data]] });
  // Writes through node i's own view of the replicated directory (its mount namespace: the interceptor).
  const write = (i: number, name: string, text: string) =>
    run('nsenter', ['-t', String(pair.procs[i]!.child.pid), '-m', 'sh', '-c', `printf '%s' '${text}' > '${join(data, name)}'`]);

  start(0, ['--prim']);
  await pair.waitState(0, 'ALONE');
  await write(0, 'before.txt', 'written before the split');
  start(1);
  await pair.waitPrimSecond(60_000);
  await waitFor('node1 ready', () => pair.events(1, 'state').at(-1)?.ready === true, 60_000);

  // A real cut: no IP traffic between the nodes and no ARP either (else each side's VIP duplicate
  // probe sees the other holding the VIP and refuses to take it).
  const arp = (on: boolean) => Promise.all(pair.lab.nodes.map((n) => n.exec('ip', ['link', 'set', n.iface, 'arp', on ? 'on' : 'off'])));
  await arp(false);
  await pair.partition(true);
  await pair.waitState(1, 'ALONE', 30_000);
  await pair.waitState(0, 'ALONE', 30_000);
  await waitFor('node1 holds the VIP', async () => (await pair.lab.nodes[1]!.exec('ip', ['-4', 'addr'])).stdout.includes(pair.lab.vip(0) + '/'), 20_000, 200);
  // node1's interceptor is mounted once its data plane has started as primary (the state change
  // comes first; the application starts after it): a write made before would not be intercepted.
  await waitFor('node1 intercepts writes', () => pair.events(1, 'log').some((l) => l.event === 'rfs:primary'), 30_000);
  await write(0, 'from-node0.txt', 'node0 wrote this while alone');
  await write(1, 'from-node1.txt', 'node1 wrote this while alone');
  t.true(existsSync(join(copies[0]!, 'from-node0.txt')));
  t.false(existsSync(join(copies[1]!, 'from-node0.txt')), 'no replication during the split');

  // Heal: the election (decide.ts electPrimary: here node0, started with a forced `prim`) keeps
  // one primary; the other stops its application and becomes its secondary.
  await pair.partition(false);
  await arp(true);
  t.teardown(() => { for (const i of [0, 1]) t.log(`node${i}`, JSON.stringify(pair.events(i).filter((e) => e.ev !== 'resource').slice(-12).map((e) => e.msg ?? e.ev + ' ' + (e.state ?? '')))); });
  await waitFor('PRIM and a ready SECOND', () => [0, 1].some((i) => pair.state(i) === 'PRIM' && pair.state(1 - i) === 'SECOND' && pair.events(1 - i, 'state').at(-1)?.ready === true), 60_000);
  const winner = pair.state(0) === 'PRIM' ? 0 : 1;
  const loser = 1 - winner;
  t.log(`node${winner} kept the primary role; node${loser} was resynchronised`);
  const mine = `from-node${loser}.txt`;
  const theirs = `from-node${winner}.txt`;

  // Identical data: the loser's file is gone from its copy, the winner's arrived.
  t.deepEqual(treeHash(copies[0]!), treeHash(copies[1]!));
  t.true(existsSync(join(copies[loser]!, theirs)));
  t.false(existsSync(join(copies[loser]!, mine)));

  // The loser's divergent file is kept aside and reported.
  const ev = pair.events(loser, 'replica:diverged');
  t.is(ev.length, 1, 'one replica:diverged event');
  const e = ev[0]!;
  t.true((e.files as string[]).includes(mine), `event names the file: ${JSON.stringify(e)}`);
  t.false((e.files as string[]).includes(theirs));
  const keptIn = e.keptIn as string;
  t.true(keptIn.startsWith(join(pair.dir, `node${loser}`, 'web', 'data', 'diverged') + '/'), `kept under the loser's state dir: ${keptIn}`);
  t.is(readFileSync(join(keptIn, mine), 'utf8'), `node${loser} wrote this while alone`);
  const manifest = JSON.parse(readFileSync(join(keptIn, '..', 'manifest.json'), 'utf8')) as { dirs: Array<{ dir: string; files: Array<{ path: string; kind: string }> }> };
  t.is(manifest.dirs[0]!.dir, data);
  t.true(manifest.dirs[0]!.files.some((f) => f.path === mine && f.kind === 'file'));
  const log = pair.events(loser, 'log').filter((l) => l.event === 'replica:diverged');
  t.true(log.some((l) => String(l.msg).includes(mine)), 'the module log names the file');
  // The winner kept nothing aside.
  t.is(pair.events(winner, 'replica:diverged').length, 0);
});
