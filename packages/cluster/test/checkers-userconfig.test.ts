/**
 * userconfig.xml checkers to @ha/checkers rules (checkersFromUserConfig): the stock mirror file
 * (its <errd><proc> and the check="on" of its VIP interface) and every <check> kind, with the
 * witness from <splitbrain>. Each rule's checker is built to see its resource name and kind.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseUserConfig } from '../src/index.js';
import { checkersFromUserConfig } from '../src/from-userconfig.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const MIRROR_XML = readFileSync(fixture('mirror.userconfig.xml'), 'utf8');

function rules(xml: string) {
  const notes: string[] = [];
  const { checkers, witness } = checkersFromUserConfig(parseUserConfig(xml, { file: 'u.xml' }), notes);
  const seen = checkers.map((r) => { const c = r.checker({}); return `${c.kind} ${c.name} ${r.action} ${r.when}`; });
  return { seen, witness, notes };
}

test('the stock mirror userconfig: placeholder process skipped with a note; check="on" on the VIP interface checks the VIP once it is defined', (t) => {
  const stock = rules(MIRROR_XML);
  t.deepEqual(stock.seen, [], 'placeholders: nothing to check yet');
  t.true(stock.notes.some((n) => /PROCESS_NAME.*placeholder/.test(n)), stock.notes.join('\n'));
  const defined = rules(MIRROR_XML.replaceAll('VIRTUAL_TO_BE_DEFINED', '198.18.0.100').replaceAll('PROCESS_NAME', 'nginx'));
  t.deepEqual(defined.seen, [
    'process process.nginx restart primary',
    'ip ip.198.18.0.100 stopstart primary',
  ]);
  const off = rules(MIRROR_XML.replaceAll('VIRTUAL_TO_BE_DEFINED', '198.18.0.100').replace('check="on"', 'check="off"'));
  t.false(off.seen.some((s) => s.startsWith('ip ')), 'check="off": no VIP checker');
});

test('every <check> kind maps to a checker rule; <splitbrain> to the witness', (t) => {
  const xml = ['<!DOCTYPE safe>', '<safe>', '<service mode="mirror">',
    '<vip><interface_list><interface check="on"><real_interface name="eth0"><virtual_addr addr="198.18.0.100" where="one_side_alias"/></real_interface></interface></interface_list></vip>',
    '<errd polltimer="10"><proc name="mydaemon" atleast="1" atmost="2" action="stopstart" class="both"/></errd>',
    '<check>',
    '<tcp ident="web" when="prim"><to addr="127.0.0.1" port="8080" interval="5" timeout="2"/></tcp>',
    '<ping ident="router" when="both"><to addr="198.18.0.254" interval="10" timeout="5"/></ping>',
    '<intf ident="nic" when="both"><to local_id="eth1"/></intf>',
    '<ip ident="vipcheck" when="prim"><to addr="198.18.0.100"/></ip>',
    '<custom ident="health" when="prim" exec="/usr/local/bin/health" arg="-q" action="restart"/>',
    '<splitbrain ident="witness" exec="ping" arg="198.18.0.254"/>',
    '</check>', '</service>', '</safe>', ''].join('\n');
  const r = rules(xml);
  t.deepEqual(r.seen, [
    'process process.mydaemon stopstart always',
    'interface intf.eth0 wait always',
    'ip ip.198.18.0.100 stopstart primary',
    'tcp web restart primary',
    'ping router wait always',
    'interface nic wait always',
    'ip vipcheck stopstart primary',
    'exec health restart primary',
  ]);
  t.truthy(r.witness, 'the witness comes from <splitbrain>');
  t.is(r.witness!.targets.length, 1);
});
