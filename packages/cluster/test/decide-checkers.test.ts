import test from 'ava';
import { decide, needsWitness, witnessUnreachable, type PeerView, type SelfView } from '../src/mirror/decide.js';

const me = (o: Partial<SelfView>): SelfView => ({
  name: 'a', s: 'WAIT', e: 1, u: false, l: 'PRIM', failover: true, isolated: false, waitedMs: 0, discoveryMs: 1000, ...o,
});
const peer = (o: Partial<PeerView>): PeerView => ({ name: 'b', s: 'SECOND', e: 1, u: false, l: 'SECOND', ...o });

test('witness: asked before becoming ALONE without hearing the peer, and only then', (t) => {
  const rows: Array<[string, SelfView, PeerView | undefined, boolean]> = [
    ['SECOND, primary lost', me({ s: 'SECOND', l: 'SECOND', r: true }), undefined, true],
    ['PRIM, secondary lost', me({ s: 'PRIM' }), undefined, true],
    ['WAIT up to date, discovery over', me({ s: 'WAIT', u: true, waitedMs: 5000 }), undefined, true],
    ['WAIT forced prim', me({ s: 'WAIT', f: true }), undefined, false],
    ['PRIM started by a forced prim, secondary lost', me({ s: 'PRIM', f: true }), undefined, true],
    ['SECOND, peer planned STOP', me({ s: 'SECOND', l: 'SECOND', r: true }), peer({ s: 'STOP' }), false],
    ['ALONE stays ALONE', me({ s: 'ALONE', u: true }), undefined, false],
    ['PRIM with its SECOND', me({ s: 'PRIM' }), peer({}), false],
  ];
  for (const [what, m, p, expected] of rows) t.is(needsWitness(m, p, decide(m, p)), expected, what);
});

test('witness unreachable: PRIM and SECOND go WAIT; a WAIT node keeps waiting with the reason', (t) => {
  for (const s of ['PRIM', 'SECOND'] as const) {
    const m = me({ s, r: true });
    const d = witnessUnreachable(m, decide(m, undefined), 'ping 198.18.0.200');
    t.is(d.next, 'WAIT', s);
    t.regex(d.waitReason!, /witness \(ping 198\.18\.0\.200\) unreachable/);
  }
  const w = me({ s: 'WAIT', u: true, waitedMs: 5000 });
  const d = witnessUnreachable(w, decide(w, undefined), 'x');
  t.is(d.next, undefined);
  t.regex(d.waitReason!, /unreachable/);
});

test('a wait checker holds the module in WAIT, whatever its role', (t) => {
  for (const s of ['PRIM', 'ALONE', 'SECOND'] as const) {
    const d = decide(me({ s, held: 'resource router is down' }), s === 'SECOND' ? peer({ s: 'PRIM' }) : peer({}));
    t.is(d.next, 'WAIT', s);
    t.is(d.waitReason, 'resource router is down');
  }
  const w = decide(me({ s: 'WAIT', u: true, held: 'resource router is down' }), peer({ s: 'PRIM' }));
  t.is(w.next, undefined);
  t.is(w.waitReason, 'resource router is down');
  // released: the rules apply again
  t.is(decide(me({ s: 'WAIT' }), peer({ s: 'PRIM' })).next, 'SECOND');
});
