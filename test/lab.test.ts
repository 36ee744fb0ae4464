import { createLab } from './lab/index.js';
import { labTest } from './lab/ava.js';
import { readdirSync } from 'node:fs';


labTest('[lab] builds namespaces, connects hosts through the bridge, cuts a link, and cleans up', async (t) => {
  const lab = await createLab({ nodes: 2, client: true });
  t.teardown(() => lab.destroy());
  const [n0, n1] = lab.nodes as [typeof lab.nodes[0], typeof lab.nodes[0]];
  t.deepEqual(await n0.addresses(), ['198.18.0.1']);
  const ok = await lab.client.exec('ping', ['-c', '1', '-W', '2', n1.ip], { allowFail: true });
  t.is(ok.code, 0, ok.stdout + ok.stderr);
  await n1.linkDown();
  const carrier = await n1.exec('cat', ['/sys/class/net/eth0/carrier'], { allowFail: true });
  t.not(carrier.stdout.trim(), '1', 'eth0 must lose carrier when the bridge port is down');
  const cut = await lab.client.exec('ping', ['-c', '1', '-W', '1', n1.ip], { allowFail: true });
  t.not(cut.code, 0);
  await n1.linkUp();
  const child = n0.spawn('sleep', ['1000']);
  await new Promise((r) => child.once('spawn', r));
  const names = lab.namespaces();
  await lab.destroy();
  const left = readdirSync('/run/netns').filter((n) => names.includes(n));
  t.deepEqual(left, []);
  t.not(child.exitCode === null && child.signalCode === null, true, 'spawned process must be dead');
});
