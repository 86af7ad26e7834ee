// Type-specific validation of secret data; messages never echo the values.
import { httpStatus } from '@coffer/server/http/status';
import { generateKeyPairSync } from 'node:crypto';
import { validateSecretData } from '@coffer/server/secrets/types';
import { CofferError } from '@coffer/server/errors';
import { CERT_KEY_PEM, CERT_PEM } from '../fixtures/pem.js';

const pair = () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    priv: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    pub: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
};

function rejects(fn: () => void, fragment: string, secret?: string) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CofferError);
    expect(httpStatus(err as CofferError)).toBe(400);
    expect((err as CofferError).message).toContain(fragment);
    if (secret) expect((err as CofferError).message).not.toContain(secret);
    return;
  }
  throw new Error('expected a rejection');
}

describe('validateSecretData', () => {
  it('accepts any strings for generic', () => {
    expect(() => validateSecretData('generic', { anything: 'goes' })).not.toThrow();
  });

  it('needs password / token fields', () => {
    expect(() => validateSecretData('password', { password: 'pw' })).not.toThrow();
    rejects(() => validateSecretData('password', { passwd: 'pw' }), '"password"');
    rejects(() => validateSecretData('password', { password: '' }), '"password"');
    expect(() => validateSecretData('token', { token: 't' })).not.toThrow();
    rejects(() => validateSecretData('token', { value: 't' }), '"token"');
  });

  it('parses certificates and checks a given key matches', () => {
    expect(() => validateSecretData('certificate', { certificate: CERT_PEM })).not.toThrow();
    expect(() => validateSecretData('certificate', { certificate: CERT_PEM, private_key: CERT_KEY_PEM })).not.toThrow();
    expect(() => validateSecretData('certificate', { certificate: `${CERT_PEM}\n${CERT_PEM}` })).not.toThrow();
    rejects(() => validateSecretData('certificate', { certificate: 'top-secret-garbage' }), 'PEM', 'top-secret-garbage');
    const lines = CERT_PEM.split('\n');
    lines[3] = 'A'.repeat(lines[3]!.length);
    const broken = lines.join('\n');
    rejects(() => validateSecretData('certificate', { certificate: broken }), 'not a valid X.509');
    rejects(() => validateSecretData('certificate', { certificate: CERT_PEM, private_key: pair().priv }), 'does not match');
  });

  it('parses keys and checks a given pair matches', () => {
    const a = pair();
    const b = pair();
    expect(() => validateSecretData('key', { private_key: a.priv })).not.toThrow();
    expect(() => validateSecretData('key', { public_key: a.pub })).not.toThrow();
    expect(() => validateSecretData('key', { private_key: a.priv, public_key: a.pub })).not.toThrow();
    rejects(() => validateSecretData('key', { private_key: a.priv, public_key: b.pub }), 'does not match');
    rejects(() => validateSecretData('key', {}), 'private_key');
    rejects(() => validateSecretData('key', { private_key: 'hunter2-not-a-key' }), 'PEM private key', 'hunter2');
    rejects(
      () => validateSecretData('key', { private_key: '-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----' }),
      'not a valid PEM private key',
      'hunter2',
    );
    rejects(() => validateSecretData('key', { public_key: a.priv.replace(/PRIVATE/g, 'PUBLIC') }), 'public key');
  });
});
