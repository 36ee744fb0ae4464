/**
 * First synchronisation with block checksums (fullSync, checksums on) and verify, end to end on
 * one machine: a real FUSE interceptor over the primary's directory, a real receiver (TCP over
 * loopback) applying to the secondary's directory, real files. Needs root and /dev/fuse.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import {
  chmodSync, closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, writeSync, promises as fsp,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { labTest } from './lab/ava.js';
import {
  compareDirs, connectSender, formatDifferences, mountInterceptor, nativeAvailable, nativeUnavailableReason, openReplicatedDir, startReceiver,
  VerifyError, type ReplicatedDir, type ResyncProgress, type RfsReceiver, type RfsSender,
} from '../native/src/index.js';

const run = promisify(execFile);
const KEY = 'rfs-sync-test-cluster-key-0123456789';
const MiB = 1 << 20;
const BLOCK = 64 << 10;

if (!nativeAvailable()) test(`rfs sync skipped: ${nativeUnavailableReason()}`, (t) => { t.log(nativeUnavailableReason()); t.pass(); });
const lserial = nativeAvailable() ? labTest.serial : labTest.serial.skip;
const ntest = nativeAvailable() ? test : test.skip;

interface World { base: string; prim: string; sec: string; rd: ReplicatedDir; rcv?: RfsReceiver; snd?: RfsSender }

/** files(dir) is run on both copies before the interceptor is mounted; then secOnly(sec). */
async function world(t: ExecutionContext, files: (dir: string) => void, secOnly: (sec: string) => void = () => {}): Promise<World> {
  const base = mkdtempSync(join(tmpdir(), 'rfs-sync-'));
  const prim = join(base, 'prim');
  const sec = join(base, 'sec');
  mkdirSync(prim);
  mkdirSync(sec);
  files(prim);
  files(sec);
  secOnly(sec);
  const w: World = { base, prim, sec, rd: openReplicatedDir({ dir: prim, stateDir: join(base, 'state'), barrierIntervalMs: 100 }) };
  t.teardown(async () => {
    w.snd?.close();
    w.rcv?.close();
    w.rd.close();
    for (let i = 0; i < 3; i++) await run('umount', ['-l', prim]).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  });
  const itc = await mountInterceptor({ dir: prim, sink: w.rd.sinkHandle });
  t.teardown(() => itc.unmount({ lazy: true, timeoutMs: 2000 }).catch(() => {}));
  w.rcv = startReceiver({ dir: sec, key: KEY });
  w.snd = await connectSender({ host: '127.0.0.1', port: w.rcv.port, key: KEY });
  w.rd.attachSender(w.snd);
  return w;
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

const T = new Date('2025-01-02T03:04:05Z');
/** A 64 MiB file and 1000 small files in 10 directories, with fixed times (identical on both sides). */
function bigTree(dir: string): void {
  writeFileSync(join(dir, 'big'), bytes(64 * MiB, 1));
  utimesSync(join(dir, 'big'), T, T);
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(dir, `d${d}`));
    for (let f = 0; f < 100; f++) {
      const p = join(dir, `d${d}`, `f${f}`);
      writeFileSync(p, `file ${d}/${f}\n`.repeat(1 + f));
      utimesSync(p, T, T);
    }
  }
  symlinkSync('d1/f1', join(dir, 'link'));
}

async function identical(t: ExecutionContext, w: World): Promise<void> {
  const r = await compareDirs(w.prim, w.sec);
  const lines = formatDifferences(r);
  t.deepEqual(lines.slice(0, 10), [], `the two copies are identical (${lines.length} differences)`);
}

