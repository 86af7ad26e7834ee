// Shamir shares of the root key: split/combine, encodings, and the collector's rules.
import { httpStatus } from '@coffer/server/http/status';
import { ShareCollector, decodeShare, encodeShare, splitRootKey, validateShareConfig } from '@coffer/server/seal/shamir';
import { generateKeyMaterial } from '@coffer/server/crypto/aead';
import { CofferError } from '@coffer/server/errors';

describe('Shamir seal', () => {
  it('validates share configurations', () => {
    expect(validateShareConfig(5, 3)).toBeNull();
    expect(validateShareConfig(1, 1)).toBeNull();
    expect(validateShareConfig(255, 255)).toBeNull();
    expect(validateShareConfig(0, 0)).not.toBeNull();
    expect(validateShareConfig(3, 4)).not.toBeNull();
    expect(validateShareConfig(3, 1)).not.toBeNull();
    expect(validateShareConfig(256, 2)).not.toBeNull();
    expect(validateShareConfig(2.5, 2)).not.toBeNull();
  });

  it('reconstructs the key from any threshold-sized subset of shares', async () => {
    const key = generateKeyMaterial();
    const shares = await splitRootKey(key, 5, 3);
    expect(shares).toHaveLength(5);
    for (const subset of [[0, 1, 2], [4, 2, 0], [1, 3, 4]]) {
      const collector = new ShareCollector(3);
      let result: Uint8Array | null = null;
      for (const i of subset) result = await collector.add(Uint8Array.from(shares[i]!));
      expect(Buffer.from(result!).equals(Buffer.from(key))).toBe(true);
    }
  });

  it('does not reconstruct the key from fewer shares', async () => {
    const key = generateKeyMaterial();
    const shares = await splitRootKey(key, 5, 3);
    const collector = new ShareCollector(3);
    expect(await collector.add(Uint8Array.from(shares[0]!))).toBeNull();
    expect(await collector.add(Uint8Array.from(shares[1]!))).toBeNull();
    expect(collector.progress).toBe(2);
  });

  it('a wrong share yields a different key (caught by the root check in the core)', async () => {
    const key = generateKeyMaterial();
    const shares = await splitRootKey(key, 3, 2);
    const wrong = Uint8Array.from(shares[1]!);
    wrong[0] = wrong[0]! ^ 1;
    const collector = new ShareCollector(2);
    await collector.add(Uint8Array.from(shares[0]!));
    const result = await collector.add(wrong);
    expect(result).not.toBeNull();
    expect(Buffer.from(result!).equals(Buffer.from(key))).toBe(false);
  });

  it('counts a duplicate share once', async () => {
    const shares = await splitRootKey(generateKeyMaterial(), 3, 2);
    const collector = new ShareCollector(2);
    await collector.add(Uint8Array.from(shares[0]!));
    expect(await collector.add(Uint8Array.from(shares[0]!))).toBeNull();
    expect(collector.progress).toBe(1);
  });

  it('a single share is the key itself', async () => {
    const key = generateKeyMaterial();
    const [share] = await splitRootKey(key, 1, 1);
    expect(Buffer.from(share!).equals(Buffer.from(key))).toBe(true);
    expect(share).not.toBe(key);
    const result = await new ShareCollector(1).add(Uint8Array.from(share!));
    expect(Buffer.from(result!).equals(Buffer.from(key))).toBe(true);
  });

  it('encodes shares as base64 and accepts base64 or hex back', async () => {
    const [share] = await splitRootKey(generateKeyMaterial(), 2, 2);
    const b64 = encodeShare(share!);
    expect(Buffer.from(decodeShare(b64, 2)).equals(Buffer.from(share!))).toBe(true);
    const hex = Buffer.from(share!).toString('hex');
    expect(Buffer.from(decodeShare(hex, 2)).equals(Buffer.from(share!))).toBe(true);
    expect(Buffer.from(decodeShare(`  ${b64}\n`, 2)).equals(Buffer.from(share!))).toBe(true);
  });

  it.each(['', 'not base64 !', 'AAAA', Buffer.alloc(32).toString('base64'), Buffer.alloc(34).toString('base64')])(
    'rejects the malformed share %j with a 400',
    (text) => {
      expect(() => decodeShare(text, 2)).toThrow(CofferError);
      try {
        decodeShare(text, 2);
      } catch (err) {
        expect(httpStatus(err as CofferError)).toBe(400);
        expect((err as CofferError).code).toBe('invalid_shares');
      }
    },
  );

  it('reset forgets collected shares', async () => {
    const shares = await splitRootKey(generateKeyMaterial(), 3, 2);
    const collector = new ShareCollector(2);
    const held = Uint8Array.from(shares[0]!);
    await collector.add(held);
    collector.reset();
    expect(collector.progress).toBe(0);
    expect(held.every((b) => b === 0)).toBe(true);
  });
});
