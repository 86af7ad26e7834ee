/**
 * The Shamir seal: the root key is held in process memory and rebuilt, at
 * unseal, from the operators' shares (seal/shamir.ts). Nothing is stored
 * anywhere but in the operators' hands.
 */
import { generateKeyMaterial, openWithKey, zeroize } from '../crypto/aead.js';
import { aad } from '../crypto/context.js';
import type { Pkcs11Token } from './pkcs11.js';
import { InMemoryRootKey, type RootKey } from './root-key.js';
import type { NewRootKey, RootRef, Seal, SealCapabilities } from './seal.js';
import { sealAad } from './seal-context.js';

const CAPABILITIES: SealCapabilities = { recoveryKeys: false, autoUnseal: false, keyImport: false, storedKeys: false };

export class ShamirSeal implements Seal {
  readonly type = 'shamir';
  readonly capabilities = CAPABILITIES;

  async generateRoot(version: number): Promise<NewRootKey> {
    const bytes = generateKeyMaterial();
    return { root: new InMemoryRootKey(Uint8Array.from(bytes), version), bytes, label: null, discard: async () => undefined };
  }

  importRoot(_version: number, _unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>): Promise<NewRootKey> {
    throw new Error('the Shamir seal has no device to import a root key into');
  }

  unsealRoot(_config: RootRef): Promise<RootKey> {
    throw new Error('the Shamir seal stores no root key: it is rebuilt from the shares');
  }

  async removeOlderRoots(_current: number): Promise<void> {}

  /** The new root's bytes, wrapped by the one before it (seal_config.root_chain), checked against the root check. */
  async followRoot(config: RootRef, current: RootKey): Promise<RootKey> {
    if (!config.rootChain || config.rootVersion !== current.version + 1) throw new Error('the root key moved on by more than one version');
    const bytes = await current.unwrapKey(config.rootChain, sealAad.pendingRoot(config.rootVersion, current.version), 'the root key chain');
    try {
      zeroize(openWithKey(bytes, config.rootCheck, aad.rootCheck(config.rootVersion), 'the root key check'));
    } catch (err) {
      zeroize(bytes);
      throw err;
    }
    return new InMemoryRootKey(bytes, config.rootVersion);
  }

  async retire(previous: RootKey): Promise<void> {
    previous.destroy();
  }

  importDevice(): null {
    return null;
  }

  disconnect(): void {}
}
