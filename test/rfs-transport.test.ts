// The replication transport over loopback: real TCP sockets, real files, a real receiver process
// killed with SIGKILL, a real full tmpfs.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, lstatSync, readdirSync, readlinkSync, mkdirSync, symlinkSync, renameSync, chmodSync, utimesSync, truncateSync, unlinkSync, rmdirSync, openSync, writeSync, closeSync, linkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { connect, type Socket } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHmac, hkdfSync, randomBytes, createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { labTest } from './lab/ava.js';
import { startReceiver, connectSender, nativeAvailable, nativeUnavailableReason, RFS_OPS, aesGcmImplementation } from '@ha/native';
import type { RfsRecord, RfsReceiver, RfsSender, RfsAckMode } from '@ha/native';

const KEY = 'rfs-transport-test-cluster-key-0123456789';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

if (!nativeAvailable()) test(`rfs transport skipped: ${nativeUnavailableReason()}`, (t) => { t.log(nativeUnavailableReason()); t.pass(); });
const ntest = nativeAvailable() ? test : test.skip;
const nlabTest = nativeAvailable() ? labTest : labTest.skip;

function tmp(t: ExecutionContext, name: string): string {
  const d = mkdtempSync(join(tmpdir(), `rfs-${name}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function pair(t: ExecutionContext, mode: RfsAckMode = 'written', extra: { ackTimeoutMs?: number; maxQueueBytes?: number } = {}) {
  const dir = tmp(t, 'sec');
  const rcv = startReceiver({ dir, key: KEY, mode });
  t.teardown(() => rcv.close());
  const events: Array<[string, unknown]> = [];
  for (const ev of ['connected', 'disconnected', 'error', 'apply-failed'] as const) rcv.on(ev, (e: unknown) => events.push([ev, e]));
  const snd = await connectSender({ host: '127.0.0.1', port: rcv.port, key: KEY, mode, ...extra });
  t.teardown(() => snd.close());
  return { dir, rcv, snd, events };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 10)) & 0xff;
  return b;
}

// Applies a record directly to a reference directory (what the primary did locally).
function applyRef(dir: string, r: RfsRecord): void {
  const p = join(dir, r.path ?? '');
  const p2 = join(dir, r.path2 ?? '');
  switch (r.op) {
    case 'create': closeSync(openSync(p, 'a', r.mode)); chmodSync(p, r.mode ?? 0o644); break;
    case 'write': { const fd = openSync(p, 'r+'); writeSync(fd, r.data ?? Buffer.alloc(0), 0, r.data?.length ?? 0, r.offset ?? 0); closeSync(fd); break; }
    case 'truncate': truncateSync(p, r.length ?? 0); break;
    case 'mkdir': mkdirSync(p, { mode: r.mode }); chmodSync(p, r.mode ?? 0o755); break;
    case 'rmdir': rmdirSync(p); break;
    case 'unlink': unlinkSync(p); break;
    case 'rename': renameSync(p, p2); break;
    case 'symlink': symlinkSync(r.path2 ?? '', p); break;
    case 'link': linkSync(p, p2); break;
    case 'chmod': chmodSync(p, r.mode ?? 0); break;
    case 'utimens': utimesSync(p, r.atime?.[0] ?? 0, r.mtime?.[0] ?? 0); break;
    case 'setxattr': spawnSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]))', p, r.name ?? '', Buffer.from(r.data ?? []).toString('hex')]); break;
    case 'removexattr': spawnSync('python3', ['-c', 'import os,sys; os.removexattr(sys.argv[1], sys.argv[2])', p, r.name ?? '']); break;
    default: break;
  }
}

function xattrs(p: string): string {
  const r = spawnSync('python3', ['-c', 'import os,sys; print(sorted((n, os.getxattr(sys.argv[1], n).hex()) for n in os.listxattr(sys.argv[1]) if n.startswith("user.")))', p], { encoding: 'utf8' });
  return r.stdout.trim();
}

// A description of a tree: type, mode, size, content hash, link target, mtime (s), user xattrs.
function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const p = join(dir, r);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) out.push(`${r} link ${readlinkSync(p)}`);
    else if (st.isDirectory()) { out.push(`${r} dir ${(st.mode & 0o7777).toString(8)} ${xattrs(p)}`); out.push(...tree(dir, r)); }
    else out.push(`${r} file ${(st.mode & 0o7777).toString(8)} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)} ${Math.floor(st.mtimeMs / 1000)} nlink=${st.nlink} ${xattrs(p)}`);
  }
  return out;
}

function workload(): RfsRecord[] {
  const mib = bytes(1 << 20, 1);
  return [
    { op: 'mkdir', path: 'd', mode: 0o750 },
    { op: 'mkdir', path: 'd/sub', mode: 0o755 },
    { op: 'create', path: 'd/a.bin', mode: 0o640 },
    { op: 'write', path: 'd/a.bin', offset: 0, data: bytes(1000, 2) },
    { op: 'write', path: 'd/a.bin', offset: 5000, data: bytes(300, 3) },  // leaves a hole
    { op: 'write', path: 'd/a.bin', offset: 100, data: bytes(50, 4) },    // overwrite inside
    { op: 'create', path: 'big', mode: 0o600 },
    { op: 'write', path: 'big', offset: 0, data: mib },
    { op: 'write', path: 'big', offset: 3 << 20, data: mib },
    { op: 'write', path: 'big', offset: 512 * 1024 + 7, data: bytes(1 << 20, 9) },
    { op: 'truncate', path: 'big', length: 3.5 * (1 << 20) },
    { op: 'create', path: 'd/sub/target', mode: 0o644 },
    { op: 'write', path: 'd/sub/target', offset: 0, data: Buffer.from('old contents that will be replaced') },
    { op: 'create', path: 'tmpfile', mode: 0o644 },
    { op: 'write', path: 'tmpfile', offset: 0, data: Buffer.from('new contents') },
    { op: 'rename', path: 'tmpfile', path2: 'd/sub/target' },  // over an existing file
    { op: 'symlink', path: 'd/link', path2: 'sub/target' },
    { op: 'symlink', path: 'dangling', path2: '/nowhere/at/all' },
    { op: 'link', path: 'd/a.bin', path2: 'hard' },
    { op: 'mkdir', path: 'gone', mode: 0o755 },
    { op: 'create', path: 'gone/x', mode: 0o644 },
    { op: 'unlink', path: 'gone/x' },
    { op: 'rmdir', path: 'gone' },
    { op: 'chmod', path: 'd/a.bin', mode: 0o604 },
    { op: 'setxattr', path: 'd/a.bin', name: 'user.color', data: Buffer.from('blue') },
    { op: 'setxattr', path: 'd/a.bin', name: 'user.tmp', data: Buffer.from('x') },
    { op: 'removexattr', path: 'd/a.bin', name: 'user.tmp' },
    { op: 'utimens', path: 'd/a.bin', atime: [1_600_000_000, 0], mtime: [1_600_000_123, 0] },
    { op: 'utimens', path: 'big', atime: [1_500_000_000, 0], mtime: [1_500_000_456, 0] },
    { op: 'fsync', path: 'big', flags: 0 },
    { op: 'barrier' },
  ];
}

for (const mode of ['received', 'written'] as const) {
  ntest(`a stream of records gives byte-identical files (${mode} mode); acks arrive in order`, async (t) => {
    const { dir, snd, rcv } = await pair(t, mode);
    const ref = tmp(t, 'ref');
    const ops = workload();
    const seqs: number[] = [];
    for (const r of ops) { applyRef(ref, r); seqs.push(snd.submitForTest(r)); }
    // One seq per record, increasing; a write larger than 512 KiB goes as several records (its
    // seq is the last one's, covering them all).
    const parts = (r: (typeof ops)[number]) => ('data' in r && r.data ? Math.max(1, Math.ceil(r.data.length / (512 << 10))) : 1);
    let expect = 0;
    t.deepEqual(seqs, ops.map((r) => (expect += parts(r))), 'seqs are assigned in order, split writes taking one per part');
    // Acks are cumulative: waiting in reverse order still resolves every one.
    const acked = await Promise.all([...seqs].reverse().map((s) => snd.waitAcked(s)));
    t.true(acked.every(Boolean));
    const st = snd.stats();
    const records = seqs.at(-1)!;
    t.is(st.submitted, records);
    if (mode === 'written') t.is(st.applied, records);
    t.is(st.received, records);
    t.is(st.pendingBytes, 0);
    await until(() => rcv.stats().lastSeqApplied === records);
    t.deepEqual(tree(dir), tree(ref));
    const rs = rcv.stats();
    t.is(rs.recordsApplied, records);
    t.is(rs.lag, 0);
    t.true(rs.connected);
    t.deepEqual(snd.takeUnacked(), [], 'nothing unacknowledged');
  });
}

ntest('waitAcked: written waits for the apply, received does not', async (t) => {
  // A stopped receiver process is the only way to hold the apply back deterministically, so here
  // the difference is checked through the counters: in received mode waitAcked resolves on the
  // received ack, in written mode only once applied covers the seq.
  for (const mode of ['received', 'written'] as const) {
    const { snd } = await pair(t, mode);
    const seq = snd.submitForTest({ op: 'create', path: 'f', mode: 0o644 });
    const w = snd.submitForTest({ op: 'write', path: 'f', offset: 0, data: bytes(1 << 20, 5) });
    t.true(await snd.waitAcked(w));
    const st = snd.stats();
    t.true(st.received >= w);
    if (mode === 'written') t.true(st.applied >= w, 'written: applied covers the seq when waitAcked resolves');
    t.true(await snd.waitAcked(seq), 'an older seq is acked at once');
  }
});

ntest('a large write is acknowledged once, by its last part (not once per 512 KiB part)', async (t) => {
  const { snd, rcv, dir } = await pair(t, 'received');
  const c = snd.submitForTest({ op: 'create', path: 'big', mode: 0o644 });
  t.true(await snd.waitAcked(c));
  await until(() => rcv.stats().receivedAcks > 0);
  const before = rcv.stats().receivedAcks;
  const data = bytes(2 << 20, 9);
  let last = 0;
  for (let i = 0; i < 3; i++) {
    last = snd.submitForTest({ op: 'write', path: 'big', offset: i * data.length, data });
    t.true(await snd.waitAcked(last), `write ${i} (4 parts) acknowledged`);
  }
  t.is(snd.stats().received, last, 'every part is covered by the acknowledgement of the last one');
  t.is(rcv.stats().receivedAcks - before, 3, 'one acknowledgement per write of 4 parts');
  await until(() => rcv.stats().lastSeqApplied === last);
  const got = readFileSync(join(dir, 'big'));
  t.is(got.length, 3 * data.length);
  for (let i = 0; i < 3; i++) t.true(got.subarray(i * data.length, (i + 1) * data.length).equals(data), `part ${i} applied`);
});

ntest('a burst of large and small writes, not awaited one by one, ends byte-identical (frames handed to the applier in their buffers)', async (t) => {
  for (const mode of ['received', 'written'] as const) {
    const { snd, rcv, dir } = await pair(t, mode);
    const size = 6 << 20;
    const model = Buffer.alloc(size);
    snd.submitForTest({ op: 'create', path: 'burst', mode: 0o644 });
    let last = 0;
    let end = 0;
    for (let i = 0; i < 48; i++) {
      // 768 KiB writes (two parts: the first 512 KiB ends a frame with more to come) between
      // small ones, at offsets that overlap earlier writes: the order of application matters.
      const big = i % 3 !== 2;
      const len = big ? 768 << 10 : 3 + i;
      const off = ((i * 337) << 10) % (size - len);
      const data = bytes(len, i + 1);
      data.copy(model, off);
      end = Math.max(end, off + len);
      last = snd.submitForTest({ op: 'write', path: 'burst', offset: off, data });
    }
    t.true(await snd.waitAcked(last), `${mode}: the burst is acknowledged`);
    await until(() => rcv.stats().lastSeqApplied === last);
    const got = readFileSync(join(dir, 'burst'));
    t.is(got.length, end, `${mode}: the file's size`);
    t.true(got.equals(model.subarray(0, end)), `${mode}: the copy holds every write, in order`);
  }
});

