/**
 * The write interceptor (native FUSE, src/rfs/fuse*.cc) with real mounts over temp directories:
 * changes made by real processes (python3, dd) through the mount are applied underneath and
 * reach the sink as the expected records, in order; the sink refusing acks does not fail the
 * application; a SIGKILLed owner leaves ENOTCONN that staleMountCleanup / the next mount fix;
 * the read-only bind refuses writes. Needs root and /dev/fuse (labTest skips visibly otherwise).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, lstatSync, readlinkSync, existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { labTest } from './lab/ava.js';
import { flushCounter } from './lab/disk.js';
import {
  createTestSink, fnv1a64, mountInterceptor, readOnlyBind, staleMountCleanup, undoReadOnlyBind,
  type Interceptor, type TestSinkRecord,
} from '../native/src/index.js';

const run = promisify(execFile);
const MIB = 1 << 20;
const test = labTest;

interface Env { base: string; dir: string; under: string }

/** A temp dir `dir` (the replicated one) and `under`: a private bind of it taken before any mount, to see the real files. */
async function setup(t: ExecutionContext, files: Record<string, string> = {}): Promise<Env> {
  const base = mkdtempSync(join(tmpdir(), 'rfs-fuse-'));
  await run("chmod", ["755", base]);
  const dir = join(base, 'data');
  const under = join(base, 'under');
  mkdirSync(dir);
  mkdirSync(under);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  await run('mount', ['--bind', dir, under]);
  await run('mount', ['--make-private', under]);
  t.teardown(async () => {
    // Unmount whatever is still on dir (interceptor, read-only bind), then the bind, then remove.
    for (let i = 0; i < 4; i++) await run('umount', ['-l', dir]).catch(() => {});
    await run('umount', ['-l', under]).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  });
  return { base, dir, under };
}

function track(t: ExecutionContext, icpt: Interceptor): void {
  t.teardown(() => icpt.unmount({ lazy: true, timeoutMs: 1000 }).catch(() => {}));
}

async function py(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('python3', ['-c', script, ...args]);
  return stdout;
}

const oct = (m: number): string => (m & 0o7777).toString(8).padStart(4, '0');

/** One line per record: what the test compares. */
function show(r: TestSinkRecord): string {
  switch (r.op) {
    case 'write': return `write ${r.path} @${r.offset}+${r.dataLength} ${r.dataHash}`;
    case 'truncate': return `truncate ${r.path} ${r.length}`;
    case 'fallocate': return `fallocate ${r.path} mode${r.flags} @${r.offset}+${r.length}`;
    case 'create': return `create ${r.path} ${oct(r.mode)} ${r.uid}:${r.gid}`;
    case 'mkdir': return `mkdir ${r.path} ${oct(r.mode)} ${r.uid}:${r.gid}`;
    case 'mknod': return `mknod ${r.path} ${(r.mode & 0o170000) === 0o010000 ? 'fifo' : r.mode.toString(8)} ${oct(r.mode)}`;
    case 'symlink': return `symlink ${r.path} -> ${r.path2}`;
    case 'link': return `link ${r.path} -> ${r.path2}`;
    case 'rename': return `rename ${r.path} -> ${r.path2} flags${r.flags}`;
    case 'chmod': return `chmod ${r.path} ${oct(r.mode)}`;
    case 'chown': return `chown ${r.path} ${r.uid}:${r.gid}`;
    case 'utimens': return `utimens ${r.path} ${r.atime.sec}.${r.atime.nsec} ${r.mtime.sec}.${r.mtime.nsec}`;
    case 'setxattr': return `setxattr ${r.path} ${r.name}=${r.data?.toString() ?? ''}`;
    case 'removexattr': return `removexattr ${r.path} ${r.name}`;
    case 'fsync': return `fsync ${r.path}${r.flags === 1 ? ' data' : ''}`;
    default: return `${r.op} ${r.path}`;
  }
}

const h = (s: string | Buffer): string => fnv1a64(typeof s === 'string' ? Buffer.from(s) : s);

test.serial('[lab] mounted over a directory with files: same content through the mount, reads not recorded, max_write 1 MiB', async (t) => {
  const env = await setup(t, { 'a.txt': 'alpha', 'b.bin': 'x'.repeat(300_000) });
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const { stdout } = await run('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', env.dir]);
  t.is(stdout.trim(), `fuse.ha ha-rfs:${env.dir}`);
  t.is(readFileSync(join(env.dir, 'a.txt'), 'utf8'), 'alpha');
  t.is((await py('import sys;print(len(open(sys.argv[1],"rb").read()))', join(env.dir, 'b.bin'))).trim(), '300000');
  t.deepEqual((await fsp.readdir(env.dir)).sort(), ['a.txt', 'b.bin']);
  t.deepEqual(icpt.testSink!.takeRecords(), []);
  const s = icpt.stats();
  t.is(s.maxWrite, 1 << 20);
  t.true(s.ops['read']! >= 1);
  t.true(icpt.mounted);
  await icpt.unmount();
  t.false(icpt.mounted);
  const after = await run('findmnt', ['-n', env.dir]).catch(() => ({ stdout: '' }));
  t.is(after.stdout.trim(), '');
  t.is(readFileSync(join(env.dir, 'a.txt'), 'utf8'), 'alpha');
});

const SCRIPT = String.raw`
import os, sys, ctypes
d = sys.argv[1]
P = lambda *a: os.path.join(d, *a)
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) != 0:
        raise OSError(ctypes.get_errno(), 'renameat2')
fd = os.open(P('f'), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640)
os.pwrite(fd, b'hello', 0)
os.pwrite(fd, b'XY', 100)
os.close(fd)
fd = os.open(P('f'), os.O_WRONLY | os.O_APPEND); os.write(fd, b'tail'); os.close(fd)
os.truncate(P('f'), 50)
fd = os.open(P('f'), os.O_RDWR); os.posix_fallocate(fd, 0, 8192); os.fsync(fd); os.fdatasync(fd); os.close(fd)
os.mkdir(P('d'), 0o750)
os.mkfifo(P('d', 'fifo'), 0o600)
os.symlink('../f', P('d', 'ln'))
os.link(P('f'), P('d', 'hard'))
fd = os.open(P('d', 'g'), os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'g' * 10000); os.close(fd)
os.rename(P('d'), P('e'))
fd = os.open(P('e', 'g'), os.O_WRONLY); os.pwrite(fd, b'Z', 5); os.close(fd)
os.rename(P('e', 'g'), P('f'))
os.unlink(P('e', 'hard'))
open(P('x'), 'w').write('xx')
open(P('y'), 'w').write('yyy')
renameat2(P('x'), P('y'), 2)
os.chmod(P('f'), 0o600)
os.chown(P('f'), 1234, 5678)
os.utime(P('f'), ns=(1000000000123, 2000000000456))
os.setxattr(P('f'), 'user.k', b'v1')
os.setxattr(P('f'), 'user.keep', b'v2')
os.removexattr(P('f'), 'user.k')
os.unlink(P('e', 'fifo')); os.unlink(P('e', 'ln')); os.rmdir(P('e'))
`;