lserial('[lab] fullSync with checksums: identical 64 MiB file + 1000 small files send ~nothing; extra files on the secondary are removed', async (t) => {
  const w = await world(t, bigTree, (sec) => {
    writeFileSync(join(sec, 'extra-file'), 'only on the secondary');
    mkdirSync(join(sec, 'd3', 'extra-dir'));
    writeFileSync(join(sec, 'd3', 'extra-dir', 'x'), 'x');
  });
  const progress: ResyncProgress[] = [];
  w.rd.on('progress', (p) => progress.push(p));
  const r = await w.rd.fullSync();
  t.log(`identical tree: ${JSON.stringify(r)}`);
  t.is(r.sumsError, undefined);
  t.true(r.bytesSent < 4096, `data bytes sent ${r.bytesSent}`);
  t.true((r.filesIdentical ?? 0) >= 1001, `identical files ${r.filesIdentical}`);
  t.true((r.bytesMatched ?? 0) >= 64 * MiB);
  t.false(lstatSync(join(w.sec, 'extra-file'), { throwIfNoEntry: false }) !== undefined);
  t.false(lstatSync(join(w.sec, 'd3', 'extra-dir'), { throwIfNoEntry: false }) !== undefined);
  await identical(t, w);
  const last = progress.at(-1);
  t.truthy(last);
  t.is(last?.bytesDone, last?.bytesTotal, 'the last progress event says done');
  t.is(w.rd.stats().state, 'synced');
});

lserial('[lab] fullSync with checksums: one changed block sends one block; a hole here is punched there; sizes follow', async (t) => {
  const w = await world(t, (dir) => {
    bigTree(dir);
    // A sparse file: data at 0 and at 8 MiB.
    const fd = openSync(join(dir, 'sparse'), 'w');
    writeSync(fd, bytes(BLOCK, 5), 0, BLOCK, 0);
    writeSync(fd, bytes(BLOCK, 6), 0, BLOCK, 8 * MiB);
    closeSync(fd);
    utimesSync(join(dir, 'sparse'), T, T);
  }, (sec) => {
    // The secondary differs: one byte of the big file, data where the primary has a hole, a longer small file.
    const fd = openSync(join(sec, 'big'), 'r+');
    writeSync(fd, Buffer.from([0x5a]), 0, 1, 20 * MiB + 123);
    closeSync(fd);
    utimesSync(join(sec, 'big'), T, T);
    const fs2 = openSync(join(sec, 'sparse'), 'r+');
    writeSync(fs2, bytes(BLOCK, 9), 0, BLOCK, 4 * MiB);
    closeSync(fs2);
    writeFileSync(join(sec, 'd0', 'f5'), 'longer on the secondary\n'.repeat(50));
    chmodSync(join(sec, 'd0', 'f6'), 0o600);
  });
  const r = await w.rd.fullSync();
  t.log(`one block changed: ${JSON.stringify(r)}`);
  // The changed block of big, plus the small f5 (rewritten whole, a few hundred bytes).
  t.true(r.bytesSent >= BLOCK && r.bytesSent < BLOCK + 4096, `data bytes sent ${r.bytesSent} (one block is ${BLOCK})`);
  t.is(r.holesPunched, 1);
  await identical(t, w);
  const st = statSync(join(w.sec, 'sparse'));
  t.true(st.blocks * 512 <= 2 * BLOCK + 8192, `the secondary's sparse file keeps its holes (${st.blocks * 512} bytes allocated)`);
  t.is(statSync(join(w.sec, 'd0', 'f6')).mode & 0o7777, statSync(join(w.prim, 'd0', 'f6')).mode & 0o7777, 'the mode changed on the secondary is repaired');
});

lserial('[lab] fullSync with checksums while the application writes: end state byte-identical', async (t) => {
  const w = await world(t, bigTree, (sec) => {
    const fd = openSync(join(sec, 'big'), 'r+');
    for (let i = 0; i < 64; i++) writeSync(fd, Buffer.from([i]), 0, 1, i * MiB + 7); // 64 blocks differ
    closeSync(fd);
  });
  let stop = false;
  let n = 0;
  const writer = (async () => {
    while (!stop) {
      const fh = await fsp.open(join(w.prim, 'big'), 'r+');
      await fh.write(bytes(5000, n), 0, 5000, (n * 1_234_567) % (64 * MiB - 5000));
      await fh.close();
      await fsp.writeFile(join(w.prim, `d${n % 10}`, `f${n % 100}`), `live ${n}\n`);
      await fsp.writeFile(join(w.prim, `new${n % 7}`), bytes(10_000, n));
      n++;
    }
  })();
  const r = await w.rd.fullSync();
  await new Promise((res) => setTimeout(res, 200));
  stop = true;
  await writer;
  t.log(`with ${n} live write rounds: ${JSON.stringify(r)}`);
  t.true(n > 0);
  // Every live write was forwarded or copied by the sync: wait for the stream to settle, then compare.
  await new Promise((res) => setTimeout(res, 300));
  await identical(t, w);
});

