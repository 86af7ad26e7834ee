/**
 * Named keys of a namespace (the KMS's "keys"): create, read, list, configure,
 * rotate, trim, delete; scheduled rotation; moving their versions to a new
 * namespace KEK version. Every version's material is wrapped by the namespace
 * KEK (key-store.ts), so root rotation does not touch it, KEK rotation rewraps
 * it (rewrapToKek) and crypto-shredding the namespace destroys it.
 *
 * Irreversible settings: `exportable` once true stays true; `export_locked`
 * (permanently non-exportable) once true stays true; the two exclude each other.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import {
  KMS_KEY_TYPES,
  KMS_MIN_AUTO_ROTATE_SECONDS,
  type KmsKeyConfigUpdate,
  type KmsKeyCreate,
  type KmsKeyInfo,
  type KmsKeyPage,
  type KmsKeyType,
  type KmsKeyVersionInfo,
  type KmsTrimResult,
} from '@coffer/sdk/api';
import { zeroize } from '../../crypto/aead.js';
import { aad } from '../../crypto/context.js';
import { badRequest, CofferError, conflict } from '../../errors.js';
import { isUniqueViolation } from '../../storage/errors.js';
import type { Executor } from '../../storage/executor.js';
import type { KmsKeyChanges, KmsKeyRow } from '../../storage/repos/kms-keys.js';
import type { Database } from '../../storage/schema.js';
import { collectVisible, takePage, type PageRequest } from '../../secrets/pagination.js';
import { isAsymmetric, KEY_TYPES } from './key-types.js';
import { checkKeyName, checkVersionNumber, keyLabel, KeyStore, type KeyStoreDeps } from './key-store.js';
import type { PendingHsmKey } from './hsm.js';
import { generateMaterial, publicKeyInfo, publicKeyOf } from './material.js';

/** A new version's key: material to wrap (software keys), or a key generated in the HSM. */
type Prepared = { material: Uint8Array } | { pending: PendingHsmKey };

/** What the service needs of the database: to open a transaction (its queries go through the repo). */
export type Transactor = Pick<Kysely<Database>, 'transaction'>;

/** Ten years: a longer period is a typo, not a policy. */
const MAX_AUTO_ROTATE_SECONDS = 10 * 366 * 24 * 3600;

export class NamedKeys {
  readonly store: KeyStore;

  constructor(
    private readonly db: Transactor,
    deps: KeyStoreDeps,
  ) {
    this.store = new KeyStore(deps);
  }

  async create(namespace: string, name: string, req: KmsKeyCreate): Promise<KmsKeyInfo> {
    checkKeyName(name);
    if (!(KMS_KEY_TYPES as readonly string[]).includes(req.type)) {
      throw badRequest(`type must be one of ${KMS_KEY_TYPES.join(', ')}`);
    }
    if (req.hsm !== undefined && typeof req.hsm !== 'boolean') throw badRequest('hsm must be true or false');
    if (req.exportable === true && req.export_locked === true) throw badRequest('a key cannot be both exportable and export_locked');
    checkPeriod(req.auto_rotate_period);
    if (req.hsm === true) return this.createInHsm(namespace, name, req);
    // Key pairs take a while (RSA-4096: seconds): generate before any lock is taken.
    const material = await generateMaterial(req.type);
    try {
      return await this.createWith(namespace, name, req, material, 'internal');
    } finally {
      zeroize(material);
    }
  }

  /**
   * Stores a new key whose version 1 is `material` (generated, or imported with
   * origin 'external'); the caller validated the request's type and zeroes the material.
   */
  async createWith(namespace: string, name: string, req: KmsKeyCreate, material: Uint8Array, origin: 'internal' | 'external'): Promise<KmsKeyInfo> {
    return this.insertKey(namespace, name, req, randomUUID(), { material }, origin);
  }

  /** A key whose versions live in the HSM: generated there before any lock is taken (RSA-4096 takes seconds). */
  private async createInHsm(namespace: string, name: string, req: KmsKeyCreate): Promise<KmsKeyInfo> {
    this.store.hsm.checkCreate(req.type, req);
    const ns = await this.store.deps.namespaces.resolve(namespace);
    const id = randomUUID();
    const pending = await this.store.hsm.generate(req.type, ns.id, id);
    try {
      return await this.insertKey(namespace, name, { ...req, export_locked: true }, id, { pending }, 'internal', ns.id);
    } catch (err) {
      await this.store.hsm.destroyKey(ns.id, id).catch(() => undefined);
      throw err;
    }
  }

