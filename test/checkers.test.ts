/**
 * Lab tests of the checkers in a mirror pair (examples/custom-checker/server.ts): a monitored
 * process killed with SIGKILL is restarted within 1 s; killed `maxloop` times, the module stops on
 * this node and the peer takes over; the application's TCP listener stopped: the tcp checker fires.
 */
import { labTest } from './lab/ava.js';
import { waitFor } from './lab/index.js';
import { CheckerPair } from './checkers-pair.js';

labTest('[lab] checkers: kill the monitored process: restarted within 1 s; maxloop kills: the module stops here and the peer takes over', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0, ['--prim', '--maxloop', '3']);
  await pair.waitState(0, 'ALONE');
  pair.start(1);
  await pair.waitPrimSecond();
  for (let k = 1; k <= 3; k++) {
    await waitFor(`process checker up (${k})`, () => pair.events(0, 'resource').filter((e) => e.resource === `process.${pair.procName(0)}`).at(-1)?.state === 'up', 5000);
    const pid = pair.events(0, 'app:proc').at(-1)!.pid as number;
    const procsBefore = pair.events(0, 'app:proc').length;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    if (k < 3) {
      await waitFor(`restart ${k}`, () => pair.events(0, 'app:proc').length > procsBefore, 5000);
      const restartedAt = pair.events(0, 'app:proc').at(-1)!.t as number;
      t.log(`kill ${k}: process restarted ${restartedAt - killedAt} ms after the kill`);
      t.true(restartedAt - killedAt < 1000, `restarted within 1 s (took ${restartedAt - killedAt} ms)`);
      t.is(pair.events(0, 'checker:action').at(-1)?.action, 'restart');
    }
  }
  // Third failure within loop_interval: maxloop reached, the module stops here and node1 takes over.
  await pair.waitState(0, 'STOP');
  const last = pair.events(0, 'checker:action').at(-1)!;
  t.is(last.action, 'stop');
  t.true(last.escalated);
  t.true(pair.events(0, 'log').some((e) => /maxloop=3/.test(String(e.msg))), 'the module log says why');
  await pair.waitState(1, 'ALONE');
});

labTest('[lab] checkers: stopping the application\'s TCP listener fires the tcp checker\'s action', async (t) => {
  const pair = await CheckerPair.create();
  t.teardown(() => pair.destroy());
  pair.start(0, ['--prim', '--tcp-action', 'stopstart']);
  await pair.waitState(0, 'ALONE');
  pair.start(1);
  await pair.waitPrimSecond();
  await waitFor('tcp checker up', () => pair.events(0, 'resource').some((e) => e.resource === 'tcp.app' && e.state === 'up'), 5000);
  pair.procs[0]!.child.kill('SIGUSR2');
  await waitFor('tcp action', () => pair.events(0, 'checker:action').some((e) => e.resource === 'tcp.app'), 5000);
  t.is(pair.events(0, 'checker:action').find((e) => e.resource === 'tcp.app')!.action, 'stopstart');
  // stopstart: node1 takes over, node0 comes back as its secondary.
  await waitFor('node1 primary, node0 secondary', () => ['ALONE', 'PRIM'].includes(pair.state(1) ?? '') && pair.state(0) === 'SECOND', 20_000);
  t.pass();
});
