// Envelope crypto: round trips, and every kind of tampering is detected rather than decrypted.
import { httpStatus } from '@coffer/server/http/status';
import { openWithKey, sealWithKey, generateKeyMaterial, zeroize } from '@coffer/server/crypto/aead';
import { aad } from '@coffer/server/crypto/context';
import { IntegrityError } from '@coffer/server/errors';

const text = (s: string) => new TextEncoder().encode(s);

describe('sealWithKey / openWithKey (XChaCha20-Poly1305 envelopes)', () => {
  const key = generateKeyMaterial();
  const context = aad.secretValue('ns-1', 'secret-1', 3);
  const plaintext = text('{"password":"hunter2"}');

  it('round-trips and never stores the plaintext', () => {
    const envelope = sealWithKey(key, plaintext, context);
    expect(envelope[0]).toBe(1);
    expect(envelope.length).toBe(1 + 24 + plaintext.length + 16);
    expect(Buffer.from(envelope).includes(Buffer.from('hunter2'))).toBe(false);
    expect(openWithKey(key, envelope, context, 'x')).toEqual(plaintext);
  });

  it('uses a fresh nonce each time', () => {
    const a = sealWithKey(key, plaintext, context);
    const b = sealWithKey(key, plaintext, context);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('detects a flipped bit anywhere in the envelope', () => {
    const envelope = sealWithKey(key, plaintext, context);
    for (let i = 0; i < envelope.length; i++) {
      const tampered = Uint8Array.from(envelope);
      tampered[i] = tampered[i]! ^ 0x01;
      expect(() => openWithKey(key, tampered, context, 'a secret')).toThrow(IntegrityError);
    }
  });

  it('detects truncation and an unknown format', () => {
    const envelope = sealWithKey(key, plaintext, context);
    expect(() => openWithKey(key, envelope.subarray(0, 30), context, 'x')).toThrow(IntegrityError);
    expect(() => openWithKey(key, new Uint8Array(0), context, 'x')).toThrow(IntegrityError);
  });

  it('refuses a ciphertext moved to another context (wrong AAD)', () => {
    const envelope = sealWithKey(key, plaintext, context);
    for (const other of [
      aad.secretValue('ns-1', 'secret-1', 4),
      aad.secretValue('ns-1', 'secret-2', 3),
      aad.secretValue('ns-2', 'secret-1', 3),
      aad.dek('ns-1', 'secret-1', 3, 1),
    ]) {
      expect(() => openWithKey(key, envelope, other, 'x')).toThrow(IntegrityError);
    }
  });

  it('refuses the wrong key', () => {
    const envelope = sealWithKey(key, plaintext, context);
    expect(() => openWithKey(generateKeyMaterial(), envelope, context, 'x')).toThrow(IntegrityError);
  });

  it('names what failed, never the data', () => {
    const envelope = sealWithKey(key, plaintext, context);
    envelope[30] = envelope[30]! ^ 0xff;
    try {
      openWithKey(key, envelope, context, 'a secret version');
      throw new Error('expected a failure');
    } catch (err) {
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).message).toContain('a secret version');
      expect(httpStatus(err as IntegrityError)).toBe(500);
      expect((err as IntegrityError).code).toBe('integrity_error');
    }
  });

  it('zeroize overwrites key bytes in place', () => {
    const k = generateKeyMaterial();
    const view = k.subarray(0);
    zeroize(k);
    expect(view.every((b) => b === 0)).toBe(true);
  });

  it('encodes contexts unambiguously', () => {
    // Names that would collide under naive concatenation stay distinct.
    expect(Buffer.from(aad.kek('a:b', 1, 1)).equals(Buffer.from(aad.kek('a', 1, 1)))).toBe(false);
    expect(Buffer.from(aad.dek('a', 'b:c', 1, 1)).equals(Buffer.from(aad.dek('a:b', 'c', 1, 1)))).toBe(false);
  });
});
