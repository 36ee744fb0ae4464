/** Packets an attacker on the lab network could send: garbage, and well-formed packets under a wrong key. */
import { randomBytes } from 'node:crypto';
import { deriveKey } from '../../packages/membership/src/auth.js';
import { encodePacket, encodeValue, MessageType } from '../../packages/membership/src/messages.js';

export function encodeForTest(sender: string, wrongKey: string, cluster = 'web'): Buffer[] {
  const key = deriveKey(wrongKey);
  const hdr = { cluster, sender, incarnation: Date.now() + 10_000_000, net: 0, seq: 1 };
  const stop = encodeValue({ v: 1, m: { [cluster]: { s: 'STOP', e: 999, u: true, l: 'ALONE' } } });
  return [
    randomBytes(64),
    Buffer.concat([Buffer.from('HA'), Buffer.from([1]), randomBytes(80)]),
    Buffer.alloc(0),
    encodePacket(key, { ...hdr, type: MessageType.HEARTBEAT, body: { acks: {}, payload: stop } }),
    encodePacket(key, { ...hdr, seq: 2, type: MessageType.LEAVE, body: { acks: {} } }),
  ];
}
