/**
 * What the key administration (keys.ts) and the operations (operations.ts)
 * share: finding a key, wrapping and unwrapping its versions' material under
 * the namespace KEK, and the version rules. Narrow dependencies: the repo,
 * the namespace lookup and three keyring calls; never the database itself.
 */
import type { KmsKeyType } from '@coffer/sdk/api';
import { kmsKeyNameProblem } from '@coffer/sdk/api';
import { aad } from '../../crypto/context.js';
import { badRequest, CofferError, namespaceDisabled, notFound } from '../../errors.js';
import { changeEvents, publishEvent } from '../../cluster/events.js';
import type { Keyring } from '../../keyring/keyring.js';
import type { ChangeFeed } from '../../storage/change-feed.js';
import type { NamespaceService } from '../../secrets/namespace-service.js';
import type { Executor } from '../../storage/executor.js';
import type { KmsKeyRow, KmsKeysRepo, KmsKeyVersionRow } from '../../storage/repos/kms-keys.js';
import type { ImportDevice } from '../../seal/seal.js';
import { HsmKeys } from './hsm.js';
import type { KmsKeyCache } from './key-cache.js';

export type KeyringForKeys = Pick<Keyring, 'wrapUnderKek' | 'unwrapUnderKek' | 'rewrapUnderKek'>;

export interface KeyStoreDeps {
  repo: KmsKeysRepo;
  namespaces: Pick<NamespaceService, 'resolve'>;
  keyring: KeyringForKeys;
  /** Where key changes are announced to every server's KMS key cache. */
  feed: Pick<ChangeFeed, 'publish'>;
  cache: KmsKeyCache;
  /** The PKCS#11 device of the seal in effect (HSM-resident keys), or null under a Shamir seal. */
  device?: () => ImportDevice | null;
}

/** A key as found for an operation: its row and the namespace it is in. */
export interface FoundKey {
  namespace: string;
  namespaceId: string;
  row: KmsKeyRow;
}

export function checkKeyName(name: string): string {
  const problem = kmsKeyNameProblem(name);
  if (problem) throw badRequest(problem);
  return name;
}

export const keyLabel = (key: { name: string }, version: number) => `key "${key.name}" version ${version}`;

export class KeyStore {
  /** HSM-resident keys' token side (hsm.ts). */
  readonly hsm: HsmKeys;

  constructor(readonly deps: KeyStoreDeps) {
    this.hsm = new HsmKeys(deps.device ?? (() => null));
  }

  get repo(): KmsKeysRepo {
    return this.deps.repo;
  }

  /** A key by namespace and name: 404 when either is missing, 409 while the namespace awaits shredding. */
  async find(namespace: string, name: string, executor?: Executor): Promise<FoundKey> {
    checkKeyName(name);
    const ns = await this.deps.namespaces.resolve(namespace, executor);
    const row = await this.repo.findKey(ns.id, name, executor);
    if (!row) throw notFound(`key "${name}" not found in namespace "${namespace}"`);
    return { namespace, namespaceId: ns.id, row };
  }

  /**
   * Inside the transaction of a change to a key: tells every server (at the
   * commit) to drop it from its KMS key cache. The caller also calls `changed`
   * after the commit, so this server needs no round trip through the database.
   */
  announce(namespaceId: string, keyId: string, trx: Executor): Promise<void> {
    return publishEvent(this.deps.feed, trx, changeEvents.kmsKey(namespaceId, keyId));
  }

  /** After the commit of a change to a key: this server's cache drops it at once. */
  changed(namespaceId: string, keyId: string): void {
    this.deps.cache.invalidateKey(namespaceId, keyId);
  }

  /** Inside a change: the namespace row share-locked (see the repo), refused while it awaits shredding. */
  async lockNamespace(namespace: string, trx: Executor): Promise<{ id: string; kekVersion: number }> {
    const ns = await this.repo.lockNamespace(namespace, trx);
    if (!ns) throw notFound(`namespace "${namespace}" not found`);
    if (ns.deletion_date) throw namespaceDisabled(namespace, ns.deletion_date);
    return { id: ns.id, kekVersion: ns.current_kek_version };
  }

  /** Wraps and stores one version's material under the namespace's current KEK version. */
  async storeVersion(
    ns: { id: string; kekVersion: number },
    key: { id: string; name: string; type: KmsKeyType },
    version: number,
    material: Uint8Array,
    trx: Executor,
  ): Promise<void> {
    const context = aad.kmsKey(ns.id, key.id, key.name, key.type, version, ns.kekVersion);
    const wrapped = await this.deps.keyring.wrapUnderKek(ns.id, ns.kekVersion, material, context, trx);
    await this.repo.insertVersion({ key_id: key.id, version, namespace_id: ns.id, kek_version: ns.kekVersion, wrapped_material: wrapped }, trx);
  }

  /**
   * One version's material in plaintext; the caller zeroes it. A row whose
   * bytes or binding were altered (moved from another key, version or
   * namespace) is an IntegrityError, never another key's material.
   */
  async open(key: KmsKeyRow, version: KmsKeyVersionRow, executor?: Executor): Promise<Uint8Array> {
    if (version.key_id !== key.id || version.namespace_id !== key.namespace_id) {
      throw new CofferError('internal', 'a key version was looked up under another key');
    }
    const context = aad.kmsKey(key.namespace_id, key.id, key.name, key.type, version.version, version.kek_version);
    return this.deps.keyring.unwrapUnderKek(key.namespace_id, version.kek_version, version.wrapped_material, context, keyLabel(key, version.version), executor);
  }

  /** The version an encryption, signature or HMAC uses: the requested one within the rules, else the latest. */
  encryptionVersion(key: KmsKeyRow, requested: number | undefined): number {
    if (requested === undefined) return key.latest_version;
    checkVersionNumber(requested, 'key_version');
    if (requested > key.latest_version) throw badRequest(`key "${key.name}" has no version ${requested} (latest is ${key.latest_version})`);
    // Never below min_decryption_version either: that would make ciphertext no one may decrypt.
    const min = Math.max(key.min_encryption_version, key.min_decryption_version);
    if (requested < min) {
      throw badRequest(`key "${key.name}" encrypts with version ${min} or later (min_encryption_version, min_decryption_version), not ${requested}`);
    }
    return requested;
  }

  /** Checks that data made with `version` may still be opened or verified. */
  checkDecryptionVersion(key: KmsKeyRow, version: number): void {
    if (version > key.latest_version) throw badRequest(`key "${key.name}" has no version ${version} (latest is ${key.latest_version})`);
    if (version < key.min_decryption_version) {
      throw badRequest(
        `key "${key.name}" no longer decrypts or verifies with version ${version}: min_decryption_version is ${key.min_decryption_version}`,
      );
    }
  }

  /** Loads versions of a key; a missing one (trimmed) is a clear 400. */
  async versions(key: KmsKeyRow, wanted: readonly number[], executor?: Executor): Promise<Map<number, KmsKeyVersionRow>> {
    const rows = await this.repo.findVersions(key.id, [...new Set(wanted)], executor);
    const byVersion = new Map(rows.map((r) => [r.version, r]));
    for (const v of wanted) {
      if (!byVersion.has(v)) throw badRequest(`version ${v} of key "${key.name}" was trimmed and can no longer be used`);
    }
    return byVersion;
  }
}

export function checkVersionNumber(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 31 - 1) {
    throw badRequest(`${what} must be a non-negative integer`);
  }
  return value;
}
