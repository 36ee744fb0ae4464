import test from 'ava';
import { fileURLToPath } from 'node:url';
import {
  checkUserConfigAgainstCluster,
  ConfigError,
  ConfigReadError,
  loadClusterDescription,
  loadUserConfig,
  parseClusterDescription,
  parseUserConfig,
  type ConfigErrorReason,
} from '../src/config/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** A cluster.xml whose first <lan> body line is line 4. */
function lans(...lines: string[]): string {
  return ['<cluster>', '<lans>', ...lines, '</lans>', '</cluster>', ''].join('\n');
}

test('cluster.xml fixture: name, port, two lans with their nodes', async (t) => {
  const file = fixture('cluster.xml');
  const c = await loadClusterDescription(file);
  t.is(c.name, 'demo');
  t.is(c.port, 8888);
  t.is(c.source, file);
  t.deepEqual(
    c.lans.map((l) => ({ name: l.name, port: l.port, nodes: l.nodes.map(({ name, addr }) => ({ name, addr })) })),
    [
      { name: 'default', port: undefined, nodes: [{ name: 'node1', addr: '198.18.0.1' }, { name: 'node2', addr: '198.18.0.2' }] },
      { name: 'replication', port: 8889, nodes: [{ name: 'node1', addr: '198.19.0.1' }, { name: 'node2', addr: '198.19.0.2' }] },
    ],
  );
  t.deepEqual(c.lans[0]?.extra, { console: 'on', command: 'on', framework: 'on' }, 'SafeKit lan flags kept, no warning');
  t.is(c.lans[1]?.nodes[0]?.loc?.line, 10);
  t.deepEqual(c.warnings, []);
});

test('minimal cluster.xml: default name, host names accepted', (t) => {
  const c = parseClusterDescription(lans('<lan name="default">', '<node name="a" addr="a.example.internal"/>', '<node name="b" addr="fd00::2"/>', '</lan>'));
  t.is(c.name, 'cluster');
  t.is(c.port, undefined);
  t.deepEqual(c.lans[0]?.nodes.map((n) => n.addr), ['a.example.internal', 'fd00::2']);
});

test('a node missing from a lan is a warning naming the lan line', (t) => {
  const c = parseClusterDescription(
    lans(
      '<lan name="default">',
      '<node name="node1" addr="198.18.0.1"/>',
      '<node name="node2" addr="198.18.0.2"/>',
      '</lan>',
      '<lan name="replication">',
      '<node name="node1" addr="198.19.0.1"/>',
      '</lan>',
    ),
    { file: 'c.xml' },
  );
  t.deepEqual(c.warnings.map((w) => [w.file, w.line, w.path, w.message]), [
    ['c.xml', 7, 'cluster/lans/lan[2]', "node 'node2' is not on lan 'replication' (it is on another lan)"],
  ]);
});

test('unknown element in cluster.xml: warning, strict: error', (t) => {
  const xml = lans('<lan name="default">', '<node name="a" addr="198.18.0.1"/>', '<nod name="b" addr="198.18.0.2"/>', '</lan>');
  t.deepEqual(parseClusterDescription(xml).warnings.map((w) => [w.line, w.message]), [[5, 'unknown element <nod> inside <lan>']]);
  const err = t.throws(() => parseClusterDescription(xml, { strict: true }), { instanceOf: ConfigError });
  t.is(err?.details.line, 5);
});

const BAD: Array<{ title: string; xml: string; line: number; reason: ConfigErrorReason; match: RegExp }> = [
  { title: 'duplicate node names', xml: lans('<lan name="default">', '<node name="n1" addr="198.18.0.1"/>', '<node name="n1" addr="198.18.0.2"/>', '</lan>'), line: 5, reason: 'duplicate', match: /duplicate node name on lan 'default' 'n1' \(first at line 4\)/ },
  { title: 'duplicate addresses', xml: lans('<lan name="default">', '<node name="n1" addr="198.18.0.1"/>', '<node name="n2" addr="198.18.0.1"/>', '</lan>'), line: 5, reason: 'duplicate', match: /duplicate address/ },
  { title: 'bad addr', xml: lans('<lan name="default">', '<node name="n1" addr="198.18.0.256"/>', '</lan>'), line: 4, reason: 'invalid-value', match: /addr="198.18.0.256" on <node>: must be an IP address or a host name/ },
  { title: 'addr with a space', xml: lans('<lan name="default">', '<node name="n1" addr="node 1"/>', '</lan>'), line: 4, reason: 'invalid-value', match: /addr="node 1"/ },
  { title: 'node without addr', xml: lans('<lan name="default">', '<node name="n1"/>', '</lan>'), line: 4, reason: 'missing', match: /'addr' on <node> is missing/ },
  { title: 'lan without nodes', xml: lans('<lan name="default">', '</lan>'), line: 3, reason: 'missing', match: /lan 'default' has no <node/ },
  { title: 'lan without name', xml: lans('<lan>', '<node name="n1" addr="198.18.0.1"/>', '</lan>'), line: 3, reason: 'missing', match: /'name' on <lan> is missing/ },
  { title: 'duplicate lan names', xml: lans('<lan name="a"><node name="n1" addr="198.18.0.1"/></lan>', '<lan name="a"><node name="n1" addr="198.19.0.1"/></lan>'), line: 4, reason: 'duplicate', match: /duplicate lan name 'a'/ },
  { title: 'bad lan port', xml: lans('<lan name="a" port="http"><node name="n1" addr="198.18.0.1"/></lan>'), line: 3, reason: 'invalid-value', match: /port="http" on <lan>: must be a port number/ },
  { title: 'bad cluster port', xml: '<cluster\n port="0"><lans><lan name="a"><node name="n" addr="198.18.0.1"/></lan></lans></cluster>', line: 2, reason: 'invalid-value', match: /port="0" on <cluster>/ },
  { title: 'no lans', xml: '<cluster>\n</cluster>', line: 1, reason: 'missing', match: /<cluster> has no <lans>/ },
  { title: 'empty lans', xml: lans(), line: 2, reason: 'missing', match: /<lans> has no <lan/ },
  { title: 'wrong root', xml: '<safe/>', line: 1, reason: 'syntax', match: /root element must be <cluster>/ },
  { title: 'unclosed tag', xml: lans('<lan name="a">', '<node name="n1" addr="198.18.0.1">', '</lan>'), line: 5, reason: 'syntax', match: /malformed XML/ },
  { title: 'typographic quotes', xml: lans('<lan name=\u201Cdefault\u201D>', '<node name="n1" addr="198.18.0.1"/>', '</lan>'), line: 3, reason: 'typographic-quote', match: /attribute value of 'name' on <lan> uses a typographic quote \(U\+201C “\)/ },
];