ntest('a wrong key: ERR_RFS_AUTH on both sides and nothing applied', async (t) => {
  const dir = tmp(t, 'sec');
  const rcv = startReceiver({ dir, key: KEY });
  t.teardown(() => rcv.close());
  const errors: Array<{ code: string }> = [];
  rcv.on('error', (e) => errors.push(e));
  const err = await t.throwsAsync(connectSender({ host: '127.0.0.1', port: rcv.port, key: 'another-key-of-enough-length!!' }));
  t.is((err as { code?: string }).code, 'ERR_RFS_AUTH');
  t.regex(err!.message, /wrong key/);
  await until(() => errors.length > 0);
  t.is(errors[0]!.code, 'ERR_RFS_AUTH');
  t.deepEqual(readdirSync(dir), []);
  t.is(rcv.stats().connections, 0);
});

// A client speaking the protocol from JS (node:crypto), to send forged, tampered and replayed frames.
class RawClient {
  sock!: Socket;
  buf = Buffer.alloc(0);
  waiters: Array<() => void> = [];
  closed = false;
  txKey!: Buffer;
  counter = 0n;
  async open(port: number, key: string): Promise<void> {
    this.sock = connect(port, '127.0.0.1');
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    this.sock.on('close', () => { this.closed = true; this.wake(); });
    this.sock.on('error', () => {});
    await new Promise<void>((r) => this.sock.once('connect', () => r()));
    const k = Buffer.from(key);
    const nc = randomBytes(32);
    this.sock.write(Buffer.concat([Buffer.from('HARFS\x01\0\0', 'latin1'), nc]));
    const reply = await this.read(72);
    const ns = reply.subarray(8, 40);
    const ka = Buffer.from(hkdfSync('sha256', k, Buffer.alloc(0), 'ha-sdk/rfs/v1 auth', 32));
    const proof = createHmac('sha256', ka).update('ha-sdk/rfs/v1 client').update(nc).update(ns).digest();
    this.sock.write(proof);
    this.txKey = Buffer.from(hkdfSync('sha256', k, Buffer.concat([nc, ns]), 'ha-sdk/rfs/v1 c2s', 32));
    await this.read(4 + 17 + 16);  // the acceptance frame
  }
  wake(): void { for (const w of this.waiters.splice(0)) w(); }
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error('closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  seal(plain: Buffer): Buffer {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(plain.length + 16);
    const iv = Buffer.alloc(12);
    iv.writeBigUInt64BE(this.counter++, 4);
    const c = createCipheriv('aes-256-gcm', this.txKey, iv);
    c.setAAD(len);
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([len, ct, c.getAuthTag()]);
  }
  async waitClosed(ms = 5000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!this.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }
}

