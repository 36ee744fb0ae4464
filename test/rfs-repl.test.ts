/**
 * The replicated directory (native ReplicationSink + resync) wired end to end on one machine:
 * a real FUSE interceptor over the primary's directory, a real receiver (TCP over loopback)
 * applying to a second directory, real files hashed on both sides. Needs root and /dev/fuse
 * (labTest skips visibly otherwise).
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync, writeSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { labTest } from './lab/ava.js';
import { flushCounter } from './lab/disk.js';
import {
  connectSender, mountInterceptor, nativeAvailable, nativeUnavailableReason, openReplicatedDir, startReceiver,
  InvalidRfsReplArgumentError, type Interceptor, type ReplicatedDir, type RfsReceiver, type RfsSender, type ResyncProgress,
} from '../native/src/index.js';

const run = promisify(execFile);
const KEY = 'rfs-repl-test-cluster-key-0123456789';
const MiB = 1 << 20;

if (!nativeAvailable()) test(`rfs repl skipped: ${nativeUnavailableReason()}`, (t) => { t.log(nativeUnavailableReason()); t.pass(); });
const ntest = nativeAvailable() ? test : test.skip;
const lserial = nativeAvailable() ? labTest.serial : labTest.serial.skip;

interface World {
  base: string;
  prim: string;   // the replicated directory (interceptor mounted over it)
  sec: string;    // the secondary's copy
  state: string;
  rd: ReplicatedDir;
  itc?: Interceptor;
  rcv?: RfsReceiver;
  snd?: RfsSender;
}

async function world(t: ExecutionContext, files: (prim: string) => void = () => {}, barrierIntervalMs = 100, writeback = false): Promise<World> {
  const base = mkdtempSync(join(tmpdir(), 'rfs-repl-'));
  const prim = join(base, 'prim');
  const sec = join(base, 'sec');
  const state = join(base, 'state');
  mkdirSync(prim);
  mkdirSync(sec);
  files(prim);
  const w: World = { base, prim, sec, state, rd: openReplicatedDir({ dir: prim, stateDir: state, barrierIntervalMs }) };
  t.teardown(async () => {
    w.snd?.close();
    w.rcv?.close();
    w.rd.close();
    for (let i = 0; i < 3; i++) await run('umount', ['-l', prim]).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  });
  const itc = await mountInterceptor({ dir: prim, sink: w.rd.sinkHandle, writeback });
  w.itc = itc;
  t.teardown(() => itc.unmount({ lazy: true, timeoutMs: 2000 }).catch(() => {}));
  return w;
}

/** A new receiver on the secondary's copy and a sender to it, attached. */
async function connect(w: World): Promise<void> {
  w.snd?.close();
  w.rcv?.close();
  w.rcv = startReceiver({ dir: w.sec, key: KEY });
  w.snd = await connectSender({ host: '127.0.0.1', port: w.rcv.port, key: KEY });
  w.rd.attachSender(w.snd);
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

/** type, mode, size, content hash / link target of every entry, sorted. */
function tree(dir: string, include: (rel: string) => boolean = () => true): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (!include(r)) continue;
      const p = join(dir, r);
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) { out.push(`d ${r} ${mode}`); walk(r); }
      else if (st.isSymbolicLink()) out.push(`l ${r} -> ${readlinkSync(p)}`);
      else if (st.isFile()) out.push(`f ${r} ${mode} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`);
      else out.push(`o ${r} ${mode}`);
    }
  };
  walk('');
  return out;
}

async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes through the mount until stopped; returns the number of writes. */
function writer(prim: string): { stop: () => Promise<number> } {
  let stopped = false;
  let n = 0;
  const done = (async () => {
    mkdirSync(join(prim, 'live'), { recursive: true });
    while (!stopped) {
      const f = join(prim, 'live', `w${n % 5}`);
      await fsp.writeFile(f, bytes(4096 + (n % 7) * 1000, n));
      // Into paths the resync has still to copy (deferred to it) or is copying.
      await fsp.writeFile(join(prim, 'newdir', `live${n % 3}`), `n=${n}\n`);
      const fh2 = await fsp.open(join(prim, 'alone-new'), 'r+');
      await fh2.write(bytes(3000, n), 0, 3000, (n * 77_777) % (2 * MiB));
      await fh2.close();
      const fh = await fsp.open(join(prim, 'live', 'log'), 'a');
      await fh.write(`line ${n}\n`);
      await fh.close();
      n++;
    }
    return n;
  })();
  return { stop: async () => { stopped = true; return done; } };
}

