/**
 * Replication failure cases at module level (issue 3, "Failure and bad input"), in the lab with the
 * embedded example: each case has a defined behaviour, a module-log line saying what happened,
 * never corrupts either copy and never loses an acknowledged write. The README's "Replication
 * failure behaviour" table lists the same cases.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { labTest } from './lab/ava.js';
import { REPO_ROOT, waitFor } from './lab/index.js';
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
  const syncedBefore = fp.logs(prim, 'rfs:synced').length;

  await pair.lab.nodes[second]!.linkUp();
  // The secondary may still show its Ready state from before the cut (a loaded machine): wait for
  // the primary's reintegration of it to start and to end.
  await waitFor('the primary reintegrating the secondary', () => fp.logs(prim, 'rfs:resync').length > resyncsBefore, 60_000);
  await waitFor('the reintegration to end', () => fp.logs(prim, 'rfs:synced').length > syncedBefore, 60_000);
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

/** Number of files of `size` bytes in dir (0 if it does not exist). */
function fullFiles(dir: string, size: number): number {
  try { return readdirSync(dir).filter((n) => statSync(join(dir, n)).size === size).length; } catch { return 0; }
}

test.serial('[lab] secondary SIGKILLed during replication, then during its reintegration: the primary goes ALONE; the reintegration resumes where it stopped and ends byte-identical', async (t) => {
  const fp = await faultPair(['--writer', '8000', '--writer-every', '3']);
  t.teardown(() => fp.destroy());
  fp.start(0); fp.start(1);
  const { pair } = fp;
  const { prim, second } = await pair.waitPrimSecond(60_000);
  await waitFor('100 acknowledged records', () => fp.acked(prim) >= 100, 60_000);

  // 1. Killed during replication.
  await pair.kill(second);
  await pair.waitState(prim, 'ALONE', 15_000);
  await waitFor('rfs:lost in the primary\'s log', () => fp.logs(prim, 'rfs:lost').length > 0, 15_000);
  t.log(msgs(fp.logs(prim, 'rfs:lost')));
  const atAlone = fp.acked(prim);
  // While it is away: 96 files of 8 MiB through the primary's interceptor (tracked).
  const FILES = 96, SIZE = 8 << 20;
  await fp.sh(prim, `mkdir -p '${fp.data}/bulk' && for i in $(seq 1 ${FILES}); do head -c ${SIZE} /dev/urandom > '${fp.data}/bulk/f'$i; done`);
  t.true(fp.acked(prim) > atAlone, 'the application went on writing while ALONE');

  // 2. It returns and is killed again in the middle of its reintegration.
  const progressBefore = fp.logs(prim, 'replica:progress').length;
  fp.start(second);
  const bulk = join(fp.copies[second]!, 'bulk');
  // Killed once the primary reports entries kept: copied, applied AND synced there (a barrier
  // after each finished entry; the secondary's sync may lag its copy by a second under load), so
  // forgotten here (the assertion below checks that the resumed total shrank by at least two files).
  const evBefore = pair.procs[prim]!.events.length;
  const kept = () => Math.max(0, ...pair.procs[prim]!.events.slice(evBefore).filter((e) => e.ev === 'replica:progress').map((e) => Number(e.filesKept ?? 0)));
  await waitFor('the reintegration to have kept a few files', () => kept() >= 12, 60_000, 5);
  await pair.kill(second);
  t.log(`killed when the primary reported ${kept()} entries kept`);
  const copiedBeforeKill = fullFiles(bulk, SIZE);
  t.log(`secondary killed with ${copiedBeforeKill}/${FILES} files copied`);
  t.true(copiedBeforeKill < FILES - 8, 'the secondary was killed in the middle of its reintegration');
  const first = fp.logs(prim, 'replica:progress')[progressBefore];
  t.truthy(first, 'the first reintegration reported its progress');
  await waitFor('the failed reintegration logged', () => fp.logs(prim, 'replica:error').length > 0 || fp.logs(prim, 'rfs:lost').length > 1, 15_000);

  // 3. It returns again: the reintegration resumes (what was copied and acknowledged is not copied again).
  const progressBefore2 = fp.logs(prim, 'replica:progress').length;
  fp.start(second);
  await waitFor('the secondary Ready', () => pair.secondReady(second), 120_000);
  const second2 = fp.logs(prim, 'replica:progress')[progressBefore2];
  t.truthy(second2, 'the resumed reintegration reported its progress');
  const total1 = first!.bytesTotal as number, total2 = second2!.bytesTotal as number;
  t.log(`bytes to copy: first attempt ${total1}, resumed ${total2} (${copiedBeforeKill} files of ${SIZE} were done)`);
  t.true(total1 >= FILES * SIZE, 'the first attempt had the whole change to copy');
  t.true(total2 <= total1 - 2 * SIZE, 'the resumed reintegration does not copy again what was done');

  await waitFor('the writer to finish', () => pair.procs[prim]!.events.some((e) => e.ev === 'writer:done'), 240_000);
  await waitFor('byte-identical copies', () => treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])).length === 0, 60_000, 1000)
    .catch(() => undefined);
  t.deepEqual(treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])), []);
});

