/**
 * Lab tests of the split-brain witness: the link between the two nodes is cut (blackhole routes
 * inside their namespaces, carrier stays up) with the witness (the client namespace's address,
 * pinged) reachable from one side only: only that side serves, the other waits; healed: PRIM and
 * SECOND again. Witness down during the isolation: nobody takes the primary role.
 */
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { CheckerPair } from './checkers-pair.js';

labTest('[lab] witness: isolation with the witness reachable from one side only: that side serves, the other waits; heal: PRIM/SECOND', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  const w = pair.lab.client.ip;
  pair.start(0, ['--prim', '--witness', w]);
  await pair.waitState(0, 'ALONE');
  pair.start(1, ['--witness', w]);
  await pair.waitPrimSecond();
  // node1 (the secondary) still reaches the witness; node0 (the primary) does not.
  await pair.block(0, w, true);
  await pair.partition(true);
  await pair.waitState(1, 'ALONE');
  await pair.waitState(0, 'WAIT');
  t.true(pair.events(1, 'witness').some((e) => e.reachable === true));
  t.true(pair.events(0, 'witness').some((e) => e.reachable === false));
  // Only node1 serves.
  let served = '';
  await waitFor('the client served by node1', async () => {
    served = (await pair.lab.client.exec('curl', ['-s', '-m', '1', `http://${pair.lab.vip(0)}:8080/`], { allowFail: true })).stdout;
    return /node1/.test(served);
  }, 10_000, 200);
  t.regex(served, /node1/);
  t.false(pair.events(0, 'state').slice(-1).some((e) => e.state === 'ALONE'));
  // Heal.
  await pair.partition(false);
  await pair.block(0, w, false);
  await pair.waitState(0, 'SECOND');
  await pair.waitState(1, 'PRIM');
});

labTest('[lab] witness down during an isolation: nobody takes the primary role, then PRIM/SECOND after the heal', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  const w = pair.lab.client.ip;
  pair.start(0, ['--prim', '--witness', w]);
  await pair.waitState(0, 'ALONE');
  pair.start(1, ['--witness', w]);
  await pair.waitPrimSecond();
  await pair.block(0, w, true);
  await pair.block(1, w, true);
  await pair.partition(true);
  await pair.waitState(0, 'WAIT');
  await pair.waitState(1, 'WAIT');
  await new Promise((r) => setTimeout(r, 3000));
  t.is(pair.state(0), 'WAIT');
  t.is(pair.state(1), 'WAIT');
  t.false(pair.events(1, 'state').some((e) => e.state === 'ALONE'), 'the secondary never took over');
  await pair.partition(false);
  await pair.block(0, w, false);
  await pair.block(1, w, false);
  // The former primary (last role PRIM) is elected again; the other resynchronises as SECOND.
  await waitFor('PRIM/SECOND again', () => (pair.state(0) === 'PRIM' && pair.state(1) === 'SECOND'), 20_000);
  t.pass();
});

labTest('[lab] witness back during an isolation: the waiting side that reaches it again takes the role (re-asked every 2 s), the other keeps waiting; heal: PRIM/SECOND', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  const w = pair.lab.client.ip;
  pair.start(0, ['--prim', '--witness', w]);
  await pair.waitState(0, 'ALONE');
  pair.start(1, ['--witness', w]);
  await pair.waitPrimSecond();
  await pair.block(0, w, true);
  await pair.block(1, w, true);
  await pair.partition(true);
  await pair.waitState(0, 'WAIT');
  await pair.waitState(1, 'WAIT');
  await new Promise((r) => setTimeout(r, 2000));
  // The witness comes back for node1 only (node0 stays cut from it): node1 re-asks it and serves.
  await pair.block(1, w, false);
  await pair.waitState(1, 'ALONE', 10_000);
  t.true(pair.events(1, 'witness').some((e) => e.reachable === true));
  await new Promise((r) => setTimeout(r, 2500));
  t.is(pair.state(0), 'WAIT', 'node0 still does not reach the witness: it keeps waiting');
  // Heal: node0 becomes the secondary of node1.
  await pair.partition(false);
  await pair.block(0, w, false);
  await pair.waitState(0, 'SECOND', 20_000);
  await pair.waitState(1, 'PRIM', 20_000);
});
