/**
 * Authenticated encryption for everything Coffer stores: XChaCha20-Poly1305. Its 192-bit random
 * nonces make nonce reuse negligible however many messages one key seals, so there is no 2^32
 * usage bound to track as there would be with AES-GCM and 96-bit random nonces.
 *
 * Envelope: [format byte][24-byte nonce][ciphertext ‖ 16-byte tag]. The format byte leaves room
 * for another algorithm without a data migration.
 *
 * One implementation for every seal and open (reads, bulk reads, writes, the KEK rewrap job, the
 * root key checks): OpenSSL's ChaCha20-Poly1305 (RFC 8439) through node:crypto, under the subkey
 * HChaCha20(key, nonce[0..16]) with the nonce 0x00000000 ‖ nonce[16..24] — which is exactly
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha). node:crypto has no HChaCha20, so that one block
 * function comes from @noble/ciphers; the rest of the AEAD in JavaScript was a quarter of the
 * server's CPU under bulk reads. test/unit/aead-native.test.ts checks, as a property, that these
 * envelopes are byte-identical to noble's xchacha20poly1305 and that each opens the other's.
 */
import { createCipheriv, createDecipheriv, getCiphers, randomFillSync } from 'node:crypto';
import { hchacha } from '@noble/ciphers/chacha.js';
import { IntegrityError } from '../errors.js';

/** Raw key bytes. Whoever holds one zeroes it (`zeroize`) when done with it. */
export type KeyMaterial = Uint8Array;

export const KEY_BYTES = 32;
const FORMAT_XCHACHA20_POLY1305 = 1;
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES;
const CIPHER = 'chacha20-poly1305';

// Fail at start-up, not on the first read, on a Node built without it (e.g. OpenSSL in FIPS mode).
if (!getCiphers().includes(CIPHER)) throw new Error(`node:crypto lacks ${CIPHER}, which Coffer's envelopes need`);

export function generateKeyMaterial(): KeyMaterial {
  // Straight into the key's own bytes: `new Uint8Array(randomBytes(n))` would leave a copy in
  // Node's shared Buffer pool that no zeroize reaches.
  return randomFillSync(new Uint8Array(KEY_BYTES));
}

// Nonces are public (they are stored in the envelope) but must never repeat. One call into the
// CSPRNG costs about as much as a whole small ChaCha20-Poly1305 seal, so seals take their nonce
// from a block of 256 drawn at once; a used block is dropped, never refilled in place, so a nonce
// handed out is never overwritten or handed out again.
const NONCES_PER_BLOCK = 256;
let nonceBlock = new Uint8Array(0);
let nonceOffset = 0;

function nextNonce(): Uint8Array {
  if (nonceOffset === nonceBlock.length) {
    nonceBlock = randomFillSync(new Uint8Array(NONCES_PER_BLOCK * NONCE_BYTES));
    nonceOffset = 0;
  }
  const nonce = nonceBlock.subarray(nonceOffset, nonceOffset + NONCE_BYTES);
  nonceOffset += NONCE_BYTES;
  return nonce;
}

/** Overwrites key bytes in place so they do not linger in the heap. */
export function zeroize(...keys: Array<Uint8Array | null | undefined>): void {
  for (const key of keys) key?.fill(0);
}

// Scratch for one subkey derivation at a time (every use below is synchronous, so no two
// overlap): key and nonce-prefix words in, subkey words out, and the 12-byte IETF nonce. noble's
// hchacha takes little-endian byte views as 32-bit words (it swaps on big-endian hosts), so the
// bytes are copied in as they are. Zeroed after every use: no key or subkey stays behind in it.
const scratch = new ArrayBuffer(KEY_BYTES + 16 + KEY_BYTES + 12);
const keyBytes = new Uint8Array(scratch, 0, KEY_BYTES);
const keyWords = new Uint32Array(scratch, 0, 8);
const prefixBytes = new Uint8Array(scratch, KEY_BYTES, 16);
const prefixWords = new Uint32Array(scratch, KEY_BYTES, 4);
const subkeyBytes = new Uint8Array(scratch, KEY_BYTES + 16, KEY_BYTES);
const subkeyWords = new Uint32Array(scratch, KEY_BYTES + 16, 8);
const ietfNonce = new Uint8Array(scratch, 2 * KEY_BYTES + 16, 12);
const scratchBytes = new Uint8Array(scratch);
const SIGMA = new Uint32Array(new TextEncoder().encode('expand 32-byte k').buffer);

