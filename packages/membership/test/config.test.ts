import test from 'ava';
import { createSocket } from 'node:dgram';
import { isHaError } from '@ha/interface';
import { membership, type MembershipInit } from '../src/index.js';

const ok: MembershipInit = { nodeId: 'a', key: 'sixteen bytes!!!', networks: [{ port: 5000, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }] };

const bad: Array<[string, Partial<MembershipInit> | ((i: MembershipInit) => MembershipInit), string]> = [
  ['nodeId empty', { nodeId: '' }, 'nodeId'],
  ['nodeId with a space', { nodeId: 'a b' }, 'nodeId'],
  ['nodeId missing from a network', { nodeId: 'c' }, 'networks[0].addresses'],
  ['no networks', { networks: [] }, 'networks'],
  ['port 0', { networks: [{ port: 0, addresses: { a: '127.0.0.1' } }] }, 'networks[0].port'],
  ['port 70000', { networks: [{ port: 70000, addresses: { a: '127.0.0.1' } }] }, 'networks[0].port'],
  ['port float', { networks: [{ port: 1.5, addresses: { a: '127.0.0.1' } }] }, 'networks[0].port'],
  ['address not IPv4', { networks: [{ port: 5000, addresses: { a: '127.0.0.1', b: '300.1.1.1' } }] }, 'networks[0].addresses.b'],
  ['address is a name', { networks: [{ port: 5000, addresses: { a: 'localhost' } }] }, 'networks[0].addresses.a'],
  ['same address twice', { networks: [{ port: 5000, addresses: { a: '127.0.0.1', b: '127.0.0.1' } }] }, 'networks[0].addresses.b'],
  ['duplicate network names', { networks: [{ name: 'x', port: 5000, addresses: { a: '127.0.0.1' } }, { name: 'x', port: 5001, addresses: { a: '127.0.0.1' } }] }, 'networks[1].name'],
  ['two networks on the same address and port', { networks: [{ port: 5000, addresses: { a: '127.0.0.1' } }, { port: 5000, addresses: { a: '127.0.0.1' } }] }, 'networks[1]'],
  ['key too short', { key: 'short' }, 'key'],
  ['key wrong type', { key: 42 as unknown as string }, 'key'],
  ['unknown preset', { preset: 'turbo' as 'fast' }, 'preset'],
  ['timeout too small', { pulseMs: 50, timeoutMs: 100 }, 'timeoutMs'],
  ['incarnation negative', { incarnation: -1 }, 'incarnation'],
  ['clusterName empty', { clusterName: '' }, 'clusterName'],
];
for (const [title, change, field] of bad) {
  test(`config rejected: ${title}`, (t) => {
    const init = typeof change === 'function' ? change(ok) : { ...ok, ...change };
    const err = t.throws(() => membership(init));
    t.true(isHaError(err, 'ERR_MEMBERSHIP_CONFIG'), String(err));
    t.is((err as unknown as { details: { field: string } }).details.field, field);
    t.true(err!.message.includes(field), err!.message);
  });
}

test('valid config builds; members start unknown; send before start is refused', (t) => {
  const m = membership({ ...ok, networks: [{ name: 'prod', port: 5000, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }] })();
  t.is(m.nodeId, 'a');
  t.deepEqual(m.timing, { pulseMs: 50, timeoutMs: 300 });
  t.deepEqual(m.members(), [{ id: 'b', state: 'unknown', incarnation: 0, lastHeardMs: 0, networks: { prod: false }, payload: undefined }]);
  t.throws(() => m.send('b', 'x', 1), { code: 'ERR_NOT_STARTED' });
});

for (const useWorker of [true, false]) {
  test(`a port already taken -> MembershipBindError, and the membership can be started later (${useWorker ? 'worker' : 'inline'})`, async (t) => {
    const port = useWorker ? 47191 : 47192;
    const squatter = createSocket('udp4');
    await new Promise<void>((r) => squatter.bind(port, '127.0.0.1', r));
    const m = membership({ ...ok, useWorker, networks: [{ port, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }] })();
    const err = await t.throwsAsync(m.start());
    t.true(isHaError(err, 'ERR_MEMBERSHIP_BIND'), String(err));
    t.regex(err!.message, new RegExp(`127.0.0.1:${port}`));
    t.is(m.status, 'stopped');
    await new Promise<void>((r) => squatter.close(() => r()));
    await m.start();
    t.is(m.status, 'started');
    await m.stop();
    t.is(m.status, 'stopped');
  });
}

test('the worker dying unexpectedly emits error (ERR_MEMBERSHIP_WORKER); stop still works', async (t) => {
  const m = membership({ ...ok, networks: [{ port: 47193, addresses: { a: '127.0.0.1', b: '127.0.0.2' } }] })();
  const errors: Error[] = [];
  m.on('error', (e) => errors.push(e));
  await m.start();
  await m.crashWorkerForTesting();
  const end = Date.now() + 3000;
  while (errors.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  t.is(errors.length, 1);
  t.true(isHaError(errors[0], 'ERR_MEMBERSHIP_WORKER'));
  t.regex(errors[0]!.message, /exited unexpectedly/);
  await m.stop();
  t.is(m.status, 'stopped');
});
