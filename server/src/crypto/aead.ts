/**
 * Authenticated encryption for everything Coffer stores: XChaCha20-Poly1305
 * from @noble/ciphers. Its 192-bit random nonces make nonce reuse negligible
 * however many messages one key seals, so there is no 2^32 usage bound to
 * track as there would be with AES-GCM and 96-bit random nonces.
 *
 * Envelope: [format byte][24-byte nonce][ciphertext ‖ 16-byte tag]. The
 * format byte leaves room for another algorithm without a data migration.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { hchacha, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
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

// --- The same envelope, computed with OpenSSL's ChaCha20-Poly1305 ---------------------------
//
// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) is ChaCha20-Poly1305 (RFC 8439) under a subkey
// HChaCha20(key, nonce[0..16]) with the nonce 0x00000000 ‖ nonce[16..24]. Deriving the subkey
// with noble's HChaCha20 and running node:crypto's chacha20-poly1305 gives byte-identical
// envelopes (cross-checked against noble in test/unit/aead.test.ts), about twice as fast to open
// for small inputs. The rewrap job, which opens and seals every DEK of a namespace, uses these.

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

/** HChaCha20 subkey for `key` and the first 16 nonce bytes. The caller zeroes the result. */
export function xchachaSubkey(key: KeyMaterial, nonce: Uint8Array): Uint8Array {
  const k = new Uint32Array(8);
  const n = new Uint32Array(4);
  const kv = new DataView(key.buffer, key.byteOffset, KEY_BYTES);
  const nv = new DataView(nonce.buffer, nonce.byteOffset, 16);
  for (let i = 0; i < 8; i++) k[i] = kv.getUint32(i * 4, true);
  for (let i = 0; i < 4; i++) n[i] = nv.getUint32(i * 4, true);
  const out = new Uint32Array(8);
  hchacha(SIGMA, k, n, out);
  const subkey = new Uint8Array(KEY_BYTES);
  const sv = new DataView(subkey.buffer);
  for (let i = 0; i < 8; i++) sv.setUint32(i * 4, out[i]!, true);
  k.fill(0);
  out.fill(0);
  return subkey;
}

export function ietfNonce(nonce: Uint8Array): Uint8Array {
  const iv = new Uint8Array(12);
  iv.set(nonce.subarray(16, 24), 4);
  return iv;
}

/**
 * `sealWithKey` through OpenSSL. `nonce` (24 bytes) lets a bulk caller draw randomness for many
 * envelopes at once; it must be fresh random bytes, never reused.
 */
export function sealWithKeyNative(key: KeyMaterial, plaintext: Uint8Array, aad: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_BYTES)): Uint8Array {
  const subkey = xchachaSubkey(key, nonce);
  try {
    const cipher = createCipheriv('chacha20-poly1305', subkey, ietfNonce(nonce), { authTagLength: TAG_BYTES });
    cipher.setAAD(aad, { plaintextLength: plaintext.length });
    const body = cipher.update(plaintext);
    cipher.final();
    const out = new Uint8Array(HEADER_BYTES + plaintext.length + TAG_BYTES);
    out[0] = FORMAT_XCHACHA20_POLY1305;
    out.set(nonce.subarray(0, NONCE_BYTES), 1);
    out.set(body, HEADER_BYTES);
    out.set(cipher.getAuthTag(), HEADER_BYTES + plaintext.length);
    return out;
  } finally {
    subkey.fill(0);
  }
}

/** `openWithKey` through OpenSSL: same envelopes, same IntegrityError on any mismatch. */
export function openWithKeyNative(key: KeyMaterial, envelope: Uint8Array, aad: Uint8Array, what: string): Uint8Array {
  if (envelope.length < HEADER_BYTES + TAG_BYTES || envelope[0] !== FORMAT_XCHACHA20_POLY1305) {
    throw new IntegrityError(what);
  }
  const nonce = envelope.subarray(1, HEADER_BYTES);
  const bodyLength = envelope.length - HEADER_BYTES - TAG_BYTES;
  const subkey = xchachaSubkey(key, nonce);
  try {
    const decipher = createDecipheriv('chacha20-poly1305', subkey, ietfNonce(nonce), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad, { plaintextLength: bodyLength });
    decipher.setAuthTag(envelope.subarray(HEADER_BYTES + bodyLength));
    // A view, not a copy: when the caller zeroes the plaintext, no second copy is left behind.
    const opened = decipher.update(envelope.subarray(HEADER_BYTES, HEADER_BYTES + bodyLength));
    const plaintext = new Uint8Array(opened.buffer, opened.byteOffset, opened.byteLength);
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      throw new IntegrityError(what);
    }
    return plaintext;
  } finally {
    subkey.fill(0);
  }
}

/** Random bytes for `count` nonces at once (one call into the CSPRNG instead of `count`). */
export function randomNonces(count: number): Uint8Array {
  return new Uint8Array(randomBytes(count * NONCE_BYTES));
}
export const NONCE_LENGTH = NONCE_BYTES;
