import test from 'ava';
import { decide, electPrimary, colourOf, type SelfView, type PeerView, type MirrorState } from '../src/mirror/decide.js';

const me = (s: MirrorState, x: Partial<SelfView> = {}): SelfView => ({
  name: 'n1', s, e: 1, u: false, l: '', failover: true, isolated: false, waitedMs: 0, discoveryMs: 900, ...x,
});
const peer = (s: MirrorState, x: Partial<PeerView> = {}): PeerView => ({ name: 'n2', s, e: 1, u: false, l: '', ...x });

// [title, self, peer, expected next state (undefined = stay), reason must match]
const table: Array<[string, SelfView, PeerView | undefined, MirrorState | undefined, RegExp?]> = [
  ['STOP stays STOP whatever the peer does', me('STOP'), peer('ALONE'), undefined],
  ['WAIT, peer is primary -> SECOND', me('WAIT', { u: true }), peer('PRIM'), 'SECOND', /secondary/],
  ['WAIT, peer ALONE -> SECOND', me('WAIT'), peer('ALONE'), 'SECOND'],
  ['WAIT, up to date, no peer, discovery not over -> stay', me('WAIT', { u: true, waitedMs: 100 }), undefined, undefined],
  ['WAIT, up to date, no peer after discovery -> ALONE', me('WAIT', { u: true, waitedMs: 1000 }), undefined, 'ALONE', /no peer heard/],
  ['WAIT, not up to date, no peer -> stay WAIT (power loss of both)', me('WAIT', { u: false, e: 4, l: 'PRIM', waitedMs: 60_000 }), undefined, undefined],
  ['WAIT, fresh node, no peer -> stay WAIT (first start needs the peer or prim)', me('WAIT', { e: 0, waitedMs: 60_000 }), undefined, undefined],
  ['WAIT, forced prim -> ALONE at once', me('WAIT', { f: true, u: true }), undefined, 'ALONE', /forced/],
  ['WAIT second-only never takes the role', me('WAIT', { w: true, u: true, waitedMs: 60_000 }), undefined, undefined],
  ['WAIT second-only, peer becomes primary -> SECOND', me('WAIT', { w: true }), peer('ALONE'), 'SECOND'],
  ['WAIT both fresh: smaller name wins', me('WAIT', { e: 0 }), peer('WAIT', { e: 0 }), 'ALONE', /elected/],
  ['WAIT both fresh: larger name waits', { ...me('WAIT', { e: 0 }), name: 'n3' }, peer('WAIT', { e: 0 }), undefined],
  ['WAIT both fresh: preferred wins even with the larger name', { ...me('WAIT', { e: 0, preferred: 'n3' }), name: 'n3' }, peer('WAIT', { e: 0 }), 'ALONE'],
  ['WAIT: up to date beats not up to date', { ...me('WAIT', { u: true, e: 2 }), name: 'n9' }, peer('WAIT', { u: false, e: 5 }), 'ALONE'],
  ['WAIT: not up to date loses to up to date', me('WAIT', { u: false, e: 5 }), peer('WAIT', { u: true, e: 2 }), undefined],
  ['WAIT after power loss of both: last primary (higher epoch) wins', { ...me('WAIT', { e: 7, l: 'PRIM' }), name: 'n9' }, peer('WAIT', { e: 6, l: 'SECOND' }), 'ALONE'],
  ['WAIT after power loss, same epoch: the last PRIM wins over the last SECOND', { ...me('WAIT', { e: 7, l: 'PRIM' }), name: 'n9' }, peer('WAIT', { e: 7, l: 'SECOND' }), 'ALONE'],
  ['WAIT: peer is a secondary without primary -> let it decide', me('WAIT', { u: true, waitedMs: 5000 }), peer('SECOND', { r: true }), undefined],
  ['WAIT: peer waits as secondary only, we are up to date -> ALONE', me('WAIT', { u: true }), peer('WAIT', { w: true }), 'ALONE'],
  ['WAIT: peer STOP and we are up to date -> ALONE', me('WAIT', { u: true }), peer('STOP'), 'ALONE'],
  ['WAIT isolated never takes the role', me('WAIT', { u: true, isolated: true, waitedMs: 99_999 }), undefined, undefined],
  ['SECOND, primary alive -> stay', me('SECOND', { r: true }), peer('PRIM'), undefined],
  ['SECOND, primary yielding but still primary -> wait for its stop', me('SECOND', { r: true }), peer('PRIM', { y: true }), undefined, /handing over/],
  ['SECOND, peer handed over (SECOND + yield) -> ALONE', me('SECOND', { r: true }), peer('SECOND', { y: true }), 'ALONE', /yields/],
  ['SECOND, peer lost -> ALONE (failover)', me('SECOND', { r: true }), undefined, 'ALONE', /not heard/],
  ['SECOND, peer STOP (planned) -> ALONE', me('SECOND', { r: true }), peer('STOP'), 'ALONE', /planned stop/],
  ['SECOND, peer restarted in WAIT -> ALONE', me('SECOND', { r: true }), peer('WAIT'), 'ALONE'],
  ['SECOND with failover off, peer lost -> WAIT', me('SECOND', { r: true, failover: false }), undefined, 'WAIT', /failover is off|failover="off"/],
  ['SECOND with failover off, planned stop of the primary -> ALONE', me('SECOND', { r: true, failover: false }), peer('STOP'), 'ALONE'],
  ['SECOND not ready (resync incomplete), peer lost -> WAIT, never serve stale data', me('SECOND', { r: false }), undefined, 'WAIT', /incomplete/],
  ['SECOND yielding waits for the peer to take the role', me('SECOND', { r: false, y: true }), peer('SECOND', { r: true }), undefined],
  ['SECOND isolated -> WAIT', me('SECOND', { r: true, isolated: true }), undefined, 'WAIT'],
  ['ALONE, peer becomes SECOND -> PRIM', me('ALONE', { u: true }), peer('SECOND', { r: false }), 'PRIM'],
  ['ALONE, no peer -> stay', me('ALONE', { u: true }), undefined, undefined],
  ['PRIM, secondary lost -> ALONE', me('PRIM'), undefined, 'ALONE', /not heard/],
  ['PRIM, secondary stopped -> ALONE', me('PRIM'), peer('STOP'), 'ALONE'],
  ['PRIM, secondary present -> stay', me('PRIM'), peer('SECOND', { r: true }), undefined],
  ['split brain: lower epoch yields', me('ALONE', { u: true, e: 3, l: 'ALONE' }), peer('ALONE', { u: true, e: 4, l: 'ALONE' }), 'SECOND', /split brain/],
  ['split brain: higher epoch keeps the role', me('ALONE', { u: true, e: 4, l: 'ALONE' }), peer('ALONE', { u: true, e: 3, l: 'ALONE' }), undefined, /keeps the role/],
  ['primary isolated -> WAIT (releases the VIP)', me('PRIM', { isolated: true }), undefined, 'WAIT', /carrier/],
];