test.serial('[lab] secondary disk full: it reports ENOSPC, the primary goes ALONE without blocking the application and says why; space freed: reintegrated', async (t) => {
  const fp = await faultPair(['--writer', '8000', '--writer-every', '3'], { defaultPrimary: 'node0' });
  t.teardown(() => fp.destroy());
  const { pair } = fp;
  // node1's copy is a 16 MiB tmpfs, mounted in its own mount namespace (gone with its processes).
  fp.start(0);
  fp.startWith(1, `mount -t tmpfs -o size=16m ha-faults-full '${fp.data}'`);
  const { prim, second } = await pair.waitPrimSecond(60_000);
  t.is(prim, 0);
  await waitFor('100 acknowledged records', () => fp.acked(prim) >= 100, 60_000);

  // The application writes 24 MiB: more than the secondary can hold. It must not block.
  const t0 = Date.now();
  await fp.sh(prim, `head -c ${24 << 20} /dev/urandom > '${fp.data}/big' && sync '${fp.data}/big'`);
  t.log(`24 MiB written by the application in ${Date.now() - t0} ms`);
  await pair.waitState(prim, 'ALONE', 15_000);
  await waitFor('the reason in the primary\'s log', () => fp.logs(prim, 'rfs:lost').some((e) => /No space left on device/.test(e.msg as string)), 15_000);
  await waitFor('the reason in the secondary\'s log', () => fp.logs(second, 'rfs:apply-failed').some((e) => /No space left on device/.test(e.msg as string)), 15_000);
  t.log(msgs(fp.logs(prim, 'rfs:lost').slice(0, 1)));
  t.log(msgs(fp.logs(second, 'rfs:apply-failed').slice(0, 1)));
  t.false(pair.secondReady(second), 'the secondary is not Ready');
  const atAlone = fp.acked(prim);
  const errors = fp.logs(prim, 'replica:error').length;
  await waitFor('the writer to go on while ALONE', () => fp.acked(prim) >= atAlone + 100, 60_000);
  // Retries fail for the same reason while the file is there; the primary stays ALONE meanwhile.
  await waitFor('two more failed reintegrations', () => fp.logs(prim, 'replica:error').length >= errors + 2, 30_000);
  t.is(pair.state(prim), 'ALONE');

  // The application removes the file: the next reintegration fits and completes.
  await fp.sh(prim, `rm '${fp.data}/big'`);
  await waitFor('the secondary Ready again', () => pair.secondReady(second), 60_000);
  await waitFor('the writer to finish', () => pair.procs[prim]!.events.some((e) => e.ev === 'writer:done'), 240_000);
  const sums = async (i: number) => (await fp.sh(i, `cd '${fp.data}' && find . -type f | sort | xargs -r sha256sum`)).stdout;
  await waitFor('identical copies', async () => (await sums(0)) === (await sums(1)), 30_000, 500).catch(() => undefined);
  t.is(await sums(1), await sums(0));
  t.regex(await sums(0), /records\.log/);
});

