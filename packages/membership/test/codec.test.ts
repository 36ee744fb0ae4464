import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { deriveKey, sign } from '../src/auth.js';
import { MAGIC, MessageType, WIRE_VERSION, decodePacket, encodePacket, encodeValue, type Message } from '../src/messages.js';
import { ReplayGuard, ReplayWindow } from '../src/replay.js';
import { isHaError } from '@ha/interface';

const key = deriveKey('correct horse battery staple');
const otherKey = deriveKey('another cluster key, 16+ bytes');
const packr = new Packr({ useRecords: false, variableMapSize: true });

const hb: Message = {
  type: MessageType.HEARTBEAT, cluster: 'c1', sender: 'a', incarnation: 1_795_000_000_123, net: 0, seq: 7,
  body: { acks: { b: 42 }, payload: encodeValue({ state: 'PRIM' }) },
};

/** Builds a correctly signed packet around an arbitrary msgpack value (an insider with the key). */
function signedRaw(value: unknown, k = key, version = WIRE_VERSION): Buffer {
  const signed = Buffer.concat([MAGIC, Buffer.from([version]), packr.pack(value)]);
  return Buffer.concat([signed, sign(k, signed)]);
}

test('round trip of each type', (t) => {
  const app: Message = { type: MessageType.APP, cluster: 'c1', sender: 'a', incarnation: 5, net: 1, seq: 1, body: { acks: { b: 1 }, to: '*', channel: 'ch', mid: 3, body: encodeValue([1, 'x']) } };
  const leave: Message = { type: MessageType.LEAVE, cluster: 'c1', sender: 'a', incarnation: 5, net: 0, seq: 9, body: { acks: {} } };
  for (const m of [hb, app, leave]) {
    const r = decodePacket(key, encodePacket(key, m));
    t.true(r.ok);
    if (r.ok) t.deepEqual(JSON.parse(JSON.stringify(r.msg)), JSON.parse(JSON.stringify(m)));
  }
  const noPayload = decodePacket(key, encodePacket(key, { ...hb, body: { acks: {}, payload: undefined } } as Message));
  t.true(noPayload.ok && noPayload.msg.type === MessageType.HEARTBEAT && noPayload.msg.body.payload === undefined);
});

test('type ids are append-only: HEARTBEAT 1, APP 2, LEAVE 3', (t) => {
  t.deepEqual({ ...MessageType }, { HEARTBEAT: 1, APP: 2, LEAVE: 3 });
  t.is(WIRE_VERSION, 1);
  const buf = encodePacket(key, hb);
  t.is(buf.subarray(0, 2).toString('ascii'), 'HA');
  t.is(buf[2], 1);
});

test('wrong key, forged MAC, flipped bit anywhere -> badMac (or header reasons)', (t) => {
  const buf = encodePacket(key, hb);
  t.deepEqual(decodePacket(otherKey, buf), { ok: false, reason: 'badMac' });
  const forged = Buffer.from(buf); forged.fill(0, forged.length - 32);
  t.deepEqual(decodePacket(key, forged), { ok: false, reason: 'badMac' });
  for (let i = 0; i < buf.length; i++) {
    const c = Buffer.from(buf); c[i]! ^= 0x01;
    const r = decodePacket(key, c);
    t.false(r.ok, `byte ${i}`);
    const want = i < 2 ? 'malformed' : i === 2 ? 'badVersion' : 'badMac';
    if (!r.ok) t.is(r.reason, want, `byte ${i}`);
  }
});

test('truncated packets -> malformed or badMac, never ok', (t) => {
  const buf = encodePacket(key, hb);
  for (let n = 0; n < buf.length; n++) {
    const r = decodePacket(key, buf.subarray(0, n));
    t.false(r.ok);
    if (!r.ok) t.true(r.reason === 'malformed' || r.reason === 'badMac', `${n}: ${r.reason}`);
  }
});