test.serial('[lab] a script of changes produces exactly the expected records, in order, with paths after directory renames; the files underneath are right', async (t) => {
  const env = await setup(t);
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  await py(SCRIPT, env.dir);
  const recs = icpt.testSink!.takeRecords();
  t.deepEqual(recs.map((r) => r.seq), recs.map((_, i) => i + 1), 'sequence numbers follow the order');
  const got = recs.map(show);
  const expected = [
    'create f 0640 0:0',
    `write f @0+5 ${h('hello')}`,
    `write f @100+2 ${h('XY')}`,
    `write f @102+4 ${h('tail')}`,
    'truncate f 50',
    'fallocate f mode0 @0+8192',
    'fsync f',
    'fsync f data',
    'mkdir d 0750 0:0',
    'mknod d/fifo fifo 0600',
    'symlink d/ln -> ../f',
    'link f -> d/hard',
    'create d/g 0644 0:0',
    `write d/g @0+10000 ${h('g'.repeat(10000))}`,
    'rename d -> e flags0',
    `write e/g @5+1 ${h('Z')}`,
    'rename e/g -> f flags0',
    'unlink e/hard',
    'create x 0644 0:0',
    'truncate x 0', // open(O_CREAT|O_TRUNC): redundant for a new file, needed for an existing one
    `write x @0+2 ${h('xx')}`,
    'create y 0644 0:0',
    'truncate y 0',
    `write y @0+3 ${h('yyy')}`,
    'rename x -> y flags2',
    'chmod f 0600',
    'chown f 1234:5678',
    'utimens f 1000.123 2000.456',
    'setxattr f user.k=v1',
    'setxattr f user.keep=v2',
    'removexattr f user.k',
    'unlink e/fifo',
    'unlink e/ln',
    'rmdir e',
  ];
  t.deepEqual(got, expected);
  t.true(icpt.testSink!.beforeApply >= 7, 'BeforeApply called for data changes');
  // Underneath: the real directory holds the result.
  const f = join(env.under, 'f');
  const g = Buffer.from('g'.repeat(10000)); g[5] = 'Z'.charCodeAt(0);
  t.deepEqual(readFileSync(f), g);
  const st = statSync(f);
  t.is(st.mode & 0o7777, 0o600);
  t.is(st.uid, 1234);
  t.is(st.gid, 5678);
  t.is(st.mtimeMs, 2000000.000456);
  t.is((await py('import os,sys;print(sorted(os.listxattr(sys.argv[1])))', f)).trim(), "['user.keep']");
  t.is(readFileSync(join(env.under, 'x'), 'utf8'), 'yyy');
  t.is(readFileSync(join(env.under, 'y'), 'utf8'), 'xx');
  t.false(existsSync(join(env.under, 'e')));
  t.deepEqual((await fsp.readdir(env.under)).sort(), ['f', 'x', 'y']);
  const s = icpt.stats();
  t.is(s.ops['write'], 7);
  t.is(s.notReplicated, 0);
  t.is(s.unrecorded, 0);
});

test.serial('[lab] new nodes belong to the calling user (not to the root daemon), with the mode asked for', async (t) => {
  const env = await setup(t);
  await run('chmod', ['1777', env.dir]);
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  await py(String.raw`
import os, sys
os.setgid(4321); os.setuid(4321)
os.umask(0o022)
open(os.path.join(sys.argv[1], 'mine'), 'w').write('m')
os.mkdir(os.path.join(sys.argv[1], 'sub'), 0o775)
`, env.dir);
  const recs = icpt.testSink!.takeRecords().map(show);
  t.deepEqual(recs, ['create mine 0644 4321:4321', 'truncate mine 0', `write mine @0+1 ${h('m')}`, 'mkdir sub 0755 4321:4321']);
  const st = lstatSync(join(env.under, 'mine'));
  t.is(st.uid, 4321);
  t.is(st.gid, 4321);
  t.is(st.mode & 0o777, 0o644);
  t.is(lstatSync(join(env.under, 'sub')).uid, 4321);
});

test.serial('[lab] a symlink and open(O_TRUNC) are recorded; the link target is verbatim', async (t) => {
  const env = await setup(t, { big: 'z'.repeat(5000) });
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  await py(String.raw`
import os, sys
d = sys.argv[1]
open(os.path.join(d, 'big'), 'w').write('small')
os.symlink('/nowhere/at all', os.path.join(d, 'abs'))
`, env.dir);
  const recs = icpt.testSink!.takeRecords().map(show);
  t.deepEqual(recs, ['truncate big 0', `write big @0+5 ${h('small')}`, 'symlink abs -> /nowhere/at all']);
  t.is(readFileSync(join(env.under, 'big'), 'utf8'), 'small');
  t.is(readlinkSync(join(env.under, 'abs')), '/nowhere/at all');
});

test.serial('[lab] the sink refusing acks: writes still succeed locally (the primary goes on ALONE), counted as not replicated, one replication event', async (t) => {
  const env = await setup(t);
  const sink = createTestSink({ refuse: true });
  const icpt = mountInterceptor({ dir: env.dir, sink });
  track(t, icpt);
  const events: boolean[] = [];
  icpt.on('replication', (ok) => events.push(ok));
  await run('dd', ['if=/dev/zero', `of=${join(env.dir, 'w')}`, 'bs=64k', 'count=16', 'conv=fsync', 'status=none']);
  t.is(statSync(join(env.under, 'w')).size, 16 * 65536);
  const s = icpt.stats();
  t.true(s.notReplicated >= 18, `notReplicated ${s.notReplicated}`); // create + 16 writes + fsync
  t.is(s.errors, 0);
  sink.configure({ refuse: false });
  await run('dd', ['if=/dev/zero', `of=${join(env.dir, 'w2')}`, 'bs=4k', 'count=1', 'status=none']);
  // Events travel through a ThreadSafeFunction: give the JS loop a turn.
  for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(events, [false, true]);
  t.true(sink.takeRecords().length >= 20);
});