ntest('openReplicatedDir / resync validate their arguments and name the field', (t) => {
  const base = mkdtempSync(join(tmpdir(), 'rfs-repl-arg-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const e1 = t.throws(() => openReplicatedDir({ dir: base, stateDir: join(base, '..', 'x-state'), zoneBytes: 5000 }), { instanceOf: InvalidRfsReplArgumentError });
  t.regex(e1.message, /zoneBytes/);
  t.throws(() => openReplicatedDir({ dir: join(base, 'missing'), stateDir: join(base, 's') }), { instanceOf: InvalidRfsReplArgumentError, message: /dir .* not accessible/ });
  t.throws(() => openReplicatedDir({ dir: base, stateDir: join(base, 'inside') }), { message: /stateDir .* must not be inside/ });
  t.throws(() => openReplicatedDir({ dir: base, stateDir: join(base, '..', 'y'), barrierIntervalMs: 0 }), { message: /barrierIntervalMs/ });
  const state = mkdtempSync(join(tmpdir(), 'rfs-repl-argstate-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const rd = openReplicatedDir({ dir: base, stateDir: state });
  t.teardown(() => rd.close());
  t.throws(() => rd.resync([{ path: '/abs', zones: [], meta: true }]), { code: 'ERR_RFS_REPL_ARG', message: /extra\[0\]\.path/ });
  t.throws(() => rd.resync([{ path: 'a', zones: [[3, 1]], meta: false }]), { message: /extra\[0\]\.zones\[0\]/ });
  t.throws(() => rd.attachSender({} as RfsSender), { message: /RfsSender/ });
  t.is(rd.stats().state, 'alone');
  // No sender: a resync cannot run.
  return t.throwsAsync(rd.resync([]), { code: 'ERR_RFS_REPL_ALONE' });
});

lserial('[lab] synchronous replication through the mount, barrier clearing, lost -> ALONE tracking, resync under live writes', async (t) => {
  const w = await world(t, (p) => {
    writeFileSync(join(p, 'a.txt'), 'hello\n');
    mkdirSync(join(p, 'sub'));
    writeFileSync(join(p, 'sub', 'big'), bytes(3 * MiB, 1));
    symlinkSync('a.txt', join(p, 'ln'));
  });
  await connect(w);
  const first = await w.rd.fullSync();
  t.log(`fullSync: ${JSON.stringify(first)}`);
  t.deepEqual(tree(w.sec), tree(w.prim));
  t.is(w.rd.stats().state, 'synced');

  // Every write returns only once the secondary has it.
  for (let i = 0; i < 20; i++) {
    writeFileSync(join(w.prim, `f${i}`), bytes(10_000 + i, i));
    t.deepEqual(readFileSync(join(w.sec, `f${i}`)), bytes(10_000 + i, i), `f${i} on the secondary right after write()`);
  }
  const fd = openSync(join(w.prim, 'sub', 'big'), 'r+');
  writeSync(fd, bytes(4096, 9), 0, 4096, 2 * MiB + 100);
  closeSync(fd);
  t.deepEqual(readFileSync(join(w.sec, 'sub', 'big')), readFileSync(join(w.prim, 'sub', 'big')));

  // In sync, the barrier loop clears what the secondary acknowledged.
  await until(() => w.rd.stats().tracker.entries === 0, 5000, 'tracker emptied by barriers');
  t.true(w.rd.stats().barriers > 0);

  // The secondary goes away: 'lost', writes still succeed, the tracker holds them.
  const lost = new Promise<Error>((res) => w.rd.once('lost', res));
  w.rcv!.close();
  writeFileSync(join(w.prim, 'f0'), 'changed while the link goes down\n');
  const err = await lost;
  t.log(`lost: ${(err as { code?: string }).code} ${err.message}`);
  t.is(w.rd.stats().state, 'alone');
  writeFileSync(join(w.prim, 'alone-new'), bytes(2 * MiB + 5, 3));
  const fd2 = openSync(join(w.prim, 'sub', 'big'), 'r+');
  writeSync(fd2, bytes(1000, 4), 0, 1000, 10);
  closeSync(fd2);
  await fsp.rm(join(w.prim, 'f5'));
  await fsp.rename(join(w.prim, 'f6'), join(w.prim, 'sub', 'f6-moved'));
  mkdirSync(join(w.prim, 'newdir'));
  writeFileSync(join(w.prim, 'newdir', 'x'), 'x');
  const snap = w.rd.snapshot().map((e) => e.path);
  for (const p of ['alone-new', 'sub/big', 'f5', 'sub/f6-moved', 'newdir/x']) t.true(snap.includes(p), `${p} is dirty: ${snap.join(',')}`);
  t.notDeepEqual(tree(w.sec), tree(w.prim));

  // Back: new receiver and sender, resync while a writer keeps writing.
  await connect(w);
  const live = writer(w.prim);
  const progress: ResyncProgress[] = [];
  w.rd.on('progress', (p) => progress.push(p));
  const r = await w.rd.resync(undefined, { maxBytesPerSec: 4 * MiB });
  const writes = await live.stop();
  t.log(`resync: ${JSON.stringify(r)}; ${writes} live writes; ${progress.length} progress events`);
  t.true(writes > 5, 'the application kept writing during the resync');
  t.true(r.bytesSent < 3 * MiB + 2 * MiB + 3 * MiB, 'resync copied the dirty zones, not everything');
  t.deepEqual(tree(w.sec), tree(w.prim));
  t.is(w.rd.stats().state, 'synced');
  t.true(progress.length > 0 && progress.at(-1)!.bytesDone === r.bytesSent);
  // Writes after the resync are replicated as usual; the tracker drains again.
  writeFileSync(join(w.prim, 'after'), 'after\n');
  t.is(readFileSync(join(w.sec, 'after'), 'utf8'), 'after\n');
  await until(() => w.rd.stats().tracker.entries === 0, 5000, 'tracker emptied after resync');
});

lserial('[lab] an interrupted resync resumes where it stopped; the peer\'s extra entries are fixed', async (t) => {
  const w = await world(t, (p) => {
    for (let i = 0; i < 4; i++) writeFileSync(join(p, `d${i}`), bytes(4 * MiB, i));
  });
  await connect(w);
  await w.rd.fullSync();
  t.deepEqual(tree(w.sec), tree(w.prim));
  w.rd.detachSender();
  t.is(w.rd.stats().state, 'alone');
  // ALONE: 8 files x 4 MiB of changes.
  for (let i = 0; i < 8; i++) writeFileSync(join(w.prim, `d${i}`), bytes(4 * MiB, 100 + i));
  const total = 32 * MiB;

  await connect(w);
  let seen = 0;
  const onProgress = (p: ResyncProgress): void => {
    seen = p.bytesDone;
    if (p.bytesDone >= 8 * MiB && w.rcv) { w.rcv.close(); w.rcv = undefined; }
  };
  w.rd.on('progress', onProgress);
  const e = await t.throwsAsync(w.rd.resync([], { maxBytesPerSec: 24 * MiB }));
  w.rd.off('progress', onProgress);
  t.log(`interrupted after ${seen} bytes: ${(e as { code?: string }).code}`);
  t.is((e as { code?: string }).code, 'ERR_RFS_REPL_LOST');
  await until(() => w.rd.stats().state === 'alone', 5000, 'alone after the loss');
  const left = w.rd.snapshot().filter((x) => x.path.startsWith('d'));
  t.true(left.length < 8, `some entries were finished and cleared (left: ${left.map((x) => x.path).join(',')})`);

  await connect(w);
  const r2 = await w.rd.resync();
  t.log(`resumed: ${JSON.stringify(r2)}`);
  t.true(r2.bytesSent < total, `the second pass sent ${r2.bytesSent} < ${total} bytes`);
  t.deepEqual(tree(w.sec), tree(w.prim));

  // The returning node's own changes: a file only it has, a zone only it changed.
  writeFileSync(join(w.sec, 'only-on-secondary'), 'stale');
  const fd = openSync(join(w.sec, 'd2'), 'r+');
  writeSync(fd, Buffer.alloc(5000, 0x55), 0, 5000, 2 * MiB + 7);
  closeSync(fd);
  t.notDeepEqual(tree(w.sec), tree(w.prim));
  const r3 = await w.rd.resync([{ path: 'only-on-secondary', zones: [[0, 1]], meta: true }, { path: 'd2', zones: [[2, 3]], meta: false }]);
  t.log(`extra entries: ${JSON.stringify(r3)}`);
  t.true(r3.bytesSent <= 2 * MiB);
  t.deepEqual(tree(w.sec), tree(w.prim));
});

lserial('[lab] fullSync skips holes: a tree with a sparse 1 GiB file copies quickly', async (t) => {
  const w = await world(t, (p) => {
    mkdirSync(join(p, 'a', 'b'), { recursive: true });
    writeFileSync(join(p, 'a', 'b', 'c.txt'), 'deep\n');
    const fd = openSync(join(p, 'sparse'), 'w');
    writeSync(fd, bytes(100_000, 1), 0, 100_000, 0);
    writeSync(fd, bytes(4096, 2), 0, 4096, 512 * MiB);
    writeSync(fd, bytes(10, 3), 0, 10, 1024 * MiB - 10);
    closeSync(fd);
  });
  // Something stale on the secondary that must go.
  writeFileSync(join(w.sec, 'stale'), 'x');
  await connect(w);
  const t0 = Date.now();
  const r = await w.rd.fullSync();
  const ms = Date.now() - t0;
  t.log(`fullSync of a 1 GiB sparse file + small tree: ${ms} ms, ${r.bytesSent} data bytes, ${r.records} records, ${r.entries} entries`);
  t.true(r.bytesSent < 4 * MiB, 'holes were skipped');
  t.is(lstatSync(join(w.sec, 'sparse')).size, 1024 * MiB);
  t.true(lstatSync(join(w.sec, 'sparse')).blocks * 512 < 64 * MiB, 'the copy is sparse too');
  const h = async (p: string): Promise<string> => (await run('sha256sum', [p])).stdout.split(' ')[0]!;
  t.is(await h(join(w.sec, 'sparse')), await h(join(w.prim, 'sparse')));
  const small = (d: string): string[] => tree(d, (r) => r !== 'sparse');
  t.deepEqual(small(w.sec), small(w.prim));
});

lserial('[lab] metadata changes are marked before they are applied; a change that fails locally ends at once (no stale in-flight mark)', async (t) => {
  const w = await world(t, (p) => {
    // Made before the mount: not marked.
    mkdirSync(join(p, 'full'));
    writeFileSync(join(p, 'full', 'x'), 'x\n');
    mkdirSync(join(p, 'src-dir'));
    mkdirSync(join(p, 'ne'));
    writeFileSync(join(p, 'ne', 'inner'), 'i\n');
  });
  // ALONE: every mark stays in the tracker.
  const marked = (path: string) => w.rd.snapshot().some((e) => e.path === path);
  // Changes that FAIL locally (rename onto a non-empty directory, rmdir of one): no Submit
  // follows, so any mark of these paths was made before the local apply (BeforeMeta).
  t.deepEqual(w.rd.snapshot(), [], 'nothing marked yet');
  t.throws(() => renameSync(join(w.prim, 'src-dir'), join(w.prim, 'full')), { code: 'ENOTEMPTY' });
  t.true(marked('src-dir'), 'rename source marked before the (failed) local rename');
  t.true(marked('full'), 'rename target marked before the (failed) local rename');
  t.throws(() => rmdirSync(join(w.prim, 'ne')), { code: 'ENOTEMPTY' });
  t.true(w.rd.snapshot().some((e) => e.path === 'ne' && e.meta), 'rmdir path marked (meta) before the (failed) local rmdir');

  // In sync: the failed changes ended at once (EndChange), so barriers clear everything promptly
  // (a change left in flight would hold the barrier back for 30 s).
  await connect(w);
  await w.rd.fullSync();
  t.throws(() => renameSync(join(w.prim, 'src-dir'), join(w.prim, 'full')), { code: 'ENOTEMPTY' });
  t.throws(() => rmdirSync(join(w.prim, 'full')), { code: 'ENOTEMPTY' });
  writeFileSync(join(w.prim, 'after'), 'a\n');
  await until(() => w.rd.stats().tracker.entries === 0, 5000, 'tracker emptied by barriers after failed changes');
  t.is(w.rd.stats().staleInFlight, 0);
  t.deepEqual(tree(w.sec), tree(w.prim));
});

lserial('[lab] a large write whose record left before the local write, which the primary\'s full disk cut short: the secondary\'s copy is put back to what the primary holds before the reply', async (t) => {
  // The primary's directory is a 2 MiB tmpfs: a stream of 1 MiB writes fills it. Each large write
  // is sent to the secondary while it is written locally; the one the disk cannot hold in full
  // (short, then ENOSPC) must not leave the secondary with bytes (or a size) the primary never had.
  const w = await world(t, (p) => { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'rfs-repl-full', p]); });
  await connect(w);
  await w.rd.fullSync();
  writeFileSync(join(w.prim, 'keep'), bytes(300 * 1024, 5)); // a cached (read-write) open: buffered
  const fd = openSync(join(w.prim, 'big'), 'w');              // write-only: large writes overlap
  let written = 0;
  let failure: NodeJS.ErrnoException | undefined;
  try {
    for (let i = 0; i < 4; i++) {
      const n = writeSync(fd, bytes(MiB, 10 + i), 0, MiB, i * MiB);
      written += n;
      if (n < MiB) t.log(`write ${i}: short, ${n} bytes`);
    }
  } catch (e) {
    failure = e as NodeJS.ErrnoException;
  } finally {
    closeSync(fd);
  }
  t.is(failure?.code, 'ENOSPC', 'the disk filled up');
  t.true(written >= MiB && written < 2 * MiB, `some of the second MiB fitted (${written} bytes written)`);
  const st = w.itc!.stats();
  t.true(st.reconciledWrites >= 1, `a write was reconciled (${st.reconciledWrites})`);
  t.is(w.rd.stats().state, 'synced', 'replication goes on');
  t.is(statSync(join(w.sec, 'big')).size, statSync(join(w.prim, 'big')).size, 'same size on the secondary');
  t.true(readFileSync(join(w.sec, 'big')).equals(readFileSync(join(w.prim, 'big'))), 'same bytes on the secondary');
  // Space back: the stream goes on and stays identical.
  rmSync(join(w.prim, 'keep'));
  const fd2 = openSync(join(w.prim, 'big'), 'r+');
  writeSync(fd2, bytes(4096, 99), 0, 4096, 0);
  closeSync(fd2);
  t.deepEqual(tree(w.sec), tree(w.prim));
});

lserial('[lab] large writes lend their bytes to the sender while the local write runs: each 1 MiB write is on the secondary when it returns; the link cut mid-stream hangs nothing, the rest is written locally, marked, and resynced', async (t) => {
  const w = await world(t);
  await connect(w);
  await w.rd.fullSync();
  // One pwrite() per MiB from a page-aligned buffer (an mmap: the kernel splits an unaligned
  // buffer of 1 MiB into two requests of unaligned sizes, which are buffered), on a write-only
  // handle: O_DIRECT locally, the bytes lent to the sender. After each, the secondary's copy of
  // that MiB is compared.
  const { stdout } = await run('python3', ['-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(16):
    m = mmap.mmap(-1, 1 << 20)
    m.write(bytes(((j * 31 + i * 7 + (j >> 12)) & 0xff) for j in range(1 << 20)))
    assert os.pwrite(fd, m, i << 20) == 1 << 20
    with open(sys.argv[2], 'rb') as s:
        s.seek(i << 20)
        if s.read(1 << 20) != m[:]:
            print('MiB %d missing on the secondary when write() returned' % i)
            sys.exit(1)
os.close(fd)
print('ok')
`, join(w.prim, 'stream'), join(w.sec, 'stream')], { timeout: 60_000 });
  t.is(stdout.trim(), 'ok', 'each MiB was on the secondary when its write() returned');
  const st = w.itc!.stats();
  t.true(st.directWrites >= 16, `direct writes: ${st.directWrites}`);
  t.is(st.alignedCopies, 0, 'straight from the request buffer');

  // A writer of 64 MiB in 1 MiB writes (another process); the secondary goes away mid-stream.
  const src = join(w.base, 'src64');
  writeFileSync(src, Buffer.concat(Array.from({ length: 64 }, (_, i) => bytes(MiB, 100 + i))));
  const lost = new Promise<Error>((res) => w.rd.once('lost', res));
  const dd = run('dd', [`if=${src}`, `of=${join(w.prim, 'stream2')}`, 'bs=1M', 'count=64'], { timeout: 60_000 });
  await until(() => { try { return statSync(join(w.sec, 'stream2')).size >= 8 * MiB; } catch { return false; } }, 20_000, 'the stream reaching the secondary');
  w.rcv!.close();
  await dd;  // every write returned (locally written; the ones after the cut not replicated)
  await lost;
  t.is(w.rd.stats().state, 'alone');
  t.true(readFileSync(join(w.prim, 'stream2')).equals(readFileSync(src)), 'the primary holds every byte');
  t.true(w.rd.snapshot().some((e) => e.path === 'stream2'), 'the stream is marked for the resync');
  await connect(w);
  await w.rd.resync();
  t.deepEqual(tree(w.sec), tree(w.prim));
});

lserial('[lab] a sequential stream marks its zones ahead, growing the look-ahead and extending it in the background: 128 MiB written ALONE costs a few log writes, and every zone written is marked', async (t) => {
  const w = await world(t);  // no secondary: ALONE, every change stays marked
  const before = w.rd.stats().tracker.fsyncs;
  await run('dd', ['if=/dev/zero', `of=${join(w.prim, 'seq')}`, 'bs=1M', 'count=128'], { timeout: 60_000 });
  const fsyncs = w.rd.stats().tracker.fsyncs - before;
  t.log(`${fsyncs} durable log writes for the create and 128 x 1 MiB`);
  // The create (1), the stream's first mark (1), a few background extensions as the look-ahead
  // doubles (16, 32, 64 zones...). The old fixed look-ahead of 16 zones (fecb95b) made 11.
  t.true(fsyncs <= 6, `${fsyncs} log writes`);
  const e = w.rd.snapshot().find((x) => x.path === 'seq');
  t.truthy(e, 'the file is marked');
  // Every zone written is covered by the marks (zone 1 MiB): [0, 128) inside their union.
  const zones = [...e!.zones].sort((a, b) => a[0] - b[0]);
  let to = 0;
  for (const [a, b] of zones) if (a <= to) to = Math.max(to, b);
  t.true(to >= 128, `marked up to zone ${to}: ${JSON.stringify(zones)}`);
});

lserial('[lab] durability \'fsync\' (writeback cache): writes are not acknowledged one by one, but fsync and close wait for every one of them: the secondary holds every byte when they return', async (t) => {
  const w = await world(t, () => {}, 100, true);
  await connect(w);
  await w.rd.fullSync();
  const want = Buffer.concat(Array.from({ length: 40 }, (_, i) => bytes(MiB, 200 + i)));
  const fd = openSync(join(w.prim, 'wb'), 'w');
  for (let i = 0; i < 32; i++) writeSync(fd, want, i * MiB, MiB, i * MiB);
  fsyncSync(fd);
  t.true(readFileSync(join(w.sec, 'wb')).equals(want.subarray(0, 32 * MiB)), 'after fsync: the secondary holds the 32 MiB');
  for (let i = 32; i < 40; i++) writeSync(fd, want, i * MiB, MiB, i * MiB);
  closeSync(fd);
  t.true(readFileSync(join(w.sec, 'wb')).equals(want), 'after close: and the 8 MiB written since');
  t.is(w.itc!.stats().notReplicated, 0);
  t.is(w.rd.stats().state, 'synced');
});

lserial('[lab] a synchronous write (dd oflag=dsync) is durable on the secondary too before it returns (written mode)', async (t) => {
  const w = await world(t, () => {}, 60_000);  // no barrier (whose syncs flush too) during the writes
  await connect(w);  // receiver and sender in their default mode, 'written'
  await w.rd.fullSync();
  t.is(w.rd.stats().state, 'synced');
  const want = bytes(4 * MiB, 5);
  const src = join(w.base, 'src');
  writeFileSync(src, want);
  // Both copies are on the same disk here: 4 synchronous writes make at least 4 flushes for the
  // primary's copy and 4 for the secondary's (its applier writes them with RWF_DSYNC).
  const flushes = flushCounter(w.sec);
  if (!flushes) t.log('the block device under the test directory has no volatile write cache (or none was found): flushes not counted');
  const f0 = flushes?.();
  await run('dd', [`if=${src}`, `of=${join(w.prim, 'log')}`, 'bs=1M', 'oflag=dsync', 'status=none']);
  if (flushes) t.log(`disk cache flushes during the 4 writes: ${flushes() - f0!}`);
  if (flushes) t.true(flushes() - f0! >= 8, `a disk cache flush per write on each side (${flushes() - f0!})`);
  t.true(readFileSync(join(w.sec, 'log')).equals(want), 'the secondary holds every byte when dd returns');
  t.true(readFileSync(join(w.prim, 'log')).equals(want));
});
