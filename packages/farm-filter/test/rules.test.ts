import test from 'ava';
import { checkSpec, renderDelete, renderFilterTable, renderNetdevTable, virtualMac, type FarmRulesetSpec } from '../src/index.js';

const spec: FarmRulesetSpec = { name: 'web', vip: '198.18.0.100', vmac: '02:48:41:12:00:64', interface: 'eth0', rules: [{ port: 80, filter: 'on_addr' }, { port: 53, proto: 'udp', filter: 'on_port' }], buckets: 16 };

test('virtualMac is a locally administered unicast address derived from the VIP', (t) => {
  t.is(virtualMac('198.18.0.100'), '02:48:41:12:00:64');
  t.is(virtualMac('10.1.2.255'), '02:48:41:01:02:ff');
  t.throws(() => virtualMac('300.1.1.1'), { code: 'ERR_FARM_FILTER_CONFIG', message: /vip.*not an IPv4/ });
});

test('the filter table: established first, SYN-only hash test, then drop', (t) => {
  const s = renderFilterTable(spec, [0, 1, 2, 3, 9]);
  t.regex(s, /flush chain inet ha_farm_web lb/);
  t.regex(s, /hook prerouting priority -140/);
  const lines = s.split('\n').filter((l) => l.startsWith('add rule'));
  t.deepEqual(lines, [
    'add rule inet ha_farm_web lb iif "lo" accept',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 tcp dport 80 ct state established,related accept',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 tcp dport 80 tcp flags & (fin|syn|rst|ack) == syn jhash ip saddr mod 16 seed 0x4841 { 0-3, 9 } accept',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 tcp dport 80 drop',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 udp dport 53 ct state established,related accept',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 udp dport 53 ct state new jhash ip saddr . udp sport mod 16 seed 0x4841 { 0-3, 9 } accept',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 udp dport 53 drop',
    'add rule inet ha_farm_web lb ip daddr 198.18.0.100 meta l4proto { tcp, udp } drop',
  ]);
});

test('no buckets: no accept rule for new connections, established still pass', (t) => {
  const s = renderFilterTable(spec, []);
  t.notRegex(s, /jhash/);
  t.regex(s, /ct state established,related accept/);
});

test('the netdev table: vMAC accepted on ingress, ARP for the VIP rewritten on egress', (t) => {
  const s = renderNetdevTable(spec);
  t.regex(s, /hook ingress device "eth0".*\n\s*ether daddr 02:48:41:12:00:64 meta pkttype set host/);
  t.regex(s, /hook egress device "eth0".*\n\s*arp saddr ip 198.18.0.100 arp saddr ether set 02:48:41:12:00:64/);
  t.regex(renderDelete('web'), /delete table netdev ha_farm_web\n.*\ndelete table inet ha_farm_web/);
});

const bad: Array<[Partial<FarmRulesetSpec>, RegExp]> = [
  [{ name: 'a b' }, /name: must be 1-32 characters/],
  [{ vip: '198.18.0' }, /vip: not an IPv4 address/],
  [{ vmac: '01:00:5e:00:00:01' }, /vmac: .* is a multicast address/],
  [{ vmac: 'zz' }, /vmac: not a MAC address/],
  [{ interface: 'eth0; rm' }, /interface: not an interface name/],
  [{ rules: [] }, /rules: at least one/],
  [{ rules: [{ port: 0 }] }, /rules\[0\]\.port: must be an integer 1-65535, got 0/],
  [{ rules: [{ port: 80, proto: 'sctp' as 'tcp' }] }, /rules\[0\]\.proto/],
  [{ rules: [{ port: 80, filter: 'on_ipid' as 'on_addr' }] }, /rules\[0\]\.filter: must be 'on_addr' or 'on_port', got "on_ipid"/],
  [{ rules: [{ port: 80 }, { port: 80, proto: 'tcp' }] }, /rules\[1\]: tcp\/80 is load-balanced twice/],
  [{ buckets: 0 }, /buckets: must be an integer 1-65536/],
  [{ seed: -1 }, /seed: must be a 32-bit/],
];
for (const [patch, re] of bad) {
  test(`checkSpec refuses ${JSON.stringify(patch)}`, (t) => {
    t.throws(() => checkSpec({ ...spec, ...patch }), { code: 'ERR_FARM_FILTER_CONFIG', message: re });
  });
}