test.serial('[lab] unmount refuses while a file is open (ERR_RFS_BUSY), lazy unmount detaches', async (t) => {
  const env = await setup(t, { a: 'a' });
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const child = spawn('python3', ['-c', 'import sys,time; f=open(sys.argv[1]); print("open", flush=True); time.sleep(30)', join(env.dir, 'a')], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const err = await t.throwsAsync(icpt.unmount());
  t.is((err as { code?: string }).code, 'ERR_RFS_BUSY');
  t.true(icpt.mounted);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await icpt.unmount({ lazy: true, timeoutMs: 3000 });
  t.false(icpt.mounted);
  t.is(readFileSync(join(env.dir, 'a'), 'utf8'), 'a');
});

test.serial('[lab] a session that cannot end in time (a request stuck in the sink): unmount rejects and leaves it running, a second call rejects the same way, a later one resolves once it ends; the writer gets an error, nothing crashes', async (t) => {
  const env = await setup(t, { w: 'x'.repeat(4096) });
  // Every acknowledgement takes 11 s: a write stays in the interceptor past the unmount's wait
  // (timeoutMs, then 5 s after aborting the connection).
  const sink = createTestSink({ ackDelayUs: 11_000_000 });
  const icpt = mountInterceptor({ dir: env.dir, sink });
  track(t, icpt);
  const dd = spawn('dd', ['if=/dev/zero', `of=${join(env.dir, 'w')}`, 'bs=4k', 'count=1', 'conv=notrunc', 'status=none'], { stdio: 'ignore' });
  t.teardown(() => { if (dd.exitCode === null && dd.signalCode === null) dd.kill('SIGKILL'); });
  const ddExit = new Promise<number | null>((r) => dd.once('exit', (code) => r(code)));
  for (let i = 0; i < 200 && icpt.stats().ops.write === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(icpt.stats().ops.write, 1, 'the write is in the interceptor, waiting for its acknowledgement');
  const first = await t.throwsAsync(icpt.unmount({ lazy: true, timeoutMs: 100 }));
  t.is((first as { code?: string }).code, 'ERR_RFS_UNMOUNT');
  t.regex(first!.message, /did not end/);
  t.false(icpt.mounted, 'detached from the directory all the same');
  const second = await t.throwsAsync(icpt.unmount({ lazy: true, timeoutMs: 0 }));
  t.is((second as { code?: string }).code, 'ERR_RFS_UNMOUNT');
  await icpt.unmount({ lazy: true, timeoutMs: 10_000 });
  t.not(await ddExit, 0, 'the aborted connection failed the write');
  const fuseOnDir = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === env.dir && l.includes(' fuse.ha '));
  t.deepEqual(fuseOnDir, [], 'nothing of ours mounted over the directory any more');
});

// Runs in a mount namespace of its own (unshare -m), where it can take the FUSE control file
// system away without touching the host's.
const HELD_COPY_CHILD = (dir: string): string => `
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
const m = await import(${JSON.stringify(new URL('../native/src/rfs-fuse.ts', import.meta.url).pathname)});
const dir = ${JSON.stringify(dir)};
try { execFileSync('umount', ['/sys/fs/fuse/connections'], { stdio: 'ignore' }); } catch {}
const fusectlBefore = readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').some((l) => l.includes(' - fusectl '));
const icpt = m.mountInterceptor({ dir, sink: 'test' });
writeFileSync(dir + '/f', 'hello');
// Another mount namespace made while the interceptor is mounted: it holds a copy of the mount.
const holder = spawn('unshare', ['-m', 'sleep', '120'], { stdio: 'ignore' });
console.log(JSON.stringify({ holder: holder.pid }));
const own = readlinkSync('/proc/self/ns/mnt');
let holderHad = false;
for (let i = 0; i < 200 && !holderHad; i++) {
  await new Promise((r) => setTimeout(r, 20));
  try {
    holderHad = readlinkSync('/proc/' + holder.pid + '/ns/mnt') !== own &&
      readFileSync('/proc/' + holder.pid + '/mountinfo', 'utf8').split('\\n').some((l) => l.split(' ')[4] === dir && l.includes(' fuse.ha '));
  } catch {}
}
const t0 = Date.now();
let error = null;
try { await icpt.unmount({ lazy: true, timeoutMs: 200 }); } catch (e) { error = e.message; }
const ms = Date.now() - t0;
let holderView;
try { holderView = readFileSync('/proc/' + holder.pid + '/root' + dir + '/f', 'utf8'); } catch (e) { holderView = e.code; }
await new Promise((r) => setTimeout(r, 100));
holder.kill('SIGKILL');
const fusectlAfter = readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => l.includes(' - fusectl ')).length;
console.log(JSON.stringify({ fusectlBefore, holderHad, error, ms, holderView, fusectlAfter }));
process.exit(0);
`;

test.serial('[lab] a copy of the mount held in another mount namespace (ip netns exec, unshare -m) does not keep the session alive: unmount aborts the connection, with the FUSE control file system mounted only for the abort, out of sight, where it is missing', async (t) => {
  const env = await setup(t, {});
  const child = spawn('unshare', ['-m', process.execPath, '--conditions=development', '--import', 'tsx', '--input-type=module', '-e', HELD_COPY_CHILD(env.dir)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let holder = 0;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    for (const l of d.split('\n').filter(Boolean)) {
      lines.push(l);
      try { holder ||= (JSON.parse(l) as { holder?: number }).holder ?? 0; } catch { /* not ours */ }
    }
  });
  t.teardown(() => {
    for (const pid of [child.pid, holder]) if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  });
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.is(code, 0, lines.join('\n'));
  const out = JSON.parse(lines.at(-1)!) as { fusectlBefore: boolean; holderHad: boolean; error: string | null; ms: number; holderView: string; fusectlAfter: number };
  t.false(out.fusectlBefore, 'the child namespace starts without the FUSE control file system');
  t.true(out.holderHad, 'the other namespace holds a copy of the mount');
  t.is(out.error, null, 'unmount resolved');
  t.true(out.ms < 5000, `the session ended after the abort, not after giving up (${out.ms} ms)`);
  t.is(out.holderView, 'ENOTCONN', "the other namespace's copy is a dead connection, not a live file system");
  t.is(out.fusectlAfter, 0, 'the FUSE control file system was mounted only for the abort, in a namespace of its own: no mount of it here');
  t.log(`unmount with a copy held elsewhere: ${out.ms} ms`);
});

const CHILD = (dir: string): string => `
const m = await import(${JSON.stringify(new URL('../native/src/rfs-fuse.ts', import.meta.url).pathname)});
m.mountInterceptor({ dir: ${JSON.stringify(dir)}, sink: 'test' });
console.log('mounted');
setInterval(() => {}, 1000);
`;

async function mountInChildAndKill(dir: string): Promise<void> {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', CHILD(dir)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('mounted')) resolve(); });
      child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((r) => child.once('exit', r));
}

test.serial('[lab] a SIGKILLed owner leaves ENOTCONN; staleMountCleanup detaches it, and the next mount does it itself', async (t) => {
  const env = await setup(t, { a: 'a' });
  t.is(staleMountCleanup(env.dir), 0);
  await mountInChildAndKill(env.dir);
  const e1 = t.throws(() => statSync(join(env.dir, 'a')));
  t.is((e1 as NodeJS.ErrnoException).code, 'ENOTCONN');
  t.is(staleMountCleanup(env.dir), 1);
  t.is(readFileSync(join(env.dir, 'a'), 'utf8'), 'a');

  await mountInChildAndKill(env.dir);
  t.is((t.throws(() => statSync(env.dir)) as NodeJS.ErrnoException).code, 'ENOTCONN');
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  // (the event crosses a ThreadSafeFunction that does not keep the loop alive: the timer does)
  const stale = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no stale event')), 3000);
    icpt.once('stale', (m) => { clearTimeout(timer); resolve(m); });
  });
  t.regex(stale, /detached 1 stale/);
  t.is(readFileSync(join(env.dir, 'a'), 'utf8'), 'a');
  // A live mount is not "stale".
  const err = t.throws(() => staleMountCleanup(env.dir));
  t.is((err as { code?: string }).code, 'ERR_RFS_MOUNTED');
  await icpt.unmount();
});

