/**
 * Signatures with named keys: Ed25519 (RFC 8032, pure: messages only), ECDSA
 * P-256/P-384 and RSA (PSS with salt = digest length, or PKCS#1 v1.5), over a
 * message or over a digest the caller computed (prehashed).
 *
 * Messages go through node:crypto. A prehashed digest cannot (node always
 * hashes its input), so: RSA PKCS#1 v1.5 signs DigestInfo ‖ digest with
 * OpenSSL's private-key RSA and PKCS#1 type-1 padding; RSA-PSS encodes
 * EMSA-PSS (RFC 8017 §9.1) here and applies raw RSA through OpenSSL; ECDSA
 * uses @noble/curves on the digest. Each is checked against node:crypto's
 * message signatures in test/unit/kms-crypto.test.ts.
 */
import { constants, createHash, privateEncrypt, publicDecrypt, randomBytes, sign as nodeSign, timingSafeEqual, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { p256, p384 } from '@noble/curves/nist.js';
import type { KmsHashAlgorithm, KmsKeyType, KmsMarshaling, KmsSignatureAlgorithm } from '@coffer/sdk/api';
import { badRequest } from '../../errors.js';
import { HASHES, KEY_TYPES } from './key-types.js';

export interface SignOptions {
  prehashed: boolean;
  hash: KmsHashAlgorithm | undefined;
  signatureAlgorithm: KmsSignatureAlgorithm | undefined;
  marshaling: KmsMarshaling | undefined;
}

/** The DER prefix of DigestInfo for each hash (RFC 8017 §9.2 note 1). */
const DIGEST_INFO: Readonly<Record<KmsHashAlgorithm, Buffer>> = {
  'sha2-256': Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  'sha2-384': Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  'sha2-512': Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

export interface ResolvedSign {
  prehashed: boolean;
  hash: KmsHashAlgorithm;
  signatureAlgorithm: KmsSignatureAlgorithm;
  marshaling: KmsMarshaling;
}

/** The request's options, checked against the key type: every mismatch is a clear 400. */
export function resolveSignOptions(type: KmsKeyType, o: SignOptions, input: Uint8Array): ResolvedSign {
  const spec = KEY_TYPES[type];
  if (spec.family === 'ed25519') {
    if (o.prehashed) throw badRequest('ed25519 keys sign messages, not digests (pure Ed25519, RFC 8032): send the message without prehashed');
    if (o.hash !== undefined) throw badRequest('ed25519 takes no hash_algorithm');
  }
  if (spec.family !== 'rsa' && o.signatureAlgorithm !== undefined) throw badRequest('signature_algorithm applies to RSA keys only');
  if (spec.family !== 'ecdsa' && o.marshaling !== undefined) throw badRequest('marshaling_algorithm applies to ECDSA keys only');
  const hash = o.hash ?? spec.hash ?? 'sha2-512';
  if (!(hash in HASHES)) throw badRequest('hash_algorithm is one of sha2-256, sha2-384, sha2-512');
  if (o.signatureAlgorithm !== undefined && o.signatureAlgorithm !== 'pss' && o.signatureAlgorithm !== 'pkcs1v15') {
    throw badRequest('signature_algorithm is "pss" or "pkcs1v15"');
  }
  if (o.marshaling !== undefined && o.marshaling !== 'asn1' && o.marshaling !== 'jws') throw badRequest('marshaling_algorithm is "asn1" or "jws"');
  if (o.prehashed && input.length !== HASHES[hash].bytes) {
    throw badRequest(`a prehashed ${hash} digest is ${HASHES[hash].bytes} bytes, not ${input.length}`);
  }
  return { prehashed: o.prehashed, hash, signatureAlgorithm: o.signatureAlgorithm ?? 'pss', marshaling: o.marshaling ?? 'asn1' };
}

type Resolved = ResolvedSign;

export function signWith(type: KmsKeyType, key: KeyObject, input: Uint8Array, o: Resolved): Uint8Array {
  const spec = KEY_TYPES[type];
  const node = HASHES[o.hash].node;
  switch (spec.family) {
    case 'ed25519':
      return nodeSign(null, input, key);
    case 'ecdsa': {
      const dsaEncoding = o.marshaling === 'jws' ? 'ieee-p1363' : 'der';
      if (!o.prehashed) return nodeSign(node, input, { key, dsaEncoding });
      const d = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
      try {
        return curveOf(type).sign(input, d, { prehash: false, format: o.marshaling === 'jws' ? 'compact' : 'der' });
      } finally {
        d.fill(0);
      }
    }
    case 'rsa': {
      if (!o.prehashed) {
        const padding = o.signatureAlgorithm === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
        return nodeSign(node, input, { key, padding, saltLength: HASHES[o.hash].bytes });
      }
      const k = modulusBytes(key);
      const encoded = o.signatureAlgorithm === 'pss' ? emsaPssEncode(input, o.hash, modulusBits(key) - 1, k) : pkcs1v15Encode(input, o.hash, k);
      // Raw RSA with the private key (m^d mod n) over the block padded here.
      return privateEncrypt({ key, padding: constants.RSA_NO_PADDING }, encoded);
    }
    default:
      throw badRequest(`a ${type} key does not sign`);
  }
}

/**
 * `signWith`, with message signatures made on libuv's thread pool (node:crypto's callback form)
 * instead of the event loop: an Ed25519 signature is ~100 µs of OpenSSL on the loaded bench
 * machine (~20 µs on the loop this way), an RSA-4096 one milliseconds, time in which the loop
 * served nothing else. Prehashed signatures (custom padding, noble) stay synchronous.
 */
export async function signOffLoop(type: KmsKeyType, key: KeyObject, input: Uint8Array, o: Resolved): Promise<Uint8Array> {
  const family = KEY_TYPES[type].family;
  if (o.prehashed || (family !== 'ed25519' && family !== 'ecdsa' && family !== 'rsa')) return signWith(type, key, input, o);
  const node = family === 'ed25519' ? null : HASHES[o.hash].node;
  const options =
    family === 'ed25519'
      ? key
      : family === 'ecdsa'
        ? { key, dsaEncoding: o.marshaling === 'jws' ? ('ieee-p1363' as const) : ('der' as const) }
        : { key, padding: o.signatureAlgorithm === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING, saltLength: HASHES[o.hash].bytes };
  return new Promise((resolve, reject) => nodeSign(node, input, options, (err, signature) => (err ? reject(err) : resolve(signature))));
}

export function verifyWith(type: KmsKeyType, key: KeyObject, input: Uint8Array, signature: Uint8Array, o: Resolved): boolean {
  const spec = KEY_TYPES[type];
  const node = HASHES[o.hash].node;
  switch (spec.family) {
    case 'ed25519':
      return nodeVerify(null, input, key, signature);
    case 'ecdsa': {
      const dsaEncoding = o.marshaling === 'jws' ? 'ieee-p1363' : 'der';
      if (!o.prehashed) return nodeVerify(node, input, { key, dsaEncoding }, signature);
      const jwk = key.export({ format: 'jwk' });
      const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
      try {
        return curveOf(type).verify(signature, input, point, { prehash: false, format: o.marshaling === 'jws' ? 'compact' : 'der', lowS: false });
      } catch {
        return false;
      }
    }
    case 'rsa': {
      if (!o.prehashed) {
        const padding = o.signatureAlgorithm === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
        return nodeVerify(node, input, { key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
      }
      const k = modulusBytes(key);
      if (signature.length !== k) return false;
      let em: Buffer;
      try {
        // Raw RSA with the public key: s^e mod n (OpenSSL refuses s ≥ n).
        em = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature);
      } catch {
        return false;
      }
      if (o.signatureAlgorithm === 'pkcs1v15') {
        const expected = pkcs1v15Encode(input, o.hash, k);
        return timingSafeEqual(em, expected);
      }
      return emsaPssVerify(input, em, o.hash, modulusBits(key) - 1);
    }
    default:
      throw badRequest(`a ${type} key does not verify signatures`);
  }
}

const curveOf = (type: KmsKeyType) => (type === 'ecdsa-p384' ? p384 : p256);

function modulusBits(key: KeyObject): number {
  return key.asymmetricKeyDetails!.modulusLength!;
}
function modulusBytes(key: KeyObject): number {
  return Math.ceil(modulusBits(key) / 8);
}

/** EMSA-PKCS1-v1_5 (RFC 8017 §9.2) of a digest: 00 01 FF… 00 ‖ DigestInfo ‖ digest, k bytes. */
function pkcs1v15Encode(digest: Uint8Array, hash: KmsHashAlgorithm, k: number): Buffer {
  const t = Buffer.concat([DIGEST_INFO[hash], digest]);
  const out = Buffer.alloc(k, 0xff);
  out[0] = 0;
  out[1] = 1;
  out[k - t.length - 1] = 0;
  t.copy(out, k - t.length);
  return out;
}

function mgf1(seed: Uint8Array, length: number, hash: KmsHashAlgorithm): Buffer {
  const node = HASHES[hash].node;
  const out = Buffer.alloc(length);
  const counter = Buffer.alloc(4);
  for (let i = 0, done = 0; done < length; i++) {
    counter.writeUInt32BE(i);
    const block = createHash(node).update(seed).update(counter).digest();
    done += block.copy(out, done);
  }
  return out;
}

/** EMSA-PSS-ENCODE (RFC 8017 §9.1.1), salt as long as the digest, left-padded with zeros to k bytes. */
function emsaPssEncode(mHash: Uint8Array, hash: KmsHashAlgorithm, emBits: number, k: number): Buffer {
  const hLen = HASHES[hash].bytes;
  const emLen = Math.ceil(emBits / 8);
  const salt = randomBytes(hLen);
  const h = createHash(HASHES[hash].node).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  const db = Buffer.alloc(emLen - hLen - 1);
  db[db.length - hLen - 1] = 1;
  salt.copy(db, db.length - hLen);
  const mask = mgf1(h, db.length, hash);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= 0xff >> (8 * emLen - emBits);
  const out = Buffer.alloc(k);
  Buffer.concat([db, h, Buffer.from([0xbc])]).copy(out, k - emLen);
  return out;
}

/** EMSA-PSS-VERIFY (RFC 8017 §9.1.2) of `m` (k bytes, raw RSA output) against the digest; any salt length. */
function emsaPssVerify(mHash: Uint8Array, m: Buffer, hash: KmsHashAlgorithm, emBits: number): boolean {
  const hLen = HASHES[hash].bytes;
  const emLen = Math.ceil(emBits / 8);
  for (let i = 0; i < m.length - emLen; i++) if (m[i] !== 0) return false;
  const em = m.subarray(m.length - emLen);
  if (emLen < hLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const maskedDb = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topBits = 0xff >> (8 * emLen - emBits);
  if ((maskedDb[0]! & ~topBits) !== 0) return false;
  const mask = mgf1(h, maskedDb.length, hash);
  const db = Buffer.alloc(maskedDb.length);
  for (let i = 0; i < db.length; i++) db[i] = maskedDb[i]! ^ mask[i]!;
  db[0]! &= topBits;
  const one = db.indexOf(1);
  if (one < 0 || db.subarray(0, one).some((b) => b !== 0)) return false;
  const salt = db.subarray(one + 1);
  const expected = createHash(HASHES[hash].node).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  return timingSafeEqual(expected, h);
}