test.serial('[lab] bad paths from the application: a name over 255 bytes or a path over PATH_MAX gets ENAMETOOLONG; a rename across the mount boundary (EXDEV: mv copies then unlinks) is replicated right', async (t) => {
  const fp = await faultPair([], { defaultPrimary: 'node0' });
  t.teardown(() => fp.destroy());
  const { pair } = fp;
  fp.start(0); fp.start(1);
  const { prim, second } = await pair.waitPrimSecond(60_000);
  const D = fp.data;
  const fails = async (script: string): Promise<string> => {
    try { await fp.sh(prim, script); } catch (err) { return (err as { stderr: string }).stderr; }
    return '';
  };

  // A name longer than 255 bytes.
  const longName = 'n'.repeat(300);
  const e1 = await fails(`echo x > '${D}/${longName}'`);
  t.regex(e1, /File name too long/, 'the application is told ENAMETOOLONG for a 300-byte name');

  // A path longer than PATH_MAX (4096) below the replicated directory, made with relative steps.
  const comp = 'd'.repeat(200);
  const py = `import os,sys\nos.chdir(sys.argv[1])\nfor i in range(24):\n  try:\n    os.mkdir('${comp}'); os.chdir('${comp}')\n  except OSError as e:\n    sys.stderr.write('level %d: %s\\n' % (i, e.strerror)); sys.exit(1)\nopen('leaf','w').write('deep')\n`;
  const e2 = await fails(`python3 -c "${py}" '${D}'`);
  t.log(`deep path: ${e2.trim().split('\n').slice(-1)[0] ?? ''}`);
  t.regex(e2, /File name too long/, 'the application is told ENAMETOOLONG when the path would pass PATH_MAX');
  await waitFor('rfs:refused in the primary\'s log', () => fp.logs(prim, 'rfs:refused').length > 0, 10_000);
  t.log(msgs(fp.logs(prim, 'rfs:refused')));

  // EXDEV: mv between the replicated directory and a plain one.
  const out = join(fp.root, 'outside');
  mkdirSync(out);
  await fp.sh(prim, `echo out > '${D}/out.txt' && echo in > '${out}/in.txt' && mkdir '${D}/sub' && echo s > '${D}/sub/s.txt'`);
  await fp.sh(prim, `mv '${D}/out.txt' '${out}/out.txt' && mv '${out}/in.txt' '${D}/in.txt' && mv '${D}/sub' '${out}/sub'`);
  t.is(readFileSync(join(out, 'out.txt'), 'utf8'), 'out\n');
  t.is(readFileSync(join(out, 'sub', 's.txt'), 'utf8'), 's\n');

  await waitFor('identical copies', () => treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])).length === 0, 15_000).catch(() => undefined);
  t.deepEqual(treeDiff(treeHash(fp.copies[0]), treeHash(fp.copies[1])), []);
  t.is(readFileSync(join(fp.copies[second]!, 'in.txt'), 'utf8'), 'in\n');
  t.false(existsSync(join(fp.copies[second]!, 'out.txt')));
  t.false(existsSync(join(fp.copies[second]!, 'sub')));
  // Nothing of this broke replication.
  t.is(fp.logs(prim, 'rfs:lost').length, 0, msgs(fp.logs(prim, 'rfs:lost')));
  t.is(pair.state(prim), 'PRIM');
  t.true(pair.secondReady(second));
});