function encodeRecord(seq: number, op: number, path: string, data: Buffer = Buffer.alloc(0), mode = 0o644): Buffer {
  const h = Buffer.alloc(113);
  let o = 0;
  h[o++] = 1;
  h.writeBigUInt64LE(BigInt(seq), o); o += 8;
  h[o++] = op;
  o += 8 + 8;              // offset, length
  h.writeUInt32LE(mode, o); o += 4;
  o += 4;                  // flags
  h.writeUInt32LE(0xffffffff, o); o += 4;
  h.writeUInt32LE(0xffffffff, o); o += 4;
  o += 8 + 32;             // rdev, times
  h.writeUInt32LE(Buffer.byteLength(path), o); o += 4;
  o += 8;                  // path2, name
  h.writeUInt32LE(data.length, o); o += 4;
  return Buffer.concat([h.subarray(0, o), Buffer.from(path), data]);
}

ntest('forged, tampered and replayed frames close the connection and apply nothing; the next honest sender is served', async (t) => {
  const dir = tmp(t, 'sec');
  const rcv = startReceiver({ dir, key: KEY });
  t.teardown(() => rcv.close());
  const errors: Array<{ code: string; message: string }> = [];
  rcv.on('error', (e) => errors.push(e));

  // 1. garbage instead of a handshake
  const g = connect(rcv.port, '127.0.0.1');
  g.on('error', () => {});
  g.write(randomBytes(300));
  await new Promise<void>((r) => g.once('close', () => r()));
  await until(() => errors.length === 1);
  t.is(errors[0]!.code, 'ERR_RFS_AUTH');

  // 2. authenticated, then a frame with one flipped ciphertext byte
  const a = new RawClient();
  await a.open(rcv.port, KEY);
  const f = a.seal(encodeRecord(1, RFS_OPS.create, 'tampered'));
  f[10] = f[10]! ^ 0x01;
  a.sock.write(f);
  t.true(await a.waitClosed());
  await until(() => errors.length === 2);
  t.is(errors[1]!.code, 'ERR_RFS_AUTH');

  // 3. a valid frame, then the same frame replayed
  const b = new RawClient();
  await b.open(rcv.port, KEY);
  const ok = b.seal(encodeRecord(1, RFS_OPS.create, 'first'));
  b.sock.write(ok);
  await until(() => existsSync(join(dir, 'first')));
  b.sock.write(ok);
  t.true(await b.waitClosed());
  await until(() => errors.length === 3);
  t.is(errors[2]!.code, 'ERR_RFS_AUTH');

  // 4. an oversized length prefix
  const c = new RawClient();
  await c.open(rcv.port, KEY);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0x7fffffff);
  c.sock.write(big);
  t.true(await c.waitClosed());
  await until(() => errors.length === 4);
  t.is(errors[3]!.code, 'ERR_RFS_FRAME');

  t.deepEqual(readdirSync(dir), ['first'], 'only the authenticated record was applied');

  // 5. the receiver still serves an honest sender
  const snd = await connectSender({ host: '127.0.0.1', port: rcv.port, key: KEY });
  t.teardown(() => snd.close());
  const s = snd.submitForTest({ op: 'create', path: 'honest', mode: 0o600 });
  t.true(await snd.waitAcked(s));
  t.true(existsSync(join(dir, 'honest')));
});

