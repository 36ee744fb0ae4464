// Persistent dirty tracker (native/src/rfs/dirty.*): real files, real fdatasync, a real child
// process killed with SIGKILL. No root needed.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { nativeAvailable, nativeUnavailableReason } from '../native/src/native.js';
import { openDirtyTracker, _benchDirtyTracker, DirtyArgumentError } from '../native/src/rfs-dirty.js';
import type { DirtyTracker, DirtyEntry } from '../native/src/rfs-dirty.js';

const here = dirname(fileURLToPath(import.meta.url));
const available = nativeAvailable();
const t0 = available ? test : test.skip;
if (!available) test.skip(`rfs dirty tracker: native addon not available (${nativeUnavailableReason()})`, () => {});

const MiB = 1 << 20;

function tmp(t: ExecutionContext): string {
  const d = mkdtempSync(join(tmpdir(), 'rfs-dirty-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function open(t: ExecutionContext, dir: string, zoneBytes = MiB, compactBytes?: number): DirtyTracker {
  const tr = openDirtyTracker(compactBytes === undefined ? { dir, zoneBytes } : { dir, zoneBytes, compactBytes });
  t.teardown(() => tr.close());
  return tr;
}

/** The snapshot without epochs (they are not persisted exactly, only bounded). */
function shape(s: DirtyEntry[]): Array<[string, Array<[number, number]>, boolean]> {
  return s.map((e) => [e.path, e.zones, e.meta]);
}

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); } catch (err) { return (err as { code?: string }).code; }
  return undefined;
}

t0('marks survive close and reopen; a second opener is refused; closed trackers refuse calls', (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: MiB });
  a.markData('db/data.bin', 0, 4096);
  a.markData('db/data.bin', 5 * MiB + 10, 2 * MiB);  // zones 5..7
  a.markPath('db');
  a.markData('log.txt', 123, 0);                       // length 0: the zone holding the offset
  t.is(codeOf(() => openDirtyTracker({ dir, zoneBytes: MiB })), 'ERR_RFS_DIRTY_LOCKED');
  const before = shape(a.snapshot());
  a.close();
  a.close(); // idempotent
  t.is(codeOf(() => a.markPath('x')), 'ERR_RFS_DIRTY_CLOSED');
  const b = open(t, dir);
  t.deepEqual(shape(b.snapshot()), before);
  t.deepEqual(before, [
    ['db', [], true],
    ['db/data.bin', [[0, 1], [5, 8]], false],
    ['log.txt', [[0, 1]], false],
  ]);
  t.is(codeOf(() => openDirtyTracker({ dir: join(dir, 'other'), zoneBytes: 3000 })), 'ERR_RFS_DIRTY_ARG');
});

t0('reopening with another zone size is refused (ERR_RFS_DIRTY_ZONE)', (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: MiB });
  a.markData('f', 0, 1);
  a.close();
  const err = t.throws(() => openDirtyTracker({ dir, zoneBytes: 4096 }));
  t.is((err as Error & { code?: string }).code, 'ERR_RFS_DIRTY_ZONE');
  t.regex(err!.message, /zoneBytes 1048576/);
});

t0('bad arguments get clear errors naming the argument', (t) => {
  const tr = open(t, tmp(t));
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['absolute path', () => tr.markData('/etc/passwd', 0, 1), /markData path: must be relative/],
    ['dot-dot', () => tr.markPath('a/../b'), /markPath path: empty, '\.' or '\.\.' component/],
    ['double slash', () => tr.markPath('a//b'), /component/],
    ['NUL', () => tr.markPath('a\0b'), /NUL/],
    ['negative offset', () => tr.markData('f', -1, 1), /markData offset: expected a non-negative safe integer/],
    ['fractional length', () => tr.markData('f', 0, 1.5), /markData length/],
    ['rename root', () => tr.markRename('', 'x'), /cannot rename the root/],
    ['clearEntries not array', () => tr.clearEntries('x' as unknown as string[]), /clearEntries paths/],
    ['markMany bad entry', () => tr.markMany([{ path: 'ok' }, { path: '/bad' }]), /markMany marks\[1\]\.path/],
    ['zoneBytes', () => openDirtyTracker({ dir: 'x', zoneBytes: 1000 }), /zoneBytes: must be a power of two/],
  ];
  for (const [name, fn, re] of cases) {
    const err = t.throws(fn, undefined, name);
    t.true(err instanceof DirtyArgumentError, name);
    t.is((err as DirtyArgumentError).code, 'ERR_RFS_DIRTY_ARG', name);
    t.regex(err!.message, re, name);
  }
  t.is(tr.stats().marks, 0);
});

