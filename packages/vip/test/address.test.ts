import test from 'ava';
import {
  parseIPv4, formatIPv4, isIPv4, parseCidr, prefixMask, networkOf, broadcastOf, inSubnet,
  assertUsableVip, resolveVipConfig, garpDelays, defaultLabel, type InterfaceInfo,
} from '../src/index.js';
import { parseIpAddrJson } from '../src/iproute.js';
import { parseArpingReply, parseArpingSent } from '../src/arp.js';
import { mergeStates, stateProblems } from '../src/lifeline-protocol.js';

const good: Array<[string, number]> = [
  ['0.0.0.0', 0], ['198.18.0.1', 0xc6120001], ['255.255.255.255', 0xffffffff], ['10.0.0.255', 0x0a0000ff], ['1.2.3.4', 0x01020304],
];
for (const [text, n] of good) {
  test(`parseIPv4 ${text}`, (t) => {
    t.is(parseIPv4(text), n);
    t.is(formatIPv4(n), text);
    t.true(isIPv4(text));
  });
}

const bad: Array<[unknown, RegExp]> = [
  ['', /not an IPv4 address/], ['198.18.0', /not an IPv4 address/], ['198.18.0.1.2', /not an IPv4 address/],
  ['198.18.0.256', /part 4 is 256, above 255/], ['198.018.0.1', /leading zero in part 2/], ['198.18.0.1/24', /not an IPv4 address/],
  [' 198.18.0.1', /not an IPv4 address/], ['::1', /not an IPv4 address/], ['host.example', /not an IPv4 address/],
  [42, /expected an IPv4 address as a string.*number 42/], [undefined, /got nothing/],
];
for (const [input, re] of bad) {
  test(`parseIPv4 refuses ${JSON.stringify(input)}`, (t) => {
    const err = t.throws(() => parseIPv4(input, 'VIP address'));
    t.is((err as { code?: string }).code, 'ERR_VIP_INVALID_ADDRESS');
    t.regex(err!.message, re);
    t.regex(err!.message, /^VIP address: /);
    t.false(isIPv4(input));
  });
}

test('prefix maths', (t) => {
  const rows: Array<[string, number, string, string, number]> = [
    ['198.18.0.7', 24, '198.18.0.0', '198.18.0.255', 0xffffff00],
    ['198.18.0.7', 32, '198.18.0.7', '198.18.0.7', 0xffffffff],
    ['198.18.0.7', 0, '0.0.0.0', '255.255.255.255', 0],
    ['198.19.255.1', 15, '198.18.0.0', '198.19.255.255', 0xfffe0000],
    ['10.1.2.3', 30, '10.1.2.0', '10.1.2.3', 0xfffffffc],
  ];
  for (const [a, p, net, bc, mask] of rows) {
    t.is(networkOf(a, p), net, `${a}/${p} network`);
    t.is(broadcastOf(a, p), bc, `${a}/${p} broadcast`);
    t.is(prefixMask(p), mask, `/${p} mask`);
  }
});

test('inSubnet', (t) => {
  const rows: Array<[string, string, number, boolean]> = [
    ['198.18.0.100', '198.18.0.1', 24, true], ['198.18.1.100', '198.18.0.1', 24, false],
    ['198.19.1.1', '198.18.0.0', 15, true], ['198.20.0.1', '198.18.0.0', 15, false],
    ['1.2.3.4', '9.9.9.9', 0, true], ['198.18.0.1', '198.18.0.1', 32, true], ['198.18.0.2', '198.18.0.1', 32, false],
  ];
  for (const [a, n, p, want] of rows) t.is(inSubnet(a, n, p), want, `${a} in ${n}/${p}`);
});

test('parseCidr', (t) => {
  t.deepEqual(parseCidr('198.18.0.0/15'), { address: '198.18.0.0', prefix: 15 });
  t.is(t.throws(() => parseCidr('198.18.0.0'))!.message, 'cidr: "198.18.0.0" is not in CIDR form "a.b.c.d/prefix"');
  t.is((t.throws(() => parseCidr('198.18.0.0/33')) as { code?: string }).code, 'ERR_VIP_INVALID_PREFIX');
  t.is((t.throws(() => parseCidr('198.18.0.0/x')) as { code?: string }).code, 'ERR_VIP_INVALID_PREFIX');
});

