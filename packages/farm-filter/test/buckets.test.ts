import test from 'ava';
import { assignBuckets, bucketOwner, decodeBuckets, encodeBuckets, ownedBuckets, toRanges, DEFAULT_BUCKETS } from '../src/index.js';

const count = (owners: Array<string | undefined>) => owners.reduce<Record<string, number>>((m, o) => { if (o) m[o] = (m[o] ?? 0) + 1; return m; }, {});

for (const n of [2, 3, 4, 5, 8]) {
  test(`${n} nodes: every bucket has one owner, shares within 15% of even`, (t) => {
    const nodes = Array.from({ length: n }, (_, i) => `node${i}`);
    const owners = assignBuckets(nodes);
    t.is(owners.length, DEFAULT_BUCKETS);
    t.true(owners.every((o) => o !== undefined && nodes.includes(o)));
    const even = DEFAULT_BUCKETS / n;
    for (const [node, c] of Object.entries(count(owners))) t.true(Math.abs(c - even) / even <= 0.15, `${node}: ${c} buckets, even is ${even}`);
  });
}

test('a leaving node: only its buckets move', (t) => {
  const before = assignBuckets(['a', 'b', 'c', 'd']);
  const after = assignBuckets(['a', 'b', 'd']);
  for (let b = 0; b < before.length; b++) {
    if (before[b] !== 'c') t.is(after[b], before[b], `bucket ${b} moved from ${before[b]} to ${after[b]}`);
    else t.not(after[b], 'c');
  }
});

test('a joining node takes buckets only, about an even share, from every other node', (t) => {
  const before = assignBuckets(['a', 'b', 'c']);
  const after = assignBuckets(['a', 'b', 'c', 'e']);
  const takenFrom: Record<string, number> = {};
  for (let b = 0; b < before.length; b++) {
    if (after[b] !== before[b]) { t.is(after[b], 'e'); takenFrom[before[b]!] = (takenFrom[before[b]!] ?? 0) + 1; }
  }
  const taken = Object.values(takenFrom).reduce((a, b) => a + b, 0);
  t.true(Math.abs(taken - DEFAULT_BUCKETS / 4) / (DEFAULT_BUCKETS / 4) <= 0.15, `took ${taken}`);
  for (const n of ['a', 'b', 'c']) t.true((takenFrom[n] ?? 0) > DEFAULT_BUCKETS / 4 / 3 * 0.6, `took ${takenFrom[n]} from ${n}`);
});

test('order and duplicates of the view do not matter; no nodes -> no owner', (t) => {
  t.deepEqual(assignBuckets(['c', 'a', 'b', 'a'], 64), assignBuckets(['a', 'b', 'c'], 64));
  t.is(bucketOwner(3, []), undefined);
  t.deepEqual(ownedBuckets('x', ['a', 'b'], 16), []);
  const all = ['a', 'b', 'c'].flatMap((n) => ownedBuckets(n, ['a', 'b', 'c'], 64)).sort((x, y) => x - y);
  t.deepEqual(all, Array.from({ length: 64 }, (_, i) => i));
});

const ranges: Array<[number[], string]> = [
  [[], ''], [[5], '5'], [[0, 1, 2, 3], '0-3'], [[9, 0, 1, 7, 10, 3, 2], '0-3, 7, 9-10'], [[1, 1, 2], '1-2'],
];
for (const [input, want] of ranges) test(`toRanges ${JSON.stringify(input)}`, (t) => t.is(toRanges(input), want));

test('bucket bitmaps round-trip; malformed input decodes to nothing', (t) => {
  const set = [0, 7, 8, 100, 4095];
  const bm = encodeBuckets(set);
  t.is(bm.length, 512);
  t.deepEqual(decodeBuckets(bm), set);
  t.deepEqual(decodeBuckets('nope'), []);
  t.deepEqual(decodeBuckets(new Uint8Array(2)), []);
  t.deepEqual(decodeBuckets(encodeBuckets([3, 2000], 16), 16), [3]);
});