// Serial (ava runs serial tests first, alone): the parent must read the child's output promptly.
const serial = available ? test.serial : test.skip;

serial('a process killed with SIGKILL right after marks returned: every acknowledged mark is found after reopen', async (t) => {
  const dir = tmp(t);
  const state = join(dir, 'state');
  const child = join(dir, 'marker.ts');
  const mod = pathToFileURL(join(here, '..', 'native', 'src', 'rfs-dirty.ts')).href;
  // Small zones and a tiny compaction bound, so the kill also lands around compactions.
  writeFileSync(child, `
import { openDirtyTracker } from ${JSON.stringify(mod)};
const t = openDirtyTracker({ dir: ${JSON.stringify(state)}, zoneBytes: 65536, compactBytes: 16384 });
process.stdout.write('READY\\n');
for (let i = 0; i < 20000; i++) {
  const path = 'd' + (i % 7) + '/f' + (i % 101);
  const off = ((i * 7919) % 5000) * 65536 + (i % 3);
  t.markData(path, off, 100);
  process.stdout.write('D ' + path + ' ' + off + '\\n');
  if (i % 5 === 0) { t.markPath('m/p' + i); process.stdout.write('M m/p' + i + '\\n'); }
  if (i % 97 === 0) { t.markRename('d' + (i % 7), 'r/d' + i); process.stdout.write('R d' + (i % 7) + ' r/d' + i + '\\n'); }
}
setInterval(() => {}, 1000);  // done: wait for the kill
`);
  const proc = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', child], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); });
  let out = '';
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    let timer = setTimeout(() => { proc.kill('SIGKILL'); }, 60_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line === 'READY') {
          // Killed while it marks (it makes at most 20,000 marks, a few seconds' worth).
          clearTimeout(timer);
          timer = setTimeout(() => { proc.kill('SIGKILL'); }, 1500);
          continue;
        }
        lines.push(line);
      }
      if (lines.length >= 4000) proc.kill('SIGKILL');
    });
    // 'close': the child is dead and its output read to the end (every line is an acknowledged mark).
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`marker exited with ${code}/${signal}: ${stderr}`));
    });
  });
  t.true(lines.length >= 50, `only ${lines.length} marks acknowledged before the kill`);
  const tr = open(t, state, 65536);
  const snap = new Map(tr.snapshot().map((e) => [e.path, e]));
  let missing = 0;
  // Renames copy marks: a data mark made before a rename of its directory is also found there.
  for (const line of lines) {
    const [kind, a, b] = line.split(' ');
    if (kind === 'D') {
      const zone = Math.floor(Number(b) / 65536);
      const e = snap.get(a!);
      if (!e || !e.zones.some(([s, x]) => s <= zone && zone < x)) missing++;
    } else if (kind === 'M' || kind === 'R') {
      if (!snap.get(a!)?.meta) missing++;
      if (kind === 'R' && !snap.get(b!)?.meta) missing++;
    }
  }
  const st = tr.stats();
  t.log(`${lines.length} acknowledged marks before SIGKILL; after reopen: ${st.entries} entries, ${st.zones} zones, generation ${st.generation}`);
  t.is(missing, 0);
  t.true(st.generation > 0, 'compactions happened in the child');
});

t0('a torn last record is dropped; the tracker keeps working after it', (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: MiB });
  for (let i = 0; i < 3; i++) a.markData(`f${i}`, 0, 1);
  const end = a.stats().logBytes;  // header + frames of log.0
  a.close();
  // A crash in the middle of the next batch: its header says 100 bytes, only 20 made it.
  const fd = openSync(join(dir, 'log.0'), 'r+');
  const torn = Buffer.alloc(28);
  torn.writeUInt32LE(100, 0);
  torn.writeUInt32LE(0x12345678, 4);
  torn.fill(0xab, 8);
  writeSync(fd, torn, 0, torn.length, end);
  closeSync(fd);
  const b = openDirtyTracker({ dir, zoneBytes: MiB });
  t.deepEqual(b.snapshot().map((e) => e.path), ['f0', 'f1', 'f2']);
  b.markData('f3', 0, 1);
  b.close();
  const c = open(t, dir);
  t.deepEqual(c.snapshot().map((e) => e.path), ['f0', 'f1', 'f2', 'f3']);
});

