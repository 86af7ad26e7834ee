// The seals as the vault sees them: what each one reports it can do, which one a stored
// seal type names, and the Shamir seal's way of following another server's root key.
import { httpStatus } from '@coffer/server/http/status';
import { generateKeyMaterial, sealWithKey } from '@coffer/server/crypto/aead';
import { aad } from '@coffer/server/crypto/context';
import { CofferError } from '@coffer/server/errors';
import { Pkcs11Seal } from '@coffer/server/seal/pkcs11-seal';
import { InMemoryRootKey } from '@coffer/server/seal/root-key';
import { Seals } from '@coffer/server/seal/seal';
import { ROOT_CHECK_PLAINTEXT, sealAad } from '@coffer/server/seal/seal-context';
import { ShamirSeal } from '@coffer/server/seal/shamir-seal';

describe('seal capabilities', () => {
  it('Shamir: the shares are the root key, held in memory; no device', () => {
    const seal = new ShamirSeal();
    expect(seal.capabilities).toEqual({ recoveryKeys: false, autoUnseal: false, keyImport: false, storedKeys: false });
    expect(seal.importDevice()).toBeNull();
  });

  it('PKCS#11: the HSM stores the root key and unseals; the shares are recovery shares; imports go into the token', () => {
    expect(new Pkcs11Seal(null).capabilities).toEqual({ recoveryKeys: true, autoUnseal: true, keyImport: true, storedKeys: true });
  });

  it('PKCS#11 without a configured token answers 503 and creates nothing', async () => {
    const seal = new Pkcs11Seal(null);
    const err = await seal.generateRoot(1, 'refuse').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CofferError);
    expect({ status: httpStatus(err as CofferError), code: (err as CofferError).code }).toMatchObject({ status: 503, code: 'unavailable' });
    expect(() => seal.importDevice()).toThrow(/no PKCS#11 token is configured/);
  });
});

describe('Seals', () => {
  const shamir = new ShamirSeal();
  const pkcs11 = new Pkcs11Seal(null);

  it('finds a seal by the type seal_config stores, and the one init creates', () => {
    const seals = new Seals([shamir, pkcs11], 'pkcs11');
    expect(seals.of('pkcs11')).toBe(pkcs11);
    expect(seals.of('shamir')).toBe(shamir);
    expect(seals.forInit).toBe(pkcs11);
    expect(new Seals([shamir, pkcs11], 'shamir').forInit).toBe(shamir);
  });

  it('treats a type it does not know as the first seal (Shamir)', () => {
    expect(new Seals([shamir, pkcs11], 'shamir').of('something-else')).toBe(shamir);
  });
});

describe('Shamir seal: following a root rotated on another server', () => {
  const seal = new ShamirSeal();

  function rotated(fromVersion: number) {
    const current = generateKeyMaterial();
    const next = generateKeyMaterial();
    const version = fromVersion + 1;
    return {
      current: new InMemoryRootKey(current, fromVersion),
      next,
      config: {
        rootVersion: version,
        rootCheck: sealWithKey(next, ROOT_CHECK_PLAINTEXT, aad.rootCheck(version)),
        hsmKeyLabel: null,
        rootChain: sealWithKey(current, next, sealAad.pendingRoot(version, fromVersion)),
      },
    };
  }

  it('unwraps the new root with the one it holds (root_chain) and checks it', async () => {
    const { current, next, config } = rotated(3);
    const followed = await seal.followRoot(config, current);
    expect(followed.version).toBe(4);
    // The followed key is the new root: it opens what the new root wrapped.
    const wrapped = sealWithKey(next, Uint8Array.of(7, 7, 7), aad.systemKey('x', 1, 4));
    expect(await followed.unwrapKey(wrapped, aad.systemKey('x', 1, 4), 'test')).toEqual(Uint8Array.of(7, 7, 7));
  });

  it('refuses a root that moved on by more than one version, or has no chain', async () => {
    const { current, config } = rotated(3);
    await expect(seal.followRoot({ ...config, rootVersion: 5 }, current)).rejects.toThrow(/more than one version/);
    await expect(seal.followRoot({ ...config, rootChain: null }, current)).rejects.toThrow(/more than one version/);
  });

  it('refuses a chain whose key fails the root check', async () => {
    const { current, config } = rotated(3);
    const other = rotated(3);
    await expect(seal.followRoot({ ...config, rootCheck: other.config.rootCheck }, current)).rejects.toThrow();
  });
});
