/**
 * AES-256-GCM and XChaCha20-Poly1305 with the nonce and tag laid out as
 * nonce ‖ ciphertext ‖ tag, through OpenSSL (node:crypto), for the named keys
 * applications use (kms/named-keys). Unlike aead.ts these carry no format byte
 * (the KMS ciphertext format has its own) and report a failed open as null:
 * the caller knows whether that is the caller's fault or the store's.
 *
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): ChaCha20-Poly1305 under the
 * HChaCha20 subkey of the first 16 nonce bytes, with nonce 0⁴ ‖ nonce[16..24].
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { xchachaIetfNonce, xchachaSubkey } from './aead.js';

export type RawAead = 'aes-256-gcm' | 'xchacha20-poly1305';

const TAG = 16;
export const NONCE_BYTES: Readonly<Record<RawAead, number>> = { 'aes-256-gcm': 12, 'xchacha20-poly1305': 24 };

// As in aead.ts: one CSPRNG call costs about as much as a small seal, so nonces come from a block
// drawn at once (a batch of 1,000 encrypts spent an eighth of its time there). A used block is
// dropped, never refilled in place: a nonce handed out is never overwritten or handed out again.
const NONCE_BLOCK_BYTES = 256 * 24;
let nonceBlock = new Uint8Array(0);
let nonceOffset = 0;

function freshNonce(bytes: number): Uint8Array {
  if (nonceOffset + bytes > nonceBlock.length) {
    nonceBlock = randomFillSync(new Uint8Array(NONCE_BLOCK_BYTES));
    nonceOffset = 0;
  }
  const nonce = nonceBlock.subarray(nonceOffset, nonceOffset + bytes);
  nonceOffset += bytes;
  return nonce;
}

function cipherFor(alg: RawAead, key: Uint8Array, nonce: Uint8Array): { name: 'aes-256-gcm' | 'chacha20-poly1305'; key: Uint8Array; iv: Uint8Array } {
  if (alg === 'aes-256-gcm') return { name: 'aes-256-gcm', key, iv: nonce };
  return { name: 'chacha20-poly1305', key: xchachaSubkey(key, nonce), iv: xchachaIetfNonce(nonce) };
}

/** nonce ‖ ciphertext ‖ tag. `nonce` defaults to fresh random bytes (tests pass known ones). */
export function rawSeal(alg: RawAead, key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, nonce: Uint8Array = freshNonce(NONCE_BYTES[alg])): Uint8Array {
  return rawSealAfter(EMPTY, alg, key, plaintext, aad, nonce);
}

const EMPTY = new Uint8Array(0);

/** header ‖ nonce ‖ ciphertext ‖ tag in one buffer (the KMS ciphertext format puts its header first: no second copy). */
export function rawSealAfter(
  header: Uint8Array,
  alg: RawAead,
  key: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  nonce: Uint8Array = freshNonce(NONCE_BYTES[alg]),
): Uint8Array {
  if (nonce.length !== NONCE_BYTES[alg]) throw new RangeError(`${alg} takes a ${NONCE_BYTES[alg]}-byte nonce`);
  const c = cipherFor(alg, key, nonce);
  try {
    const cipher = c.name === 'aes-256-gcm' ? createCipheriv(c.name, c.key, c.iv, { authTagLength: TAG }) : createCipheriv(c.name, c.key, c.iv, { authTagLength: TAG });
    cipher.setAAD(aad, { plaintextLength: plaintext.length });
    const body = cipher.update(plaintext);
    cipher.final();
    const start = header.length + nonce.length;
    const out = new Uint8Array(start + body.length + TAG);
    out.set(header, 0);
    out.set(nonce, header.length);
    out.set(body, start);
    out.set(cipher.getAuthTag(), start + body.length);
    return out;
  } finally {
    if (c.key !== key) c.key.fill(0);
  }
}

/** The plaintext, or null when the key, nonce, AAD or any byte does not match. */
export function rawOpen(alg: RawAead, key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
  const n = NONCE_BYTES[alg];
  if (sealed.length < n + TAG) return null;
  const nonce = sealed.subarray(0, n);
  const bodyLength = sealed.length - n - TAG;
  const c = cipherFor(alg, key, nonce);
  try {
    const decipher = c.name === 'aes-256-gcm' ? createDecipheriv(c.name, c.key, c.iv, { authTagLength: TAG }) : createDecipheriv(c.name, c.key, c.iv, { authTagLength: TAG });
    decipher.setAAD(aad, { plaintextLength: bodyLength });
    decipher.setAuthTag(sealed.subarray(n + bodyLength));
    const opened = decipher.update(sealed.subarray(n, n + bodyLength));
    const plaintext = new Uint8Array(opened.buffer, opened.byteOffset, opened.byteLength);
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      return null;
    }
    return plaintext;
  } finally {
    if (c.key !== key) c.key.fill(0);
  }
}
