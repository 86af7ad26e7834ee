// Pure pieces of the HSM/BYOK/escrow work: OAEP-SHA-256 decoding (used when the HSM can only do
// raw RSA), PKCS#11 settings validation, route templates and audit action names.
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { oaepDecodeSha256 } from '@coffer/server/kms/byok';
import { parseEscrowPublicKey, wrapForEscrow } from '@coffer/server/kms/escrow';
import { ConfigError, loadConfig, pkcs11SettingsOf } from '@coffer/server/config';
import { describeRequest, routeTemplate } from '@coffer/server/http/route-template';
import { escrowKeyPair, unwrapEscrow } from '../helpers/byok.js';

describe('OAEP-SHA-256 decoding (RFC 8017 7.1.2)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  /** What the HSM's CKM_RSA_X_509 returns: the padded block. */
  const rawDecrypt = (c: Buffer) => privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, c);

  it.each([0, 1, 32, 200])('recovers a %i-byte message encrypted by node:crypto', (n) => {
    const message = randomBytes(n);
    const c = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, message);
    expect(Buffer.from(oaepDecodeSha256(rawDecrypt(c))).equals(message)).toBe(true);
  });

  it('refuses SHA-1 OAEP, PKCS#1 v1.5 and altered blocks with one uniform error', () => {
    const message = randomBytes(32);
    const sha1 = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, message);
    const v15 = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, message);
    const good = rawDecrypt(publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, message));
    const flipped = Buffer.from(good);
    flipped[100]! ^= 1;
    const leading = Buffer.from(good);
    leading[0] = 1;
    for (const block of [rawDecrypt(sha1), rawDecrypt(v15), flipped, leading, Buffer.alloc(384), Buffer.alloc(10)]) {
      expect(() => oaepDecodeSha256(block)).toThrow('does not unwrap');
    }
  });
});

describe('escrow wrapping', () => {
  it.each(['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const)('%s round-trips with the requester private key', (algorithm) => {
    const { publicPem, privateKey } = escrowKeyPair(2048);
    const kek = randomBytes(32);
    const wrapped = wrapForEscrow(kek, parseEscrowPublicKey(publicPem), algorithm);
    expect(unwrapEscrow(wrapped.toString('base64'), privateKey, algorithm).equals(kek)).toBe(true);
  });

  it('accepts only RSA public keys of 2048-8192 bits', () => {
    expect(() => parseEscrowPublicKey(escrowKeyPair(1024).publicPem)).toThrow('2048');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => parseEscrowPublicKey(ec)).toThrow('RSA');
    expect(() => parseEscrowPublicKey('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----')).toThrow('PEM');
  });
});

describe('PKCS#11 settings', () => {
  const base = { COFFER_SEAL: 'pkcs11', COFFER_PKCS11_MODULE: '/usr/lib/softhsm/libsofthsm2.so' };

  it('needs a module, exactly one of token label / slot, and exactly one of PIN / PIN file', () => {
    expect(() => loadConfig({ COFFER_SEAL: 'pkcs11' })).toThrow(/COFFER_PKCS11_MODULE/);
    expect(() => loadConfig({ ...base, COFFER_PKCS11_PIN: '1' })).toThrow(/TOKEN_LABEL and COFFER_PKCS11_SLOT/);
    expect(() => loadConfig({ ...base, COFFER_PKCS11_TOKEN_LABEL: 't', COFFER_PKCS11_SLOT: '3', COFFER_PKCS11_PIN: '1' })).toThrow(/exactly one/);
    expect(() => loadConfig({ ...base, COFFER_PKCS11_TOKEN_LABEL: 't' })).toThrow(/COFFER_PKCS11_PIN/);
    expect(() => loadConfig({ ...base, COFFER_PKCS11_TOKEN_LABEL: 't', COFFER_PKCS11_PIN: '1', COFFER_PKCS11_PIN_FILE: '/x' })).toThrow(/exactly one/);
    expect(() => loadConfig({ ...base, COFFER_PKCS11_TOKEN_LABEL: 't', COFFER_PKCS11_PIN: '1', COFFER_PKCS11_KEY_LABEL: 'bad label!' })).toThrow(ConfigError);
    const ok = loadConfig({ ...base, COFFER_PKCS11_SLOT: '249780020', COFFER_PKCS11_PIN: '1234' });
    expect(pkcs11SettingsOf(ok)).toMatchObject({ slot: 249780020, pin: '1234', keyLabel: 'coffer-root', sessions: 2 });
    expect(pkcs11SettingsOf(loadConfig({}))).toBeNull();
  });

  it('reads the PIN from its file (one trailing newline dropped) and never puts the PIN in an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-pin-'));
    try {
      writeFileSync(join(dir, 'pin'), 'pin with spaces \n');
      writeFileSync(join(dir, 'empty'), '\n');
      const c = (file: string) => loadConfig({ ...base, COFFER_PKCS11_TOKEN_LABEL: 't', COFFER_PKCS11_PIN_FILE: join(dir, file) });
      expect(pkcs11SettingsOf(c('pin'))!.pin).toBe('pin with spaces ');
      expect(() => pkcs11SettingsOf(c('empty'))).toThrow(/is empty/);
      expect(() => pkcs11SettingsOf(c('missing'))).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('route templates and audit actions', () => {
  it.each([
    ['POST', '/v1/sys/rotate-root', '/v1/sys/rotate-root', 'sys.rotate-root', null],
    ['POST', '/v1/sys/rotate-root/verify', '/v1/sys/rotate-root/verify', 'sys.rotate-root.verify', null],
    ['POST', '/v1/sys/seal-migrate', '/v1/sys/seal-migrate', 'sys.seal-migrate', null],
    ['GET', '/v1/byok/namespaces/pay/import-params?algorithm=X', '/v1/byok/namespaces/:name/import-params', 'byok.import_params', 'pay'],
    ['POST', '/v1/byok/namespaces/pay/import', '/v1/byok/namespaces/:name/import', 'byok.import', 'pay'],
    ['GET', '/v1/byok/root/import-params', '/v1/byok/root/import-params', 'byok.root.import_params', null],
    ['POST', '/v1/byok/root/import', '/v1/byok/root/import', 'byok.root.import', null],
    ['POST', '/v1/escrow/requests', '/v1/escrow/requests', 'escrow.request', null],
    ['GET', '/v1/escrow/requests?namespace=pay', '/v1/escrow/requests', 'escrow.list', null],
    ['GET', '/v1/escrow/requests/abc', '/v1/escrow/requests/:name', 'escrow.read', null],
    ['POST', '/v1/escrow/requests/abc/approve', '/v1/escrow/requests/:name/approve', 'escrow.approve', null],
    ['POST', '/v1/escrow/requests/abc/download', '/v1/escrow/requests/:name/download', 'escrow.download', null],
    ['GET', '/v1/escrow/other/thing', 'unmatched', 'escrow.unknown', null],
  ])('%s %s → %s, %s', (method, url, template, action, namespace) => {
    expect(routeTemplate(url)).toBe(template);
    expect(describeRequest(method, url)).toMatchObject({ action, namespace });
  });
});
