/**
 * Scale of reintegration (tracker-based resync): the work to decide what to copy depends on what
 * changed, not on the number of unmodified files. CI size: 200,000 files (HA_SCALE=1: 1,000,000);
 * and a 4 GiB sparse file of which only the changed zones move. Real FUSE interceptor, real
 * receiver over loopback TCP, real files. Needs root and /dev/fuse.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { labTest } from './lab/ava.js';
import {
  connectSender, formatDifferences, mountInterceptor, nativeAvailable, nativeUnavailableReason, openReplicatedDir, startReceiver,
  type ReplicatedDir, type RfsReceiver, type RfsSender,
} from '../native/src/index.js';

const run = promisify(execFile);
const KEY = 'rfs-scale-test-cluster-key-0123456789';
const MiB = 1 << 20;
const GiB = 1 << 30;
const SCALE = process.env.HA_SCALE === '1';

if (!nativeAvailable()) test(`rfs scale skipped: ${nativeUnavailableReason()}`, (t) => { t.log(nativeUnavailableReason()); t.pass(); });
const lserial = nativeAvailable() ? labTest.serial : labTest.serial.skip;

interface World { base: string; prim: string; sec: string; rd: ReplicatedDir; rcv: RfsReceiver; snd?: RfsSender }

/** Both copies built identical by `files` (as after an earlier synchronisation), then mounted and attached in sync. */
async function world(t: ExecutionContext, files: (dir: string) => void): Promise<World> {
  const base = mkdtempSync(join(tmpdir(), 'rfs-scale-'));
  const prim = join(base, 'prim');
  const sec = join(base, 'sec');
  mkdirSync(prim);
  mkdirSync(sec);
  const t0 = Date.now();
  files(prim);
  await run('cp', ['-a', `${prim}/.`, sec]);  // the secondary's copy: identical (times and modes too)
  t.log(`both copies built in ${Date.now() - t0} ms`);
  const rd = openReplicatedDir({ dir: prim, stateDir: join(base, 'state'), barrierIntervalMs: 100 });
  const w: World = { base, prim, sec, rd, rcv: startReceiver({ dir: sec, key: KEY }) };
  t.teardown(async () => {
    w.snd?.close();
    w.rcv.close();
    w.rd.close();
    for (let i = 0; i < 3; i++) await run('umount', ['-l', prim]).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  });
  const itc = await mountInterceptor({ dir: prim, sink: rd.sinkHandle });
  t.teardown(() => itc.unmount({ lazy: true, timeoutMs: 2000 }).catch(() => {}));
  await attach(w);
  const r = await rd.resync();  // nothing tracked: in sync at once
  t.is(r.entries, 0);
  t.is(rd.stats().state, 'synced');
  return w;
}

async function attach(w: World): Promise<void> {
  w.snd?.close();
  w.snd = await connectSender({ host: '127.0.0.1', port: w.rcv.port, key: KEY });
  w.rd.attachSender(w.snd);
}

function tree(n: number, perDir = 1000): (dir: string) => void {
  return (dir) => {
    for (let d = 0; d < Math.ceil(n / perDir); d++) {
      const sub = join(dir, `d${d}`);
      mkdirSync(sub);
      for (let f = 0; f < perDir && d * perDir + f < n; f++) writeFileSync(join(sub, `f${f}`), `${d}/${f}\n`);
    }
  };
}

/** Secondary away: change `k` files, create 10, remove 5 (through the interceptor); back: resync. */
async function outageAndResync(t: ExecutionContext, w: World, k: number, n: number) {
  w.rd.detachSender();
  const dirs = Math.ceil(n / 1000);
  for (let i = 0; i < k; i++) {
    const d = (i * 7919) % dirs;
    await fsp.writeFile(join(w.prim, `d${d}`, `f${i % 1000}`), `changed ${i}\n`.repeat(100));
  }
  for (let i = 0; i < 10; i++) await fsp.writeFile(join(w.prim, 'd0', `new${i}`), `new ${i}\n`);
  for (let i = 0; i < 5; i++) await fsp.rm(join(w.prim, `d${dirs - 1}`, `f${i}`));
  const tracked = w.rd.stats().tracker.entries;
  await attach(w);
  const t0 = process.hrtime.bigint();
  const r = await w.rd.resync();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.log(`${n} files, ${k} changed: ${tracked} tracked entries; resync ${ms.toFixed(1)} ms: ${JSON.stringify(r)}`);
  return { r, ms, tracked };
}

lserial(`[lab] resync after an outage: work follows the changes, not the ${SCALE ? '1,000,000' : '200,000'} unmodified files`, async (t) => {
  const n = SCALE ? 1_000_000 : 200_000;
  const k = 100;
  const w = await world(t, tree(n));
  const { r, tracked } = await outageAndResync(t, w, k, n);
  // The tracker names the changed files (+ their directories), not the tree.
  t.true(tracked <= k + 10 + 5 + 2 * 100 + 2, `tracked ${tracked}`);
  t.true(r.entries <= tracked + 10, `entries processed ${r.entries}`);
  t.true(r.bytesSent <= k * 1500 + 1000, `bytes sent ${r.bytesSent}`);
  const v = await w.rd.verify();
  t.log(`verify of ${v.entries} entries: ${Math.round(v.ms)} ms`);
  t.deepEqual(formatDifferences(v).slice(0, 10), [], `${v.differences.length} differences`);
  t.true(v.entries >= n);
});

lserial('[lab] a 4 GiB sparse file: only the changed zones move, holes stay holes', async (t) => {
  const w = await world(t, (dir) => {
    const fd = openSync(join(dir, 'sparse'), 'w');
    ftruncateSync(fd, 4 * GiB);
    writeSync(fd, Buffer.alloc(MiB, 7), 0, MiB, 1 * GiB);
    closeSync(fd);
    writeFileSync(join(dir, 'small'), 'x');
  });
  w.rd.detachSender();
  const fh = await fsp.open(join(w.prim, 'sparse'), 'r+');
  for (const off of [0.5 * GiB, 2 * GiB + 12345, 4 * GiB - 100_000]) await fh.write(Buffer.alloc(50_000, 9), 0, 50_000, off);
  await fh.close();
  await attach(w);
  const r = await w.rd.resync();
  t.log(`4 GiB sparse, 3 zones changed: ${JSON.stringify(r)}`);
  // Zones of 1 MiB; a sequential write marks up to 32 zones ahead of itself (repl_sink.cc
  // kMarkAheadZones: fewer tracker updates), holes in them are punched, not sent.
  t.true(r.bytesSent <= 3 * MiB, `sent ${r.bytesSent} bytes for 3 writes of 50,000 bytes`);
  t.true(r.bytesSent >= 150_000);
  const st = statSync(join(w.sec, 'sparse'));
  t.is(st.size, 4 * GiB);
  t.true(st.blocks * 512 < 16 * MiB, `the secondary's copy stays sparse (${st.blocks * 512} bytes allocated)`);
  const v = await w.rd.verify();
  t.deepEqual(formatDifferences(v), []);
  // A first synchronisation of the same file with checksums: nothing moves, the holes are not read.
  const f = await w.rd.fullSync();
  t.log(`fullSync with checksums of the 4 GiB sparse file: ${JSON.stringify(f)}`);
  t.true(f.bytesSent < 4096);
});
