/**
 * Authenticated encryption for everything Coffer stores: XChaCha20-Poly1305
 * from @noble/ciphers. Its 192-bit random nonces make nonce reuse negligible
 * however many messages one key seals, so there is no 2^32 usage bound to
 * track as there would be with AES-GCM and 96-bit random nonces.
 *
 * Envelope: [format byte][24-byte nonce][ciphertext ‖ 16-byte tag]. The
 * format byte leaves room for another algorithm without a data migration.
 */
import { randomBytes } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { IntegrityError } from '../errors.js';

/** Raw key bytes. Whoever holds one zeroes it (`zeroize`) when done with it. */
export type KeyMaterial = Uint8Array;

export const KEY_BYTES = 32;
const FORMAT_XCHACHA20_POLY1305 = 1;
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES;

export function generateKeyMaterial(): KeyMaterial {
  return new Uint8Array(randomBytes(KEY_BYTES));
}

/** Overwrites key bytes in place so they do not linger in the heap. */
export function zeroize(...keys: Array<Uint8Array | null | undefined>): void {
  for (const key of keys) key?.fill(0);
}

/** Encrypts `plaintext` under `key`, binding `aad`; returns a self-describing envelope. */
export function sealWithKey(key: KeyMaterial, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + plaintext.length + TAG_BYTES);
  out[0] = FORMAT_XCHACHA20_POLY1305;
  const nonce = randomBytes(NONCE_BYTES);
  out.set(nonce, 1);
  // Encrypt straight into the output buffer: no intermediate copy of the ciphertext.
  xchacha20poly1305(key, nonce, aad).encrypt(plaintext, out.subarray(HEADER_BYTES));
  return out;
}

/**
 * Decrypts an envelope made by `sealWithKey` with the same key and AAD.
 * Any mismatch (altered bytes, wrong key, wrong context) raises IntegrityError
 * naming `what`, never the data.
 */
export function openWithKey(key: KeyMaterial, envelope: Uint8Array, aad: Uint8Array, what: string): Uint8Array {
  if (envelope.length < HEADER_BYTES + TAG_BYTES || envelope[0] !== FORMAT_XCHACHA20_POLY1305) {
    throw new IntegrityError(what);
  }
  const nonce = envelope.subarray(1, HEADER_BYTES);
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(envelope.subarray(HEADER_BYTES));
  } catch {
    throw new IntegrityError(what);
  }
}