test.serial('[lab] the mount goes away when its process exits normally (event loop empty, or process.exit)', async (t) => {
  const env = await setup(t, { a: 'a' });
  const mod = JSON.stringify(new URL('../native/src/rfs-fuse.ts', import.meta.url).pathname);
  for (const end of ['', 'process.exit(0);']) {
    const script = `const m = await import(${mod}); m.mountInterceptor({ dir: ${JSON.stringify(env.dir)}, sink: 'test' });
      (await import('node:fs')).writeFileSync(${JSON.stringify(join(env.dir, 'b'))}, 'b'); ${end}`;
    await run(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script]);
    const { stdout } = await run('findmnt', ['-n', env.dir]).catch(() => ({ stdout: '' }));
    t.is(stdout.trim(), '', `mount left after exit (${end || 'natural exit'})`);
    t.is(readFileSync(join(env.dir, 'b'), 'utf8'), 'b');
  }
});

test.serial('[lab] unmounted by someone else: a closed event, mounted false, unmount() still resolves', async (t) => {
  const env = await setup(t, { a: 'a' });
  const icpt = mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  t.is(readFileSync(join(env.dir, 'a'), 'utf8'), 'a');
  const closed = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no closed event')), 3000);
    icpt.once('closed', (e) => { clearTimeout(timer); resolve(e.code); });
  });
  await run('umount', [env.dir]);
  t.is(await closed, 'ERR_RFS_SESSION_ENDED');
  t.false(icpt.mounted);
  await icpt.unmount();
});

test.serial('[lab] read-only bind: writes get EROFS, changes made underneath show; undo restores writes', async (t) => {
  const env = await setup(t, { a: 'one' });
  readOnlyBind(env.dir);
  readOnlyBind(env.dir); // idempotent
  const e = t.throws(() => writeFileSync(join(env.dir, 'a'), 'two'));
  t.is((e as NodeJS.ErrnoException).code, 'EROFS');
  t.is((t.throws(() => writeFileSync(join(env.dir, 'new'), 'x')) as NodeJS.ErrnoException).code, 'EROFS');
  writeFileSync(join(env.under, 'a'), 'three');       // the applier's side
  writeFileSync(join(env.under, 'b'), 'bee');
  t.is(readFileSync(join(env.dir, 'a'), 'utf8'), 'three');
  t.is(readFileSync(join(env.dir, 'b'), 'utf8'), 'bee');
  undoReadOnlyBind(env.dir);
  writeFileSync(join(env.dir, 'a'), 'four');
  t.is(readFileSync(join(env.under, 'a'), 'utf8'), 'four');
  t.is((t.throws(() => undoReadOnlyBind(env.dir)) as { code?: string }).code, 'ERR_RFS_NOT_BOUND');
});

test.serial('[lab] bad input gets a clear error', (t) => {
  t.throws(() => mountInterceptor({ dir: '/nonexistent/rfs-dir', sink: 'test' }), { code: 'ERR_RFS_ARG', message: /not accessible/ });
  t.throws(() => mountInterceptor({ dir: '/etc/hostname', sink: 'test' }), { code: 'ERR_RFS_ARG', message: /not a directory/ });
  t.throws(() => mountInterceptor({ dir: tmpdir(), sink: 'nope' as 'test' }), { code: 'ERR_RFS_ARG', message: /sink must be/ });
  t.throws(() => mountInterceptor({ dir: tmpdir(), sink: 'test', maxThreads: 0 }), { code: 'ERR_RFS_ARG', message: /maxThreads/ });
  t.throws(() => createTestSink({ ackDelayUs: -1 }), { code: 'ERR_RFS_ARG', message: /ackDelayUs/ });
});