lserial('[lab] verify reports every difference with the secondary; none after a sync', async (t) => {
  const w = await world(t, bigTree);
  await w.rd.fullSync();
  const clean = await w.rd.verify();
  t.deepEqual(clean.differences, []);
  t.true(clean.entries >= 1012);
  // Damage the secondary behind the receiver's back.
  const fd = openSync(join(w.sec, 'big'), 'r+');
  writeSync(fd, Buffer.from([0xff ^ bytes(1, 1)[0]!]), 0, 1, 30 * MiB + 5);
  closeSync(fd);
  rmSync(join(w.sec, 'd2', 'f3'));
  writeFileSync(join(w.sec, 'd2', 'intruder'), 'x');
  chmodSync(join(w.sec, 'd4', 'f4'), 0o600);
  writeFileSync(join(w.sec, 'd5', 'f5'), 'short');
  rmSync(join(w.sec, 'link'));
  symlinkSync('elsewhere', join(w.sec, 'link'));
  const r = await w.rd.verify();
  t.log(formatDifferences(r).join('\n'));
  const kinds = r.differences.map((d) => `${d.kind} ${d.path}`);
  t.true(kinds.includes('content big'));
  t.is(r.differences.find((d) => d.kind === 'content')?.offset, 30 * MiB);
  t.is(r.differences.find((d) => d.kind === 'content')?.blocks, 1);
  t.true(kinds.includes('missing d2/f3'));
  t.true(kinds.includes('extra d2/intruder'));
  t.true(kinds.includes('mode d4/f4'));
  t.true(kinds.includes('size d5/f5'));
  t.true(kinds.includes('symlink link'));
  // A full sync repairs it all.
  await w.rd.fullSync();
  t.deepEqual((await w.rd.verify()).differences, []);
  // Without a secondary: a clear error.
  w.rd.detachSender();
  const e = await t.throwsAsync(w.rd.verify(), { instanceOf: VerifyError });
  t.is((e as VerifyError).code, 'ERR_RFS_REPL_ALONE');
});

// Listings are cut into records of 1 MiB of names (DirListPart... DirList; a record is at most
// ~4 MiB on the wire). 8000 names of ~235 bytes = 1.8 MiB: two parts. (Not more: the interceptor
// holds an fd per inode the kernel knows, and this test walks the tree through the mount.)
lserial('[lab] a directory listing longer than one record part is split and applied whole', async (t) => {
  const n = 8000;
  const long = 'n'.repeat(230);
  const w = await world(t, (dir) => {
    mkdirSync(join(dir, 'many'));
    for (let i = 0; i < n; i++) writeFileSync(join(dir, 'many', `${long}${i}`), '');
  }, (sec) => {
    for (let i = 0; i < 50; i++) writeFileSync(join(sec, 'many', `stale${i}`), 'x');
  });
  const r = await w.rd.fullSync();
  t.log(`${n} names of ~235 bytes (${Math.round(n * 236 / MiB)} MiB of listing): ${JSON.stringify(r)}`);
  await identical(t, w);
});

ntest('compareDirs names what is wrong with its arguments', async (t) => {
  await t.throwsAsync(compareDirs('', '/tmp'), { instanceOf: VerifyError, message: /a must be a non-empty path/ });
  const e = await t.throwsAsync(compareDirs('/nonexistent-dir-rfs', '/tmp'), { instanceOf: VerifyError });
  t.is((e as VerifyError).code, 'ERR_RFS_VERIFY_DIR');
});
