/**
 * Authentication of cluster traffic: HMAC-SHA256 under a key derived with HKDF from the
 * shared cluster key and a domain string (so the same cluster key used elsewhere in the SDK
 * never produces the same MAC key).
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { MembershipConfigError } from './errors.js';

/** Length of a MAC in bytes. @public */
export const MAC_LENGTH = 32;
/** Minimum length of the shared cluster key in bytes. @public */
export const MIN_KEY_BYTES = 16;
/** Domain string of the membership's MAC key. */
export const MEMBERSHIP_DOMAIN = 'ha-sdk/membership/v1/hmac-sha256';

/** The cluster key as bytes (a string is taken as UTF-8); throws if shorter than 16 bytes. @public */
export function keyBytes(key: string | Uint8Array): Uint8Array {
  let bytes: Uint8Array;
  if (typeof key === 'string') bytes = Buffer.from(key, 'utf8');
  else if (key instanceof Uint8Array) bytes = key;
  else throw new MembershipConfigError('key', `must be a string or a Uint8Array, got ${typeof key}`);
  if (bytes.length < MIN_KEY_BYTES) {
    throw new MembershipConfigError('key', `must be at least ${MIN_KEY_BYTES} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/** Derives a 32-byte key for `domain` from the cluster key with HKDF-SHA256. @public */
export function deriveKey(clusterKey: string | Uint8Array, domain: string = MEMBERSHIP_DOMAIN): Buffer {
  return Buffer.from(hkdfSync('sha256', keyBytes(clusterKey), Buffer.alloc(0), Buffer.from(domain, 'utf8'), 32));
}

/** HMAC-SHA256 of `data` under `key`. @public */
export function sign(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Constant-time check that `mac` is the HMAC-SHA256 of `data` under `key`. @public */
export function verify(key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean {
  if (mac.length !== MAC_LENGTH) return false;
  return timingSafeEqual(sign(key, data), mac);
}
