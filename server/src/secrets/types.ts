/**
 * Secret types and what each requires of its `data`. Certificates and keys
 * must parse as PEM so a broken paste fails at write time, not at 3 a.m. when
 * a deploy tries to use it. Messages never echo the values.
 */
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import type { SecretType } from '@coffer/sdk/api';
import { badRequest } from '../errors.js';

export { SECRET_TYPES, type SecretType } from '@coffer/sdk/api';

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function requireField(data: Record<string, string>, field: string, type: SecretType): string {
  const value = data[field];
  if (value === undefined || value === '') throw badRequest(`a ${type} secret needs a non-empty "${field}" field`);
  return value;
}

function parseCertificates(pem: string, field: string): X509Certificate[] {
  const blocks = pem.match(CERT_BLOCK);
  if (!blocks) throw badRequest(`"${field}" must hold one or more PEM certificates (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw badRequest(`"${field}": certificate ${i + 1} is not a valid X.509 certificate`);
    }
  });
}

function parsePrivateKey(pem: string, field: string) {
  if (!pem.includes('-----BEGIN')) throw badRequest(`"${field}" must be a PEM private key`);
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    const encrypted = /passphrase|encrypted/i.test((err as Error).message);
    throw badRequest(`"${field}" is not a valid PEM private key${encrypted ? ' (encrypted keys are not accepted)' : ''}`);
  }
}

function parsePublicKey(pem: string, field: string) {
  if (!pem.includes('-----BEGIN')) throw badRequest(`"${field}" must be a PEM public key`);
  try {
    return createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw badRequest(`"${field}" is not a valid PEM public key`);
  }
}

/**
 * Checks `data` against its type:
 * - password: `password`; token: `token`
 * - certificate: `certificate` (PEM chain, leaf first); optional `private_key` that must match the leaf
 * - key: `private_key` and/or `public_key` (PEM); when both, they must be a pair
 * - generic: any string fields
 */
export function validateSecretData(type: SecretType, data: Record<string, string>): void {
  switch (type) {
    case 'generic':
      return;
    case 'password':
      requireField(data, 'password', type);
      return;
    case 'token':
      requireField(data, 'token', type);
      return;
    case 'certificate': {
      const [leaf] = parseCertificates(requireField(data, 'certificate', type), 'certificate');
      if (data.private_key !== undefined) {
        const key = parsePrivateKey(data.private_key, 'private_key');
        if (!leaf!.checkPrivateKey(key)) throw badRequest('"private_key" does not match the certificate');
      }
      return;
    }
    case 'key': {
      if (data.private_key === undefined && data.public_key === undefined) {
        throw badRequest('a key secret needs a "private_key" or a "public_key" field (PEM)');
      }
      const priv = data.private_key !== undefined ? parsePrivateKey(data.private_key, 'private_key') : undefined;
      const pub = data.public_key !== undefined ? parsePublicKey(data.public_key, 'public_key') : undefined;
      if (priv && pub) {
        const derived = createPublicKey(priv).export({ format: 'der', type: 'spki' });
        const given = pub.export({ format: 'der', type: 'spki' });
        if (!derived.equals(given)) throw badRequest('"public_key" does not match "private_key"');
      }
      return;
    }
  }
}
