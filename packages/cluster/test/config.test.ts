import test from 'ava';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  ConfigReadError,
  formatConfigWarning,
  loadUserConfig,
  parseUserConfig,
  type ConfigErrorReason,
} from '../src/config/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** A userconfig.xml whose <service> starts on line 3 and whose body starts on line 4. */
function svc(body: string[], serviceAttrs = 'mode="mirror"'): string {
  return ['<!DOCTYPE safe>', '<safe>', `<service ${serviceAttrs}>`, ...body, '</service>', '</safe>', ''].join('\n');
}
const HEART = '<heart><heartbeat name="default"/></heart>';

test('mirror fixture loads into the typed configuration', async (t) => {
  const file = fixture('mirror.userconfig.xml');
  const c = await loadUserConfig(file);
  t.is(c.source, file);
  t.like(c.loc, { line: 3, column: 1, path: 'safe/service' });
  t.is(c.mode, 'mirror');
  t.is(c.defaultPrimary, undefined, 'defaultprim="alone" means no preferred primary');
  t.true(c.failover);
  t.is(c.maxloop, 3);
  t.is(c.loopIntervalHours, 24);
  t.is(c.heart?.pulseMs, 700);
  t.is(c.heart?.timeoutMs, 30000);
  t.deepEqual(c.heart?.heartbeats.map(({ name, ident }) => ({ name, ident })), [{ name: 'default', ident: 'flow' }]);
  t.is(c.heart?.heartbeats[0]?.loc?.line, 7);

  const itf = c.vip?.interfaces[0];
  t.like(itf, { check: true, arpreroute: true });
  t.like(itf?.realInterface?.addrs[0], { addr: 'VIRTUAL_TO_BE_DEFINED', where: 'one_side_alias' });
  t.is(itf?.virtualInterface, undefined);

  t.is(c.errd?.polltimer, 10);
  t.like(c.errd?.procs[0], { name: 'PROCESS_NAME', atleast: 1, action: 'restart', class: 'prim' });
  t.is(c.errd?.procs[0]?.atmost, undefined);

  t.like(c.rfs, { mountover: false, async: 'second', acl: false, nbrei: 3 });
  t.deepEqual(c.rfs?.replicated.map((r) => [r.dir, r.mode]), [
    ['/test1replicated', 'read_only'],
    ['/test2replicated', 'read_only'],
  ]);
  t.deepEqual(c.user, { niceStopTimeoutS: 300, forceStopTimeoutS: 300, logging: 'userlog', vars: [] });

  // Placeholders of the stock file: warnings naming their line, nothing else.
  t.deepEqual(
    c.warnings.map((w) => [w.line, w.path]),
    [
      [17, 'safe/service/vip/interface_list/interface/real_interface/virtual_addr'],
      [27, 'safe/service/errd/proc'],
    ],
  );
  t.regex(c.warnings[0]?.message ?? '', /VIRTUAL_TO_BE_DEFINED.*not defined yet/);
  t.is(c.warnings[0]?.file, file);
  t.regex(formatConfigWarning(c.warnings[0]!), /mirror\.userconfig\.xml:17:25: addr="VIRTUAL_TO_BE_DEFINED"/);
});

test('farm fixture loads: lb rule, tcp check, placeholders as warnings', async (t) => {
  const c = await loadUserConfig(fixture('farm.userconfig.xml'));
  t.is(c.mode, 'farm');
  t.is(c.heart, undefined);
  t.deepEqual(c.farm?.lans.map((l) => l.name), ['default']);
  t.like(c.vip?.interfaces[0]?.virtualInterface, { type: 'vmac_directed' });
  t.like(c.vip?.interfaces[0]?.virtualInterface?.addrs[0], { addr: 'VIRTUAL_IP_ADDR_TO_BE_DEFINED', where: 'alias' });
  const group = c.vip?.loadBalancing?.[0];
  t.is(group?.group, 'Windows_Appli');
  t.like(group?.rules[0], { proto: 'tcp', filter: 'on_addr' });
  t.is(group?.rules[0]?.port, undefined, 'a placeholder port is not a number');
  const tcp = c.check?.tcp[0];
  t.like(tcp, { ident: 'Check_Appli', when: 'both' });
  t.like(tcp?.to, { addr: 'VIRTUAL_IP_ADDR_TO_BE_DEFINED', interval: 10, timeout: 5 });
  t.is(tcp?.to.port, undefined);
  t.deepEqual(c.check?.ping, []);
  t.deepEqual(
    c.warnings.map((w) => `${w.line}:${w.path}`),
    [
      '17:safe/service/vip/interface_list/interface/virtual_interface/virtual_addr',
      '24:safe/service/vip/loadbalancing_list/group/rule',
      '36:safe/service/check/tcp/to',
      '37:safe/service/check/tcp/to',
    ],
  );
  t.regex(c.warnings[1]?.message ?? '', /port="TCP_PORT_TO_BE_DEFINED".*not defined yet/);
});