async function ddMiBps(args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run('dd', args);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

test.serial('[lab] throughput: dd 1 MiB x 512 conv=fsync, raw vs through the interceptor (test sink); 4 KiB write+fsync', async (t) => {
  const env = await setup(t);
  const sink = createTestSink({ hash: false, keep: false });
  const icpt = mountInterceptor({ dir: env.dir, sink });
  track(t, icpt);
  const raw = await ddMiBps(['if=/dev/zero', `of=${join(env.under, 'raw')}`, 'bs=1M', 'count=512', 'conv=fsync', 'status=none']);
  const fuse = await ddMiBps(['if=/dev/zero', `of=${join(env.dir, 'fuse')}`, 'bs=1M', 'count=512', 'conv=fsync', 'status=none']);
  t.log(`1 MiB x 512 + fsync: raw ${(512 / raw).toFixed(0)} MiB/s, interceptor ${(512 / fuse).toFixed(0)} MiB/s (${(raw / fuse).toFixed(2)} of raw)`);
  const raw4 = await ddMiBps(['if=/dev/zero', `of=${join(env.under, 'raw4')}`, 'bs=4k', 'count=2000', 'oflag=dsync', 'status=none']);
  const fuse4 = await ddMiBps(['if=/dev/zero', `of=${join(env.dir, 'fuse4')}`, 'bs=4k', 'count=2000', 'oflag=dsync', 'status=none']);
  t.log(`4 KiB write+dsync x 2000: raw ${(raw4 / 2 * 1000).toFixed(1)} µs/op, interceptor ${(fuse4 / 2 * 1000).toFixed(1)} µs/op`);
  t.is(statSync(join(env.under, 'fuse')).size, 512 << 20);
  t.is(icpt.stats().bytesWritten, (512 << 20) + 2000 * 4096);
});

test('[lab] 1 MiB writes from Node Buffers (not page-aligned) arrive split at a page boundary: the whole pages of the large part still go O_DIRECT, the rest buffered; every byte lands right', async (t) => {
  const env = await setup(t);
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const want = Buffer.concat(Array.from({ length: 8 }, (_, i) => Buffer.alloc(MIB, 1 + i)));
  const fd = openSync(join(env.dir, 'node'), 'w');
  for (let i = 0; i < 8; i++) t.is(writeSync(fd, want, i * MIB, MIB, i * MIB), MIB);
  closeSync(fd);
  const st = icpt.stats();
  const writes = icpt.testSink!.takeRecords().filter((r) => r.op === 'write');
  t.log(`${writes.length} write requests for 8 x 1 MiB; ${st.directWrites} direct`);
  t.true(writes.length >= 8, 'at least one request per write');
  t.true(st.directWrites >= 8, 'each write\'s whole pages went O_DIRECT');
  t.true(readFileSync(join(env.under, 'node')).equals(want), 'the real file holds every byte');
  t.true(readFileSync(join(env.dir, 'node')).equals(want), 'so does the mount');
});

test('[lab] synchronous writes (O_DSYNC / O_SYNC handles, RWF_DSYNC on one call) keep the O_DIRECT path and land whole', async (t) => {
  // The O_DIRECT twin of a write-only handle has no O_DSYNC of its own: such writes are made with
  // pwritev2(RWF_DSYNC / RWF_SYNC). Seen from outside: on a disk with a volatile write cache, each
  // synchronous write makes the kernel send the disk a cache flush (counted in the block device's
  // stat), which a bare O_DIRECT write does not.
  const env = await setup(t);
  const flushes = flushCounter(env.under);
  if (!flushes) t.log('the block device under the test directory has no volatile write cache (or none was found): flushes not counted');
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const src = join(env.base, 'src');
  const want = Buffer.alloc(4 * MIB);
  for (let i = 0; i < want.length; i += 4) want.writeUInt32LE((i * 2654435761) >>> 0, i);
  writeFileSync(src, want);
  for (const flag of ['dsync', 'sync']) {
    const before = icpt.stats().directWrites;
    const f0 = flushes?.();
    await run('dd', [`if=${src}`, `of=${join(env.dir, flag)}`, 'bs=1M', `oflag=${flag}`, 'status=none']);
    if (flushes) t.true(flushes() - f0! >= 4, `oflag=${flag}: a disk cache flush per write (${flushes() - f0!})`);
    t.true(icpt.stats().directWrites - before >= 4, `oflag=${flag}: the 1 MiB writes went O_DIRECT`);
    t.true(readFileSync(join(env.under, flag)).equals(want), `oflag=${flag}: the real file holds every byte`);
  }
  // RWF_DSYNC on a single call of a plain write-only handle, from a page-aligned (mmap) buffer.
  const before = icpt.stats().directWrites;
  const f1 = flushes?.();
  await py(`
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
src = open(sys.argv[2], 'rb').read()
m = mmap.mmap(-1, len(src)); m.write(src)
for off in range(0, len(src), 1 << 20):
    assert os.pwritev(fd, [memoryview(m)[off:off + (1 << 20)]], off, os.RWF_DSYNC) == 1 << 20
os.close(fd)
`, join(env.dir, 'rwf'), src);
  if (flushes) t.true(flushes() - f1! >= 4, `RWF_DSYNC: a disk cache flush per write (${flushes() - f1!})`);
  t.true(icpt.stats().directWrites - before >= 4, 'RWF_DSYNC: the 1 MiB writes went O_DIRECT');
  t.true(readFileSync(join(env.under, 'rwf')).equals(want), 'RWF_DSYNC: the real file holds every byte');
  const writes = icpt.testSink!.takeRecords().filter((r) => r.op === 'write');
  t.is(writes.reduce((n, r) => n + (r.dataLength ?? 0), 0), 3 * want.length, 'every byte was recorded once');
  t.is(icpt.stats().errors, 0);
});

test('[lab] inode fd cache: a tree larger than maxInodeFds works through the mount (fds closed and reopened), changes recorded with the right paths', async (t) => {
  const env = await setup(t);
  // Made before the mount: 40 directories x 50 files.
  for (let d = 0; d < 40; d++) {
    mkdirSync(join(env.dir, `d${d}`));
    for (let f = 0; f < 50; f++) writeFileSync(join(env.dir, `d${d}`, `f${f}`), `${d}/${f}\n`);
  }
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test', maxInodeFds: 64 });
  track(t, icpt);
  // Every entry looked up (the kernel keeps them: 2000 inodes, at most 64 fds open).
  let read = 0;
  for (let d = 0; d < 40; d++) for (let f = 0; f < 50; f++) if (readFileSync(join(env.dir, `d${d}`, `f${f}`), 'utf8') === `${d}/${f}\n`) read++;
  t.is(read, 2000);
  const st1 = icpt.stats();
  t.true(st1.inodes >= 2000, `inodes ${st1.inodes}`);
  t.true(st1.inodeFds <= 64 + 2, `inode fds ${st1.inodeFds} within the bound`);
  t.true(st1.fdEvictions > 0);
  t.deepEqual(icpt.testSink!.takeRecords(), []);
  // Changes to entries whose fds were closed long ago: reopened from their parent and name.
  writeFileSync(join(env.dir, 'd0', 'f0'), 'changed\n');
  await fsp.chmod(join(env.dir, 'd1', 'f1'), 0o600);
  await fsp.rename(join(env.dir, 'd2'), join(env.dir, 'd2-renamed'));
  await fsp.chmod(join(env.dir, 'd2-renamed', 'f2'), 0o640);   // below a renamed directory
  await fsp.unlink(join(env.dir, 'd3', 'f3'));
  t.is(readFileSync(join(env.under, 'd0', 'f0'), 'utf8'), 'changed\n');
  t.is(statSync(join(env.under, 'd1', 'f1')).mode & 0o777, 0o600);
  t.is(statSync(join(env.under, 'd2-renamed', 'f2')).mode & 0o777, 0o640);
  t.false(existsSync(join(env.under, 'd3', 'f3')));
  const recs = icpt.testSink!.takeRecords().map(show);
  t.true(recs.includes('truncate d0/f0 0'), recs.join('\n'));
  t.true(recs.some((r) => r.startsWith('write d0/f0 @0+8')), recs.join('\n'));
  t.true(recs.includes('chmod d1/f1 0600'), recs.join('\n'));
  t.true(recs.includes('rename d2 -> d2-renamed flags0'), recs.join('\n'));
  t.true(recs.includes('chmod d2-renamed/f2 0640'), recs.join('\n'));
  t.true(recs.includes('unlink d3/f3'), recs.join('\n'));
  const st2 = icpt.stats();
  t.true(st2.fdReopens > 0, `reopens ${st2.fdReopens}`);
  t.true(st2.inodeFds <= 64 + 2);
  t.is(st2.errors, 0);
});

test('[lab] write-only handles bypass the page cache (direct I/O); cached readers and shared mappings of the file see their writes', async (t) => {
  const env = await setup(t, { 'f.dat': 'a'.repeat(8192) });
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const f = join(env.dir, 'f.dat');
  // A reader (cached handle) and a shared mapping hold the old content; a write-only handle
  // (direct) overwrites it; both see the new bytes, and the change is recorded.
  const out = await py(`
import mmap, os, sys
p = sys.argv[1]
r = os.open(p, os.O_RDWR)
before = os.pread(r, 4, 4096)
m = mmap.mmap(r, 8192, mmap.MAP_SHARED, mmap.PROT_READ)
mb = m[4096:4100]
w = os.open(p, os.O_WRONLY)
os.pwrite(w, b'ZZZZ', 4096)
os.close(w)
after = os.pread(r, 4, 4096)
ma = m[4096:4100]
print(before.decode(), mb.decode(), after.decode(), ma.decode())
`, f);
  t.is(out.trim(), 'aaaa aaaa ZZZZ ZZZZ');
  t.is(readFileSync(join(env.under, 'f.dat'), 'utf8').slice(4096, 4100), 'ZZZZ');
  const recs = icpt.testSink!.takeRecords().map(show);
  t.true(recs.some((r) => r.startsWith('write f.dat @4096+4')), recs.join('\n'));
  // dd-style streaming through a write-only handle.
  await run('dd', ['if=/dev/zero', `of=${join(env.dir, 'big')}`, 'bs=1M', 'count=8', 'conv=fsync'], {});
  t.is(statSync(join(env.under, 'big')).size, 8 << 20);
  t.is(icpt.stats().errors, 0);
});

test('[lab] large aligned writes of write-only handles reach the real file with O_DIRECT (directLocalWrites); small, unaligned and read-write ones stay buffered; every byte lands right and is recorded once', async (t) => {
  const env = await setup(t);
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const pat = (n: number, seed: number): Buffer => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = (i * 13 + seed + (i >> 9)) & 0xff; return b; };
  const f = join(env.dir, 'stream');
  const LEN = 4 * MIB + (300 << 10) + 100;
  const want = Buffer.alloc(LEN);
  // One pwrite() per block from a page-aligned buffer (an mmap; an unaligned buffer of 1 MiB spans
  // 257 pages: the kernel would split it into two requests of unaligned sizes), on one write-only
  // handle (dd with seek= opens read-write).
  const blocks: Array<[Buffer, number]> = [];
  const put = (b: Buffer, off: number): void => { blocks.push([b, off]); b.copy(want, off); };
  put(pat(MIB, 1), 0);                            // large, aligned: direct
  put(pat(256 << 10, 2), MIB);                    // 256 KiB, aligned: direct
  put(pat(200 << 10, 3), MIB + (256 << 10) + 100); // unaligned offset: buffered
  put(pat(4096, 4), 2 * MIB);                     // small: buffered
  put(pat(MIB, 5), 2 * MIB + 4096);               // large, aligned, extends the file: direct
  put(pat(904, 6), 3 * MIB + 4096);               // the tail
  put(pat((300 << 10) + 100, 9), 4 * MIB);          // aligned offset, partial last page: whole pages direct, the rest buffered
  blocks.forEach(([b], i) => writeFileSync(join(env.base, `pat${i}`), b));
  await py(`
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i, off in enumerate(int(x) for x in sys.argv[3:]):
    data = open(os.path.join(sys.argv[2], 'pat%d' % i), 'rb').read()
    m = mmap.mmap(-1, len(data))
    m.write(data)
    assert os.pwrite(fd, m, off) == len(data)
os.close(fd)
`, f, env.base, ...blocks.map(([, off]) => String(off)));
  const st = icpt.stats();
  t.is(st.directWrites, 4, 'the three large aligned writes were direct, and the whole pages of the fourth');
  t.is(st.alignedCopies, 0, 'straight from the request buffer, whose write data is page-aligned: no copy');
  t.false(st.directUnsupported);
  t.true(readFileSync(join(env.under, 'stream')).equals(want), 'the real file holds every byte');
  t.true(readFileSync(f).equals(want), 'so does the mount');
  const writes = icpt.testSink!.takeRecords().filter((r) => r.op === 'write');
  t.is(writes.length, 7, 'one record per write');
  t.is(writes.reduce((a, r) => a + (r.dataLength ?? 0), 0), MIB + (256 << 10) + (200 << 10) + 4096 + MIB + 904 + (300 << 10) + 100);
  // A read-write handle stays buffered (page cache shared with its reads).
  const rw = openSync(f, 'r+');
  writeSync(rw, pat(MIB, 7), 0, MIB, 0);
  closeSync(rw);
  t.is(icpt.stats().directWrites, 4);
  t.true(readFileSync(join(env.under, 'stream')).subarray(0, MIB).equals(pat(MIB, 7)));

  // directLocalWrites: false: everything buffered, same bytes.
  await icpt.unmount({ timeoutMs: 2000 });
  const off = await mountInterceptor({ dir: env.dir, sink: 'test', directLocalWrites: false });
  track(t, off);
  const fd2 = openSync(join(env.dir, 'stream2'), 'w');
  writeSync(fd2, pat(MIB, 8), 0, MIB, 0);
  closeSync(fd2);
  t.is(off.stats().directWrites, 0);
  t.true(readFileSync(join(env.under, 'stream2')).equals(pat(MIB, 8)));
  t.throws(() => mountInterceptor({ dir: env.dir, sink: 'test', directLocalWrites: 'yes' as unknown as boolean }), { code: 'ERR_RFS_ARG', message: /directLocalWrites must be a boolean/ });
});

