// Every envelope is sealed and opened with OpenSSL's ChaCha20-Poly1305 under a noble HChaCha20
// subkey (crypto/aead.ts). The reference is noble's own xchacha20poly1305, the implementation
// every stored envelope was written with before: for any key, nonce, plaintext and AAD the two
// must produce the same bytes, open each other's envelopes, and refuse the same tampering.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import fc from 'fast-check';
import { generateKeyMaterial, openWithKey, randomNonces, sealWithKey, NONCE_LENGTH } from '@coffer/server/crypto/aead';
import { aad } from '@coffer/server/crypto/context';
import { IntegrityError } from '@coffer/server/errors';

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const HEADER = 1 + NONCE_LENGTH;

/** noble's envelope for the same inputs: [format 1][nonce][ciphertext ‖ tag]. */
function nobleSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, context: Uint8Array): Uint8Array {
  return Uint8Array.from([1, ...nonce, ...xchacha20poly1305(key, nonce, context).encrypt(plaintext)]);
}
function nobleOpen(key: Uint8Array, envelope: Uint8Array, context: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, envelope.subarray(1, HEADER), context).decrypt(envelope.subarray(HEADER));
}

const inputs = fc.record({
  key: bytes(32, 32),
  nonce: bytes(24, 24),
  // Around the 64-byte ChaCha block and the 16-byte Poly1305 block, and up to a large value.
  plaintext: fc.oneof(bytes(0, 200), bytes(490, 520), bytes(4000, 5000)),
  context: bytes(0, 300),
});

describe('XChaCha20-Poly1305 envelopes: OpenSSL under an HChaCha20 subkey vs noble', () => {
  it('produces byte-identical envelopes, and each opens the other\'s', () => {
    fc.assert(
      fc.property(inputs, ({ key, nonce, plaintext, context }) => {
        const native = sealWithKey(key, plaintext, context, nonce);
        const reference = nobleSeal(key, nonce, plaintext, context);
        expect(Buffer.from(native).equals(Buffer.from(reference))).toBe(true);
        expect(Buffer.from(openWithKey(key, reference, context, 'x')).equals(Buffer.from(plaintext))).toBe(true);
        expect(Buffer.from(nobleOpen(key, native, context)).equals(Buffer.from(plaintext))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses what noble refuses: a flipped bit, another AAD, another key (IntegrityError)', () => {
    fc.assert(
      fc.property(
        inputs,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        bytes(0, 300),
        bytes(32, 32),
        ({ key, nonce, plaintext, context }, at, bit, otherContext, otherKey) => {
          const envelope = sealWithKey(key, plaintext, context, nonce);
          const tampered = Uint8Array.from(envelope);
          const i = at % tampered.length;
          tampered[i] = tampered[i]! ^ (1 << bit);
          expect(() => openWithKey(key, tampered, context, 'a secret')).toThrow(IntegrityError);
          if (i > 0) expect(() => nobleOpen(key, tampered, context)).toThrow(); // (byte 0 is our format byte)
          fc.pre(!Buffer.from(otherContext).equals(Buffer.from(context)));
          expect(() => openWithKey(key, envelope, otherContext, 'a secret')).toThrow(IntegrityError);
          expect(() => nobleOpen(key, envelope, otherContext)).toThrow();
          fc.pre(!Buffer.from(otherKey).equals(Buffer.from(key)));
          expect(() => openWithKey(otherKey, envelope, context, 'a secret')).toThrow(IntegrityError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses every single flipped bit of one envelope, a truncation and a key of the wrong length', () => {
    const key = generateKeyMaterial();
    const context = aad.dek('ns-1', 'secret-1', 3, 2);
    const envelope = sealWithKey(key, generateKeyMaterial(), context);
    for (let i = 0; i < envelope.length * 8; i++) {
      const tampered = Uint8Array.from(envelope);
      tampered[i >> 3] = tampered[i >> 3]! ^ (1 << (i & 7));
      expect(() => openWithKey(key, tampered, context, 'a DEK')).toThrow(IntegrityError);
    }
    expect(() => openWithKey(key, envelope.subarray(0, 20), context, 'a DEK')).toThrow(IntegrityError);
    expect(() => openWithKey(key.subarray(0, 16), envelope, context, 'a DEK')).toThrow(IntegrityError);
    expect(() => openWithKey(Uint8Array.from([...key, 0]), envelope, context, 'a DEK')).toThrow(IntegrityError);
  });

  it('works on keys, nonces and envelopes that are views at odd offsets', () => {
    const backing = new Uint8Array(100);
    backing.set(generateKeyMaterial(), 3);
    const key = backing.subarray(3, 35);
    const nonce = randomNonces(3).subarray(NONCE_LENGTH, 2 * NONCE_LENGTH);
    const dek = generateKeyMaterial();
    const context = aad.dek('ns-1', 'secret-1', 3, 2);
    const sealed = sealWithKey(key, dek, context, nonce);
    expect(Buffer.from(sealed).equals(Buffer.from(nobleSeal(Uint8Array.from(key), Uint8Array.from(nonce), dek, context)))).toBe(true);
    const shifted = new Uint8Array(sealed.length + 5);
    shifted.set(sealed, 5);
    expect(openWithKey(Uint8Array.from(key), shifted.subarray(5), context, 'x')).toEqual(dek);
  });

  it('never hands out the same nonce twice, across the blocks of nonces it draws at once', () => {
    const key = generateKeyMaterial();
    const context = aad.secretValue('ns-1', 'secret-1', 1);
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const envelope = sealWithKey(key, Uint8Array.of(i & 0xff), context);
      seen.add(Buffer.from(envelope.subarray(1, HEADER)).toString('hex'));
    }
    expect(seen.size).toBe(1000);
  });

  it('keeps no state from one call to the next (the subkey scratch is shared and reset per call)', () => {
    const a = generateKeyMaterial();
    const b = generateKeyMaterial();
    const context = aad.secretValue('ns-1', 'secret-1', 1);
    const fromA = sealWithKey(a, new TextEncoder().encode('alpha'), context);
    const fromB = sealWithKey(b, new TextEncoder().encode('bravo'), context);
    expect(() => openWithKey(b, fromA, context, 'x')).toThrow(IntegrityError);
    expect(new TextDecoder().decode(openWithKey(b, fromB, context, 'x'))).toBe('bravo');
    expect(new TextDecoder().decode(openWithKey(a, fromA, context, 'x'))).toBe('alpha');
  });
});