for (const [title, self, p, expected, reason] of table) {
  test(`decide: ${title}`, (t) => {
    const d = decide(self, p);
    t.is(d.next, expected, d.reason);
    if (reason) t.regex(d.reason, reason);
    t.true(d.reason.length > 0);
  });
}

test('electPrimary is symmetric: both nodes compute the same winner', (t) => {
  const cases: Array<[PeerView, PeerView, string | undefined]> = [
    [peer('WAIT', { name: 'a', e: 0 }), peer('WAIT', { name: 'b', e: 0 }), undefined],
    [peer('WAIT', { name: 'a', e: 0 }), peer('WAIT', { name: 'b', e: 0 }), 'b'],
    [peer('ALONE', { name: 'a', e: 3, u: true }), peer('ALONE', { name: 'b', e: 3, u: true, l: 'PRIM' }), undefined],
    [peer('WAIT', { name: 'a', f: true }), peer('WAIT', { name: 'b', u: true, e: 9 }), undefined],
  ];
  for (const [a, b, pref] of cases) t.is(electPrimary(a, b, pref), electPrimary(b, a, pref));
  t.is(electPrimary(cases[1]![0], cases[1]![1], 'b'), 'b');
  t.is(electPrimary(cases[3]![0], cases[3]![1]), 'a', 'a forced prim wins');
});

test('colours follow the reference', (t) => {
  t.is(colourOf('STOP'), 'red');
  t.is(colourOf('WAIT'), 'red');
  t.is(colourOf('SECOND', false), 'orange');
  t.is(colourOf('SECOND', true), 'green');
  t.is(colourOf('PRIM'), 'green');
  t.is(colourOf('ALONE'), 'green');
});

test('with data replication: ALONE waits for the reintegration before PRIM, and PRIM goes ALONE when replication is lost', (t) => {
  const d1 = decide(me('ALONE', { u: true, synced: false }), peer('SECOND', { r: false }));
  t.is(d1.next, undefined);
  t.true(d1.attach);
  t.is(decide(me('ALONE', { u: true, synced: true }), peer('SECOND', { r: false })).next, 'PRIM');
  const d2 = decide(me('PRIM', { synced: false }), peer('SECOND', { r: true }));
  t.is(d2.next, 'ALONE');
  t.regex(d2.reason, /replication .* lost/);
  t.is(decide(me('PRIM', { synced: true }), peer('SECOND', { r: true })).next, undefined);
});
