/**
 * What a seal is to the vault: where the root key lives, and what the
 * operators' shares rebuild. Each seal reports its capabilities and the
 * ceremonies (vault/) ask for those; none of them branches on a seal's name
 * (as OpenBao's seals answer RecoveryKeySupported / StoredKeysSupported).
 *
 *   shamir  the root key in process memory, rebuilt from the operators' shares
 *   pkcs11  the root key inside an HSM; the shares rebuild a recovery key
 */
import type { KeyMaterial } from '../crypto/aead.js';
import type { SealConfig } from '../storage/repos/seal-config.js';
import type { Pkcs11Token } from './pkcs11.js';
import type { RootKey } from './root-key.js';

export type SealType = 'shamir' | 'pkcs11';

export interface SealCapabilities {
  /** The operators' shares rebuild a separate recovery key (it authorises ceremonies), never the root key. */
  readonly recoveryKeys: boolean;
  /** The seal unseals the server by itself: at start-up, and on POST /v1/sys/unseal {}. */
  readonly autoUnseal: boolean;
  /** BYOK wrapping keys live in the seal's device, and a customer's root key can be imported into it. */
  readonly keyImport: boolean;
  /** The seal stores the root key (it never leaves the device), so a new one needs no new shares. */
  readonly storedKeys: boolean;
}

/** A root key a seal just made, not in effect yet. */
export interface NewRootKey {
  readonly root: RootKey;
  /** The key's bytes when it is held in memory (for splitting into shares); null when the seal stores it. */
  readonly bytes: KeyMaterial | null;
  /** The stored object's label (seal_config.hsm_key_label); null for a key held in memory. */
  readonly label: string | null;
  /** Removes a stored key that did not go into effect (nothing to do for a key in memory). */
  discard(): Promise<void>;
}

/** Where BYOK wrapping keys are generated and used, when the seal has a device for them. */
export interface ImportDevice {
  readonly token: Pkcs11Token;
  /** The token label of one import's wrapping key pair. */
  keyLabel(importId: string): string;
  /**
   * Labels of HSM-resident named keys (kms/named-keys/hsm.ts): <prefix>-kms-<parts joined by "-">,
   * e.g. (namespace id, key id, "v3"); fewer parts give the prefix of a key's or a namespace's objects.
   */
  namedKeyLabel(...parts: string[]): string;
}

/** The seal_config fields a seal reads to find and check the root key in effect. */
export type RootRef = Pick<SealConfig, 'rootVersion' | 'rootCheck' | 'hsmKeyLabel' | 'rootChain'>;

export interface Seal {
  readonly type: SealType;
  readonly capabilities: SealCapabilities;

  /**
   * A new root key of `version` (init, rotation, migration into this seal). A stored key object
   * already under the new key's label is refused at init (another Coffer may own it) and replaced
   * otherwise (it can only be left over from an interrupted rotation).
   */
  generateRoot(version: number, existing: 'refuse' | 'replace'): Promise<NewRootKey>;

  /** A customer's key unwrapped into the seal's device as root key `version` (capabilities.keyImport). */
  importRoot(version: number, unwrapInto: (token: Pkcs11Token, label: string) => Promise<Buffer>): Promise<NewRootKey>;

  /** The stored root key in effect, checked against its check value (capabilities.autoUnseal). */
  unsealRoot(config: RootRef): Promise<RootKey>;

  /** Removes stored root keys of versions before `current` (left by a crash after a switch committed). */
  removeOlderRoots(current: number): Promise<void>;

  /** The root key another server put in effect (`config`), reached from the one this server holds. */
  followRoot(config: RootRef, current: RootKey): Promise<RootKey>;

  /** Forgets a root key that is no longer in effect, once the switch away from it has committed. */
  retire(previous: RootKey): Promise<void>;

  /** The device BYOK wrapping keys live in, or null when they are software keys wrapped by the root key. */
  importDevice(): ImportDevice | null;

  /** Drops the device connection (it is reopened on next use: the device may come back, or be reconfigured). */
  disconnect(): void;
}

/** The seals this server knows, by the type stored in seal_config. */
export class Seals {
  private readonly byType: ReadonlyMap<string, Seal>;

  /** What init creates (COFFER_SEAL). */
  readonly forInit: Seal;

  constructor(
    private readonly all: readonly [Seal, ...Seal[]],
    initType: string,
  ) {
    this.byType = new Map(all.map((s) => [s.type, s]));
    this.forInit = this.of(initType);
  }

  /** The seal of a stored type. The first seal stands for a type this version does not know, as it always has. */
  of(type: string): Seal {
    return this.byType.get(type) ?? this.all[0];
  }

  close(): void {
    for (const seal of this.all) seal.disconnect();
  }
}
