/**
 * fromUserConfig for farm modules (the stock farm.userconfig.xml), and one daemon running a mirror
 * and a farm module (mergeClusterInits): pure mapping, and a Cluster built from it (not started).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cluster, ConfigError, fromUserConfig, loadClusterDescription, mergeClusterInits, parseClusterDescription, parseUserConfig, type FarmInit } from '../src/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const FARM_XML = readFileSync(fixture('farm.userconfig.xml'), 'utf8');
const MIRROR_XML = readFileSync(fixture('mirror.userconfig.xml'), 'utf8');
const defined = (xml: string, vip: string, port: number) => xml.replaceAll('VIRTUAL_IP_ADDR_TO_BE_DEFINED', vip).replaceAll('VIRTUAL_TO_BE_DEFINED', vip).replaceAll('TCP_PORT_TO_BE_DEFINED', String(port));
const THREE = parseClusterDescription(`<cluster port="7000"><lans><lan name="default">
  <node name="a" addr="198.18.0.1"/><node name="b" addr="198.18.0.2"/><node name="c" addr="198.18.0.3"/>
</lan></lans></cluster>`);
const opts = { node: 'a', key: 'k'.repeat(32), stateDir: '/nonexistent' };

test('the stock farm.userconfig.xml maps to a farm module over the <farm> lan', (t) => {
  const config = parseUserConfig(defined(FARM_XML, '198.18.0.100', 8080), { file: '/m/farm/userconfig.xml' });
  const { init, notes } = fromUserConfig(config, THREE, opts);
  t.is(init.mirror, undefined);
  t.deepEqual(init.networks, [{ name: 'default', port: 7000, addresses: { a: '198.18.0.1', b: '198.18.0.2', c: '198.18.0.3' } }]);
  const farm = init.farm as FarmInit;
  t.is(farm.name, 'farm');
  t.is(farm.vip, '198.18.0.100');
  t.deepEqual(farm.rules, [{ port: 8080, proto: 'tcp', filter: 'on_addr' }]);
  t.deepEqual(farm.check, { host: '198.18.0.100', port: 8080, intervalMs: 10_000, timeoutMs: 5_000 });
  t.deepEqual(farm.scripts, { dir: '/m/farm' });
  t.is(farm.niceStopTimeoutMs, 300_000);
  t.deepEqual(notes, []);
});

test('farm placeholders: errors naming what to define, or notes with allowPlaceholders (ha check)', async (t) => {
  const config = parseUserConfig(FARM_XML, { file: 'farm.xml' });
  const err = t.throws(() => fromUserConfig(config, THREE, opts), { instanceOf: ConfigError });
  t.regex(err?.message ?? '', /^farm\.xml:\d+:\d+: addr="VIRTUAL_IP_ADDR_TO_BE_DEFINED" on <virtual_addr> is not defined yet/);
  const withVip = parseUserConfig(FARM_XML.replaceAll('VIRTUAL_IP_ADDR_TO_BE_DEFINED', '198.18.0.100'), { file: 'farm.xml' });
  t.throws(() => fromUserConfig(withVip, THREE, opts), { instanceOf: ConfigError, message: /port on <rule> of group 'Windows_Appli' is not defined yet/ });
  const loose = fromUserConfig(config, THREE, { ...opts, allowPlaceholders: true });
  t.deepEqual((loose.init.farm as FarmInit).rules, []);
  t.true(loose.notes.some((n) => n.includes('VIRTUAL_IP_ADDR_TO_BE_DEFINED')), loose.notes.join('\n'));
  // the real fixture file loads too
  const cluster = await loadClusterDescription(fixture('cluster.xml'));
  t.notThrows(() => fromUserConfig(config, cluster, { ...opts, node: 'node1', allowPlaceholders: true }));
});

test('farm rule with on_ipid is refused with its place', (t) => {
  const config = parseUserConfig(defined(FARM_XML, '198.18.0.100', 53).replace('proto="tcp" filter="on_addr"', 'proto="udp" filter="on_ipid"'), { file: 'f.xml' });
  t.throws(() => fromUserConfig(config, THREE, opts), { instanceOf: ConfigError, message: /^f\.xml:\d+:\d+: filter="on_ipid" on <rule port="53"> of group 'Windows_Appli' is not supported/ });
});

test('a mirror and a farm module in one daemon: merged init, one membership, each module with its own VIP', async (t) => {
  const two = parseClusterDescription(`<cluster port="7000"><lans><lan name="default">
    <node name="a" addr="198.18.0.1"/><node name="b" addr="198.18.0.2"/></lan></lans></cluster>`);
  const mirror = fromUserConfig(parseUserConfig(defined(MIRROR_XML, '198.18.0.100', 0)), two, { ...opts, module: 'mirror' });
  const farm = fromUserConfig(parseUserConfig(defined(FARM_XML, '198.18.0.101', 8080)), two, { ...opts, module: 'web' });
  const init = mergeClusterInits([mirror.init, farm.init]);
  t.is(init.mirror?.name, 'mirror');
  t.deepEqual((init.farm as FarmInit[]).map((f) => [f.name, f.vip]), [['web', '198.18.0.101']]);
  t.is(init.networks.length, 1);
  t.is(init.timeoutMs, 30_000, 'the mirror module\'s heartbeat timing');
  const c = new Cluster({ ...init, stateDir: '/tmp/ha-merge-test-never-written', components: { lifeline: false } });
  t.true(c.hasMirror);
  t.deepEqual(c.farms.map((f) => f.name), ['web']);
  // different nodes, or two mirrors: refused
  t.throws(() => mergeClusterInits([mirror.init, fromUserConfig(parseUserConfig(defined(FARM_XML, '198.18.0.101', 8080)), THREE, opts).init]), { instanceOf: ConfigError, message: /different nodes/ });
  t.throws(() => mergeClusterInits([mirror.init, mirror.init]), { instanceOf: ConfigError, message: /several mirror modules/ });
});
