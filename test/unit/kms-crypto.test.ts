// KMS primitives without storage: known-answer vectors for the ciphers and Ed25519, ECDSA and
// RSA signatures checked against node:crypto in both directions (messages and prehashed
// digests), the ciphertext string format, and the KMS capabilities of the policy model.
import { constants, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { CAPABILITIES, KMS_CAPABILITIES, SECRET_CAPABILITIES } from '@coffer/sdk/api';
import { NONCE_BYTES, rawOpen, rawSeal, rawSealAfter } from '@coffer/server/crypto/raw-aead';
import { aad as contexts } from '@coffer/server/crypto/context';
import { CofferError } from '@coffer/server/errors';
import { ciphertextHeader, decodeVersioned, encodeCiphertext, keyTag, parseCiphertext } from '@coffer/server/kms/named-keys/ciphertext';
import { resolveSignOptions, signOffLoop, signWith, verifyWith, type SignOptions } from '@coffer/server/kms/named-keys/signing';
import { compilePolicy, isAllowed, type PolicyRule, type Principal } from '@coffer/server/policy/policy';
import { mayUseKey, maySeeKey } from '@coffer/server/policy/kms';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

function expectInvalid(fn: () => unknown, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(CofferError);
  expect((caught as CofferError).code).toBe('invalid_request');
  if (message) expect((caught as CofferError).message).toMatch(message);
}

describe('AES-256-GCM (GCM spec / NIST test case 16: 256-bit key, 96-bit IV, with AAD)', () => {
  const key = hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
  const iv = hex('cafebabefacedbaddecaf888');
  const pt = hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39');
  const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
  const ct = '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662';
  const tag = '76fc6ece0f4e1768cddf8853bb2d551b';

  it('seals to nonce ‖ ciphertext ‖ tag and opens it', () => {
    const sealed = rawSeal('aes-256-gcm', key, pt, aad, iv);
    expect(toHex(sealed)).toBe(toHex(iv) + ct + tag);
    expect(toHex(rawOpen('aes-256-gcm', key, sealed, aad)!)).toBe(toHex(pt));
  });

  it('test case 14 (zero key, zero IV, one zero block)', () => {
    const sealed = rawSeal('aes-256-gcm', new Uint8Array(32), new Uint8Array(16), new Uint8Array(0), new Uint8Array(12));
    expect(toHex(sealed.subarray(12))).toBe('cea7403d4d606b6e074ec5d3baf39d18' + 'd0d1c8a799996bf0265b98b5d48ab919');
  });

  it('refuses any flipped bit and a different AAD (null, not garbage)', () => {
    const sealed = rawSeal('aes-256-gcm', key, pt, aad, iv);
    for (const i of [0, 12, 30, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[i]! ^= 0x01;
      expect(rawOpen('aes-256-gcm', key, bad, aad)).toBeNull();
    }
    expect(rawOpen('aes-256-gcm', key, sealed, hex('00'))).toBeNull();
    expect(rawOpen('aes-256-gcm', key, sealed.subarray(0, 20), aad)).toBeNull();
  });
});

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03, A.3.1)', () => {
  const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
  const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
  const aad = hex('50515253c0c1c2c3c4c5c6c7');
  const pt = utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
  const expected =
    'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e' +
    'c0875924c1c7987947deafd8780acf49';

  it('seals to the draft\'s ciphertext and tag through OpenSSL, as noble does', () => {
    const sealed = rawSeal('xchacha20-poly1305', key, pt, aad, nonce);
    expect(sealed.length).toBe(NONCE_BYTES['xchacha20-poly1305'] + pt.length + 16);
    expect(toHex(sealed.subarray(24))).toBe(expected);
    expect(toHex(xchacha20poly1305(key, nonce, aad).encrypt(pt))).toBe(expected);
    expect(Buffer.from(rawOpen('xchacha20-poly1305', key, sealed, aad)!).toString()).toBe(Buffer.from(pt).toString());
  });

  it('refuses a flipped bit in the nonce, body or tag', () => {
    const sealed = rawSeal('xchacha20-poly1305', key, pt, aad, nonce);
    for (const i of [3, 20, 40, sealed.length - 2]) {
      const bad = sealed.slice();
      bad[i]! ^= 0x80;
      expect(rawOpen('xchacha20-poly1305', key, bad, aad)).toBeNull();
    }
  });
});