for (const [name, records] of [
  ['../x', [{ op: 'create', path: '../x', mode: 0o644 }]],
  ['an absolute path', [{ op: 'create', path: '/tmp/rfs-escape-abs', mode: 0o644 }]],
  ['an empty component', [{ op: 'mkdir', path: 'a//b', mode: 0o755 }]],
  ['a symlink pointing outside, then written through', [
    { op: 'symlink', path: 'out', path2: '@OUTSIDE@' },
    { op: 'create', path: 'out/x', mode: 0o644 },
  ]],
  ['a symlink to an outside file, then written', [
    { op: 'symlink', path: 'outfile', path2: '@OUTSIDE@/victim' },
    { op: 'write', path: 'outfile', offset: 0, data: Buffer.from('pwned') },
  ]],
  ['a rename target escaping', [{ op: 'create', path: 'ok', mode: 0o644 }, { op: 'rename', path: 'ok', path2: '../stolen' }]],
] as Array<[string, RfsRecord[]]>) {
  ntest(`path escape rejected: ${name} (ERR_RFS_BAD_RECORD, nothing more applied)`, async (t) => {
    const outside = tmp(t, 'outside');
    writeFileSync(join(outside, 'victim'), 'intact');
    const { dir, snd, events } = await pair(t);
    const lost: Array<{ code: string }> = [];
    snd.on('lost', (e) => lost.push(e));
    let last = 0;
    for (const r of records) last = snd.submitForTest({ ...r, ...(r.path2 ? { path2: r.path2.replace('@OUTSIDE@', outside) } : {}) });
    const after = snd.submitForTest({ op: 'create', path: 'after', mode: 0o644 });
    t.false(await snd.waitAcked(after), 'the record after the bad one is never acknowledged');
    t.true(last < after);
    await until(() => events.some(([e]) => e === 'error'));
    const err = events.find(([e]) => e === 'error')![1] as { code: string; message: string };
    t.is(err.code, 'ERR_RFS_BAD_RECORD');
    t.log(err.message);
    t.false(existsSync(join(dir, 'after')));
    t.deepEqual(readdirSync(outside), ['victim']);
    t.is(readFileSync(join(outside, 'victim'), 'utf8'), 'intact');
    t.false(existsSync('/tmp/rfs-escape-abs'));
    t.false(existsSync(join(dirname(dir), 'x')));
    t.true(lost.length === 1 || snd.stats().lost);
  });
}