test('signed but malformed content is rejected field by field (insider with the key)', (t) => {
  const good = [1, 'c1', 'a', 5, 0, 1, { a: { b: 1 } }];
  t.true(decodePacket(key, signedRaw(good)).ok);
  const cases: Array<[string, unknown, string]> = [
    ['not an array', { x: 1 }, 'malformed'],
    ['short array', good.slice(0, 6), 'malformed'],
    ['long array', [...good, 1], 'malformed'],
    ['type string', ['1', ...good.slice(1)], 'malformed'],
    ['type negative', [-1, ...good.slice(1)], 'malformed'],
    ['type unknown', [99, ...good.slice(1)], 'unknownType'],
    ['cluster empty', [1, '', ...good.slice(2)], 'malformed'],
    ['cluster number', [1, 5, ...good.slice(2)], 'malformed'],
    ['sender number', [1, 'c1', 7, ...good.slice(3)], 'malformed'],
    ['incarnation float', [1, 'c1', 'a', 1.5, 0, 1, good[6]], 'malformed'],
    ['incarnation string', [1, 'c1', 'a', '5', 0, 1, good[6]], 'malformed'],
    ['net negative', [1, 'c1', 'a', 5, -1, 1, good[6]], 'malformed'],
    ['seq zero', [1, 'c1', 'a', 5, 0, 0, good[6]], 'malformed'],
    ['body array', [1, 'c1', 'a', 5, 0, 1, [1]], 'malformed'],
    ['body null', [1, 'c1', 'a', 5, 0, 1, null], 'malformed'],
    ['acks missing', [1, 'c1', 'a', 5, 0, 1, {}], 'malformed'],
    ['acks value string', [1, 'c1', 'a', 5, 0, 1, { a: { b: 'x' } }], 'malformed'],
    ['payload not bytes', [1, 'c1', 'a', 5, 0, 1, { a: {}, p: 'str' }], 'malformed'],
    ['app channel missing', [2, 'c1', 'a', 5, 0, 1, { a: {}, t: '*', m: 1, b: Buffer.from([0xc0]) }], 'malformed'],
    ['app mid zero', [2, 'c1', 'a', 5, 0, 1, { a: {}, t: '*', c: 'x', m: 0, b: Buffer.from([0xc0]) }], 'malformed'],
    ['app body not bytes', [2, 'c1', 'a', 5, 0, 1, { a: {}, t: '*', c: 'x', m: 1, b: 5 }], 'malformed'],
    ['leave acks wrong', [3, 'c1', 'a', 5, 0, 1, { a: 5 }], 'malformed'],
  ];
  for (const [title, value, reason] of cases) t.deepEqual(decodePacket(key, signedRaw(value)), { ok: false, reason }, title);
  t.deepEqual(decodePacket(key, signedRaw(good, key, 2)), { ok: false, reason: 'badVersion' });
  // trailing bytes after the msgpack value (signed): malformed
  const signed = Buffer.concat([MAGIC, Buffer.from([1]), packr.pack(good), Buffer.from([0x01])]);
  t.deepEqual(decodePacket(key, Buffer.concat([signed, sign(key, signed)])), { ok: false, reason: 'malformed' });
  // bytes that are not msgpack at all (signed)
  const junk = Buffer.concat([MAGIC, Buffer.from([1]), Buffer.from([0xc1, 0xc1])]);
  t.deepEqual(decodePacket(key, Buffer.concat([junk, sign(key, junk)])), { ok: false, reason: 'malformed' });
});

test('fuzz: 10 000 random buffers never throw and are all dropped', (t) => {
  const reasons = new Map<string, number>();
  const valid = encodePacket(key, hb);
  for (let i = 0; i < 10_000; i++) {
    let buf: Buffer;
    if (i % 3 === 0) buf = randomBytes(Math.floor(Math.random() * 200));
    else if (i % 3 === 1) buf = Buffer.concat([MAGIC, Buffer.from([1]), randomBytes(Math.floor(Math.random() * 200))]);
    else { buf = Buffer.from(valid); for (let k = 0; k < 3; k++) buf[Math.floor(Math.random() * buf.length)] = Math.floor(Math.random() * 256); if (buf.equals(valid)) buf[40]! ^= 1; }
    const r = decodePacket(key, buf);
    t.false(r.ok);
    if (!r.ok) reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
  }
  t.log(Object.fromEntries(reasons));
  t.true((reasons.get('badMac') ?? 0) > 0);
  t.true((reasons.get('malformed') ?? 0) > 0);
});

test('deriveKey: domain separation, key length checked', (t) => {
  t.is(deriveKey('0123456789abcdef').length, 32);
  t.notDeepEqual(deriveKey('0123456789abcdef'), deriveKey('0123456789abcdef', 'other-domain'));
  t.deepEqual(deriveKey('0123456789abcdef'), deriveKey(Buffer.from('0123456789abcdef')));
  const err = t.throws(() => deriveKey('short'));
  t.true(isHaError(err, 'ERR_MEMBERSHIP_CONFIG'));
  t.regex(err!.message, /key.*16 bytes/);
});

test('ReplayWindow: accepts once, in any order within 64, rejects older', (t) => {
  const w = new ReplayWindow(64);
  t.true(w.accept(1)); t.false(w.accept(1));
  t.true(w.accept(3)); t.true(w.accept(2)); t.false(w.accept(2));
  t.true(w.accept(100));
  t.false(w.accept(36)); // 100 - 36 = 64: out of the window
  t.true(w.accept(37)); t.false(w.accept(37));
  t.false(w.accept(3)); // far behind
  t.true(w.accept(1000)); t.true(w.accept(999)); t.false(w.accept(100));
  t.false(w.accept(0)); t.false(w.accept(-1)); t.false(w.accept(1.5));
  // slots reused after a jump are cleared
  const v = new ReplayWindow(4);
  t.true(v.accept(1)); t.true(v.accept(5)); t.true(v.accept(4)); t.true(v.accept(3)); t.true(v.accept(2)); t.false(v.accept(2)); t.false(v.accept(1));
});

test('ReplayGuard: per (sender, network) windows, stale and new incarnations', (t) => {
  const g = new ReplayGuard();
  t.is(g.accept('a', 10, 0, 1), 'ok');
  t.is(g.accept('a', 10, 0, 1), 'replay');
  t.is(g.accept('a', 10, 1, 1), 'ok'); // other network: its own window
  t.is(g.accept('b', 10, 0, 1), 'ok'); // other sender
  t.is(g.accept('a', 9, 0, 2), 'staleIncarnation');
  t.is(g.accept('a', 11, 0, 1), 'ok'); // restarted: windows reset
  t.is(g.incarnationOf('a'), 11);
  t.is(g.accept('a', 10, 0, 5), 'staleIncarnation');
  t.true(g.acceptApp('a', 1)); t.false(g.acceptApp('a', 1)); t.true(g.acceptApp('a', 2));
  t.false(g.acceptApp('zzz', 1));
});