/** Fills `subkeyBytes` and `ietfNonce` for `key` and a 24-byte `nonce`; the caller zeroes `scratch`. */
function deriveSubkey(key: KeyMaterial, nonce: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`XChaCha20-Poly1305 keys are ${KEY_BYTES} bytes`);
  keyBytes.set(key);
  prefixBytes.set(nonce.subarray(0, 16));
  hchacha(SIGMA, keyWords, prefixWords, subkeyWords);
  ietfNonce.fill(0, 0, 4);
  ietfNonce.set(nonce.subarray(16, NONCE_BYTES), 4);
}

/**
 * Encrypts `plaintext` under `key`, binding `aad`; returns a self-describing envelope. `nonce`
 * (24 bytes) lets a bulk caller draw randomness for many envelopes at once (`randomNonces`); it
 * must be fresh random bytes, never reused.
 */
export function sealWithKey(key: KeyMaterial, plaintext: Uint8Array, aad: Uint8Array, nonce: Uint8Array = nextNonce()): Uint8Array {
  if (nonce.length < NONCE_BYTES) throw new RangeError(`nonces are ${NONCE_BYTES} bytes`);
  try {
    deriveSubkey(key, nonce);
    const cipher = createCipheriv(CIPHER, subkeyBytes, ietfNonce, { authTagLength: TAG_BYTES });
    scratchBytes.fill(0); // OpenSSL holds its own copy now
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
    scratchBytes.fill(0);
  }
}

/**
 * Decrypts an envelope made by `sealWithKey` with the same key and AAD. Any mismatch (altered
 * bytes, wrong key, wrong context) raises IntegrityError naming `what`, never the data.
 */
export function openWithKey(key: KeyMaterial, envelope: Uint8Array, aad: Uint8Array, what: string): Uint8Array {
  // A key of another length (say, rebuilt from malformed shares) is a wrong key like any other.
  if (key.length !== KEY_BYTES || envelope.length < HEADER_BYTES + TAG_BYTES || envelope[0] !== FORMAT_XCHACHA20_POLY1305) {
    throw new IntegrityError(what);
  }
  const bodyLength = envelope.length - HEADER_BYTES - TAG_BYTES;
  let decipher;
  try {
    deriveSubkey(key, envelope.subarray(1, HEADER_BYTES));
    decipher = createDecipheriv(CIPHER, subkeyBytes, ietfNonce, { authTagLength: TAG_BYTES });
  } finally {
    scratchBytes.fill(0);
  }
  decipher.setAAD(aad, { plaintextLength: bodyLength });
  decipher.setAuthTag(envelope.subarray(HEADER_BYTES + bodyLength));
  // A view, not a copy: when the caller zeroes the plaintext, no second copy is left behind.
  const opened = decipher.update(envelope.subarray(HEADER_BYTES, HEADER_BYTES + bodyLength));
  const plaintext = new Uint8Array(opened.buffer, opened.byteOffset, opened.byteLength);
  try {
    decipher.final();
  } catch {
    plaintext.fill(0); // unauthenticated bytes: never handed out
    throw new IntegrityError(what);
  }
  return plaintext;
}

/** Random bytes for `count` nonces at once (one call into the CSPRNG instead of `count`). */
export function randomNonces(count: number): Uint8Array {
  return randomFillSync(new Uint8Array(count * NONCE_BYTES));
}
export const NONCE_LENGTH = NONCE_BYTES;

/**
 * The HChaCha20 subkey for `key` and a 24-byte XChaCha nonce, as a fresh array the caller
 * zeroes: for other XChaCha20-Poly1305 layouts over OpenSSL (crypto/raw-aead.ts).
 */
export function xchachaSubkey(key: KeyMaterial, nonce: Uint8Array): Uint8Array {
  try {
    deriveSubkey(key, nonce);
    return subkeyBytes.slice();
  } finally {
    scratchBytes.fill(0);
  }
}

/** The 12-byte ChaCha20-Poly1305 nonce 0⁴ ‖ nonce[16..24] of a 24-byte XChaCha nonce. */
export function xchachaIetfNonce(nonce: Uint8Array): Uint8Array {
  const iv = new Uint8Array(12);
  iv.set(nonce.subarray(16, NONCE_BYTES), 4);
  return iv;
}