t0('a damaged record in the middle of the log, or a damaged snapshot, is ERR_RFS_DIRTY_CORRUPT', (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: MiB });
  for (let i = 0; i < 5; i++) a.markData(`f${i}`, 0, 1);
  a.close();
  const log = join(dir, 'log.0');
  const bytes = readFileSync(log);
  bytes[28 + 8 + 3]! ^= 0x40;  // inside the first frame's payload
  writeFileSync(log, bytes);
  const err = t.throws(() => openDirtyTracker({ dir, zoneBytes: MiB }));
  t.is((err as Error & { code?: string }).code, 'ERR_RFS_DIRTY_CORRUPT');
  t.regex(err!.message, /log\.0 has a damaged record at byte 28/);

  const dir2 = tmp(t);
  const b = openDirtyTracker({ dir: dir2, zoneBytes: MiB });
  b.markData('g', 0, 1);
  b.compact();
  b.close();
  const snap = join(dir2, 'snapshot');
  const sb = readFileSync(snap);
  sb[sb.length - 10]! ^= 1;
  writeFileSync(snap, sb);
  const err2 = t.throws(() => openDirtyTracker({ dir: dir2, zoneBytes: MiB }));
  t.is((err2 as Error & { code?: string }).code, 'ERR_RFS_DIRTY_CORRUPT');
  t.regex(err2!.message, /snapshot .* fails its checksum/);
});

t0('renames of directories carry nested marks (and exchange swaps them); unlink drops zones', (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: MiB });
  a.markData('a/d/x', 2 * MiB, 10);
  a.markPath('a/d/sub/y');
  a.markData('a/d-sibling', 0, 1);   // sorts between 'a/d' and 'a/d/...': not below a/d
  a.markData('a/dx', 0, 1);
  a.markRename('a/d', 'b/e');
  const s = new Map(a.snapshot().map((e) => [e.path, e]));
  t.deepEqual(s.get('b/e/x')?.zones, [[2, 3]]);
  t.true(s.get('b/e/sub/y')?.meta);
  t.false(s.has('b/e-sibling'));
  t.false(s.has('b/ex'));
  for (const p of ['a', 'b', 'a/d', 'b/e']) t.true(s.get(p)?.meta, `${p} marked`);
  t.deepEqual(s.get('a/d/x')?.zones, [[2, 3]], 'source marks kept (a failed rename loses nothing)');

  a.markData('p/1', 0, 1);
  a.markData('q/2', MiB, 1);
  a.markRename('p', 'q', { exchange: true });
  const s2 = new Map(a.snapshot().map((e) => [e.path, e]));
  t.deepEqual(s2.get('q/1')?.zones, [[0, 1]]);
  t.deepEqual(s2.get('p/2')?.zones, [[1, 2]]);

  a.markData('u/f', 0, 5 * MiB);
  a.markData('u/f/g', 0, 1);
  a.markUnlink('u/f');
  const s3 = new Map(a.snapshot().map((e) => [e.path, e]));
  t.deepEqual(s3.get('u/f'), { path: 'u/f', zones: [], meta: true, epoch: s3.get('u/f')!.epoch });
  t.true(s3.get('u')?.meta);
  t.false(s3.has('u/f/g'));
  const before = shape(a.snapshot());
  a.close();
  const b = open(t, dir);
  t.deepEqual(shape(b.snapshot()), before, 'replayed identically');
});

t0('sparse multi-GiB offsets are cheap (3 GiB, 7 TiB, and a 7 TiB range)', (t) => {
  const tr = open(t, tmp(t));
  const start = process.hrtime.bigint();
  tr.markData('big', 3 * 2 ** 30, 4096);
  tr.markData('big', 7 * 2 ** 40, 4096);
  tr.markData('huge', 0, 7 * 2 ** 40);
  tr.markData('trunc', 5 * MiB, Number.MAX_SAFE_INTEGER - 5 * MiB);  // a truncate: to the end
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const s = new Map(tr.snapshot().map((e) => [e.path, e]));
  t.deepEqual(s.get('big')?.zones, [[3072, 3073], [7340032, 7340033]]);
  t.deepEqual(s.get('huge')?.zones, [[0, 7340032]]);
  t.is(s.get('trunc')?.zones[0]?.[0], 5);
  const st = tr.stats();
  t.is(st.ranges, 4);
  t.true(st.logBytes < 4096, `log ${st.logBytes} bytes`);
  t.log(`4 sparse marks (up to 7 TiB) in ${ms.toFixed(2)} ms, log ${st.logBytes} bytes, ${st.zones} zones as ${st.ranges} ranges`);
});