for (const bad of BAD) {
  test(`invalid cluster.xml -> ConfigError with the line: ${bad.title}`, (t) => {
    const err = t.throws(() => parseClusterDescription(bad.xml, { file: 'c.xml' }), { instanceOf: ConfigError });
    t.is(err?.details.line, bad.line, err?.message);
    t.is(err?.reason, bad.reason, err?.message);
    t.true(err?.message.startsWith(`c.xml:${bad.line}:`), err?.message);
    t.regex(err?.message ?? '', bad.match);
  });
}

test('cluster.xml that cannot be read: ConfigReadError', async (t) => {
  await t.throwsAsync(loadClusterDescription(fixture('missing-cluster.xml')), { instanceOf: ConfigReadError });
});

test('userconfig against cluster: the mirror fixture fits the cluster fixture', async (t) => {
  const config = await loadUserConfig(fixture('mirror.userconfig.xml'));
  const cluster = await loadClusterDescription(fixture('cluster.xml'));
  t.notThrows(() => checkUserConfigAgainstCluster(config, cluster));
});

test('userconfig against cluster: unknown heartbeat lan, defaultprim, farm lan, node count', async (t) => {
  const cluster = await loadClusterDescription(fixture('cluster.xml'));
  const svc = (attrs: string, ...body: string[]): string => ['<safe>', `<service ${attrs}>`, ...body, '</service>', '</safe>'].join('\n');

  const hb = parseUserConfig(svc('mode="mirror"', '<heart>', '<heartbeat name="default"/>', '<heartbeat name="backup"/>', '</heart>'), { file: 'u.xml' });
  let err = t.throws(() => checkUserConfigAgainstCluster(hb, cluster), { instanceOf: ConfigError });
  t.is(err?.reason, 'reference');
  t.is(err?.details.line, 5);
  t.regex(err?.message ?? '', /^u\.xml:5:1: heartbeat 'backup' refers to no lan of .*cluster\.xml \(lans: 'default', 'replication'\)/);

  const prim = parseUserConfig(svc('mode="mirror"\n  defaultprim="node3"', '<heart><heartbeat name="default"/></heart>'), { file: 'u.xml' });
  err = t.throws(() => checkUserConfigAgainstCluster(prim, cluster), { instanceOf: ConfigError });
  t.is(err?.details.line, 3);
  t.regex(err?.message ?? '', /defaultprim="node3" is not a node of .* \(nodes: node1, node2; or "alone"\)/);

  const farm = parseUserConfig(svc('mode="farm"', '<farm><lan name="prod"/></farm>'), { file: 'u.xml' });
  err = t.throws(() => checkUserConfigAgainstCluster(farm, cluster), { instanceOf: ConfigError });
  t.is(err?.details.line, 3);
  t.regex(err?.message ?? '', /farm lan 'prod' refers to no lan/);

  const three = parseClusterDescription(lans('<lan name="default">', '<node name="a" addr="198.18.0.1"/>', '<node name="b" addr="198.18.0.2"/>', '<node name="c" addr="198.18.0.3"/>', '</lan>'));
  const mirror = parseUserConfig(svc('mode="mirror"', '<heart><heartbeat name="default"/></heart>'));
  err = t.throws(() => checkUserConfigAgainstCluster(mirror, three), { instanceOf: ConfigError });
  t.regex(err?.message ?? '', /a mirror module runs on exactly 2 nodes; cluster\.xml has 3 \(a, b, c\)/);
  const farmOk = parseUserConfig(svc('mode="farm"', '<farm><lan name="default"/></farm>'));
  t.notThrows(() => checkUserConfigAgainstCluster(farmOk, three));
});