test.serial('[lab] primary SIGKILLed: its lifeline removes the interceptor\'s mount; with the lifeline killed too, the next start removes the stale mount', async (t) => {
  const fp = await faultPair([], { defaultPrimary: 'node0' });
  const holders: ChildProcess[] = [];
  t.teardown(async () => { for (const h of holders) if (h.exitCode === null) h.kill('SIGKILL'); await fp.destroy(); });
  const { pair } = fp;
  fp.start(0); fp.start(1);
  const { prim, second } = await pair.waitPrimSecond(60_000);
  // A process kept in the primary's mount namespace: it outlives the node, so what is left mounted there can be seen.
  const hold = () => {
    const h = spawn('nsenter', ['-t', String(pair.procs[prim]!.child.pid), '-m', '--', 'sleep', '600'], { stdio: 'ignore' });
    holders.push(h);
    return h;
  };
  const fuseAt = (h: ChildProcess) => readFileSync(`/proc/${h.pid}/mountinfo`, 'utf8').split('\n')
    .filter((l) => l.split(' ')[4] === fp.data && / - fuse\.ha /.test(l));
  const h1 = hold();
  await waitFor('the holder in the namespace', () => { try { return fuseAt(h1).length === 1; } catch { return false; } }, 10_000);

  // 1. The node is SIGKILLed: its lifeline aborts the FUSE connection and detaches the mount.
  await pair.kill(prim);
  await waitFor('the interceptor\'s mount gone (lifeline)', () => fuseAt(h1).length === 0, 15_000);
  // The lifeline aborted the connection through the FUSE control file system (mounted for it in a
  // mount namespace of its own where the node's has none), and left no such mount behind.
  const lifelineLog = (): string => {
    const base = join(pair.dir, `node${prim}`);
    const f = readdirSync(base, { recursive: true }).map(String).find((x) => x.endsWith('lifeline.log'));
    return f ? readFileSync(join(base, f), 'utf8') : '';
  };
  await waitFor('the lifeline\'s abort in its log', () => /aborted FUSE connection \d+/.test(lifelineLog()), 10_000);
  t.notRegex(lifelineLog(), /lifeline:error/);
  t.false(readFileSync(`/proc/${h1.pid}/mountinfo`, 'utf8').includes(' - fusectl '), 'the FUSE control file system was mounted only in a namespace of the abort\'s own');
  await pair.waitState(second, 'ALONE', 15_000);

  // 2. It comes back (SECOND now) in the same mount namespace, then the node AND its lifeline are SIGKILLed
  //    once it is primary again: the mount is left behind, dead (ENOTCONN).
  const launcher = `exec nsenter -t ${h1.pid} -m --wd=${REPO_ROOT} --`;
  fp.startWith(prim, 'true', [], launcher);
  // It is the default primary: it may take the role back at once; otherwise make it primary.
  await waitFor('node back', () => pair.state(prim) === 'PRIM' || pair.secondReady(prim), 60_000);
  if (pair.state(prim) !== 'PRIM') { await pair.stop(second); await pair.waitState(prim, 'ALONE', 30_000); }
  await waitFor('its interceptor mounted', () => fuseAt(h1).length === 1, 10_000);
  const lifelinePid = Number(/watchdog (\d+)/.exec(String(fp.logs(prim, 'lifeline:started').at(-1)?.msg))?.[1]);
  t.true(lifelinePid > 0, 'the lifeline\'s pid is in the log');
  process.kill(lifelinePid, 'SIGKILL');
  await pair.kill(prim);
  t.is(fuseAt(h1).length, 1, 'with the lifeline dead too, the mount is left behind');

  // 3. The next start finds the stale mount and removes it, with a log line, and runs.
  fp.startWith(prim, 'true', [], launcher);
  await waitFor('rfs:stale in the log', () => fp.logs(prim, 'rfs:stale').length > 0, 60_000);
  t.log(msgs(fp.logs(prim, 'rfs:stale')));
  await waitFor('the node running in a role', () => ['PRIM', 'ALONE'].includes(pair.state(prim) ?? '') || pair.secondReady(prim), 60_000);
  t.false(pair.procs[prim]!.events.some((e) => e.ev === 'log' && e.event === 'app:failed'));
  t.is((await fp.sh(prim, `ls '${fp.data}' >/dev/null && echo ok`)).stdout.trim(), 'ok', 'the directory is usable (no ENOTCONN)');
});