const noOptions: SignOptions = { prehashed: false, hash: undefined, signatureAlgorithm: undefined, marshaling: undefined };

describe('Ed25519 (RFC 8032 §7.1, tests 1 and 2)', () => {
  const PKCS8_PREFIX = '302e020100300506032b657004220420';
  it.each([
    ['9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
    ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
  ])('secret %s', (secret, publicKey, message, signature) => {
    const key = createPrivateKey({ key: Buffer.from(PKCS8_PREFIX + secret, 'hex'), format: 'der', type: 'pkcs8' });
    expect(Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url').toString('hex')).toBe(publicKey);
    const options = resolveSignOptions('ed25519', noOptions, hex(message));
    expect(toHex(signWith('ed25519', key, hex(message), options))).toBe(signature);
    expect(verifyWith('ed25519', key, hex(message), hex(signature), options)).toBe(true);
    expect(verifyWith('ed25519', key, utf8('other'), hex(signature), options)).toBe(false);
  });

  it('refuses a prehashed digest and a hash algorithm (pure Ed25519 only)', () => {
    expectInvalid(() => resolveSignOptions('ed25519', { ...noOptions, prehashed: true }, new Uint8Array(32)), /messages, not digests/);
    expectInvalid(() => resolveSignOptions('ed25519', { ...noOptions, hash: 'sha2-256' }, utf8('m')));
  });
});

describe('aad.kmsData (the AAD of every KMS ciphertext: its bytes must never change)', () => {
  it('is the documented JSON, also when its head is remembered', () => {
    const id = '6f1c3a52-3e0b-4c11-9a51-0d1b2c3d4e5f';
    const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
    for (let i = 0; i < 2; i++) {
      expect(text(contexts.kmsData(id, 1, new Uint8Array(0)))).toBe(`["coffer/v1","kms-data","${id}",1,""]`);
      expect(text(contexts.kmsData(id, 12, utf8('order-42')))).toBe(`["coffer/v1","kms-data","${id}",12,"b3JkZXItNDI="]`);
      const view = new Uint8Array(Buffer.from('xxorder-42xx')).subarray(2, 10);
      expect(text(contexts.kmsData(id, 12, view))).toBe(JSON.stringify(['coffer/v1', 'kms-data', id, 12, 'b3JkZXItNDI=']));
    }
  });
});

describe('signOffLoop (the signing path of the server: node:crypto on the thread pool)', () => {
  const message = utf8('a release to sign');
  it('makes the RFC 8032 signature of signWith (Ed25519 is deterministic)', async () => {
    const key = createPrivateKey({ key: Buffer.from('302e020100300506032b657004220420' + '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex'), format: 'der', type: 'pkcs8' });
    const options = resolveSignOptions('ed25519', noOptions, hex('72'));
    expect(toHex(await signOffLoop('ed25519', key, hex('72'), options))).toBe(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    );
  });

  it('ECDSA in both encodings and RSA PSS (salt = digest length) and PKCS#1 v1.5, messages and prehashed', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    for (const [marshaling, dsaEncoding] of [['asn1', 'der'], ['jws', 'ieee-p1363']] as const) {
      const signature = await signOffLoop('ecdsa-p256', ec, message, resolveSignOptions('ecdsa-p256', { ...noOptions, marshaling }, message));
      expect(verify('sha256', message, { key: ec, dsaEncoding }, signature)).toBe(true);
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const digest = new Uint8Array(createHash('sha384').update(message).digest());
    for (const signatureAlgorithm of ['pss', 'pkcs1v15'] as const) {
      const padding = signatureAlgorithm === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
      const raw = resolveSignOptions('rsa-2048', { ...noOptions, hash: 'sha2-384', signatureAlgorithm }, message);
      const pre = resolveSignOptions('rsa-2048', { ...noOptions, hash: 'sha2-384', signatureAlgorithm, prehashed: true }, digest);
      for (const [input, options] of [[message, raw], [digest, pre]] as const) {
        const signature = await signOffLoop('rsa-2048', rsa, input, options);
        expect(verify('sha384', message, { key: rsa, padding, saltLength: 48 }, signature)).toBe(true);
        if (signatureAlgorithm === 'pkcs1v15') expect(toHex(signature)).toBe(toHex(signWith('rsa-2048', rsa, input, options)));
      }
    }
  });
});

describe('ECDSA against node:crypto', () => {
  const message = utf8('a build artefact to sign');
  it.each([
    ['ecdsa-p256', 'P-256', 'sha2-256', 'sha256'],
    ['ecdsa-p384', 'P-384', 'sha2-384', 'sha384'],
  ] as const)('%s: messages and prehashed digests, DER and JWS encodings, both directions', (type, curve, hash, nodeHash) => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
    const digest = new Uint8Array(createHash(nodeHash).update(message).digest());
    for (const [marshaling, dsaEncoding] of [['asn1', 'der'], ['jws', 'ieee-p1363']] as const) {
      const raw = resolveSignOptions(type, { ...noOptions, marshaling }, message);
      const pre = resolveSignOptions(type, { ...noOptions, marshaling, prehashed: true }, digest);
      const byNode = sign(nodeHash, message, { key: privateKey, dsaEncoding });
      expect(verifyWith(type, privateKey, message, byNode, raw)).toBe(true);
      expect(verifyWith(type, privateKey, digest, byNode, pre)).toBe(true);
      // Signed here over the digest alone: node:crypto verifies it over the message.
      const overDigest = signWith(type, privateKey, digest, pre);
      expect(verify(nodeHash, message, { key: privateKey, dsaEncoding }, overDigest)).toBe(true);
      expect(verify(nodeHash, message, { key: privateKey, dsaEncoding }, signWith(type, privateKey, message, raw))).toBe(true);
      expect(verifyWith(type, privateKey, utf8('something else'), byNode, raw)).toBe(false);
      const wrongDigest = digest.slice();
      wrongDigest[0]! ^= 1;
      expect(verifyWith(type, privateKey, wrongDigest, byNode, pre)).toBe(false);
    }
    expect(hash).toBe(resolveSignOptions(type, noOptions, message).hash);
  });

  it('a prehashed digest of the wrong length is a clear error', () => {
    expectInvalid(() => resolveSignOptions('ecdsa-p256', { ...noOptions, prehashed: true }, new Uint8Array(20)), /32 bytes, not 20/);
  });
});

describe('RSA against node:crypto', () => {
  const message = utf8('release 1.2.3');
  let privateKey: KeyObject;
  beforeAll(() => {
    privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  });

  it.each(['sha2-256', 'sha2-384', 'sha2-512'] as const)('PSS and PKCS#1 v1.5 with %s, message and prehashed, both directions', (hash) => {
    const nodeHash = hash.replace('sha2-', 'sha');
    const digest = new Uint8Array(createHash(nodeHash).update(message).digest());
    for (const signatureAlgorithm of ['pss', 'pkcs1v15'] as const) {
      const padding = signatureAlgorithm === 'pss' ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
      const raw = resolveSignOptions('rsa-2048', { ...noOptions, hash, signatureAlgorithm }, message);
      const pre = resolveSignOptions('rsa-2048', { ...noOptions, hash, signatureAlgorithm, prehashed: true }, digest);
      // node:crypto signs with the longest salt by default: verification accepts any salt length.
      const byNode = sign(nodeHash, message, { key: privateKey, padding });
      expect(verifyWith('rsa-2048', privateKey, message, byNode, raw)).toBe(true);
      expect(verifyWith('rsa-2048', privateKey, digest, byNode, pre)).toBe(true);
      const overDigest = signWith('rsa-2048', privateKey, digest, pre);
      expect(verify(nodeHash, message, { key: privateKey, padding, saltLength: digest.length }, overDigest)).toBe(true);
      expect(verify(nodeHash, message, { key: privateKey, padding }, signWith('rsa-2048', privateKey, message, raw))).toBe(true);
      const forged = overDigest.slice();
      forged[10]! ^= 1;
      expect(verifyWith('rsa-2048', privateKey, digest, forged, pre)).toBe(false);
      expect(verifyWith('rsa-2048', privateKey, digest, forged.subarray(1), pre)).toBe(false);
    }
  });

  it('a PSS signature does not pass as PKCS#1 v1.5 and the reverse', () => {
    const digest = new Uint8Array(createHash('sha256').update(message).digest());
    const pss = resolveSignOptions('rsa-2048', { ...noOptions, prehashed: true }, digest);
    const v15 = resolveSignOptions('rsa-2048', { ...noOptions, prehashed: true, signatureAlgorithm: 'pkcs1v15' }, digest);
    expect(pss.signatureAlgorithm).toBe('pss');
    expect(verifyWith('rsa-2048', privateKey, digest, signWith('rsa-2048', privateKey, digest, pss), v15)).toBe(false);
    expect(verifyWith('rsa-2048', privateKey, digest, signWith('rsa-2048', privateKey, digest, v15), pss)).toBe(false);
  });

  it('options of another key family are refused', () => {
    expectInvalid(() => resolveSignOptions('ecdsa-p256', { ...noOptions, signatureAlgorithm: 'pss' }, message), /RSA keys only/);
    expectInvalid(() => resolveSignOptions('rsa-2048', { ...noOptions, marshaling: 'jws' }, message), /ECDSA keys only/);
  });
});

describe('ciphertext strings', () => {
  const keyId = '6f1d7c1e-9a51-4a31-9a55-0d2b8c2f4a10';

  it('random nonces never repeat, across the blocks they are drawn in; a header goes first, the rest as rawSeal', () => {
    const key = new Uint8Array(32).fill(7);
    for (const alg of ['aes-256-gcm', 'xchacha20-poly1305'] as const) {
      const n = NONCE_BYTES[alg];
      const seen = new Set<string>();
      // More nonces than one block holds (256 × 24 bytes), so block boundaries are crossed.
      for (let i = 0; i < 1200; i++) seen.add(toHex(rawSeal(alg, key, utf8('x'), new Uint8Array(0)).subarray(0, n)));
      expect(seen.size).toBe(1200);
      const header = ciphertextHeader(1, keyId);
      const sealed = rawSealAfter(header, alg, key, utf8('after the header'), utf8('aad'));
      expect(toHex(sealed.subarray(0, header.length))).toBe(toHex(header));
      expect(Buffer.from(rawOpen(alg, key, sealed.subarray(header.length), utf8('aad'))!).toString()).toBe('after the header');
      const nonce = new Uint8Array(n).fill(3);
      expect(toHex(rawSealAfter(header, alg, key, utf8('p'), utf8('a'), nonce).subarray(header.length))).toBe(toHex(rawSeal(alg, key, utf8('p'), utf8('a'), nonce)));
    }
    // The remembered key tag is the computed one, for every key.
    for (const id of [keyId, '00000000-0000-4000-8000-000000000000']) {
      expect(toHex(keyTag(id))).toBe(createHash('sha256').update(`coffer/kms-key-tag\0${id}`).digest('hex').slice(0, 16));
    }
  });

  it('coffer:v<version>:<base64> of format ‖ key tag ‖ body', () => {
    const body = hex('00112233445566778899aabbccddeeff0011');
    const text = encodeCiphertext(7, 2, keyId, body);
    expect(text).toMatch(/^coffer:v7:[A-Za-z0-9+/]+=*$/);
    const bytes = Buffer.from(text.slice('coffer:v7:'.length), 'base64');
    expect(bytes[0]).toBe(2);
    expect(toHex(bytes.subarray(1, 9))).toBe(createHash('sha256').update(`coffer/kms-key-tag\0${keyId}`).digest('hex').slice(0, 16));
    const parsed = parseCiphertext(text);
    expect(parsed).toMatchObject({ version: 7, format: 2 });
    expect(toHex(parsed.tag)).toBe(toHex(keyTag(keyId)));
    expect(toHex(parsed.body)).toBe(toHex(body));
  });

  it.each([
    ['vault:v1:AAAA', /not a Coffer KMS value/],
    ['coffer:v0:AAAA', /not a Coffer KMS value/],
    ['coffer:v01:AAAA', /not a Coffer KMS value/],
    ['coffer:v1:AAAA=', /invalid base64/],
    ['coffer:v1:AAB', /invalid base64/],
    ['coffer:v1:AAF=', /invalid base64/],
    ['coffer:v1:', /too short/],
    ['coffer:v1:AQID', /too short/],
  ])('%s is refused', (text, message) => {
    expectInvalid(() => parseCiphertext(text), message);
  });

  it('a non-string is refused, not thrown as a TypeError', () => {
    expectInvalid(() => decodeVersioned(42 as unknown as string, 'signature'), /signature is not a Coffer KMS value/);
  });
});

describe('KMS capabilities in the policy model', () => {
  const principal = (rules: PolicyRule[]): Principal => {
    const policy = compilePolicy('p', { rules });
    return { accessor: 'a', identity: 'i', displayName: 'd', policies: ['p'], grants: { get: (n) => (n === 'p' ? policy : undefined) } };
  };
  const allow = (capabilities: PolicyRule['capabilities'], path = '*', namespace = 'build'): PolicyRule => ({ namespace, path, capabilities, effect: 'allow' });

  it('keeps the secret capabilities first and in their order (stored policies keep their meaning)', () => {
    expect(CAPABILITIES.slice(0, 7)).toEqual(['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin']);
    expect([...CAPABILITIES]).toEqual([...SECRET_CAPABILITIES, ...KMS_CAPABILITIES]);
  });

  it('a build job may encrypt without decrypting', () => {
    const job = principal([allow(['encrypt', 'datakey'], 'artefacts')]);
    expect(mayUseKey(job, 'encrypt', 'build', 'artefacts')).toBe(true);
    expect(mayUseKey(job, 'datakey', 'build', 'artefacts')).toBe(true);
    for (const action of ['decrypt', 'rewrap', 'sign', 'verify', 'hmac', 'hmac.verify', 'key.rotate', 'key.delete'] as const) {
      expect(mayUseKey(job, action, 'build', 'artefacts')).toBe(false);
    }
    expect(mayUseKey(job, 'encrypt', 'build', 'other-key')).toBe(false);
    expect(mayUseKey(job, 'encrypt', 'prod', 'artefacts')).toBe(false);
    expect(maySeeKey(job, 'build', 'artefacts')).toBe(true);
    expect(maySeeKey(job, 'build', 'other-key')).toBe(false);
  });

  it('secret capabilities grant nothing on keys, and KMS capabilities nothing on secrets', () => {
    const reader = principal([allow(['read', 'list', 'create', 'update', 'delete', 'destroy', 'admin'])]);
    for (const action of ['encrypt', 'decrypt', 'sign', 'key.create'] as const) expect(mayUseKey(reader, action, 'build', 'k')).toBe(false);
    expect(maySeeKey(reader, 'build', 'k')).toBe(false);
    const kms = principal([allow([...KMS_CAPABILITIES])]);
    for (const capability of SECRET_CAPABILITIES) expect(isAllowed(kms, capability, 'build', 'k')).toBe(false);
  });

  it('an explicit deny beats an allow, and key-admin covers the key\'s administration', () => {
    const p = principal([allow(['encrypt', 'decrypt', 'key-admin']), { ...allow(['decrypt'], 'prod-*'), effect: 'deny' }]);
    expect(mayUseKey(p, 'decrypt', 'build', 'dev-key')).toBe(true);
    expect(mayUseKey(p, 'decrypt', 'build', 'prod-key')).toBe(false);
    expect(mayUseKey(p, 'encrypt', 'build', 'prod-key')).toBe(true);
    for (const action of ['key.create', 'key.config', 'key.rotate', 'key.trim', 'key.delete'] as const) expect(mayUseKey(p, action, 'build', 'x')).toBe(true);
  });
});
