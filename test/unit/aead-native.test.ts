// The OpenSSL-backed envelope functions (used by the rewrap job) are the same format as the
// noble ones: byte-identical for a given nonce, interchangeable both ways, and as strict.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import {
  generateKeyMaterial,
  openWithKey,
  openWithKeyNative,
  randomNonces,
  sealWithKey,
  sealWithKeyNative,
  NONCE_LENGTH,
} from '@coffer/server/crypto/aead';
import { aad } from '@coffer/server/crypto/context';
import { IntegrityError } from '@coffer/server/errors';

describe('sealWithKeyNative / openWithKeyNative', () => {
  const context = aad.dek('ns-1', 'secret-1', 3, 2);

  it('produces exactly the XChaCha20-Poly1305 envelope noble produces, for many sizes', () => {
    for (let size = 0; size < 150; size += 7) {
      const key = generateKeyMaterial();
      const nonce = randomNonces(1);
      const plaintext = generateKeyMaterial().subarray(0, Math.min(32, size));
      const native = sealWithKeyNative(key, plaintext, context, nonce);
      const reference = xchacha20poly1305(key, nonce, context).encrypt(plaintext);
      expect(native[0]).toBe(1);
      expect(Buffer.from(native.subarray(1, 1 + NONCE_LENGTH)).equals(Buffer.from(nonce))).toBe(true);
      expect(Buffer.from(native.subarray(1 + NONCE_LENGTH)).equals(Buffer.from(reference))).toBe(true);
    }
  });

  it('opens what sealWithKey sealed and the other way round', () => {
    const key = generateKeyMaterial();
    const dek = generateKeyMaterial();
    expect(openWithKeyNative(key, sealWithKey(key, dek, context), context, 'x')).toEqual(dek);
    expect(openWithKey(key, sealWithKeyNative(key, dek, context), context, 'x')).toEqual(dek);
  });

  it('refuses any flipped bit, another key or another context with IntegrityError', () => {
    const key = generateKeyMaterial();
    const envelope = sealWithKeyNative(key, generateKeyMaterial(), context);
    for (let i = 0; i < envelope.length; i++) {
      const tampered = Uint8Array.from(envelope);
      tampered[i]! ^= 0x01;
      expect(() => openWithKeyNative(key, tampered, context, 'a DEK')).toThrow(IntegrityError);
    }
    expect(() => openWithKeyNative(generateKeyMaterial(), envelope, context, 'a DEK')).toThrow(IntegrityError);
    expect(() => openWithKeyNative(key, envelope, aad.dek('ns-1', 'secret-1', 3, 1), 'a DEK')).toThrow(IntegrityError);
    expect(() => openWithKeyNative(key, envelope.subarray(0, 20), context, 'a DEK')).toThrow(IntegrityError);
  });

  it('works on keys and nonces that are views at odd offsets', () => {
    const backing = new Uint8Array(100);
    backing.set(generateKeyMaterial(), 3);
    const key = backing.subarray(3, 35);
    const nonces = randomNonces(3);
    const nonce = nonces.subarray(NONCE_LENGTH, 2 * NONCE_LENGTH);
    const dek = generateKeyMaterial();
    const sealed = sealWithKeyNative(key, dek, context, nonce);
    expect(openWithKey(Uint8Array.from(key), sealed, context, 'x')).toEqual(dek);
  });
});
