/**
 * Wire format of membership messages.
 *
 * ```
 * magic 'HA' (2 bytes) | version u8 (= 1) | msgpack([type, clusterName, senderId, incarnation, netIndex, seq, body]) | HMAC-SHA256 (32 bytes)
 * ```
 * The MAC covers everything before it. Length, magic, version and MAC are checked BEFORE
 * the msgpack decoder sees a byte; then every field's shape is checked strictly.
 * Type ids are append-only: never renumber, never reuse.
 */
import { Packr, Unpackr } from 'msgpackr';
import { MAC_LENGTH, sign, verify } from './auth.js';

/** Message type ids (append-only). @public */
export const MessageType = Object.freeze({ HEARTBEAT: 1, APP: 2, LEAVE: 3 } as const);
/** @public */
export type MessageTypeId = (typeof MessageType)[keyof typeof MessageType];

/** Wire format version. @public */
export const WIRE_VERSION = 1;
/** First two bytes of every packet: 'HA'. @public */
export const MAGIC = Buffer.from('HA', 'ascii');
const HEADER_LENGTH = MAGIC.length + 1;
/** Largest encoded heartbeat payload (bytes): it is sent in every heartbeat. @public */
export const MAX_PAYLOAD_BYTES = 1024;
/** Largest encoded application message body (bytes): one datagram. @public */
export const MAX_APP_BODY_BYTES = 60_000;
/** Largest datagram we accept. */
export const MAX_PACKET_BYTES = 65_507;
/** Longest channel name. */
export const MAX_CHANNEL_LENGTH = 256;

/** Why a received packet was dropped. @public */
export type DropReason =
  | 'malformed' | 'badVersion' | 'badMac' | 'unknownNode' | 'wrongCluster'
  | 'replay' | 'staleIncarnation' | 'fromSelf' | 'unknownType' | 'unacked';

/** Every drop reason, in a stable order. @public */
export const DROP_REASONS: readonly DropReason[] = Object.freeze([
  'malformed', 'badVersion', 'badMac', 'unknownNode', 'wrongCluster',
  'replay', 'staleIncarnation', 'fromSelf', 'unknownType', 'unacked',
] as const);

/** For each member id, the incarnation of it the sender has heard (freshness proof). */
export type Acks = Record<string, number>;

/** Body of a HEARTBEAT. */
export interface HeartbeatBody { acks: Acks; payload: Uint8Array | undefined }
/** Body of an APP (user) message. `mid` is per sender incarnation, the same on every network. */
export interface AppBody { acks: Acks; to: string; channel: string; mid: number; body: Uint8Array }
/** Body of a LEAVE. */
export interface LeaveBody { acks: Acks }

/** Fields every message carries. */
export interface Header {
  cluster: string;
  sender: string;
  incarnation: number;
  net: number;
  seq: number;
}

/** A decoded (authenticated, shape-checked) message. */
export type Message =
  | (Header & { type: typeof MessageType.HEARTBEAT; body: HeartbeatBody })
  | (Header & { type: typeof MessageType.APP; body: AppBody })
  | (Header & { type: typeof MessageType.LEAVE; body: LeaveBody });

/** Result of {@link decodePacket}. */
export type DecodeResult = { ok: true; msg: Message } | { ok: false; reason: DropReason };

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** Encodes any value with msgpack (used for payloads and message bodies). */
export function encodeValue(value: unknown): Buffer {
  return packr.pack(value);
}

/** Decodes a msgpack value (only called on authenticated bytes). */
export function decodeValue(bytes: Uint8Array): unknown {
  return unpackr.unpack(bytes);
}

function wireBody(msg: Message): Record<string, unknown> {
  switch (msg.type) {
    case MessageType.HEARTBEAT: {
      const b: Record<string, unknown> = { a: msg.body.acks };
      if (msg.body.payload !== undefined) b.p = msg.body.payload;
      return b;
    }
    case MessageType.APP:
      return { a: msg.body.acks, t: msg.body.to, c: msg.body.channel, m: msg.body.mid, b: msg.body.body };
    case MessageType.LEAVE:
      return { a: msg.body.acks };
  }
}