/** Python: runs a plan of 1 MiB writes (from a page-aligned buffer, one write-only handle) and path truncates; after each step checks the size and reads the bytes back through another handle. */
const OVERLAP_PLAN = String.raw`
import mmap, os, sys, json, hashlib
f, plan, MiB = sys.argv[1], json.loads(sys.argv[2]), 1 << 20
def pat(k): return hashlib.sha256(bytes([k & 0xff, k >> 8])).digest() * (MiB // 32)
fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
r = os.open(f, os.O_RDONLY)
m = mmap.mmap(-1, MiB)
for step in plan:
    if step['op'] == 'write':
        d = pat(step['k'])
        m.seek(0)
        m.write(d)
        assert os.pwrite(fd, m, step['off']) == MiB
        got = os.pread(r, MiB, step['off'])
        assert got == d, 'read back at %d: %d bytes, %s' % (step['off'], len(got), 'same length' if len(got) == MiB else 'short')
    else:
        os.truncate(f, step['len'])
    assert os.stat(f).st_size == step['size'], (step, os.stat(f).st_size)
os.fsync(fd)
os.close(fd)
os.close(r)
print('ok')
`;

test('[lab] overlapped local writes: a write-only stream is answered as soon as the sink has each write while its O_DIRECT write runs; reads, sizes, truncates and rewrites of the same bytes right after see every write in order; the records follow the same order; overlapLocalWrites: false waits', async (t) => {
  const env = await setup(t);
  const pat = (k: number): Buffer => { const h = createHash('sha256').update(Buffer.from([k & 0xff, k >> 8])).digest(); return Buffer.concat(Array.from({ length: MIB / 32 }, () => h)); };
  type Step = { op: 'write'; off: number; k: number; size: number } | { op: 'truncate'; len: number; size: number };
  const plan = (n: number): { steps: Step[]; model: Buffer } => {
    const steps: Step[] = [];
    let model = Buffer.alloc(0);
    const write = (off: number, k: number): void => {
      if (model.length < off + MIB) model = Buffer.concat([model, Buffer.alloc(off + MIB - model.length)]);
      pat(k).copy(model, off);
      steps.push({ op: 'write', off, k, size: model.length });
    };
    for (let i = 0; i < n; i++) {
      write(i * MIB, i);
      if (i === 8) { model = model.subarray(0, 3 * MIB); steps.push({ op: 'truncate', len: 3 * MIB, size: 3 * MIB }); }
      if (i === 12) write(12 * MIB, 100 + i); // the same bytes again at once: after the first, locally too
    }
    return { steps, model };
  };
  const check = async (icpt: Interceptor, name: string, n: number): Promise<void> => {
    const { steps, model } = plan(n);
    const f = join(env.dir, name);
    t.is((await py(OVERLAP_PLAN, f, JSON.stringify(steps))).trim(), 'ok');
    t.true(readFileSync(join(env.under, name)).equals(model), `${name}: the real file holds every write, in order`);
    const recs = icpt.testSink!.takeRecords().filter((r) => r.path === name && (r.op === 'write' || r.op === 'truncate'));
    const want = steps.map((s) => (s.op === 'write' ? `write @${s.off}+${MIB} ${fnv1a64(pat(s.k))}` : `truncate ${s.len}`));
    // The open's O_TRUNC comes first (a truncate to 0).
    t.deepEqual(recs.map((r) => (r.op === 'write' ? `write @${r.offset}+${r.dataLength} ${r.dataHash}` : `truncate ${r.length}`)), ['truncate 0', ...want], `${name}: one record per change, in the local order`);
    t.is(icpt.stats().errors, 0);
  };
  const icpt = await mountInterceptor({ dir: env.dir, sink: createTestSink({ hash: true }) });
  track(t, icpt);
  await check(icpt, 'overlapped', 20);
  const st = icpt.stats();
  t.is(st.directWrites, 21, 'every 1 MiB write went to the disk with O_DIRECT');
  // The test sink acknowledges at once: the answer does not wait for the disk.
  t.true(st.overlappedWrites > 0, `some writes were answered while their disk write ran (${st.overlappedWrites})`);
  t.is(st.lateLocalErrors, 0);
  t.log(`overlapped ${st.overlappedWrites} of ${st.directWrites}`);
  await icpt.unmount({ timeoutMs: 2000 });

  const off = await mountInterceptor({ dir: env.dir, sink: createTestSink({ hash: true }), overlapLocalWrites: false });
  track(t, off);
  await check(off, 'waited', 6);
  t.true(off.stats().directWrites > 0);
  t.is(off.stats().overlappedWrites, 0, 'overlapLocalWrites: false: every answer waited for the local write');
  t.throws(() => mountInterceptor({ dir: env.dir, sink: 'test', overlapLocalWrites: 1 as unknown as boolean }), { code: 'ERR_RFS_ARG', message: /overlapLocalWrites must be a boolean/ });
});

