import test from 'ava';
import { Detector } from '../src/detector.js';
import { decodeValue, encodeValue } from '../src/messages.js';

const SELF_INC = 1000;
const mk = () => new Detector('me', SELF_INC, ['a', 'b'], ['prod', 'repl'], 300, decodeValue);
const fresh = { me: SELF_INC };
const types = (evs: Array<{ type: string }>) => evs.map((e) => e.type);
/** Events other than member:suspect (tested on its own below). */
const ns = <T extends { type: string }>(evs: T[]): T[] => evs.filter((e) => e.type !== 'member:suspect');

test('a member is up only after a heartbeat echoing our incarnation', (t) => {
  const d = mk();
  t.deepEqual(d.onHeartbeat('a', 7, 0, {}, undefined, 10, 0), []);
  t.deepEqual(d.onHeartbeat('a', 7, 0, { me: SELF_INC - 1 }, undefined, 20, 0), []); // old incarnation of ours: a replay from before our start
  t.is(d.state('a'), 'unknown');
  t.deepEqual(d.acks(), { a: 7 }); // but we echo what we heard
  t.deepEqual(types(d.onHeartbeat('a', 7, 0, fresh, undefined, 30, 0)), ['member:up', 'network:up']);
  t.is(d.state('a'), 'up');
  t.deepEqual(d.onHeartbeat('a', 7, 0, fresh, undefined, 40, 0), []);
});

test('alive while ANY network hears it; per-network liveness reported', (t) => {
  const d = mk();
  d.onHeartbeat('a', 7, 0, fresh, undefined, 0, 0);
  t.deepEqual(types(d.onHeartbeat('a', 7, 1, fresh, undefined, 0, 0)), ['network:up']);
  // only repl keeps hearing it
  for (let now = 50; now <= 600; now += 50) {
    d.onHeartbeat('a', 7, 1, fresh, undefined, now, 0);
    const evs = ns(d.tick(now, 0, false));
    if (now === 350) t.deepEqual(evs, [{ type: 'network:down', id: 'a', network: 'prod' }]);
    else t.deepEqual(evs, [], `at ${now}`);
  }
  t.is(d.state('a'), 'up');
  t.deepEqual(d.view().find((m) => m.id === 'a')!.networks, { prod: false, repl: true });
  t.deepEqual(ns(d.tick(901, 0, false)), [{ type: 'network:down', id: 'a', network: 'repl' }, { type: 'member:down', id: 'a', reason: 'timeout', silentMs: 301 }]);
  t.is(d.state('a'), 'down');
  // back
  t.deepEqual(types(d.onHeartbeat('a', 7, 0, fresh, undefined, 1000, 0)), ['member:up', 'network:up']);
});

test('local stall extends deadlines; isolation forbids accusing', (t) => {
  const d = mk();
  d.onHeartbeat('a', 7, 0, fresh, undefined, 0, 100);
  t.deepEqual(ns(d.tick(350, 100, false)).length, 2); // plain timeout (network + member)
  d.onHeartbeat('a', 7, 0, fresh, undefined, 400, 100);
  t.deepEqual(ns(d.tick(1000, 600, false)), []); // we stalled 500 ms since: silence counts as 100
  t.deepEqual(d.tick(1201, 600, true), []); // isolated: never accuse
  t.is(ns(d.tick(1201, 600, false)).length, 2); // 801 - 500 = 301 > 300
});

test('member:suspect once per silence, at half the timeout, stall-compensated; reset when heard', (t) => {
  const d = mk();
  d.onHeartbeat('a', 7, 0, fresh, undefined, 0, 0);
  t.deepEqual(d.tick(140, 0, false), []);
  t.deepEqual(d.tick(151, 0, false), [{ type: 'member:suspect', id: 'a', silentMs: 151 }]);
  t.deepEqual(d.tick(200, 0, false), [], 'once per silence');
  d.onHeartbeat('a', 7, 0, fresh, undefined, 250, 0);
  t.deepEqual(d.tick(390, 0, false), []);
  t.deepEqual(d.tick(390, 100, false), [], 'a local stall of 100 ms does not count');
  t.deepEqual(types(d.tick(501, 100, false)), ['member:suspect']);
  t.is(d.state('a'), 'up', 'suspect is not down');
});

test('payload changes are reported once per change; restart resets it', (t) => {
  const d = mk();
  const p1 = encodeValue({ s: 'PRIM' });
  const e1 = d.onHeartbeat('a', 7, 0, fresh, p1, 0, 0);
  t.deepEqual(e1.at(-1), { type: 'member:payload', id: 'a', payload: { s: 'PRIM' } });
  t.deepEqual(d.onHeartbeat('a', 7, 0, fresh, encodeValue({ s: 'PRIM' }), 10, 0), []);
  t.deepEqual(d.onHeartbeat('a', 7, 0, fresh, encodeValue({ s: 'SECOND' }), 20, 0), [{ type: 'member:payload', id: 'a', payload: { s: 'SECOND' } }]);
  t.deepEqual(types(d.onHeartbeat('a', 8, 0, fresh, encodeValue({ s: 'SECOND' }), 30, 0)), ['member:restarted', 'member:payload']);
  t.deepEqual(d.onHeartbeat('a', 7, 0, fresh, undefined, 40, 0), []); // older incarnation ignored
  t.is(d.view().find((m) => m.id === 'a')!.incarnation, 8);
});

test('LEAVE marks left at once; late heartbeats of that incarnation are ignored; a new incarnation comes back', (t) => {
  const d = mk();
  d.onHeartbeat('a', 7, 0, fresh, undefined, 0, 0);
  d.onHeartbeat('a', 7, 1, fresh, undefined, 0, 0);
  t.deepEqual(types(d.onLeave('a', 7, 5)), ['network:down', 'network:down', 'member:down']);
  t.is(d.state('a'), 'left');
  t.deepEqual(d.onLeave('a', 7, 6), []);
  t.deepEqual(d.onHeartbeat('a', 7, 0, fresh, undefined, 10, 0), []);
  t.deepEqual(d.tick(10_000, 0, false), []);
  t.deepEqual(types(d.onHeartbeat('a', 9, 0, fresh, undefined, 20, 0)), ['member:restarted', 'member:up', 'network:up']);
});

test('unknown member ids are ignored', (t) => {
  const d = mk();
  t.deepEqual(d.onHeartbeat('zz', 1, 0, fresh, undefined, 0, 0), []);
  t.deepEqual(d.onLeave('zz', 1, 0), []);
  t.false(d.has('zz'));
});
