/** Real UDP on loopback (127.0.0.x): no namespaces needed. Each test uses its own ports. */
import test from 'ava';
import { createSocket } from 'node:dgram';
import { membership, type Membership, type MembershipInit } from '../src/index.js';
import { deriveKey } from '../src/auth.js';
import { MessageType, encodePacket, encodeValue } from '../src/messages.js';
import { KEY, record, sleep, spawnMember, waitFor, type Seen } from './helpers.js';

function net(port: number, ids: string[], prefix = '127.0.0.', name?: string) {
  return { ...(name ? { name } : {}), port, addresses: Object.fromEntries(ids.map((id, i) => [id, `${prefix}${i + 1}`])) };
}

async function startAll(t: import('ava').ExecutionContext, inits: MembershipInit[]): Promise<Array<{ m: Membership; seen: Seen[] }>> {
  const out = inits.map((init) => { const m = membership(init)({}); return { m, seen: record(m) }; });
  t.teardown(async () => { for (const { m } of out) await m.stop().catch(() => {}); });
  await Promise.all(out.map(({ m }) => m.start()));
  return out;
}

const ups = (seen: Seen[]) => new Set(seen.filter((e) => e.event === 'member:up').map((e) => e.id));

test('three members see each other, share payloads and messages; a stopping member is seen as left at once', async (t) => {
  const ids = ['a', 'b', 'c'];
  const nets = [net(47101, ids)];
  const ms = await startAll(t, ids.map((nodeId) => ({ nodeId, key: KEY, networks: nets, clusterName: 'udp1' })));
  const [a, b, c] = ms as [typeof ms[0], typeof ms[0], typeof ms[0]];
  await waitFor('everyone up', () => ups(a.seen).size === 2 && ups(b.seen).size === 2 && ups(c.seen).size === 2);
  t.deepEqual(a.m.members().map((x) => [x.id, x.state]), [['b', 'up'], ['c', 'up']]);
  t.true(a.m.members().every((x) => x.networks.net0 === true && x.lastHeardMs > Date.now() - 5000));

  // payload: sent at once and in every heartbeat; an unchanged payload is not re-announced
  b.m.setPayload({ state: 'PRIM', n: 1 });
  await waitFor('payload at a and c', () => [a, c].every((x) => x.seen.some((e) => e.event === 'member:payload' && e.id === 'b')));
  t.deepEqual(a.seen.find((e) => e.event === 'member:payload')!.payload, { state: 'PRIM', n: 1 });
  await sleep(300);
  t.is(a.seen.filter((e) => e.event === 'member:payload').length, 1);
  t.deepEqual(a.m.members().find((x) => x.id === 'b')!.payload, { state: 'PRIM', n: 1 });

  // messages: unicast and broadcast, delivered once each
  a.m.send('b', 'ctl', { op: 'swap' });
  a.m.send('*', 'all', [1, 2, 3]);
  await waitFor('messages', () => b.seen.filter((e) => e.event === 'message').length === 2 && c.seen.some((e) => e.event === 'message'));
  await sleep(100);
  t.deepEqual(b.seen.filter((e) => e.event === 'message').map((e) => [e.from, e.channel, e.body]), [['a', 'ctl', { op: 'swap' }], ['a', 'all', [1, 2, 3]]]);
  t.deepEqual(c.seen.filter((e) => e.event === 'message').map((e) => [e.from, e.channel, e.body]), [['a', 'all', [1, 2, 3]]]);
  t.throws(() => a.m.send('zz', 'x', 1), { code: 'ERR_MEMBERSHIP_UNKNOWN_MEMBER' });
  t.throws(() => a.m.setPayload({ big: 'x'.repeat(5000) }), { code: 'ERR_MEMBERSHIP_ENCODE' });

  // LEAVE
  const t0 = Date.now();
  await c.m.stop();
  await waitFor('c left at a and b', () => [a, b].every((x) => x.seen.some((e) => e.event === 'member:down' && e.id === 'c' && e.reason === 'left')));
  const took = Date.now() - t0;
  t.log(`LEAVE seen by peers after ${took} ms`);
  t.true(took < 1000);
  t.is(a.m.members().find((x) => x.id === 'c')!.state, 'left');
  await sleep(200);
  t.is(a.m.members().find((x) => x.id === 'b')!.state, 'up');
  t.deepEqual(Object.values(a.m.stats().dropped).reduce((x, y) => x + y, 0), 0);
});