const RECEIVER_SCRIPT = `
import { startReceiver, aesGcmImplementation } from ${JSON.stringify(join(ROOT, 'native/src/index.ts'))};
const rcv = startReceiver({ dir: process.argv[1], key: process.argv[2], mode: 'written' });
process.stdout.write(String(rcv.port) + '\\n' + aesGcmImplementation() + '\\n');
setInterval(() => {}, 1000);
`;

function spawnReceiver(t: ExecutionContext, dir: string, env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; port: number; aes: string }> {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', RECEIVER_SCRIPT, dir, KEY], { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT, env });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return new Promise((res, rej) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n(.+)\n/.exec(out);
      if (m) res({ child, port: Number(m[1]), aes: m[2]! });
    });
    child.once('exit', (code) => rej(new Error(`receiver exited (${code})`)));
  });
}

/** SIGSTOP, then wait until every thread is really stopped (the signal takes effect asynchronously). */
async function stopProcess(child: ChildProcess): Promise<void> {
  child.kill('SIGSTOP');
  await until(() => readdirSync(`/proc/${child.pid}/task`).every((tid) => {
    const st = readFileSync(`/proc/${child.pid}/task/${tid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) === 'T';
  }));
}

// The two AES-256-GCM implementations (intel-ipsec-mb where the CPU has VAES, OpenSSL elsewhere)
// must produce the same frames: nodes of one cluster may run on different CPUs. Records of every
// awkward size (partial 16-byte blocks, a 4 MiB record split into frames) cross in both directions.
const cpuHasVaes = (() => { try { const f = readFileSync('/proc/cpuinfo', 'utf8'); return ['vaes', 'vpclmulqdq', 'avx512f'].every((x) => new RegExp(`\\b${x}\\b`).test(f)); } catch { return false; } })();
function oddSizes(): RfsRecord[] {
  const out: RfsRecord[] = [{ op: 'create', path: 'odd', mode: 0o644 }];
  let off = 0;
  for (const [i, n] of [1, 15, 16, 17, 31, 4095, 4097, 65_537, (1 << 20) + 3, 4 << 20, 777].entries()) {
    out.push({ op: 'write', path: 'odd', offset: off, data: bytes(n, i + 11) });
    off += n + (i % 3) * 1000;
  }
  out.push({ op: 'write', path: 'odd', offset: 100, data: bytes(9, 5) }, { op: 'utimens', path: 'odd', atime: [1_600_000_000, 0], mtime: [1_600_000_999, 0] }, { op: 'fsync', path: 'odd', flags: 0 });
  return out;
}
ntest('AES-GCM: intel-ipsec-mb and OpenSSL peers understand each other, both ways', async (t) => {
  const mine = aesGcmImplementation();
  t.log(`this process: ${mine}; CPU with VAES+VPCLMULQDQ+AVX-512: ${cpuHasVaes}`);
  // CI installs libipsec-mb-dev (.ci/run, scripts/install-deps.sh): where the CPU has the
  // instructions the fast implementation must really be the one in use.
  if (process.env.CI && cpuHasVaes) t.is(mine, 'intel-ipsec-mb (avx512)');
  const ref = tmp(t, 'ref');
  for (const r of oddSizes()) applyRef(ref, r);
  // 1. this process seals with its default; the receiver child is forced to OpenSSL.
  {
    const dir = tmp(t, 'sec-openssl');
    const { port, aes } = await spawnReceiver(t, dir, { ...process.env, HA_RFS_AES: 'openssl' });
    t.is(aes, 'openssl');
    const snd = await connectSender({ host: '127.0.0.1', port, key: KEY, mode: 'written' });
    t.teardown(() => snd.close());
    const seqs = oddSizes().map((r) => snd.submitForTest(r));
    t.true(await snd.waitAcked(seqs.at(-1)!), `acknowledged by the OpenSSL receiver (${snd.stats().lostReason ?? 'ok'})`);
    t.deepEqual(tree(dir), tree(ref));
  }
  // 2. the other way: this process forced to OpenSSL while its sender connects, the receiver child
  //    with its default.
  {
    const dir = tmp(t, 'sec-default');
    const { port, aes } = await spawnReceiver(t, dir);
    t.is(aes, mine);
    const before = process.env.HA_RFS_AES;
    process.env.HA_RFS_AES = 'openssl';
    let snd;
    try {
      t.is(aesGcmImplementation(), 'openssl');
      snd = await connectSender({ host: '127.0.0.1', port, key: KEY, mode: 'written' });
    } finally {
      if (before === undefined) delete process.env.HA_RFS_AES; else process.env.HA_RFS_AES = before;
    }
    t.teardown(() => snd.close());
    const seqs = oddSizes().map((r) => snd.submitForTest(r));
    t.true(await snd.waitAcked(seqs.at(-1)!), `acknowledged by the receiver (${snd.stats().lostReason ?? 'ok'})`);
    t.deepEqual(tree(dir), tree(ref));
  }
});

ntest('receiver killed mid-stream: lost, waitAcked false, takeUnacked lists exactly the unacknowledged records', async (t) => {
  const dir = tmp(t, 'sec');
  const { child, port } = await spawnReceiver(t, dir);
  const snd = await connectSender({ host: '127.0.0.1', port, key: KEY, mode: 'written', ackTimeoutMs: 10_000 });
  t.teardown(() => snd.close());
  const lost: Array<{ code: string; message: string }> = [];
  snd.on('lost', (e) => lost.push(e));
  const first = [snd.submitForTest({ op: 'create', path: 'f', mode: 0o644 })];
  for (let i = 0; i < 4; i++) first.push(snd.submitForTest({ op: 'write', path: 'f', offset: i * 65536, data: bytes(65536, i) }));
  t.true(await snd.waitAcked(first.at(-1)!));
  await stopProcess(child);  // it acknowledges nothing more
  const later: RfsRecord[] = [
    { op: 'write', path: 'f', offset: 1 << 20, data: bytes(200_000, 7) },
    { op: 'truncate', path: 'f', length: 123 },
    { op: 'rename', path: 'f', path2: 'g' },
    { op: 'fsync', path: 'g' },
  ];
  const seqs = later.map((r) => snd.submitForTest(r));
  const waiting = snd.waitAcked(seqs.at(-1)!);
  await new Promise((r) => setTimeout(r, 200));
  child.kill('SIGKILL');
  t.false(await waiting);
  await until(() => lost.length === 1);
  t.is(lost[0]!.code, 'ERR_RFS_LINK');
  t.log(lost[0]!.message);
  t.false(await snd.waitAcked(seqs[0]!), 'every later waitAcked is false at once');
  t.true(await snd.waitAcked(first.at(-1)!), 'an acknowledged seq stays acknowledged');
  const un = snd.takeUnacked();
  t.deepEqual(un, [
    { seq: seqs[0], op: 'write', path: 'f', offset: 1 << 20, length: 200_000 },
    { seq: seqs[1], op: 'truncate', path: 'f', offset: 0, length: 123 },
    { seq: seqs[2], op: 'rename', path: 'f', path2: 'g', offset: 0, length: 0 },
    { seq: seqs[3], op: 'fsync', path: 'g', offset: 0, length: 0 },
  ]);
  const after = snd.submitForTest({ op: 'write', path: 'g', offset: 0, data: bytes(10, 1) });
  t.false(await snd.waitAcked(after));
  t.deepEqual(snd.takeUnacked().map((r) => r.seq), [after], 'changes submitted after the loss are listed too');
  t.true(snd.stats().lost);
});

ntest('ack timeout and queue overflow make replication lost', async (t) => {
  const dir = tmp(t, 'sec');
  const { child, port } = await spawnReceiver(t, dir);
  const snd = await connectSender({ host: '127.0.0.1', port, key: KEY, ackTimeoutMs: 300, maxQueueBytes: 1 << 20 });
  t.teardown(() => snd.close());
  await stopProcess(child);
  t.teardown(() => { child.kill('SIGKILL'); });
  const s = snd.submitForTest({ op: 'create', path: 'x', mode: 0o644 });
  t.false(await snd.waitAcked(s));
  t.is(snd.stats().lostCode, 'ERR_RFS_ACK_TIMEOUT');

  const r2 = await spawnReceiver(t, tmp(t, 'sec2'));
  const snd2 = await connectSender({ host: '127.0.0.1', port: r2.port, key: KEY, maxQueueBytes: 1 << 20 });
  t.teardown(() => snd2.close());
  await stopProcess(r2.child); // no acks: what is submitted stays unacknowledged
  t.teardown(() => { r2.child.kill('SIGKILL'); });
  const lost: string[] = [];
  snd2.on('lost', (e) => lost.push(e.code));
  // Three 600 KiB writes submitted back to back: the queue bound (1 MiB unacknowledged) is passed.
  snd2.submitForTest({ op: 'create', path: 'y', mode: 0o644 });
  for (let i = 0; i < 3; i++) snd2.submitForTest({ op: 'write', path: 'y', offset: i * 600_000, data: bytes(600_000, i) });
  await until(() => lost.length > 0);
  t.is(lost[0], 'ERR_RFS_QUEUE_FULL');
});

nlabTest('ENOSPC on a full tmpfs: apply-failed reported, no ack, the sender is lost', async (t) => {
  const dir = tmp(t, 'tmpfs');
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'rfs-test', dir]);
  if (m.status !== 0) { t.fail(`mount tmpfs: ${m.stderr}`); return; }
  t.teardown(() => { spawnSync('umount', ['-l', dir]); });
  const rcv = startReceiver({ dir, key: KEY });
  t.teardown(() => rcv.close());
  const failed: Array<{ path: string; errno: number; seq: number }> = [];
  rcv.on('apply-failed', (f) => failed.push(f));
  const snd = await connectSender({ host: '127.0.0.1', port: rcv.port, key: KEY, mode: 'written' });
  t.teardown(() => snd.close());
  const lost: Array<{ code: string; message: string }> = [];
  snd.on('lost', (e) => lost.push(e));
  snd.submitForTest({ op: 'create', path: 'fill', mode: 0o644 });
  let last = 0;
  for (let i = 0; i < 3; i++) last = snd.submitForTest({ op: 'write', path: 'fill', offset: i << 20, data: bytes(1 << 20, i) });
  t.false(await snd.waitAcked(last));
  await until(() => failed.length === 1 && lost.length === 1);
  t.is(failed[0]!.errno, 28, 'ENOSPC');
  t.is(failed[0]!.path, 'fill');
  t.is(lost[0]!.code, 'ERR_RFS_APPLY');
  t.log(lost[0]!.message);
  t.true(snd.stats().applied < failed[0]!.seq, 'the failed record was not acknowledged as applied');
  t.true(snd.takeUnacked().some((r) => r.seq === failed[0]!.seq));
});

ntest('resync ops: syncEntry makes an entry match, dirList removes what is not listed', async (t) => {
  const { dir, snd } = await pair(t);
  mkdirSync(join(dir, 'keep'));
  writeFileSync(join(dir, 'keep/old'), 'x');
  mkdirSync(join(dir, 'extra/deep'), { recursive: true });
  writeFileSync(join(dir, 'extra/deep/f'), 'y');
  writeFileSync(join(dir, 'wastype'), 'file that must become a directory');
  symlinkSync('wrong', join(dir, 'ln'));
  const S_IFREG = 0o100000, S_IFDIR = 0o040000, S_IFLNK = 0o120000;
  const recs: RfsRecord[] = [
    { op: 'syncEntry', path: 'wastype', mode: S_IFDIR | 0o711, atime: [1_000_000, 0], mtime: [1_000_001, 0] },
    { op: 'syncEntry', path: 'ln', mode: S_IFLNK | 0o777, path2: 'right', atime: [1_000_000, 0], mtime: [1_000_002, 0] },
    { op: 'syncEntry', path: 'keep/old', mode: S_IFREG | 0o600, length: 5000, atime: [1_000_000, 0], mtime: [1_000_003, 0] },
    { op: 'syncEntry', path: 'new', mode: S_IFREG | 0o640, length: 10, atime: [1_000_000, 0], mtime: [1_000_004, 0] },
    { op: 'dirList', path: '', data: Buffer.from('keep\0wastype\0ln\0new\0') },
  ];
  let last = 0;
  for (const r of recs) last = snd.submitForTest(r);
  t.true(await snd.waitAcked(last));
  t.deepEqual(readdirSync(dir).sort(), ['keep', 'ln', 'new', 'wastype']);
  t.true(lstatSync(join(dir, 'wastype')).isDirectory());
  t.is(lstatSync(join(dir, 'wastype')).mode & 0o7777, 0o711);
  t.is(lstatSync(join(dir, 'wastype')).mtimeMs, 1_000_001_000);
  t.is(readlinkSync(join(dir, 'ln')), 'right');
  t.is(lstatSync(join(dir, 'keep/old')).size, 5000);
  t.is(lstatSync(join(dir, 'keep/old')).mode & 0o7777, 0o600);
  t.is(lstatSync(join(dir, 'new')).size, 10);
  t.is(lstatSync(join(dir, 'new')).mtimeMs, 1_000_004_000);
});

ntest('throughput over loopback (1 GiB of 1 MiB writes, both modes)', async (t) => {
  for (const mode of ['received', 'written'] as const) {
    const { snd } = await pair(t, mode);
    const c = snd.submitForTest({ op: 'create', path: 'bench', mode: 0o644 });
    t.true(await snd.waitAcked(c));
    for (const sync of [true, false]) {
      const r = await snd.benchForTest('bench', 1024, 1 << 20, sync);
      t.true(r.ok);
      t.log(`${mode} mode, ${sync ? 'each write waited for' : 'pipelined'}: ${((1024 * (1 << 20)) / (r.ns / 1e9) / (1 << 20)).toFixed(0)} MiB/s (${(r.ns / 1e6).toFixed(0)} ms for 1 GiB)`);
    }
    const small = await snd.benchForTest('bench', 5000, 4096, true);
    t.true(small.ok);
    t.log(`${mode} mode, 4 KiB writes each waited for: ${(small.ns / 5000 / 1000).toFixed(1)} µs per write (mean round trip incl. apply in written mode)`);
  }
});

ntest('argument validation names the field', async (t) => {
  t.throws(() => startReceiver({ dir: '/nonexistent/rfs', key: KEY }), { code: 'ERR_RFS_TRANSPORT_ARG', message: /dir/ });
  t.throws(() => startReceiver({ dir: tmpdir(), key: 'short' }), { message: /key must be at least 16 bytes/ });
  t.throws(() => startReceiver({ dir: tmpdir(), key: KEY, port: 70000 }), { message: /port/ });
  t.throws(() => startReceiver({ dir: tmpdir(), key: KEY, mode: 'fast' as RfsAckMode }), { message: /mode/ });
  await t.throwsAsync(connectSender({ host: '127.0.0.1', port: 0, key: KEY }), { message: /port/ });
  await t.throwsAsync(connectSender({ host: '127.0.0.1', port: 1, key: KEY, ackTimeoutMs: -1 }), { message: /ackTimeoutMs/ });
  const e = await t.throwsAsync(connectSender({ host: '127.0.0.1', port: 1, key: KEY }));
  t.is((e as { code?: string }).code, 'ERR_RFS_CONNECT');
  const { snd } = await pair(t);
  t.throws(() => snd.submitForTest({ op: 'nope' as 'write' }), { message: /record.op/ });
  t.throws(() => snd.submitForTest({ op: 'write', path: 'x', offset: -1 }), { message: /record.offset/ });
});

export type { RfsReceiver, RfsSender };