test('typographic quotes pasted from a web page: ConfigError naming line 7 and the character', async (t) => {
  const err = await t.throwsAsync(loadUserConfig(fixture('mirror.pasted-typographic-quotes.userconfig.xml')), { instanceOf: ConfigError });
  t.is(err?.code, 'ERR_CONFIG');
  t.is(err?.reason, 'typographic-quote');
  t.is(err?.details.line, 7);
  t.is(err?.details.column, 21);
  t.is(err?.details.attribute, 'name');
  t.is(err?.details.path, 'safe/service/heart/heartbeat');
  t.regex(err?.message ?? '', /mirror\.pasted-typographic-quotes\.userconfig\.xml:7:21: /);
  t.regex(err?.message ?? '', /attribute value of 'name' on <heartbeat> uses a typographic quote \(U\+201D ”\); use straight quotes " or '/);
});

test('typographic quotes in comments and text are fine; other kinds in tags are caught', (t) => {
  const ok = svc(['<!-- “quoted” in a comment -->', HEART]);
  t.is(parseUserConfig(ok).mode, 'mirror');
  for (const q of ['\u201C', '\u2018', '\u201E', '\u00AB', '\u2033']) {
    const xml = svc([`<heart pulse=${q}700${q}><heartbeat name="default"/></heart>`]);
    const err = t.throws(() => parseUserConfig(xml), { instanceOf: ConfigError });
    t.is(err?.details.line, 4, q);
    t.is(err?.details.column, 14, q);
    t.true(err?.message.includes(q), q);
  }
});

test('file that cannot be read: ConfigReadError', async (t) => {
  const err = await t.throwsAsync(loadUserConfig(fixture('nope.xml')), { instanceOf: ConfigReadError });
  t.is(err?.code, 'ERR_CONFIG_READ');
  t.regex(err?.message ?? '', /nope\.xml/);
});

interface Bad {
  title: string;
  xml: string;
  line: number;
  reason: ConfigErrorReason;
  match: RegExp;
}

const BAD: Bad[] = [
  { title: 'bad pulse', xml: svc(['<heart pulse="abc"><heartbeat name="default"/></heart>']), line: 4, reason: 'invalid-value', match: /pulse="abc" on <heart>: must be a number of milliseconds/ },
  { title: 'zero pulse', xml: svc(['<heart pulse="0"><heartbeat name="default"/></heart>']), line: 4, reason: 'invalid-value', match: /pulse="0"/ },
  { title: 'timeout < pulse', xml: svc(['', '<heart pulse="700"', '  timeout="500"><heartbeat name="default"/></heart>']), line: 6, reason: 'invalid-value', match: /timeout="500" on <heart> must be greater than pulse="700"/ },
  { title: 'bad mode', xml: svc([HEART], 'mode="light"'), line: 3, reason: 'invalid-value', match: /mode="light" on <service>: must be one of "mirror", "farm"/ },
  { title: 'missing mode', xml: svc([HEART], 'maxloop="3"'), line: 3, reason: 'missing', match: /'mode' on <service> is missing/ },
  { title: 'bad failover value', xml: svc([HEART], 'mode="mirror"\n failover="maybe"'), line: 4, reason: 'invalid-value', match: /failover="maybe" on <service>: must be "on" or "off"/ },
  { title: 'negative maxloop', xml: svc([HEART], 'mode="mirror" maxloop="-1"'), line: 3, reason: 'invalid-value', match: /maxloop="-1"/ },
  { title: 'zero loop_interval', xml: svc([HEART], 'mode="mirror" loop_interval="0"'), line: 3, reason: 'invalid-value', match: /loop_interval="0"/ },
  { title: 'unclosed tag', xml: svc(['<heart pulse="700">', '<heartbeat name="default">', '</heart>']), line: 6, reason: 'syntax', match: /malformed XML: .*heartbeat/ },
  { title: 'empty file', xml: '', line: 1, reason: 'syntax', match: /malformed XML/ },
  { title: 'repeated attribute', xml: svc([HEART], 'mode="mirror"\n mode="farm"'), line: 4, reason: 'syntax', match: /Attribute 'mode' is repeated/ },
  { title: 'two root elements', xml: svc([HEART]) + '<safe/>\n', line: 7, reason: 'syntax', match: /only one root element is allowed; <safe> follows <safe>/ },
  { title: 'not XML at all', xml: 'hello', line: 1, reason: 'syntax', match: /malformed XML/ },
  { title: 'duplicate heartbeat names', xml: svc(['<heart>', '<heartbeat name="default"/>', '<heartbeat name="default"/>', '</heart>']), line: 6, reason: 'duplicate', match: /duplicate heartbeat name 'default' \(first at line 5\)/ },
  { title: 'heart without heartbeat', xml: svc(['<heart pulse="700"/>']), line: 4, reason: 'missing', match: /<heart> has no <heartbeat/ },
  { title: 'heartbeat without name', xml: svc(['<heart>', '<heartbeat ident="flow"/>', '</heart>']), line: 5, reason: 'missing', match: /'name' on <heartbeat> is missing/ },
  { title: 'two <heart>', xml: svc([HEART, HEART]), line: 5, reason: 'duplicate', match: /<heart> may appear only once/ },
  { title: 'wrong root', xml: '<config><service mode="mirror"/></config>', line: 1, reason: 'syntax', match: /root element must be <safe>/ },
  { title: 'no service', xml: '<safe>\n</safe>', line: 1, reason: 'missing', match: /no <service>/ },
  { title: 'bad virtual addr', xml: svc(['<vip><interface_list><interface>', '<real_interface><virtual_addr addr="198.18.0.300"/></real_interface>', '</interface></interface_list></vip>']), line: 5, reason: 'invalid-value', match: /addr="198.18.0.300" on <virtual_addr>: must be an IP address or a host name/ },
  { title: 'interface without address block', xml: svc(['<vip><interface_list>', '<interface check="on"/>', '</interface_list></vip>']), line: 5, reason: 'missing', match: /<real_interface> or a <virtual_interface>/ },
  { title: 'bad arpreroute', xml: svc(['<vip><interface_list>', '<interface arpreroute="yes"><real_interface><virtual_addr addr="198.18.0.100"/></real_interface></interface>', '</interface_list></vip>']), line: 5, reason: 'invalid-value', match: /arpreroute="yes"/ },
  { title: 'bad lb filter', xml: svc(['<vip><loadbalancing_list><group name="g">', '<rule port="80" proto="tcp" filter="round_robin"/>', '</group></loadbalancing_list></vip>'], 'mode="farm"'), line: 5, reason: 'invalid-value', match: /filter="round_robin" on <rule>: must be one of "on_addr", "on_port", "on_ipid"/ },
  { title: 'bad lb port', xml: svc(['<vip><loadbalancing_list><group name="g">', '<rule port="70000" proto="tcp" filter="on_port"/>', '</group></loadbalancing_list></vip>'], 'mode="farm"'), line: 5, reason: 'invalid-value', match: /port="70000" on <rule>: must be a port number from 1 to 65535/ },
  { title: 'bad lb proto', xml: svc(['<vip><loadbalancing_list><group name="g">', '<rule port="80" proto="sctp"/>', '</group></loadbalancing_list></vip>'], 'mode="farm"'), line: 5, reason: 'invalid-value', match: /proto="sctp"/ },
  { title: 'negative atleast', xml: svc(['<errd>', '<proc name="app" atleast="-1" action="restart" class="prim"/>', '</errd>']), line: 5, reason: 'invalid-value', match: /atleast="-1" on <proc>/ },
  { title: 'atmost < atleast', xml: svc(['<errd>', '<proc name="app" atleast="2" atmost="1" action="restart" class="prim"/>', '</errd>']), line: 5, reason: 'invalid-value', match: /atmost="1" on <proc> is smaller than atleast="2"/ },
  { title: 'unknown errd action', xml: svc(['<errd>', '<proc name="app" action="reboot" class="prim"/>', '</errd>']), line: 5, reason: 'invalid-value', match: /action="reboot" on <proc>: must be one of "restart", "stopstart", "stop", "wait"/ },
  { title: 'proc without action', xml: svc(['<errd>', '<proc name="app" class="prim"/>', '</errd>']), line: 5, reason: 'missing', match: /'action' on <proc> is missing/ },
  { title: 'bad polltimer', xml: svc(['<errd polltimer="10s"/>']), line: 4, reason: 'invalid-value', match: /polltimer="10s"/ },
  { title: 'relative replicated dir', xml: svc(['<rfs>', '<replicated dir="data"/>', '</rfs>']), line: 5, reason: 'invalid-value', match: /dir="data" on <replicated> must be an absolute path/ },
  { title: 'duplicate replicated dir', xml: svc(['<rfs>', '<replicated dir="/data"/>', '<replicated dir="/data"/>', '</rfs>']), line: 6, reason: 'duplicate', match: /duplicate replicated directory '\/data'/ },
  { title: 'bad mountover', xml: svc(['<rfs mountover="true"/>']), line: 4, reason: 'invalid-value', match: /mountover="true"/ },
  { title: 'tcp check without <to>', xml: svc(['<check>', '<tcp ident="c1"/>', '</check>']), line: 5, reason: 'missing', match: /<tcp ident="c1"> needs <to/ },
  { title: 'tcp check without port', xml: svc(['<check>', '<tcp ident="c1">', '<to addr="198.18.0.100"/>', '</tcp>', '</check>']), line: 6, reason: 'missing', match: /'port' on <to> is missing/ },
  { title: 'bad check interval', xml: svc(['<check>', '<tcp ident="c1">', '<to addr="198.18.0.100" port="80" interval="-5"/>', '</tcp>', '</check>']), line: 6, reason: 'invalid-value', match: /interval="-5"/ },
  { title: 'duplicate checker ident', xml: svc(['<check>', '<ping ident="c1"><to addr="198.18.0.254"/></ping>', '<tcp ident="c1"><to addr="198.18.0.100" port="80"/></tcp>', '</check>']), line: 6, reason: 'duplicate', match: /duplicate checker ident 'c1'/ },
  { title: 'custom check without exec', xml: svc(['<check>', '<custom ident="c1" when="both"/>', '</check>']), line: 5, reason: 'missing', match: /needs an 'exec' attribute/ },
  { title: 'bad nicestoptimeout', xml: svc(['<user nicestoptimeout="5m"/>']), line: 4, reason: 'invalid-value', match: /nicestoptimeout="5m"/ },
  { title: 'bad var name', xml: svc(['<user>', '<var name="A B" value="1"/>', '</user>']), line: 5, reason: 'invalid-value', match: /name="A B" on <var>/ },
];

for (const bad of BAD) {
  test(`invalid userconfig -> ConfigError with the line: ${bad.title}`, (t) => {
    const err = t.throws(() => parseUserConfig(bad.xml, { file: 'u.xml' }), { instanceOf: ConfigError });
    t.is(err?.code, 'ERR_CONFIG');
    t.is(err?.details.line, bad.line, err?.message);
    t.is(err?.reason, bad.reason, err?.message);
    t.is(err?.details.file, 'u.xml');
    t.true(err?.message.startsWith(`u.xml:${bad.line}:`), err?.message);
    t.regex(err?.message ?? '', bad.match);
  });
}

test('attribute errors point at the attribute column and carry the element path and value', (t) => {
  const xml = svc(['<rfs>', '<replicated dir="/a"/>', '<replicated  mode="x" dir="b"/>', '</rfs>']);
  const err = t.throws(() => parseUserConfig(xml), { instanceOf: ConfigError });
  t.like(err?.details, { line: 6, column: 23, path: 'safe/service/rfs/replicated[2]', attribute: 'dir', value: 'b' });
  t.regex(err?.message ?? '', /^userconfig\.xml:6:23: .*\(at safe\/service\/rfs\/replicated\[2\]\)$/);
});

test('unknown elements and attributes: warnings with line and path; strict makes them errors', (t) => {
  const xml = svc([HEART, '<hearts pulse="1"/>', '<user nicestoptimeout="10"', '  colour="blue"/>']);
  const c = parseUserConfig(xml);
  t.deepEqual(
    c.warnings.map((w) => [w.line, w.path, w.message]),
    [
      [5, 'safe/service/hearts', 'unknown element <hearts> inside <service>'],
      [7, 'safe/service/user', "unknown attribute 'colour' on <user>"],
    ],
  );
  t.is(c.user?.niceStopTimeoutS, 10);
  t.is(c.user?.forceStopTimeoutS, 300);
  t.deepEqual(c.user?.extra, { colour: 'blue' }, 'unknown attributes are kept');

  const err = t.throws(() => parseUserConfig(xml, { strict: true }), { instanceOf: ConfigError });
  t.is(err?.reason, 'unknown');
  t.is(err?.details.line, 5);
  t.regex(err?.message ?? '', /unknown element <hearts>/);
});

test('documented SafeKit attributes we do not model are kept in extra without warning', (t) => {
  const c = parseUserConfig(svc(['<heart permanent_arp="on"><heartbeat name="default"/></heart>', '<rfs locktimeout="100"><replicated dir="/d"><notreplicated path="tmp"/></replicated></rfs>']), { strict: true });
  t.deepEqual(c.warnings, []);
  t.deepEqual(c.heart?.extra, { permanent_arp: 'on' });
  t.deepEqual(c.rfs?.extra, { locktimeout: '100' });
  t.deepEqual(c.rfs?.replicated[0]?.notReplicated, [{ path: 'tmp' }]);
});

test('defaults, defaultprim, failover off, comments and CRLF', (t) => {
  const xml = svc(['<!-- a comment -->', '<heart><heartbeat name="default"/><heartbeat name="replication" ident="r"/></heart>', '<user><var name="APP_HOME" value="/opt/app"/></user>'], 'mode="mirror" defaultprim="node1" failover="off"').replace(/\n/g, '\r\n');
  const c = parseUserConfig(xml);
  t.is(c.defaultPrimary, 'node1');
  t.is(c.defaultPrimaryLoc?.line, 3);
  t.false(c.failover);
  t.is(c.maxloop, 3);
  t.is(c.loopIntervalHours, 24);
  t.is(c.heart?.pulseMs, undefined);
  t.deepEqual(c.heart?.heartbeats.map((h) => h.name), ['default', 'replication']);
  t.deepEqual(c.heart?.heartbeats.map((h) => h.loc?.line), [5, 5]);
  t.deepEqual(c.user?.vars, [{ name: 'APP_HOME', value: '/opt/app' }]);
  t.deepEqual(c.warnings, []);
});

test('all checker kinds are read', (t) => {
  const c = parseUserConfig(
    svc([
      '<check>',
      '<ping ident="router" when="both"><to addr="198.18.0.254" interval="10" timeout="5"/></ping>',
      '<intf ident="nic" when="both"><to local_id="eth0"/></intf>',
      '<ip ident="vipcheck" when="prim"><to addr="198.18.0.100"/></ip>',
      '<custom ident="health" when="prim" exec="/usr/local/bin/health" arg="-q" action="restart"/>',
      '<module name="other"><to addr="198.18.0.2" port="9010"/></module>',
      '<splitbrain ident="witness" exec="ping" arg="198.18.0.254"/>',
      '</check>',
    ]),
  );
  t.like(c.check?.ping[0], { ident: 'router', when: 'both', to: { addr: '198.18.0.254', interval: 10, timeout: 5 } });
  t.like(c.check?.intf[0], { ident: 'nic', to: { localId: 'eth0' } });
  t.like(c.check?.ip[0], { ident: 'vipcheck', when: 'prim', to: { addr: '198.18.0.100' } });
  t.like(c.check?.custom[0], { ident: 'health', exec: '/usr/local/bin/health', arg: '-q', action: 'restart' });
  t.like(c.check?.module[0], { ident: 'other', to: { port: 9010 } });
  t.like(c.check?.splitbrain[0], { ident: 'witness', exec: 'ping', arg: '198.18.0.254' });
  t.deepEqual(c.warnings, []);
});

test('a farm module with <rfs> gets a warning', (t) => {
  const c = parseUserConfig(svc(['<rfs><replicated dir="/d"/></rfs>'], 'mode="farm"'));
  t.deepEqual(c.warnings.map((w) => [w.line, w.message]), [[4, '<rfs> (file replication) is ignored in a farm module']]);
});