  private async insertKey(
    namespace: string,
    name: string,
    req: KmsKeyCreate,
    id: string,
    prepared: Prepared,
    origin: 'internal' | 'external',
    namespaceId?: string,
  ): Promise<KmsKeyInfo> {
    checkKeyName(name);
    if (req.exportable === true && req.export_locked === true) throw badRequest('a key cannot be both exportable and export_locked');
    const period = checkPeriod(req.auto_rotate_period);
    try {
      await this.db.transaction().execute(async (trx) => {
        const ns = await this.store.lockNamespace(namespace, trx);
        // The HSM key's label names the namespace it was resolved to: deleted and re-created meanwhile, it is not this one.
        if (namespaceId !== undefined && ns.id !== namespaceId) throw conflict('conflict', `namespace "${namespace}" changed meanwhile; retry`);
        const row = await this.store.repo.insertKey(
          {
            id,
            namespace_id: ns.id,
            name,
            type: req.type,
            latest_version: 1,
            exportable: req.exportable === true,
            export_locked: req.export_locked === true,
            deletion_allowed: req.deletion_allowed === true,
            auto_rotate_period_seconds: period,
            origin,
            hsm: 'pending' in prepared,
          },
          trx,
        );
        await this.storePrepared(ns, row, 1, prepared, trx);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('already_exists', `key "${name}" already exists in namespace "${namespace}"`);
      throw err;
    }
    return this.read(namespace, name);
  }

  /** Configuration, versions and (asymmetric keys) public keys; never private or secret material. */
  async read(namespace: string, name: string): Promise<KmsKeyInfo> {
    const { row } = await this.store.find(namespace, name);
    const versions = await this.store.repo.listVersions(row.id);
    const views: KmsKeyVersionInfo[] = [];
    for (const v of versions) {
      const view: KmsKeyVersionInfo = { version: v.version, created_at: v.created_at.toISOString() };
      if (isAsymmetric(row.type) && row.hsm) {
        // Read from the token object the authenticated reference names.
        const reference = await this.store.open(row, v);
        try {
          view.public_key = publicKeyInfo(await this.store.hsm.publicKey(this.store.hsm.labelOf(reference, row.namespace_id, row.id, v.version)));
        } finally {
          zeroize(reference);
        }
      } else if (isAsymmetric(row.type)) {
        // Derived from the authenticated private key: a public key altered at rest cannot be served.
        const material = await this.store.open(row, v);
        try {
          view.public_key = publicKeyOf(material);
        } finally {
          zeroize(material);
        }
      }
      views.push(view);
    }
    return infoOf(namespace, row, versions[0]?.version ?? row.latest_version, views);
  }

  /** Keys of a namespace that `mayList` lets the caller see, a full page at a time. */
  async list(namespace: string, page: PageRequest, mayList: (name: string) => boolean): Promise<KmsKeyPage> {
    const ns = await this.store.deps.namespaces.resolve(namespace);
    const rows = await collectVisible(
      (after, n) => this.store.repo.listKeys(ns.id, after, n),
      page.after,
      page.limit + 1,
      (r) => r.name,
      (r) => mayList(r.name),
    );
    const { items, next_cursor } = takePage(rows, page.limit, (r) => r.name);
    return { namespace, keys: items.map((r) => ({ name: r.name, type: r.type, latest_version: r.latest_version })), next_cursor };
  }

  /** Changes settings; the irreversible ones only in their one direction. All checks pass, or nothing changes. */
  async updateConfig(namespace: string, name: string, req: KmsKeyConfigUpdate): Promise<KmsKeyInfo> {
    checkKeyName(name);
    const changed = await this.db.transaction().execute(async (trx) => {
      const ns = await this.store.lockNamespace(namespace, trx);
      const row = await this.lockKey(ns.id, namespace, name, trx);
      const minAvailable = (await this.store.repo.minVersion(row.id, trx)) ?? row.latest_version;
      const changes: KmsKeyChanges = {};
      if (req.exportable !== undefined) {
        if (typeof req.exportable !== 'boolean') throw badRequest('exportable must be true or false');
        if (row.exportable && !req.exportable) throw badRequest(`key "${name}" is exportable, which cannot be undone`);
        if (req.exportable && row.export_locked) throw badRequest(`key "${name}" is permanently non-exportable (export_locked)`);
        changes.exportable = req.exportable;
      }
      if (req.export_locked !== undefined) {
        if (typeof req.export_locked !== 'boolean') throw badRequest('export_locked must be true or false');
        if (row.export_locked && !req.export_locked) throw badRequest(`key "${name}" is permanently non-exportable (export_locked), which cannot be undone`);
        if (req.export_locked && (changes.exportable ?? row.exportable)) throw badRequest(`key "${name}" is exportable, so it cannot be locked non-exportable`);
        changes.export_locked = req.export_locked;
      }
      if (req.deletion_allowed !== undefined) {
        if (typeof req.deletion_allowed !== 'boolean') throw badRequest('deletion_allowed must be true or false');
        changes.deletion_allowed = req.deletion_allowed;
      }
      if (req.auto_rotate_period !== undefined) changes.auto_rotate_period_seconds = checkPeriod(req.auto_rotate_period);
      const minDecrypt = req.min_decryption_version === undefined ? row.min_decryption_version : checkVersionNumber(req.min_decryption_version, 'min_decryption_version');
      const minEncrypt = req.min_encryption_version === undefined ? row.min_encryption_version : checkVersionNumber(req.min_encryption_version, 'min_encryption_version');
      if (minDecrypt < 1 || minDecrypt > row.latest_version) throw badRequest(`min_decryption_version must be between 1 and the latest version (${row.latest_version})`);
      if (minDecrypt < minAvailable) throw badRequest(`versions below ${minAvailable} of key "${name}" were trimmed: min_decryption_version cannot go below it`);
      if (minEncrypt !== 0 && (minEncrypt < minDecrypt || minEncrypt > row.latest_version)) {
        throw badRequest(`min_encryption_version must be 0 (latest) or between min_decryption_version (${minDecrypt}) and the latest version (${row.latest_version})`);
      }
      changes.min_decryption_version = minDecrypt;
      changes.min_encryption_version = minEncrypt;
      await this.store.repo.updateKey(row.id, changes, trx);
      await this.store.announce(ns.id, row.id, trx);
      return { namespaceId: ns.id, keyId: row.id };
    });
    this.store.changed(changed.namespaceId, changed.keyId);
    return this.read(namespace, name);
  }

  /** Adds a version with fresh material and makes it the latest. */
  async rotate(namespace: string, name: string): Promise<KmsKeyInfo> {
    checkKeyName(name);
    const { row } = await this.store.find(namespace, name);
    if (row.hsm) {
      const pending = await this.store.hsm.generate(row.type, row.namespace_id, row.id);
      try {
        return await this.addPrepared(namespace, name, row.id, { pending });
      } finally {
        // Adopted: the label changed and this finds nothing; otherwise the stray key goes.
        await this.store.hsm.discard(pending);
      }
    }
    const material = await generateMaterial(row.type);
    try {
      return await this.addVersion(namespace, name, row.id, material);
    } finally {
      zeroize(material);
    }
  }

  /**
   * Stores `material` (of the key's type; the caller zeroes it) as the next
   * version of key `keyId` and makes it the latest: a rotation, or an imported version.
   */
  async addVersion(namespace: string, name: string, keyId: string, material: Uint8Array): Promise<KmsKeyInfo> {
    return this.addPrepared(namespace, name, keyId, { material });
  }

  private async addPrepared(namespace: string, name: string, keyId: string, prepared: Prepared): Promise<KmsKeyInfo> {
    const namespaceId = await this.db.transaction().execute(async (trx) => {
      const ns = await this.store.lockNamespace(namespace, trx);
      const locked = await this.lockKey(ns.id, namespace, name, trx);
      // Deleted and re-created (possibly with another type) while the material was prepared.
      if (locked.id !== keyId) throw conflict('conflict', `key "${name}" changed meanwhile; retry`);
      const version = locked.latest_version + 1;
      if (locked.hsm !== ('pending' in prepared)) throw conflict('conflict', `key "${name}" changed meanwhile; retry`);
      await this.storePrepared(ns, locked, version, prepared, trx);
      await this.store.repo.updateKey(locked.id, { latest_version: version }, trx);
      await this.store.announce(ns.id, locked.id, trx);
      return ns.id;
    });
    this.store.changed(namespaceId, keyId);
    return this.read(namespace, name);
  }

  /**
   * Removes the versions below `minAvailable` for good: what they encrypted can
   * never be decrypted again. Only versions already refused for decryption
   * (below min_decryption_version) and for encryption can go.
   */
  async trim(namespace: string, name: string, minAvailable: number): Promise<KmsTrimResult> {
    checkKeyName(name);
    checkVersionNumber(minAvailable, 'min_available_version');
    const { result, namespaceId, keyId } = await this.db.transaction().execute(async (trx) => {
      const ns = await this.store.lockNamespace(namespace, trx);
      const row = await this.lockKey(ns.id, namespace, name, trx);
      if (minAvailable < 1) throw badRequest('min_available_version must be at least 1');
      if (minAvailable > row.min_decryption_version) {
        throw badRequest(`min_available_version cannot exceed min_decryption_version (${row.min_decryption_version}): raise that first`);
      }
      if (row.min_encryption_version !== 0 && minAvailable > row.min_encryption_version) {
        throw badRequest(`min_available_version cannot exceed min_encryption_version (${row.min_encryption_version})`);
      }
      if (row.hsm) {
        // Destroyed in the token before the rows go: should that fail, nothing is committed and the trim can be retried.
        const below = (await this.store.repo.listVersions(row.id, trx)).filter((v) => v.version < minAvailable).map((v) => v.version);
        if (below.length > 0) await this.store.hsm.destroyVersions(ns.id, row.id, below);
      }
      const removed = await this.store.repo.deleteVersionsBelow(row.id, minAvailable, trx);
      const min = (await this.store.repo.minVersion(row.id, trx)) ?? row.latest_version;
      await this.store.announce(ns.id, row.id, trx);
      return { result: { namespace, name, min_available_version: min, versions_removed: removed }, namespaceId: ns.id, keyId: row.id };
    });
    this.store.changed(namespaceId, keyId);
    return result;
  }

  /** Deletes a key with every version: refused unless its deletion_allowed is set. */
  async delete(namespace: string, name: string): Promise<{ namespace: string; name: string; versions_deleted: number }> {
    checkKeyName(name);
    const { result, namespaceId, keyId } = await this.db.transaction().execute(async (trx) => {
      const ns = await this.store.lockNamespace(namespace, trx);
      const row = await this.lockKey(ns.id, namespace, name, trx);
      if (!row.deletion_allowed) {
        throw badRequest(`key "${name}" may not be deleted: set deletion_allowed in its config first (what it encrypted becomes unreadable)`);
      }
      const versions = (await this.store.repo.listVersions(row.id, trx)).length;
      // The token objects first: a token that cannot be reached leaves the key as it was (503).
      if (row.hsm) await this.store.hsm.destroyKey(ns.id, row.id);
      await this.store.repo.deleteKey(row.id, trx);
      await this.store.announce(ns.id, row.id, trx);
      return { result: { namespace, name, versions_deleted: versions }, namespaceId: ns.id, keyId: row.id };
    });
    this.store.changed(namespaceId, keyId);
    return result;
  }

  /**
   * Rotates every key whose latest version is older than its auto_rotate_period
   * (the kms-key-rotation job, jobs.ts). Re-checked under the key's lock, so several
   * servers running it rotate each key once. Returns "namespace/key" of those rotated.
   */
  async rotateDue(now = new Date(), signal?: AbortSignal): Promise<string[]> {
    const rotated: string[] = [];
    for (const due of await this.store.repo.dueForRotation(now)) {
      // A seal or shutdown: finish the key in hand, start no other.
      if (signal?.aborted) break;
      const found = (await this.store.find(due.namespace, due.name)).row;
      const prepared: Prepared = found.hsm ? { pending: await this.store.hsm.generate(found.type, found.namespace_id, found.id) } : { material: await generateMaterial(found.type) };
      try {
        const done = await this.db.transaction().execute(async (trx) => {
          const ns = await this.store.lockNamespace(due.namespace, trx);
          const row = await this.store.repo.findKey(ns.id, due.name, trx, 'update');
          // Gone, re-created (the material was made for the key found before), or no longer scheduled.
          if (!row || row.id !== found.id || row.hsm !== found.hsm || row.auto_rotate_period_seconds === null) return false;
          const [latest] = await this.store.repo.findVersions(row.id, [row.latest_version], trx);
          if (latest && latest.created_at.getTime() + row.auto_rotate_period_seconds * 1000 > now.getTime()) return false;
          await this.storePrepared(ns, row, row.latest_version + 1, prepared, trx);
          await this.store.repo.updateKey(row.id, { latest_version: row.latest_version + 1 }, trx);
          await this.store.announce(ns.id, row.id, trx);
          return ns.id;
        });
        if (done !== false) {
          this.store.changed(done, found.id);
          rotated.push(`${due.namespace}/${due.name}`);
        }
      } finally {
        if ('material' in prepared) zeroize(prepared.material);
        else await this.store.hsm.discard(prepared.pending);
      }
    }
    return rotated;
  }

  /**
   * Moves up to `limit` key versions of a namespace from older KEK versions to
   * `target` (only the wrapping changes; the key material stays the same), in
   * the caller's transaction. For the KEK rewrap job: returns how many moved;
   * 0 means none is left under another version.
   */
  async rewrapToKek(namespaceId: string, target: number, trx: Transaction<Database>, limit = 1000): Promise<number> {
    const rows = await this.store.repo.versionsUnderOtherKek(namespaceId, target, limit, trx);
    if (rows.length === 0) return 0;
    const rewrapped = await this.store.deps.keyring.rewrapUnderKek(
      namespaceId,
      target,
      rows.map((r) => ({
        kekVersion: r.kek_version,
        wrapped: r.wrapped_material,
        from: aad.kmsKey(namespaceId, r.key_id, r.name, r.type, r.version, r.kek_version),
        to: aad.kmsKey(namespaceId, r.key_id, r.name, r.type, r.version, target),
        what: keyLabel(r, r.version),
      })),
      trx,
    );
    for (const [i, r] of rows.entries()) await this.store.repo.setWrapped(r.key_id, r.version, target, rewrapped[i]!, trx);
    // The material is unchanged, but no cache should outlive the KEK version it was opened under;
    // the commit's notification (this server's too) drops these keys everywhere.
    for (const keyId of new Set(rows.map((r) => r.key_id))) await this.store.announce(namespaceId, keyId, trx);
    return rows.length;
  }

  /** Key versions of a namespace still wrapped under a KEK version other than `target`. */
  countToRewrap(namespaceId: string, target: number, executor?: Executor): Promise<number> {
    return this.store.repo.countUnderOtherKek(namespaceId, target, executor);
  }

  /**
   * Crypto-shredding: destroys the token objects of the namespace's HSM-resident keys before
   * its rows go (the shred sweep calls this first and stops while it fails).
   */
  async destroyNamespaceDeviceKeys(namespaceId: string, executor?: Executor): Promise<void> {
    await this.store.hsm.destroyNamespace(namespaceId, await this.store.repo.hasHsmKeys(namespaceId, executor));
  }

  /** Stores version `version`: wraps software material, or names the HSM key and stores its wrapped reference. */
  private async storePrepared(ns: { id: string; kekVersion: number }, key: KmsKeyRow, version: number, prepared: Prepared, trx: Executor): Promise<void> {
    if ('material' in prepared) return this.store.storeVersion(ns, key, version, prepared.material, trx);
    const reference = await this.store.hsm.adopt(prepared.pending, ns.id, key.id, version);
    try {
      await this.store.storeVersion(ns, key, version, reference, trx);
    } finally {
      zeroize(reference);
    }
  }

  private async lockKey(namespaceId: string, namespace: string, name: string, trx: Executor): Promise<KmsKeyRow> {
    const row = await this.store.repo.findKey(namespaceId, name, trx, 'update');
    if (!row) throw new CofferError('not_found', `key "${name}" not found in namespace "${namespace}"`);
    return row;
  }
}

function checkPeriod(value: unknown): number | null {
  if (value === undefined || value === 0) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < KMS_MIN_AUTO_ROTATE_SECONDS || value > MAX_AUTO_ROTATE_SECONDS) {
    throw badRequest(`auto_rotate_period is 0 (off) or whole seconds from ${KMS_MIN_AUTO_ROTATE_SECONDS} to ${MAX_AUTO_ROTATE_SECONDS}`);
  }
  return value;
}

function infoOf(namespace: string, row: KmsKeyRow, minAvailable: number, versions: KmsKeyVersionInfo[]): KmsKeyInfo {
  return {
    namespace,
    name: row.name,
    type: row.type as KmsKeyType,
    origin: row.origin,
    hsm: row.hsm,
    exportable: row.exportable,
    export_locked: row.export_locked,
    deletion_allowed: row.deletion_allowed,
    latest_version: row.latest_version,
    min_available_version: minAvailable,
    min_decryption_version: row.min_decryption_version,
    min_encryption_version: row.min_encryption_version,
    auto_rotate_period: row.auto_rotate_period_seconds ?? 0,
    operations: [...KEY_TYPES[row.type as KmsKeyType].operations],
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    versions,
  };
}