// Checkpoint / clear semantics, table-style: each case runs steps, then the expected snapshot;
// the same must come back after reopen (clears are logged).
const clearCases: Array<{ name: string; run: (tr: DirtyTracker) => void; expect: Array<[string, Array<[number, number]>, boolean]> }> = [
  { name: 'marked before the checkpoint: cleared', run: (tr) => { tr.markData('a', 0, 1); tr.clearUpTo(tr.checkpoint()); }, expect: [] },
  { name: 'marked after the checkpoint: kept', run: (tr) => { tr.markData('a', 0, 1); const e = tr.checkpoint(); tr.markData('b', 0, 1); tr.clearUpTo(e); }, expect: [['b', [[0, 1]], false]] },
  { name: 'a dirty zone written again after the checkpoint: kept', run: (tr) => { tr.markData('a', 0, 1); const e = tr.checkpoint(); tr.markData('a', 100, 1); tr.clearUpTo(e); }, expect: [['a', [[0, 1]], false]] },
  { name: 'part of a range re-marked: only that part kept', run: (tr) => { tr.markData('a', 0, 4 * MiB); const e = tr.checkpoint(); tr.markData('a', 2 * MiB, 1); tr.clearUpTo(e); }, expect: [['a', [[2, 3]], false]] },
  { name: 'older epoch cleared first, newer later', run: (tr) => {
    tr.markData('a', 0, 1); const e1 = tr.checkpoint(); tr.markData('b', 0, 1); const e2 = tr.checkpoint(); tr.markData('c', 0, 1);
    tr.clearUpTo(e1); tr.clearUpTo(e2);
  }, expect: [['c', [[0, 1]], false]] },
  { name: 'clearing an epoch twice or an old one is harmless', run: (tr) => { const e0 = tr.checkpoint(); tr.markData('a', 0, 1); tr.clearUpTo(e0); tr.clearUpTo(e0); }, expect: [['a', [[0, 1]], false]] },
  { name: 'meta marks follow the same rule', run: (tr) => { tr.markPath('p'); const e = tr.checkpoint(); tr.markPath('q'); tr.markData('p', 0, 1); tr.clearUpTo(e); }, expect: [['p', [[0, 1]], false], ['q', [], true]] },
  { name: 'clearEntries with an epoch keeps later marks of those paths', run: (tr) => {
    tr.markData('a', 0, 1); tr.markData('b', 0, 1); const e = tr.checkpoint(); tr.markData('a', 5 * MiB, 1); tr.clearEntries(['a', 'b', 'nope'], e);
  }, expect: [['a', [[5, 6]], false]] },
  { name: 'clearEntries without an epoch clears them whole', run: (tr) => { tr.markData('a', 0, 1); tr.markPath('a'); tr.markData('b', 0, 1); tr.clearEntries(['a']); }, expect: [['b', [[0, 1]], false]] },
  { name: 'clearAll clears everything', run: (tr) => { tr.markData('a', 0, 1); tr.markPath('b'); tr.clearAll(); tr.markData('c', 0, 1); }, expect: [['c', [[0, 1]], false]] },
  { name: 'a cleared zone marked again is dirty again', run: (tr) => { tr.markData('a', 0, 1); tr.clearUpTo(tr.checkpoint()); tr.markData('a', 0, 1); }, expect: [['a', [[0, 1]], false]] },
];
for (const c of clearCases) {
  t0(`checkpoint/clear: ${c.name}`, (t) => {
    const dir = tmp(t);
    const a = openDirtyTracker({ dir, zoneBytes: MiB });
    c.run(a);
    t.deepEqual(shape(a.snapshot()), c.expect);
    a.close();
    const b = open(t, dir);
    t.deepEqual(shape(b.snapshot()), c.expect, 'after reopen');
    const e = b.checkpoint();
    t.true(e >= 1, 'epochs keep growing across reopen');
  });
}