test('a member killed with SIGKILL (no LEAVE) is declared down by timeout (default preset)', async (t) => {
  const ids = ['a', 'b'];
  const nets = [net(47111, ids)];
  const [a] = await startAll(t, [{ nodeId: 'a', key: KEY, networks: nets }]);
  const child = spawnMember(t, { nodeId: 'b', key: KEY, networks: nets });
  await waitFor('b up at a', () => a!.seen.some((e) => e.event === 'member:up' && e.id === 'b'));
  await waitFor('a up at b', () => child.lines.some((e) => e.event === 'member:up' && e.id === 'a'));
  await sleep(200);
  const t0 = Date.now();
  child.child.kill('SIGKILL');
  await waitFor('b down at a', () => a!.seen.some((e) => e.event === 'member:down' && e.id === 'b'), 5000);
  const down = a!.seen.find((e) => e.event === 'member:down')!;
  const took = down.t - t0;
  t.log(`SIGKILL -> member:down after ${took} ms (silentMs ${String(down.silentMs)})`);
  t.is(down.reason, 'timeout');
  t.true(took < 1500, `detection took ${took} ms`);
  t.is(a!.m.members()[0]!.state, 'down');
});

test('forged, malformed, replayed, stale and misaddressed packets are dropped and counted; state never changes', async (t) => {
  const port = 47151;
  const nets = [net(port, ['a', 'b'])];
  const [a] = await startAll(t, [{ nodeId: 'a', key: KEY, networks: nets, clusterName: 'c1' }]);
  // We play member b with raw sockets: one on b's address, one on an address nobody has.
  const sock = createSocket('udp4');
  const rogue = createSocket('udp4');
  t.teardown(() => { sock.close(); rogue.close(); });
  await new Promise<void>((r) => sock.bind(port, '127.0.0.2', r));
  await new Promise<void>((r) => rogue.bind(port, '127.0.0.9', r));
  const key = deriveKey(KEY);
  const send = (buf: Uint8Array, s = sock) => new Promise<void>((r) => s.send(buf, port, '127.0.0.1', () => r()));
  const hb = (over: Record<string, unknown> = {}, k = key) => encodePacket(k, {
    type: MessageType.HEARTBEAT, cluster: 'c1', sender: 'b', incarnation: 500, net: 0, seq: 1,
    body: { acks: { a: a!.m.incarnation }, payload: encodeValue('hello') }, ...over,
  } as never);
  const stats = () => a!.m.stats().dropped;
  const expectDrop = async (reason: string, buf: Uint8Array, s = sock) => {
    const before = stats()[reason as keyof ReturnType<typeof stats>];
    await send(buf, s);
    await waitFor(`drop ${reason}`, () => stats()[reason as keyof ReturnType<typeof stats>] === before + 1, 3000);
    t.pass(reason);
  };

  await expectDrop('malformed', Buffer.from('garbage'));
  await expectDrop('malformed', Buffer.alloc(0));
  await expectDrop('badVersion', Buffer.concat([Buffer.from('HA'), Buffer.from([9]), Buffer.alloc(40)]));
  await expectDrop('badMac', hb({}, deriveKey('some other cluster key!!')));
  const forged = hb(); forged[forged.length - 1]! ^= 0xff;
  await expectDrop('badMac', forged);
  await expectDrop('wrongCluster', hb({ cluster: 'c2' }));
  await expectDrop('fromSelf', hb({ sender: 'a' }));
  await expectDrop('unknownNode', hb({ sender: 'zz' }));
  await expectDrop('unknownNode', hb({ seq: 99 }), rogue); // right key, but not from b's address
  await expectDrop('malformed', hb({ net: 3 }));
  for (let i = 0; i < 300; i++) await send(Buffer.from(Array.from({ length: 1 + (i % 90) }, () => Math.floor(Math.random() * 256))));
  await sleep(300);
  t.is(a!.m.members()[0]!.state, 'unknown');
  t.false(a!.seen.some((e) => e.event === 'member:up'));

  // a genuine heartbeat that echoes a's incarnation: b is up
  const good = hb({ seq: 10 });
  await send(good);
  await waitFor('b up', () => a!.seen.some((e) => e.event === 'member:up' && e.id === 'b'));
  t.deepEqual(a!.seen.find((e) => e.event === 'member:payload')?.payload, 'hello');
  await expectDrop('replay', good);
  await expectDrop('staleIncarnation', hb({ incarnation: 499, seq: 11 }));
  // a LEAVE that does not echo a's incarnation (made before a started) changes nothing
  const oldLeave = encodePacket(key, { type: MessageType.LEAVE, cluster: 'c1', sender: 'b', incarnation: 500, net: 0, seq: 12, body: { acks: { a: a!.m.incarnation - 1 } } });
  await expectDrop('unacked', oldLeave);
  t.is(a!.m.members()[0]!.state, 'up');
  t.true(a!.seen.filter((e) => e.event === 'dropped').length > 0);
  const st = a!.m.stats();
  t.log(st);
  t.true(st.received >= 312);
  t.is(a!.m.status, 'started');
});