test('assertUsableVip', (t) => {
  const rows: Array<[string, number | undefined, RegExp | undefined]> = [
    ['198.18.0.100', 24, undefined], ['198.18.0.0', 24, /network address of 198.18.0.0\/24/],
    ['198.18.0.255', 24, /broadcast address of 198.18.0.0\/24/], ['127.0.0.5', undefined, /loopback/],
    ['224.0.0.1', undefined, /multicast/], ['0.1.2.3', undefined, /this network/], ['255.255.255.255', undefined, /limited broadcast/],
    ['169.254.1.1', undefined, /link-local/], ['198.18.0.0', 32, undefined], ['198.18.0.0', 31, undefined],
  ];
  for (const [a, p, re] of rows) {
    if (re === undefined) t.notThrows(() => assertUsableVip(a, p), `${a}/${p}`);
    else t.regex(t.throws(() => assertUsableVip(a, p), undefined, `${a}/${p}`)!.message, re);
  }
});

const ifs: InterfaceInfo[] = [
  { name: 'lo', up: true, addresses: [{ address: '127.0.0.1', prefix: 8 }] },
  { name: 'eth0', up: true, mac: '02:00:00:00:00:01', addresses: [{ address: '198.18.0.1', prefix: 24 }] },
  { name: 'eth1', up: true, addresses: [{ address: '198.19.0.1', prefix: 16 }, { address: '198.19.5.1', prefix: 24 }] },
  { name: 'eth2', up: true, addresses: [] },
];

test('resolveVipConfig: defaults come from the subnet containing the VIP', (t) => {
  t.deepEqual(resolveVipConfig(ifs, { address: '198.18.0.100' }), { address: '198.18.0.100', interface: 'eth0', prefix: 24, subnetOf: '198.18.0.1' });
  t.deepEqual(resolveVipConfig(ifs, { address: '198.19.5.9' }), { address: '198.19.5.9', interface: 'eth1', prefix: 24, subnetOf: '198.19.5.1' });
  t.deepEqual(resolveVipConfig(ifs, { address: '198.19.7.9' }), { address: '198.19.7.9', interface: 'eth1', prefix: 16, subnetOf: '198.19.0.1' });
  t.is(resolveVipConfig(ifs, { address: '198.18.0.100', prefix: 32 }).prefix, 32);
  t.is(resolveVipConfig(ifs, { address: '198.18.0.100', interface: 'eth0' }).interface, 'eth0');
  // A stale copy of the VIP itself is not a subnet.
  const stale: InterfaceInfo[] = [{ name: 'eth0', up: true, addresses: [{ address: '198.18.0.1', prefix: 24 }, { address: '198.18.0.100', prefix: 24, label: 'eth0:ha', secondary: true }] }];
  t.is(resolveVipConfig(stale, { address: '198.18.0.100' }).interface, 'eth0');
});