/** Encodes and signs a message. */
export function encodePacket(key: Uint8Array, msg: Message): Buffer {
  const inner = packr.pack([msg.type, msg.cluster, msg.sender, msg.incarnation, msg.net, msg.seq, wireBody(msg)]);
  const head = Buffer.allocUnsafe(HEADER_LENGTH);
  MAGIC.copy(head, 0);
  head.writeUInt8(WIRE_VERSION, MAGIC.length);
  const signed = Buffer.concat([head, inner]);
  return Buffer.concat([signed, sign(key, signed)]);
}

const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
const isStr = (x: unknown, max = 256): x is string => typeof x === 'string' && x.length > 0 && x.length <= max;
const isUInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;

function parseAcks(x: unknown): Acks | undefined {
  if (!isObj(x)) return undefined;
  const acks: Acks = Object.create(null) as Acks;
  for (const k of Object.keys(x)) {
    const v = x[k];
    if (!isUInt(v) || k.length === 0 || k.length > 256) return undefined;
    acks[k] = v;
  }
  return acks;
}

/**
 * Checks and decodes a datagram. Never throws: anything wrong gives `{ok: false, reason}`.
 * Cluster name, sender, incarnation and replay checks are the caller's (they need state).
 */
export function decodePacket(key: Uint8Array, buf: Uint8Array): DecodeResult {
  if (!(buf instanceof Uint8Array) || buf.length < HEADER_LENGTH + 1 + MAC_LENGTH || buf.length > MAX_PACKET_BYTES) {
    return { ok: false, reason: 'malformed' };
  }
  if (buf[0] !== MAGIC[0] || buf[1] !== MAGIC[1]) return { ok: false, reason: 'malformed' };
  if (buf[2] !== WIRE_VERSION) return { ok: false, reason: 'badVersion' };
  const signedEnd = buf.length - MAC_LENGTH;
  if (!verify(key, buf.subarray(0, signedEnd), buf.subarray(signedEnd))) return { ok: false, reason: 'badMac' };
  let raw: unknown;
  try {
    raw = unpackr.unpack(buf.subarray(HEADER_LENGTH, signedEnd));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!Array.isArray(raw) || raw.length !== 7) return { ok: false, reason: 'malformed' };
  const [type, cluster, sender, incarnation, net, seq, body] = raw as unknown[];
  if (!isUInt(type) || !isStr(cluster) || !isStr(sender) || !isUInt(incarnation) ||
      !isUInt(net) || !isUInt(seq) || seq < 1 || !isObj(body)) {
    return { ok: false, reason: 'malformed' };
  }
  const header: Header = { cluster, sender, incarnation, net, seq };
  const acks = parseAcks(body.a);
  switch (type) {
    case MessageType.HEARTBEAT: {
      if (!acks) return { ok: false, reason: 'malformed' };
      const p = body.p;
      if (p !== undefined && !isBytes(p)) return { ok: false, reason: 'malformed' };
      return { ok: true, msg: { ...header, type, body: { acks, payload: p } } };
    }
    case MessageType.APP: {
      const { t, c, m, b } = body;
      if (!acks || !isStr(t) || !isStr(c, MAX_CHANNEL_LENGTH) || !isUInt(m) || m < 1 || !isBytes(b)) {
        return { ok: false, reason: 'malformed' };
      }
      return { ok: true, msg: { ...header, type, body: { acks, to: t, channel: c, mid: m, body: b } } };
    }
    case MessageType.LEAVE:
      if (!acks) return { ok: false, reason: 'malformed' };
      return { ok: true, msg: { ...header, type, body: { acks } } };
    default:
      return { ok: false, reason: 'unknownType' };
  }
}
