// The keyring's DEK cache (a read opens one envelope instead of two) must never let a DEK outlive
// the KEK that unwrapped it, nor stand for an unwrap that would fail. Each test changes the KEK
// behind the keyring's back (as a KEK rotation + destruction, or another key of the same version,
// would look from here): a DEK still cached after its KEK left would keep decrypting; with the
// DEK gone, the read unwraps again under the new KEK and fails its integrity check.
import { generateKeyMaterial } from '@coffer/server/crypto/aead';
import { aad } from '@coffer/server/crypto/context';
import { Keyring, type EncryptedValue, type SecretVersionRef } from '@coffer/server/keyring/keyring';
import { InMemoryRootKey } from '@coffer/server/seal/root-key';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** KEK rows as the repository returns them, replaceable by the test. */
class KekRows {
  readonly rows = new Map<string, { wrapped_key: Uint8Array | null; root_version: number }>();
  constructor(private readonly root: InMemoryRootKey) {}
  async put(namespaceId: string, version: number): Promise<void> {
    const kek = generateKeyMaterial();
    this.rows.set(`${namespaceId}:${version}`, { wrapped_key: await this.root.wrapKey(kek, aad.kek(namespaceId, version, 1)), root_version: 1 });
  }
  async findWrapped(namespaceId: string, version: number) {
    return this.rows.get(`${namespaceId}:${version}`);
  }
}

describe('Keyring DEK cache', () => {
  const keyrings: Keyring[] = [];
  afterAll(() => keyrings.forEach((k) => k.destroy()));

  async function setup(kekMaxEntries = 10, dekMaxEntries = 100) {
    const root = new InMemoryRootKey(generateKeyMaterial(), 1);
    const rows = new KekRows(root);
    const keyring = new Keyring(rows, root, { ttlMs: 60_000, maxEntries: kekMaxEntries, dekMaxEntries });
    keyrings.push(keyring);
    const write = async (ref: SecretVersionRef, value: string): Promise<EncryptedValue> => keyring.encryptValue(ref, 1, encoder.encode(value));
    const read = async (ref: SecretVersionRef, stored: EncryptedValue) => decoder.decode(await keyring.decryptValue(ref, stored));
    const readBulk = async (namespaceId: string, rowsIn: Array<SecretVersionRef & { stored: EncryptedValue }>) => {
      const out: string[] = [];
      await keyring.decryptValues(
        namespaceId,
        rowsIn.map((r) => ({ secretId: r.secretId, version: r.version, ...r.stored })),
        (p) => out.push(decoder.decode(p)),
      );
      return out;
    };
    return { rows, keyring, write, read, readBulk };
  }

  const refA = { namespaceId: 'ns-a', secretId: 's-1', version: 1 };
  const refA2 = { namespaceId: 'ns-a', secretId: 's-2', version: 1 };

  it('reads the same values warm as cold, one read and in bulk, and still checks each value', async () => {
    const { rows, write, read, readBulk } = await setup();
    await rows.put('ns-a', 1);
    const a = await write(refA, 'alpha');
    const b = await write(refA2, 'beta');
    expect(await read(refA, a)).toBe('alpha');
    expect(await read(refA, a)).toBe('alpha');
    expect(await readBulk('ns-a', [{ ...refA, stored: a }, { ...refA2, stored: b }])).toEqual(['alpha', 'beta']);
    expect(await readBulk('ns-a', [{ ...refA, stored: a }, { ...refA2, stored: b }])).toEqual(['alpha', 'beta']);
    // With A's DEK cached: B's ciphertext presented as A's (same wrapped DEK) fails the value's check...
    await expect(read(refA, { ...a, ciphertext: b.ciphertext })).rejects.toMatchObject({ code: 'integrity_error' });
    // ...and so does A's row presented as another version (the DEK's context differs: a miss, then a failed unwrap).
    await expect(read({ ...refA, version: 2 }, a)).rejects.toMatchObject({ code: 'integrity_error' });
    // An altered wrapped DEK is a miss, unwrapped, and fails.
    const altered = Uint8Array.from(a.wrappedDek);
    altered[altered.length - 1]! ^= 1;
    await expect(read(refA, { ...a, wrappedDek: altered })).rejects.toMatchObject({ code: 'integrity_error' });
  });

  it('serves a cached DEK only for the wrapped bytes it came from', async () => {
    const { keyring, rows, write, read } = await setup();
    await rows.put('ns-a', 1);
    const first = await write(refA, 'alpha');
    expect(await read(refA, first)).toBe('alpha'); // its DEK is cached now
    // The same version written again (a restore, a retried write): another DEK under the same
    // context. The cached DEK is not its DEK: the new row must unwrap its own, not fail on the value.
    const again = await write(refA, 'alpha-2');
    expect(await read(refA, again)).toBe('alpha-2');
    expect(await read(refA, first)).toBe('alpha');
    // The same DEK wrapped anew (a rewrap to the same KEK version: other nonce, other bytes) reads too.
    const [rewrapped] = await keyring.rewrapDeks('ns-a', 1, [{ ...refA, ...first }]);
    expect(Buffer.from(rewrapped!).equals(Buffer.from(first.wrappedDek))).toBe(false);
    expect(await read(refA, { ...first, wrappedDek: rewrapped! })).toBe('alpha');
    // With that one cached, an altered copy of it still fails, and the original still reads.
    const altered = Uint8Array.from(rewrapped!);
    altered[5]! ^= 1;
    await expect(read(refA, { ...first, wrappedDek: altered })).rejects.toMatchObject({ code: 'integrity_error' });
    expect(await read(refA, first)).toBe('alpha');
  });

  it('drops the DEKs of a KEK version evicted from the keyring', async () => {
    const { rows, keyring, write, read } = await setup();
    await rows.put('ns-a', 1);
    const a = await write(refA, 'alpha');
    expect(await read(refA, a)).toBe('alpha');
    keyring.evictKek('ns-a', 1);
    await rows.put('ns-a', 1); // another KEK under the same version: A's wrapped DEK no longer opens
    await expect(read(refA, a)).rejects.toMatchObject({ code: 'integrity_error' });
  });

  it('drops the DEKs of a namespace evicted from the keyring', async () => {
    const { rows, keyring, write, readBulk } = await setup();
    await rows.put('ns-a', 1);
    const a = await write(refA, 'alpha');
    expect(await readBulk('ns-a', [{ ...refA, stored: a }])).toEqual(['alpha']);
    keyring.evictNamespace('ns-a');
    rows.rows.delete('ns-a:1'); // shredded
    await expect(readBulk('ns-a', [{ ...refA, stored: a }])).rejects.toMatchObject({ code: 'not_found' });
    await rows.put('ns-a', 1);
    await expect(readBulk('ns-a', [{ ...refA, stored: a }])).rejects.toMatchObject({ code: 'integrity_error' });
  });

  it('drops the DEKs of a KEK the KEK cache lets go of (LRU)', async () => {
    const { rows, write, read } = await setup(1);
    await rows.put('ns-a', 1);
    await rows.put('ns-b', 1);
    const a = await write(refA, 'alpha');
    const refB = { namespaceId: 'ns-b', secretId: 's-1', version: 1 };
    const b = await write(refB, 'beta');
    expect(await read(refA, a)).toBe('alpha');
    expect(await read(refB, b)).toBe('beta'); // the one-entry KEK cache lets ns-a's KEK go
    await rows.put('ns-a', 1);
    await expect(read(refA, a)).rejects.toMatchObject({ code: 'integrity_error' });
  });
});