const errors: Array<[string, Parameters<typeof resolveVipConfig>[1], string, RegExp]> = [
  ['not IPv4', { address: '198.18.0.300' }, 'ERR_VIP_INVALID_ADDRESS', /^VIP address: "198.18.0.300" part 4 is 300/],
  ['a hostname', { address: 'vip.example' }, 'ERR_VIP_INVALID_ADDRESS', /"vip.example" is not an IPv4 address/],
  ['no such interface', { address: '198.18.0.100', interface: 'eth9' }, 'ERR_VIP_NO_SUCH_INTERFACE', /no such interface "eth9" on this node \(interfaces: lo, eth0, eth1, eth2\)/],
  ['empty interface', { address: '198.18.0.100', interface: '' }, 'ERR_VIP_NO_SUCH_INTERFACE', /interface must be a non-empty interface name/],
  ['outside the named interface', { address: '198.18.0.100', interface: 'eth1' }, 'ERR_VIP_NOT_IN_SUBNET', /outside the subnets of interface eth1 \(198.19.0.0\/16, 198.19.5.0\/24\)/],
  ['interface without address', { address: '198.18.0.100', interface: 'eth2' }, 'ERR_VIP_NOT_IN_SUBNET', /it has no IPv4 address/],
  ['outside every subnet', { address: '203.0.113.5' }, 'ERR_VIP_NOT_IN_SUBNET', /no interface of this node has a subnet containing it \(subnets: 127.0.0.0\/8 on lo, 198.18.0.0\/24 on eth0/],
  ['prefix wider than the subnet', { address: '198.18.0.100', prefix: 16 }, 'ERR_VIP_NOT_IN_SUBNET', /prefix \/16 is wider than the subnet 198.18.0.0\/24 of eth0/],
  ['prefix out of range', { address: '198.18.0.100', prefix: 33 }, 'ERR_VIP_INVALID_PREFIX', /prefix: expected an integer prefix length 1-32, got number 33/],
  ['network address', { address: '198.18.0.0' }, 'ERR_VIP_INVALID_ADDRESS', /network address/],
  ['broadcast address', { address: '198.18.0.255' }, 'ERR_VIP_INVALID_ADDRESS', /broadcast address/],
];
for (const [name, init, code, re] of errors) {
  test(`resolveVipConfig refuses: ${name}`, (t) => {
    const err = t.throws(() => resolveVipConfig(ifs, init)) as Error & { code: string };
    t.is(err.code, code);
    t.regex(err.message, re);
  });
}

test('garpDelays', (t) => {
  t.deepEqual(garpDelays(), [0, 20, 200, 1000]);
  t.deepEqual(garpDelays(2), [0, 20]);
  t.deepEqual(garpDelays(6), [0, 20, 200, 1000, 2000, 4000]);
  t.deepEqual(garpDelays(3, 100), [0, 100, 200]);
  t.deepEqual(garpDelays(0), []);
  t.is(defaultLabel('eth0'), 'eth0:ha');
  t.is(defaultLabel('enp0s31f6verylong'), 'enp0s31f6ver:ha');
  t.true(defaultLabel('enp0s31f6verylong').length <= 15);
});

test('parseIpAddrJson keeps IPv4, labels and secondaries', (t) => {
  const json = JSON.stringify([
    { ifname: 'eth0', address: 'EA:94:7B:99:6F:0D', flags: ['BROADCAST', 'UP'], addr_info: [
      { family: 'inet', local: '198.18.0.2', prefixlen: 24, label: 'eth0' },
      { family: 'inet', local: '198.18.0.100', prefixlen: 24, secondary: true, label: 'eth0:ha' },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
    { ifname: 'eth1', flags: ['BROADCAST'] },
  ]);
  t.deepEqual(parseIpAddrJson(json), [
    { name: 'eth0', mac: 'ea:94:7b:99:6f:0d', up: true, addresses: [
      { address: '198.18.0.2', prefix: 24, label: 'eth0' }, { address: '198.18.0.100', prefix: 24, label: 'eth0:ha', secondary: true }] },
    { name: 'eth1', up: false, addresses: [] },
  ]);
  t.is((t.throws(() => parseIpAddrJson('nope')) as { code?: string }).code, 'ERR_VIP_COMMAND');
});

test('arping output parsing', (t) => {
  const busy = 'ARPING 198.18.0.2 from 0.0.0.0 eth0\nUnicast reply from 198.18.0.2 [EA:94:7B:99:6F:0D]  0.604ms\nSent 1 probes (1 broadcast(s))\nReceived 1 response(s)\n';
  t.is(parseArpingReply(busy), 'ea:94:7b:99:6f:0d');
  t.is(parseArpingSent(busy), 1);
  const free = 'ARPING 198.18.0.77 from 0.0.0.0 eth0\nSent 1 probes (1 broadcast(s))\nReceived 0 response(s)\n';
  t.is(parseArpingReply(free), undefined);
  t.is(parseArpingSent('Sent 0 probes (0 broadcast(s))\n'), 0);
});

test('lifeline state checks and merge', (t) => {
  t.deepEqual(stateProblems({ vips: [{ address: '198.18.0.100', prefix: 24, interface: 'eth0' }], pgids: [1234] }), []);
  t.deepEqual(stateProblems([]), ['not a JSON object']);
  t.deepEqual(stateProblems({ pgids: [1, 'x'], vips: [{}], onDeath: 3 }),
    ['vips[0] must be {address, prefix, interface}', 'pgids[0] must be an integer > 1, got 1', 'pgids[1] must be an integer > 1, got "x"', '"onDeath" must be an array']);
  const v = { address: '198.18.0.100', prefix: 24, interface: 'eth0' };
  t.deepEqual(mergeStates([{ vips: [v], pgids: [10], fuseAbort: [44] }, { vips: [v], pgids: [10, 11], pids: [5], onDeath: [{ cmd: '/bin/true' }], fuseAbort: [44, 46] }]),
    { vips: [v], pgids: [10, 11], pids: [5], onDeath: [{ cmd: '/bin/true' }], fuseAbort: [44, 46] });
  t.deepEqual(stateProblems({ fuseAbort: ['x'] }), ['fuseAbort[0] must be an integer > 1, got "x"']);
});
