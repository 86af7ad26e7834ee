/**
 * Key material of named key versions: symmetric keys are raw bytes, private
 * keys PKCS#8 DER. Public keys are never stored: they are derived from the
 * (authenticated) private key whenever they are needed, so a public key
 * altered in the database cannot make a forged signature verify.
 *
 * node:crypto KeyObjects hold their copy inside OpenSSL, which frees it when
 * the object is collected; the byte buffers we handle are zeroed by whoever
 * owns them (see zeroize in crypto/aead.ts).
 */
import { createPrivateKey, createPublicKey, generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import type { KmsKeyType, KmsPublicKey } from '@coffer/sdk/api';
import { KEY_TYPES } from './key-types.js';

type PairSpec = { kind: 'rsa'; modulusLength: number } | { kind: 'ec'; namedCurve: string } | { kind: 'ed25519' };

/** A key pair generated in libuv's thread pool; its private key as PKCS#8 DER. */
function generatePrivateDer(spec: PairSpec): Promise<Buffer> {
  const encoding = { privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _publicKey: Buffer, privateKey: Buffer) => (err ? reject(err) : resolve(privateKey));
    if (spec.kind === 'rsa') generateKeyPair('rsa', { modulusLength: spec.modulusLength, publicExponent: 0x10001, ...encoding }, done);
    else if (spec.kind === 'ec') generateKeyPair('ec', { namedCurve: spec.namedCurve, ...encoding }, done);
    else generateKeyPair('ed25519', encoding, done);
  });
}

/** Fresh material for a new version. Key pairs are generated off the event loop (RSA-4096 takes a while). */
export async function generateMaterial(type: KmsKeyType): Promise<Uint8Array> {
  const spec = KEY_TYPES[type];
  switch (spec.family) {
    case 'aead':
    case 'hmac':
      return new Uint8Array(randomBytes(spec.bytes!));
    case 'rsa':
      return toBytes(await generatePrivateDer({ kind: 'rsa', modulusLength: spec.modulusLength! }));
    case 'ecdsa':
      return toBytes(await generatePrivateDer({ kind: 'ec', namedCurve: spec.namedCurve! }));
    case 'ed25519':
      return toBytes(await generatePrivateDer({ kind: 'ed25519' }));
  }
}

function toBytes(der: Buffer): Uint8Array {
  const bytes = new Uint8Array(der);
  der.fill(0);
  return bytes;
}

/** A private KeyObject from PKCS#8 DER (the caller still zeroes `material`). */
export function privateKeyOf(material: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.from(material.buffer, material.byteOffset, material.byteLength), format: 'der', type: 'pkcs8' });
}

/** The public half, as PEM (SPKI) and JWK. */
export function publicKeyOf(material: Uint8Array): KmsPublicKey {
  return publicKeyInfo(createPublicKey(privateKeyOf(material)));
}

/** A public KeyObject as PEM (SPKI) and JWK. */
export function publicKeyInfo(publicKey: KeyObject): KmsPublicKey {
  const jwk = publicKey.export({ format: 'jwk' });
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(jwk)) if (typeof v === 'string') fields[k] = v;
  return { pem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), jwk: fields };
}
