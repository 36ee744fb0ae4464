/**
 * The pre-probe (made when the primary has been silent for half the timeout) may replace the
 * takeover's probe only when it found the address FREE and is fresh; a pre-probe that found the
 * address answered, or a stale one, never lets the VIP be added while another host holds it.
 */
import { createLab } from '../../../test/lab/index.js';
import { labTest } from '../../../test/lab/ava.js';
import { Agent, hasAddr } from './helpers.js';

const test = labTest.serial;

test('[lab] pre-probe: a fresh free result is used by acquire; an answered or stale one never is', async (t) => {
  const lab = await createLab({ nodes: 2, client: false });
  t.teardown(() => lab.destroy());
  const V = lab.vip(0);
  const [n0, n1] = [lab.nodes[0]!, lab.nodes[1]!];
  const a0 = new Agent(n0, { vip: { address: V, retryIntervalMs: 100 }, name: 'node0' });
  const a1 = new Agent(n1, { vip: { address: V, preProbeMaxAgeMs: 300, retryIntervalMs: 100 }, name: 'node1' });
  await Promise.all([a0.ready(), a1.ready()]);
  await a0.do('start');
  await a1.do('start');

  // 1. Free and fresh: acquire uses it.
  await a1.do('preProbe');
  await a1.do('acquire');
  t.true(await hasAddr(n1, V));
  t.is(a1.logs('vip:probe').filter((l) => /using the pre-probe/.test(String(l.msg))).length, 1);
  await a1.do('release');

  // 2. Answered: node0 holds the VIP when node1 pre-probes; after node0 lets go, node1's acquire
  //    probes afresh (it does not reuse the answered result, and does not skip the probe).
  await a0.do('acquire');
  await a1.do('preProbe');
  t.true(a1.logs('vip:pre-probe').some((l) => l.inUse === true), 'the pre-probe saw node0 answer');
  await a0.do('release');
  const used = a1.logs('vip:probe').length;
  await a1.do('acquire');
  t.is(a1.logs('vip:probe').length, used, 'an answered pre-probe is not reused');
  t.true(await hasAddr(n1, V));
  await a1.do('release');

  // 3. Stale: free when probed, but another host took the address before node1's acquire, which
  //    comes after preProbeMaxAgeMs: node1 must probe again, see the conflict and not add it.
  await a1.do('preProbe');
  await a0.do('acquire');
  await new Promise((r) => setTimeout(r, 400));
  const pending = a1.do('acquire');
  await a1.waitLine('a conflict', (l) => l.type === 'event' && l.name === 'vip:conflict', 5000);
  t.false(await hasAddr(n1, V), 'node1 must not add an address node0 answers');
  await a0.do('release');
  await pending;
  t.true(await hasAddr(n1, V));
});