t0('compaction past the bound keeps the state (snapshot + new log), old logs removed', async (t) => {
  const dir = tmp(t);
  const a = openDirtyTracker({ dir, zoneBytes: 65536, compactBytes: 8192 });
  for (let i = 0; i < 400; i++) a.markData(`c/${i % 20}`, i * 65536 * 2, 1);
  for (let i = 0; i < 100 && a.stats().compactions === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.true(a.stats().compactions > 0, 'background compaction ran');
  const before = shape(a.snapshot());
  a.close();
  const files = readdirSync(dir).sort();
  t.true(files.includes('snapshot'));
  t.is(files.filter((f) => f.startsWith('log.')).length, 1, files.join(' '));
  const b = open(t, dir, 65536);
  t.deepEqual(shape(b.snapshot()), before);
  t.is(b.stats().zones, 400);
});

t0('group commit: threads marking new zones share fdatasyncs; marks/s figures', (t) => {
  const tr = open(t, tmp(t));
  const one = _benchDirtyTracker(tr, 1, 200, true, 'one/t');
  t.is(one.fsyncs, one.marks, 'one thread: one fdatasync per new zone');
  const many = _benchDirtyTracker(tr, 16, 100, true, 'many/t');
  t.true(many.fsyncs < many.marks / 2, `16 threads: ${many.fsyncs} fdatasyncs for ${many.marks} marks`);
  _benchDirtyTracker(tr, 4, 1, false, 'hot/t');  // makes the zones dirty (4 fdatasyncs at most)
  const hot = _benchDirtyTracker(tr, 1, 200_000, false, 'hot/t');
  t.is(hot.fsyncs, 0, 'already-dirty zones cost no fdatasync');
  const hot4 = _benchDirtyTracker(tr, 4, 100_000, false, 'hot/t');
  t.is(hot4.fsyncs, 0);
  t.log(`new zones, 1 thread: ${(one.marks / one.ms * 1000).toFixed(0)} marks/s (${(one.ms / one.marks * 1000).toFixed(0)} µs each)`);
  t.log(`new zones, 16 threads: ${(many.marks / many.ms * 1000).toFixed(0)} marks/s, ${many.fsyncs} fdatasyncs for ${many.marks} marks`);
  t.log(`already-dirty zones: 1 thread ${(hot.marks / hot.ms * 1000).toFixed(0)} marks/s, 4 threads ${(hot4.marks / hot4.ms * 1000).toFixed(0)} marks/s`);
});

serial('1,000,000 dirty paths: marked, snapshotted and reopened in sane time and memory; one more mark costs the same', (t) => {
  const dir = tmp(t);
  const small = open(t, join(dir, 'small'));
  _benchDirtyTracker(small, 1, 1000, false, 'warm/t');
  const hotSmall = _benchDirtyTracker(small, 1, 200_000, false, 'hot/t');

  const rss0 = process.memoryUsage().rss;
  const a = openDirtyTracker({ dir: join(dir, 'big'), zoneBytes: MiB });
  const N = 1_000_000;
  let start = Date.now();
  for (let base = 0; base < N; base += 100_000) {
    const batch = [];
    for (let i = base; i < base + 100_000; i++) batch.push({ path: `d${i % 1000}/file-${i}.dat`, offset: (i % 17) * MiB, length: 4096 });
    a.markMany(batch);
  }
  const markMs = Date.now() - start;
  const st = a.stats();
  t.is(st.entries, N);
  const rss1 = process.memoryUsage().rss;
  _benchDirtyTracker(a, 1, 1000, false, 'd5/file-5.dat/t');  // (a path among the others)
  const hotBig = _benchDirtyTracker(a, 1, 200_000, false, 'd5/file-5.dat/t');
  start = Date.now();
  const snap = a.snapshot();
  const snapMs = Date.now() - start;
  t.is(snap.length, N + 1);
  t.deepEqual(snap.find((e) => e.path === 'd7/file-7.dat')?.zones, [[7, 8]]);
  start = Date.now();
  a.compact();
  const compactMs = Date.now() - start;
  a.close();
  start = Date.now();
  const b = open(t, join(dir, 'big'));
  const reopenMs = Date.now() - start;
  t.is(b.stats().entries, N + 1);
  const perSmall = hotSmall.ms / hotSmall.marks * 1000;
  const perBig = hotBig.ms / hotBig.marks * 1000;
  t.log(`1M paths: markMany ${markMs} ms (${st.fsyncs} fdatasyncs, log ${(st.logBytes / MiB).toFixed(1)} MiB), snapshot to JS ${snapMs} ms, compact ${compactMs} ms, reopen ${reopenMs} ms, tracker RSS ≈ +${((rss1 - rss0) / MiB).toFixed(0)} MiB`);
  t.log(`already-dirty mark: ${perSmall.toFixed(2)} µs with ~1 entry, ${perBig.toFixed(2)} µs with 1,000,000 entries`);
  t.true(perBig < perSmall * 10 + 5, 'a mark is a tree lookup, not a scan');
  t.true(markMs < 120_000 && snapMs < 60_000 && reopenMs < 60_000, 'sane time');
});
