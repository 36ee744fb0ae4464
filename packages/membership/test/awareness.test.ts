import test from 'ava';
import { CarrierWatch, isIsolated } from '../src/awareness.js';

test('CarrierWatch keeps the interface it knew when a refresh cannot find it (libuv hides links without carrier)', (t) => {
  let owner: string | undefined = 'eth0';
  let carrier = true;
  const w = new CarrierWatch(['198.18.0.1'], 100, () => carrier, () => owner);
  t.deepEqual(w.check(0), [true]);
  // The link loses carrier: the interface vanishes from the quick list at the next refresh.
  carrier = false; owner = undefined;
  t.deepEqual(w.check(50), [false]);
  t.deepEqual(w.check(200), [false], 'after a refresh that cannot find it, still judged by eth0');
  t.deepEqual(w.interfaces, ['eth0']);
  t.true(isIsolated(w.check(300)));
  carrier = true; owner = 'eth0';
  t.false(isIsolated(w.check(400)));
});

test('an address whose interface was never found counts as connected (no isolation without evidence)', (t) => {
  const w = new CarrierWatch(['198.18.0.1', '198.18.1.1'], 100, () => false, (a) => (a === '198.18.0.1' ? 'eth0' : undefined));
  t.deepEqual(w.check(0), [false, true]);
  t.false(isIsolated(w.check(0)));
});