test('two networks: muting one keeps the member up through the other, network:down/up reported', async (t) => {
  const ids = ['a', 'b'];
  const nets = [net(47161, ids, '127.0.1.', 'prod'), net(47162, ids, '127.0.2.', 'repl')];
  const [a, b] = await startAll(t, ids.map((nodeId) => ({ nodeId, key: KEY, networks: nets })));
  await waitFor('both networks up at a', () => a!.seen.filter((e) => e.event === 'network:up' && e.id === 'b').length === 2);
  await waitFor('b sees a', () => b!.seen.some((e) => e.event === 'member:up'));
  b!.m.muteNetwork('prod', true);
  await waitFor('prod down at a', () => a!.seen.some((e) => e.event === 'network:down' && e.id === 'b' && e.network === 'prod'), 3000);
  await sleep(600);
  t.false(a!.seen.some((e) => e.event === 'member:down'));
  t.deepEqual(a!.m.members()[0]!.networks, { prod: false, repl: true });
  t.is(a!.m.members()[0]!.state, 'up');
  b!.m.muteNetwork('prod', false);
  await waitFor('prod back', () => a!.seen.filter((e) => e.event === 'network:up' && e.network === 'prod').length === 2, 3000);
  t.deepEqual(a!.m.members()[0]!.networks, { prod: true, repl: true });
  // both muted: down
  b!.m.muteNetwork('prod', true);
  b!.m.muteNetwork('repl', true);
  await waitFor('b down', () => a!.seen.some((e) => e.event === 'member:down' && e.reason === 'timeout'), 3000);
  t.pass();
});

for (const useWorker of [true, false]) {
  test(`main thread blocked 600 ms in a member ${useWorker ? 'with the worker: peers do NOT see it down' : 'WITHOUT the worker (control): peers see it down'}`, async (t) => {
    const port = useWorker ? 47171 : 47181;
    const nets = [net(port, ['a', 'b'])];
    const [a] = await startAll(t, [{ nodeId: 'a', key: KEY, networks: nets }]);
    const child = spawnMember(t, { nodeId: 'b', key: KEY, networks: nets, useWorker });
    await waitFor('b up at a', () => a!.seen.some((e) => e.event === 'member:up' && e.id === 'b'));
    await waitFor('a up at b', () => child.lines.some((e) => e.event === 'member:up' && e.id === 'a'));
    await sleep(200);
    for (let i = 0; i < 2; i++) {
      child.cmd('block 600');
      await waitFor('unblocked', () => child.lines.filter((e) => e.event === 'unblocked').length === i + 1, 5000);
    }
    await sleep(500);
    const downs = a!.seen.filter((e) => e.event === 'member:down');
    t.log(`member:down events at a: ${downs.length}; b's own view: ${JSON.stringify(child.lines.filter((e) => e.event === 'member:down'))}`);
    if (useWorker) {
      t.is(downs.length, 0);
      t.false(child.lines.some((e) => e.event === 'member:down'), 'b did not accuse a either');
    } else {
      t.true(downs.length >= 1);
    }
  });
}
