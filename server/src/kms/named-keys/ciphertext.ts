/**
 * The self-describing strings the KMS hands to applications.
 *
 * Ciphertext:  coffer:v<version>:<base64>
 *   <version>  the key version that encrypted, decimal, no leading zero
 *   <base64>   standard base64 (with padding) of
 *                format (1 byte) ‖ key tag (8 bytes) ‖ body
 *   format 1   aes256-gcm:          body = nonce (12) ‖ ciphertext ‖ tag (16)
 *   format 2   xchacha20-poly1305:  body = nonce (24) ‖ ciphertext ‖ tag (16)
 *   format 3   rsa-*:               body = RSAES-OAEP ciphertext (SHA-256, MGF1-SHA-256)
 *   key tag    the first 8 bytes of SHA-256("coffer/kms-key-tag\0" ‖ key id): which key
 *              made it, so a ciphertext given to the wrong key is told apart from a
 *              damaged one. It names the key's id, never anything of its material.
 *   AAD        (AEAD associated data; OAEP label for RSA) the UTF-8 JSON
 *              ["coffer/v1","kms-data","<key id>",<version>,"<base64 of the caller's associated_data>"]
 *              (crypto/context.ts aad.kmsData): a ciphertext opens only under the key and
 *              version that made it, with the same associated data.
 *
 * Signature and HMAC:  coffer:v<version>:<base64 of the signature or MAC bytes>
 *
 * Every way a string can be wrong is a CofferError('invalid_request') saying
 * which; nothing malformed ever reaches a cipher.
 */
import { createHash } from 'node:crypto';
import { badRequest } from '../../errors.js';

const PREFIX = /^coffer:v([1-9][0-9]{0,8}):([A-Za-z0-9+/]*={0,2})$/;
export const KEY_TAG_BYTES = 8;
const HEADER = 1 + KEY_TAG_BYTES;

// A SHA-256 per ciphertext made or checked was a tenth of a batch's time: tags are remembered by
// key id (ids are not secret; a full map is simply emptied).
const tags = new Map<string, Uint8Array>();
const MAX_TAGS = 4096;

/** Identifies a key (by its id) inside its ciphertexts. Shared: read it, do not change it. */
export function keyTag(keyId: string): Uint8Array {
  let tag = tags.get(keyId);
  if (!tag) {
    tag = new Uint8Array(createHash('sha256').update('coffer/kms-key-tag\0').update(keyId).digest().subarray(0, KEY_TAG_BYTES));
    if (tags.size >= MAX_TAGS) tags.clear();
    tags.set(keyId, tag);
  }
  return tag;
}

/** The bytes before the body: format ‖ key tag. */
export function ciphertextHeader(format: number, keyId: string): Uint8Array {
  const header = new Uint8Array(HEADER);
  header[0] = format;
  header.set(keyTag(keyId), 1);
  return header;
}

export function encodeVersioned(version: number, bytes: Uint8Array): string {
  return `coffer:v${version}:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

/** `coffer:v<n>:<base64>` → version and bytes; `what` names the field in errors. */
export function decodeVersioned(value: string, what: string): { version: number; bytes: Uint8Array } {
  const match = typeof value === 'string' ? PREFIX.exec(value) : null;
  if (!match) throw badRequest(`${what} is not a Coffer KMS value (expected "coffer:v<version>:<base64>")`);
  const b64 = match[2]!;
  const bytes = Buffer.from(b64, 'base64');
  // Node decodes leniently: insist on the canonical form so one value has one spelling.
  if (bytes.toString('base64') !== b64) throw badRequest(`${what} has invalid base64`);
  return { version: Number(match[1]), bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

export function encodeCiphertext(version: number, format: number, keyId: string, body: Uint8Array): string {
  const out = new Uint8Array(HEADER + body.length);
  out.set(ciphertextHeader(format, keyId), 0);
  out.set(body, HEADER);
  return encodeVersioned(version, out);
}

export interface ParsedCiphertext {
  version: number;
  format: number;
  tag: Uint8Array;
  body: Uint8Array;
}

export function parseCiphertext(value: string): ParsedCiphertext {
  const { version, bytes } = decodeVersioned(value, 'ciphertext');
  if (bytes.length <= HEADER) throw badRequest('ciphertext is too short to be a Coffer KMS ciphertext');
  return { version, format: bytes[0]!, tag: bytes.subarray(1, HEADER), body: bytes.subarray(HEADER) };
}

/** Standard base64 from the wire → bytes; `what` names the field in errors. */
export function decodeBase64(value: unknown, what: string): Uint8Array {
  if (typeof value !== 'string') throw badRequest(`${what} must be a base64 string`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw badRequest(`${what} must be standard base64 (with padding)`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