/** Python: makes (or, with 'check', reads) a chain of directories `comps` below argv[1] by relative steps, with file `leaf` at the bottom. */
const DEEP = String.raw`
import os, sys, json
mode, root, comps, leaf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
os.chdir(root)
for c in comps:
    if mode == 'make': os.mkdir(c)
    os.chdir(c)
if mode == 'make': open(leaf, 'w').write('deep')
else: print(open(leaf).read())
`;

test('[lab] renaming a directory so that a path below it would reach PATH_MAX: ENAMETOOLONG, refused event, nothing changed; shorter, equal and small lengthening renames work and are recorded', async (t) => {
  const env = await setup(t);
  // Made before the mount (the kernel never looked any of it up): 'a' + 20 levels of 200 bytes + a
  // 68-byte leaf = a deepest path of 4090 bytes below the root: 5 bytes of room under PATH_MAX (4096).
  const D = 'd'.repeat(200);
  const comps = ['a', ...Array<string>(20).fill(D)];
  const leaf = 'f'.repeat(68);
  t.is([...comps, leaf].join('/').length, 4090);
  // rmSync cannot remove paths past PATH_MAX: rm does (after the interceptor's unmount).
  t.teardown(() => run('sh', ['-c', `rm -rf -- '${env.under}'/*`]).then(() => undefined, () => undefined));
  await py(DEEP, 'make', env.dir, JSON.stringify(comps), leaf);
  mkdirSync(join(env.dir, 'shallow'));
  writeFileSync(join(env.dir, 'shallow', 'x'), 'x');
  const icpt = await mountInterceptor({ dir: env.dir, sink: 'test' });
  track(t, icpt);
  const refused: { code: string; message: string }[] = [];
  icpt.on('refused', (e) => refused.push({ code: e.code, message: e.message }));
  const renameErr = async (from: string, to: string): Promise<string | undefined> => {
    try { await fsp.rename(join(env.dir, from), join(env.dir, to)); return undefined; } catch (err) { return (err as NodeJS.ErrnoException).code; }
  };
  const deepIn = async (root: string, top: string, mid = D): Promise<string> =>
    (await py(DEEP, 'check', root, JSON.stringify([top, mid, ...comps.slice(2)]), leaf)).trim();

  // +5 bytes: the deepest path becomes 4095 bytes, still allowed (the walk finds nothing too long).
  t.is(await renameErr('a', 'abcdef'), undefined);
  t.deepEqual(icpt.testSink!.takeRecords().map(show), ['rename a -> abcdef flags0']);
  // +1 more byte: 4096 -> refused before anything is done.
  t.is(await renameErr('abcdef', 'abcdefg'), 'ENAMETOOLONG');
  // A directory in the middle of the chain (its parent known to the kernel, nothing below it).
  t.is(await renameErr(join('abcdef', D), join('abcdef', D + 'x')), 'ENAMETOOLONG');
  // RENAME_EXCHANGE with a shallow directory of a longer name: the deep one would move to it.
  mkdirSync(join(env.dir, 'abcdefgh'));
  t.deepEqual(icpt.testSink!.takeRecords().map(show), ['mkdir abcdefgh 0755 0:0']);
  const xchg = await py(String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2)
print('ok' if r == 0 else os.strerror(ctypes.get_errno()))
`, join(env.dir, 'abcdefgh'), join(env.dir, 'abcdef'));
  t.is(xchg.trim(), 'File name too long', 'an exchange that lengthens the deep directory\'s path is refused too');
  for (let i = 0; i < 50 && refused.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  t.log(refused.map((e) => e.message).join('\n'));
  t.is(refused.length, 3);
  t.true(refused.every((e) => e.code === 'ERR_RFS_PATH_TOO_LONG'));
  t.regex(refused[0]!.message, /^renaming the directory 'abcdef' to 'abcdefg' would make 'abcdefg\/d+\.\.\.f+' a path below .* of 4096 bytes that cannot be replicated \(limit 4095\): refused with ENAMETOOLONG$/);
  t.regex(refused[1]!.message, new RegExp(`^renaming the directory 'abcdef/d+\\.\\.\\.d+' to 'abcdef/d+\\.\\.\\.d+x' .* of 4096 bytes`));
  t.regex(refused[2]!.message, /^renaming the directory 'abcdef' to 'abcdefgh' .* of 4097 bytes/);
  // Nothing changed underneath, nothing recorded.
  t.deepEqual(icpt.testSink!.takeRecords(), []);
  t.deepEqual((await fsp.readdir(env.under)).sort(), ['abcdef', 'abcdefgh', 'shallow']);
  t.is(await deepIn(env.under, 'abcdef'), 'deep');
  t.deepEqual(await fsp.readdir(join(env.under, 'abcdefgh')), []);

  // Same length and shorter: no walk needed, done and recorded; the tree is intact below.
  t.is(await renameErr('abcdef', 'zyxwvu'), undefined);
  t.is(await renameErr(join('zyxwvu', D), join('zyxwvu', 'm')), undefined);
  t.is(await renameErr('zyxwvu', 'z'), undefined);
  // Lengthening a directory whose tree is shallow: the walk finds nothing too long.
  t.is(await renameErr('shallow', 'shallow-' + 'l'.repeat(200)), undefined);
  // Lengthening a file (no walk) and the deep tree's top by what is left.
  t.is(await renameErr(join('shallow-' + 'l'.repeat(200), 'x'), join('shallow-' + 'l'.repeat(200), 'x'.repeat(250))), undefined);
  t.is(await renameErr('z', 'z' + 'y'.repeat(204)), undefined);
  t.deepEqual(icpt.testSink!.takeRecords().map(show), [
    'rename abcdef -> zyxwvu flags0',
    `rename zyxwvu/${D} -> zyxwvu/m flags0`,
    'rename zyxwvu -> z flags0',
    `rename shallow -> shallow-${'l'.repeat(200)} flags0`,
    `rename shallow-${'l'.repeat(200)}/x -> shallow-${'l'.repeat(200)}/${'x'.repeat(250)} flags0`,
    `rename z -> z${'y'.repeat(204)} flags0`,
  ]);
  t.is(await deepIn(env.under, 'z' + 'y'.repeat(204), 'm'), 'deep');
  t.is(readFileSync(join(env.under, 'shallow-' + 'l'.repeat(200), 'x'.repeat(250)), 'utf8'), 'x');
  t.is(refused.length, 3, 'no more refusals');
  t.is(icpt.stats().notReplicated, 0);
});
