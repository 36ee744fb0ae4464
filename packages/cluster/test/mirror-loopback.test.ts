/**
 * The mirror module end to end over real UDP on loopback (two clusters in this process, on
 * 127.0.0.1 and 127.0.0.2), with application callbacks and no VIP: the protocol paths (start,
 * election, planned stop, swap, return as secondary, failback, power loss of both, failover off).
 * The lab tests (test/mirror.test.ts) cover the VIP, SIGKILL and link cuts in namespaces.
 */
import test from 'ava';
import { EventEmitter } from 'eventemitter3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster, type Cluster, type ClusterInit, type MirrorInit, type MirrorState, type ReintegrationProgress } from '../src/index.js';

const KEY = 'loopback-test-key-0123456789';

interface Node { name: string; cluster?: Cluster; events: string[]; dir: string }

function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'ha-mirror-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const log: string[] = [];
  const nodes: Record<string, Node> = {
    a: { name: 'a', events: [], dir: join(dir, 'a') },
    b: { name: 'b', events: [], dir: join(dir, 'b') },
  };
  const start = async (name: 'a' | 'b', mirror: Partial<MirrorInit> = {}, extra: { autoStart?: boolean } = {}) => {
    const n = nodes[name]!;
    n.cluster = await createCluster({
      node: name, key: KEY, stateDir: n.dir, preset: 'default',
      networks: [{ name: 'lo', port, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }],
      ...extra,
      mirror: {
        name: 'm', niceStopTimeoutMs: 2000, forceStopTimeoutMs: 2000,
        app: {
          start: async () => { log.push(`${name}:start`); },
          stop: async ({ force }) => { if (!force) log.push(`${name}:stop`); },
        },
        ...mirror,
      },
    });
    n.cluster.on('state', (e) => n.events.push(e.state));
    return n.cluster;
  };
  const stop = async (name: 'a' | 'b') => { const c = nodes[name]!.cluster; nodes[name]!.cluster = undefined; await c?.stop(); };
  t.teardown(async () => {
    for (const n of Object.values(nodes)) await n.cluster?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  return { nodes, start, stop, log };
}

function state(c: Cluster | undefined): MirrorState | undefined { return c?.mirror.state; }

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function ready(c: Cluster | undefined): Promise<boolean> {
  if (!c) return false;
  const s = await c.mirror.status();
  return s.state === 'SECOND' && s.ready;
}

test('fresh pair: one PRIM (elected), one SECOND; the application runs on the primary only', async (t) => {
  const { nodes, start, log } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', () => state(nodes.a!.cluster) === 'PRIM' && state(nodes.b!.cluster) === 'SECOND');
  t.deepEqual(log, ['a:start']);
  const st = await nodes.a!.cluster!.getStatus();
  t.is(st.modules[0]!.peer.state, 'SECOND');
  t.true(st.modules[0]!.peer.heard);
  t.true(nodes.a!.cluster!.logs().some((l) => l.includes('elected primary')), 'the module log explains the election');
});

test('a fresh node alone waits for its peer; `prim` forces it', async (t) => {
  const { nodes, start } = setup(t);
  const a = await start('a');
  await new Promise((r) => setTimeout(r, 1200));
  t.is(state(a), 'WAIT');
  const st = await a.mirror.status();
  t.regex(st.waitReason ?? '', /first start/);
  await a.command('prim');
  await until('ALONE', () => state(a) === 'ALONE');
  await start('b');
  await until('PRIM/SECOND', () => state(a) === 'PRIM' && state(nodes.b!.cluster) === 'SECOND');
});

test('planned stop of the primary: stop callback there before start callback on the secondary, which goes ALONE', async (t) => {
  const { nodes, start, stop, log } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  await stop('a');
  await until('b ALONE', () => state(nodes.b!.cluster) === 'ALONE');
  t.deepEqual(log, ['a:start', 'a:stop', 'b:start']);
  t.true(nodes.b!.cluster!.logs().some((l) => /planned stop/.test(l)), 'the log says it was planned');
});

test('swap exchanges the roles, stop_prim before start_prim; a returning node becomes SECOND', async (t) => {
  const { nodes, start, stop, log } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  await nodes.b!.cluster!.command('swap'); // asked on the secondary: forwarded to the primary
  await until('swapped', async () => state(nodes.b!.cluster) === 'PRIM' && await ready(nodes.a!.cluster));
  t.deepEqual(log, ['a:start', 'a:stop', 'b:start']);
  await stop('a');
  await until('b ALONE', () => state(nodes.b!.cluster) === 'ALONE');
  await start('a');
  await until('a SECOND again', async () => state(nodes.b!.cluster) === 'PRIM' && await ready(nodes.a!.cluster));
  t.deepEqual(log, ['a:start', 'a:stop', 'b:start']);
});

test('the preferred primary (defaultprim) takes its role back after it returns', async (t) => {
  const { nodes, start, stop, log } = setup(t);
  await Promise.all([start('a', { defaultPrimary: 'b' }), start('b', { defaultPrimary: 'b' })]);
  await until('b PRIM', async () => state(nodes.b!.cluster) === 'PRIM' && await ready(nodes.a!.cluster));
  await stop('b');
  await until('a ALONE', () => state(nodes.a!.cluster) === 'ALONE');
  await start('b', { defaultPrimary: 'b' });
  await until('b PRIM again', async () => state(nodes.b!.cluster) === 'PRIM' && await ready(nodes.a!.cluster), 8000);
  t.deepEqual(log, ['b:start', 'b:stop', 'a:start', 'a:stop', 'b:start']);
  t.true(nodes.b!.cluster!.logs().some((l) => /preferred primary/.test(l)));
});

test('both nodes stopped (PRIM then SECOND lost together): the first back waits for its peer, then the last primary wins', async (t) => {
  const { nodes, start, log } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  // Simulate a power loss of both: both heartbeat workers vanish at the same instant, without
  // LEAVE and without any planned stop (the lab test does it with SIGKILL of two processes).
  const dead = (['a', 'b'] as const).map((n) => { const c = nodes[n]!.cluster!; nodes[n]!.cluster = undefined; return c; });
  for (const c of dead) { c.mirror.detach(); c.membership.removeAllListeners('error'); }
  await Promise.all(dead.map((c) => c.membership.crashWorkerForTesting()));
  log.length = 0;
  const b = await start('b');
  await new Promise((r) => setTimeout(r, 1500));
  t.is(state(b), 'WAIT', 'b (last SECOND) must not serve alone after a double failure');
  t.regex((await b.mirror.status()).waitReason ?? '', /not known to be up to date/);
  await start('a');
  await until('a PRIM', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(b));
  t.deepEqual(log, ['a:start']);
});

test('failover="off": the secondary does not take over when the primary is lost; it waits', async (t) => {
  const { nodes, start, log } = setup(t);
  await Promise.all([start('a', { failover: false }), start('b', { failover: false })]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  const a = nodes.a!.cluster!;
  nodes.a!.cluster = undefined;
  a.mirror.detach();
  await a.membership.stop(); // the primary vanishes (as far as b can tell)
  await until('b WAIT', () => state(nodes.b!.cluster) === 'WAIT');
  t.deepEqual(log, ['a:start']);
  t.true(nodes.b!.cluster!.logs().some((l) => /failover is off/.test(l)), 'the module log says why it waits');
  await new Promise((r) => setTimeout(r, 600));
  t.is(state(nodes.b!.cluster), 'WAIT', 'and it keeps waiting');
});

test('commands refused in the wrong state say why', async (t) => {
  const { start } = setup(t);
  const a = await start('a', {}, { autoStart: false });
  t.is(a.mirror.state, 'STOP');
  const e1 = await t.throwsAsync(a.command('swap'));
  t.is((e1 as { code?: string }).code, 'ERR_COMMAND_REFUSED');
  t.regex(e1!.message, /swap: needs PRIM/);
  const e2 = await t.throwsAsync(a.command('restart'));
  t.regex(e2!.message, /restart/);
  await a.command('start');
  t.is(a.mirror.state, 'WAIT');
  const e3 = await t.throwsAsync(a.command('start'));
  t.regex(e3!.message, /already WAIT/);
});

test('bad configuration is refused at construction with the field named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ha-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const base: Omit<ClusterInit, 'mirror'> = { node: 'a', key: KEY, stateDir: dir, networks: [{ port: 9, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }], start: false };
  await t.throwsAsync(createCluster({ ...base, mirror: { defaultPrimary: 'zz' } }), { code: 'ERR_CLUSTER_CONFIG', message: /defaultPrimary.*'zz'/ });
  await t.throwsAsync(createCluster({ ...base, networks: [{ port: 9, addresses: { a: '127.0.0.1', b: '127.0.0.2', c: '127.0.0.3' } }], mirror: {} }), { message: /exactly two nodes/ });
  await t.throwsAsync(createCluster({ ...base, mirror: { niceStopTimeoutMs: -1 } }), { message: /niceStopTimeoutMs/ });
  await t.throwsAsync(createCluster({ ...base, key: 'short', mirror: {} }), { message: /key/ });
  await t.throwsAsync(createCluster({ ...base, mirror: { app: { start: 1 } as never } }), { message: /mirror\.app/ });
});

test('the module log is persistent: one JSON line per decision, with what, why and when', async (t) => {
  const { nodes, start, stop } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  await stop('a');
  const { readFileSync } = await import('node:fs');
  const lines = readFileSync(join(nodes.a!.dir, 'm', 'module.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const states = lines.filter((l) => l.event === 'state');
  t.deepEqual(states.map((l) => `${String(l.from)}->${String(l.to)}`), ['STOP->WAIT', 'WAIT->ALONE', 'ALONE->PRIM', 'PRIM->STOP']);
  for (const l of states) {
    t.regex(String(l.ts), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    t.true(String(l.msg).length > 20, 'says why');
  }
  t.true(lines.some((l) => l.event === 'app:stopped'));
});

test('a corrupt persisted state is refused with the file named, not guessed', async (t) => {
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'ha-corrupt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'm.state.json'), '{"uptodate": tru');
  const err = await t.throwsAsync(createCluster({
    node: 'a', key: KEY, stateDir: dir, networks: [{ port: 20000 + Math.floor(Math.random() * 20000), addresses: { a: '127.0.0.1', b: '127.0.0.2' } }],
    mirror: { name: 'm' },
  }));
  t.is((err as { code?: string }).code, 'ERR_STATE_FILE');
  t.true(err!.message.includes(join(dir, 'm.state.json')));
});

test('if the membership fails, the node stops itself (a primary releases its role) and reports it with a fatal event', async (t) => {
  const { nodes, start, log } = setup(t);
  await Promise.all([start('a'), start('b')]);
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  const a = nodes.a!.cluster!;
  const fatal = new Promise<Error>((r) => a.once('fatal', r));
  await a.membership.crashWorkerForTesting();
  const err = await fatal;
  t.regex(err.message, /worker/i);
  t.is(a.mirror.state, 'STOP');
  t.true(log.includes('a:stop'), 'the application was stopped');
  await until('b takes over', () => state(nodes.b!.cluster) === 'ALONE');
});

/** A recording data plane: the order of calls is what the mirror driver guarantees. */
class RecordingData extends EventEmitter<{ lost: [Error] }> {
  constructor(readonly name: string, readonly calls: string[], public attachMs = 200) { super(); }
  async startPrimary() { this.calls.push(`${this.name}:startPrimary`); }
  async stopPrimary() { this.calls.push(`${this.name}:stopPrimary`); }
  async startSecondary() { this.calls.push(`${this.name}:startSecondary`); }
  async stopSecondary() { this.calls.push(`${this.name}:stopSecondary`); }
  async attachSecondary(peer: string, signal: AbortSignal, progress: (p: ReintegrationProgress) => void) {
    this.calls.push(`${this.name}:attach(${peer})`);
    progress({ bytesDone: 0, bytesTotal: 10, filesDone: 0, filesTotal: 1, filesKept: 0, rate: 0, etaS: 1 });
    await new Promise((r) => setTimeout(r, this.attachMs));
    if (signal.aborted) throw new Error('aborted');
    this.calls.push(`${this.name}:attached`);
  }
  async detachSecondary() { this.calls.push(`${this.name}:detach`); }
}

test('data plane: intercept before the application starts, reintegrate before PRIM, Ready only when the primary is PRIM, lost replication -> ALONE', async (t) => {
  const { nodes, start, log } = setup(t);
  const calls: string[] = [];
  const da = new RecordingData('a', calls);
  const db = new RecordingData('b', calls);
  const ca = await start('a', { data: da });
  // The application callbacks record into `log`; mirror them into `calls` to see the interleaving.
  ca.on('app:started', () => calls.push('a:app-started'));
  await start('b', { data: db });
  await until('a ALONE', () => state(ca) === 'ALONE' || state(ca) === 'PRIM');
  await until('b SECOND', () => state(nodes.b!.cluster) === 'SECOND');
  t.false((await nodes.b!.cluster!.mirror.status()).ready, 'Transient while the primary reintegrates it');
  await until('a PRIM', () => state(ca) === 'PRIM');
  await until('b Ready', () => ready(nodes.b!.cluster));
  t.true(calls.indexOf('a:startPrimary') < calls.indexOf('a:app-started') || calls.indexOf('a:app-started') === -1);
  t.true(calls.indexOf('a:attached') >= 0 && calls.indexOf('a:attached') < calls.length);
  t.true(calls.includes('b:startSecondary'));
  t.deepEqual(log, ['a:start']);
  // The data path loses the secondary: the primary goes ALONE, the secondary is no longer Ready,
  // and the primary reintegrates it again.
  da.emit('lost', new Error('ack timeout'));
  await until('a ALONE again', () => state(ca) === 'ALONE');
  t.true(ca.logs().some((l) => /replication to b is lost/.test(l)));
  await until('a PRIM again', () => state(ca) === 'PRIM');
  t.is(calls.filter((c) => c === 'a:attach(b)').length, 2);
});

test('data plane on a planned switch: the old primary stops its application, then its interception, before the new one starts intercepting', async (t) => {
  const { nodes, start, stop } = setup(t);
  const calls: string[] = [];
  await start('a', { data: new RecordingData('a', calls, 50) });
  await start('b', { data: new RecordingData('b', calls, 50) });
  await until('PRIM/SECOND', async () => state(nodes.a!.cluster) === 'PRIM' && await ready(nodes.b!.cluster));
  await stop('a');
  await until('b ALONE', () => state(nodes.b!.cluster) === 'ALONE');
  const i = (c: string) => calls.indexOf(c);
  t.true(i('a:stopPrimary') >= 0 && i('b:stopSecondary') > i('a:stopPrimary'), calls.join(' '));
  t.true(calls.lastIndexOf('b:startPrimary') > i('b:stopSecondary'));
});
