/**
 * First synchronisation with block checksums end to end in the lab: two nodes (network
 * namespaces, the embedded example, replication over TCP between them) start with copies of the
 * replicated directory that were never synchronised by the SDK but are almost identical (as
 * after restoring the same backup on both): the first synchronisation sends only what differs,
 * removes what only the secondary has, and ends byte-identical.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { MirrorPair, type Ev } from './lab/mirror-pair.js';
import { treeHash } from './lab/tree.js';


const MiB = 1 << 20;
const T = new Date('2025-03-04T05:06:07Z');

function seed(dir: string, variant: number): void {
  const big = Buffer.alloc(32 * MiB);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  if (variant === 1) big[17 * MiB + 9] = 0xee; // one block differs on the second copy
  writeFileSync(join(dir, 'big.db'), big);
  utimesSync(join(dir, 'big.db'), T, T);
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(dir, `dir${d}`));
    for (let f = 0; f < 100; f++) {
      writeFileSync(join(dir, `dir${d}`, `f${f}`), `content ${d}/${f}\n`.repeat(20));
      utimesSync(join(dir, `dir${d}`, `f${f}`), T, T);
    }
  }
  if (variant === 1) writeFileSync(join(dir, 'only-on-one-copy'), 'stale');
}

labTest.serial('[lab] first synchronisation between two nodes: identical files send nothing, one changed block sends one block, byte-identical after', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ha-sync-'));
  const data = join(root, 'data');
  const copies = [join(root, 'node0'), join(root, 'node1')];
  for (const d of [data, ...copies]) mkdirSync(d, { recursive: true });
  seed(copies[0]!, 0);
  seed(copies[1]!, 1);
  const pair = await MirrorPair.create({ args: ['--data', data], defaultPrimary: 'node0' });
  t.teardown(async () => { await pair.destroy(); rmSync(root, { recursive: true, force: true }); });
  const start = (i: number) => pair.start(i, [], { binds: [[copies[i]!, data]] });
  start(0); start(1);
  const { prim, second } = await pair.waitPrimSecond(60_000);
  await waitFor('the secondary Ready', () => pair.secondReady(second), 60_000);
  const synced = pair.procs[prim]!.events.find((e: Ev) => e.ev === 'log' && e.event === 'rfs:synced');
  t.truthy(synced, 'an rfs:synced module-log line on the primary');
  t.log(String(synced?.msg));
  const bytesSent = synced?.bytesSent as number;
  // prim's copy is the reference: one 64 KiB block of big.db differs on the other copy (+ the
  // example's own small files, if any).
  t.true(bytesSent >= 64 * 1024 && bytesSent < 64 * 1024 + 64 * 1024, `bytes sent ${bytesSent}`);
  t.true((synced?.filesIdentical as number) >= 500, `identical files ${String(synced?.filesIdentical)}`);
  const start0 = pair.procs[prim]!.events.find((e: Ev) => e.ev === 'log' && e.event === 'rfs:resync');
  t.regex(String(start0?.msg), /full synchronisation/);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(treeHash(copies[second]!), treeHash(copies[prim]!));
});
