/**
 * What each named key type is and may do. One table, so that the service, the
 * policy mapping and the README read the same facts.
 */
import type { KmsHashAlgorithm, KmsKeyType, KmsOperation } from '@coffer/sdk/api';

export type KeyFamily = 'aead' | 'rsa' | 'ecdsa' | 'ed25519' | 'hmac';

export interface KeyTypeSpec {
  family: KeyFamily;
  operations: readonly KmsOperation[];
  /** Symmetric key length in bytes (aead, hmac). */
  bytes?: number;
  /** Ciphertext format byte (types that encrypt); see ciphertext.ts. */
  format?: number;
  /** The digest a signature or HMAC uses unless the request names one. */
  hash?: KmsHashAlgorithm;
  namedCurve?: 'P-256' | 'P-384';
  modulusLength?: number;
}

const ENCRYPTION = ['encrypt', 'decrypt', 'rewrap', 'datakey'] as const;
const SIGNING = ['sign', 'verify'] as const;

export const KEY_TYPES: Readonly<Record<KmsKeyType, KeyTypeSpec>> = {
  'aes256-gcm': { family: 'aead', operations: ENCRYPTION, bytes: 32, format: 1 },
  'xchacha20-poly1305': { family: 'aead', operations: ENCRYPTION, bytes: 32, format: 2 },
  // Like AWS KMS: asymmetric keys encrypt (small payloads, OAEP) but do not issue data keys.
  'rsa-2048': { family: 'rsa', operations: ['encrypt', 'decrypt', 'rewrap', ...SIGNING], format: 3, hash: 'sha2-256', modulusLength: 2048 },
  'rsa-3072': { family: 'rsa', operations: ['encrypt', 'decrypt', 'rewrap', ...SIGNING], format: 3, hash: 'sha2-256', modulusLength: 3072 },
  'rsa-4096': { family: 'rsa', operations: ['encrypt', 'decrypt', 'rewrap', ...SIGNING], format: 3, hash: 'sha2-256', modulusLength: 4096 },
  'ecdsa-p256': { family: 'ecdsa', operations: SIGNING, hash: 'sha2-256', namedCurve: 'P-256' },
  'ecdsa-p384': { family: 'ecdsa', operations: SIGNING, hash: 'sha2-384', namedCurve: 'P-384' },
  ed25519: { family: 'ed25519', operations: SIGNING },
  // 'verify' checks an HMAC: one capability answers "may this caller check a tag".
  'hmac-sha256': { family: 'hmac', operations: ['hmac', 'verify'], bytes: 32, hash: 'sha2-256' },
  'hmac-sha512': { family: 'hmac', operations: ['hmac', 'verify'], bytes: 64, hash: 'sha2-512' },
};

export const isAsymmetric = (type: KmsKeyType): boolean => {
  const family = KEY_TYPES[type].family;
  return family === 'rsa' || family === 'ecdsa' || family === 'ed25519';
};

/** node:crypto's name of a hash algorithm, and its digest length. */
export const HASHES: Readonly<Record<KmsHashAlgorithm, { node: 'sha256' | 'sha384' | 'sha512'; bytes: number }>> = {
  'sha2-256': { node: 'sha256', bytes: 32 },
  'sha2-384': { node: 'sha384', bytes: 48 },
  'sha2-512': { node: 'sha512', bytes: 64 },
};
