/**
 * Replication failure cases at module level (issue 3, "Failure and bad input"), in the lab with the
 * embedded example: each case has a defined behaviour, a module-log line saying what happened,
 * never corrupts either copy and never loses an acknowledged write. The README's "Replication
 * failure behaviour" table lists the same cases.
 */
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { faultPair, msgs, treeDiff, treeHash } from './rfs-faults-helpers.js';

const test = labTest;

test.serial('[lab] replication link cut while the writer runs: the primary goes ALONE and keeps serving; link back: reintegrated from its change list, byte-identical', async (t) => {
  const fp = await faultPair(['--writer', '4000', '--writer-every', '3']);
  t.teardown(() => fp.destroy());
  fp.start(0); fp.start(1);
  const { pair } = fp;
  const { prim, second } = await pair.waitPrimSecond(60_000);
  await waitFor('100 acknowledged records', () => fp.acked(prim) >= 100, 60_000);

  await pair.lab.nodes[second]!.linkDown();
  await pair.waitState(prim, 'ALONE', 15_000);
  await waitFor('rfs:lost in the primary\'s log', () => fp.logs(prim, 'rfs:lost').length > 0, 15_000);
  t.log(msgs(fp.logs(prim, 'rfs:lost')));
  const atAlone = fp.acked(prim);
  await waitFor('the writer to go on while ALONE', () => fp.acked(prim) >= atAlone + 200, 60_000);
  t.false(pair.procs[prim]!.events.some((e) => e.ev === 'writer:done'), 'the writer was still running when the link came back');
  const resyncsBefore = fp.logs(prim, 'rfs:resync').length;

  await pair.lab.nodes[second]!.linkUp();
  await waitFor('the secondary Ready again', () => pair.secondReady(second), 60_000);
  const resync = fp.logs(prim, 'rfs:resync').slice(resyncsBefore);
  t.log(msgs(resync));
  t.true(resync.length > 0 && resync.every((e) => /reintegrating/.test(e.msg as string)),
    'the returning secondary is reintegrated from the change list, not fully resynchronised');
  await waitFor('the writer to finish', () => pair.procs[prim]!.events.some((e) => e.ev === 'writer:done'), 180_000);
  await waitFor('byte-identical copies', () => treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])).length === 0, 30_000)
    .catch(() => undefined);
  t.deepEqual(treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])), []);
  t.is(pair.state(prim), 'PRIM');
});
