/**
 * kms_keys and kms_key_versions: the named keys of namespaces (kms/named-keys)
 * and their versions, whose material a namespace KEK version wraps. The one
 * place these tables are written. Every query takes an optional executor so
 * the service can put a change and its checks in one transaction.
 */
import { sql, type Kysely, type Selectable, type Updateable } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, KmsKeyTable, KmsKeyTypeName } from '../schema.js';
import { lockNamespaceRow } from './namespaces.js';

export type KmsKeyRow = Selectable<KmsKeyTable>;
export type KmsKeyChanges = Omit<Updateable<KmsKeyTable>, 'id' | 'namespace_id' | 'name' | 'type' | 'origin' | 'hsm' | 'created_at'>;

export interface NewKmsKey {
  id: string;
  namespace_id: string;
  name: string;
  type: KmsKeyTypeName;
  latest_version: number;
  exportable: boolean;
  export_locked: boolean;
  deletion_allowed: boolean;
  auto_rotate_period_seconds: number | null;
  origin: 'internal' | 'external';
  hsm: boolean;
}

export interface KmsKeyVersionRow {
  key_id: string;
  version: number;
  namespace_id: string;
  kek_version: number;
  wrapped_material: Uint8Array;
  created_at: Date;
}

export function kmsKeysRepo(db: Kysely<Database>) {
  return {
    /**
     * The namespace a key change hangs off, locked FOR SHARE for the rest of the
     * transaction: a KEK rotation (FOR UPDATE) waits until the new version is
     * stored, so the version it wraps under is current until commit, and the
     * namespace cannot be deleted under it.
     */
    async lockNamespace(name: string, tx: Executor = db) {
      return lockNamespaceRow(tx, name, 'share');
    },

    async insertKey(row: NewKmsKey, tx: Executor = db): Promise<KmsKeyRow> {
      return tx.insertInto('kms_keys').values(row).returningAll().executeTakeFirstOrThrow();
    },

    async insertVersion(row: Omit<KmsKeyVersionRow, 'created_at'>, tx: Executor = db): Promise<void> {
      await tx.insertInto('kms_key_versions').values(row).execute();
    },

    /**
     * A key by name. `lock` 'update' for a change of its configuration or versions: two
     * rotations must not both take version n+1, and a config change checks against the
     * versions as they are. Operations take no lock: a trim removes only versions they refuse.
     */
    async findKey(namespaceId: string, name: string, tx: Executor = db, lock?: 'update'): Promise<KmsKeyRow | undefined> {
      let query = tx.selectFrom('kms_keys').selectAll().where('namespace_id', '=', namespaceId).where('name', '=', name);
      if (lock === 'update') query = query.forUpdate();
      return query.executeTakeFirst();
    },

    /** The given versions of a key (those that exist), in version order. */
    async findVersions(keyId: string, versions: readonly number[], tx: Executor = db): Promise<KmsKeyVersionRow[]> {
      if (versions.length === 0) return [];
      return tx
        .selectFrom('kms_key_versions')
        .selectAll()
        .where('key_id', '=', keyId)
        .where('version', 'in', [...versions])
        .orderBy('version')
        .execute();
    },

    /** Every version of a key, oldest first. */
    async listVersions(keyId: string, tx: Executor = db): Promise<KmsKeyVersionRow[]> {
      return tx.selectFrom('kms_key_versions').selectAll().where('key_id', '=', keyId).orderBy('version').execute();
    },

    /** The oldest version still stored (trim removes the ones before it). */
    async minVersion(keyId: string, tx: Executor = db): Promise<number | null> {
      const { min } = await tx
        .selectFrom('kms_key_versions')
        .select((eb) => eb.fn.min<number>('version').as('min'))
        .where('key_id', '=', keyId)
        .executeTakeFirstOrThrow();
      return min === null ? null : Number(min);
    },

    /** Up to `limit` keys of a namespace after `after`, by name. */
    async listKeys(namespaceId: string, after: string, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('kms_keys')
        .select(['name', 'type', 'latest_version'])
        .where('namespace_id', '=', namespaceId)
        .where('name', '>', after)
        .orderBy('name')
        .limit(limit)
        .execute();
    },

    async updateKey(keyId: string, changes: KmsKeyChanges, tx: Executor = db): Promise<KmsKeyRow> {
      return tx
        .updateTable('kms_keys')
        .set({ ...changes, updated_at: new Date() })
        .where('id', '=', keyId)
        .returningAll()
        .executeTakeFirstOrThrow();
    },

    /** Whether a namespace has HSM-resident keys (their token objects must go before it is shredded). */
    async hasHsmKeys(namespaceId: string, tx: Executor = db): Promise<boolean> {
      const row = await tx.selectFrom('kms_keys').select('id').where('namespace_id', '=', namespaceId).where('hsm', '=', true).limit(1).executeTakeFirst();
      return row !== undefined;
    },

    /** Removes the versions below `minAvailable`; returns how many. */
    async deleteVersionsBelow(keyId: string, minAvailable: number, tx: Executor = db): Promise<number> {
      const result = await tx.deleteFrom('kms_key_versions').where('key_id', '=', keyId).where('version', '<', minAvailable).executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /** Removes a key; its versions go with it (cascade). */
    async deleteKey(keyId: string, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('kms_keys').where('id', '=', keyId).execute();
    },

    /**
     * Keys whose latest version is older than their rotation period, in
     * namespaces not waiting to be shredded. No lock: the rotation re-checks
     * under the key's row lock.
     */
    async dueForRotation(now: Date, tx: Executor = db) {
      return tx
        .selectFrom('kms_keys as k')
        .innerJoin('namespaces as n', 'n.id', 'k.namespace_id')
        .innerJoin('kms_key_versions as v', (join) => join.onRef('v.key_id', '=', 'k.id').onRef('v.version', '=', 'k.latest_version'))
        .select(['n.name as namespace', 'k.name', 'k.auto_rotate_period_seconds', 'v.created_at'])
        .where('k.auto_rotate_period_seconds', 'is not', null)
        // Imported keys rotate only by importing (kms/named-keys/keys.ts rotate).
        .where('k.origin', '=', 'internal')
        .where('n.deletion_date', 'is', null)
        .where(sql<boolean>`v.created_at + make_interval(secs => k.auto_rotate_period_seconds) <= ${now}`)
        .execute();
    },

    /**
     * Up to `limit` key versions of a namespace wrapped under a KEK version other
     * than `target`, with what their AAD binds, locked: the KEK rewrap updates them.
     */
    async versionsUnderOtherKek(namespaceId: string, target: number, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('kms_key_versions as v')
        .innerJoin('kms_keys as k', 'k.id', 'v.key_id')
        .select(['v.key_id', 'v.version', 'v.kek_version', 'v.wrapped_material', 'k.name', 'k.type'])
        .where('v.namespace_id', '=', namespaceId)
        .where('v.kek_version', '<>', target)
        .orderBy('v.key_id')
        .orderBy('v.version')
        .limit(limit)
        .forUpdate('v')
        .execute();
    },

    async countUnderOtherKek(namespaceId: string, target: number, tx: Executor = db): Promise<number> {
      const { n } = await tx
        .selectFrom('kms_key_versions')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('namespace_id', '=', namespaceId)
        .where('kek_version', '<>', target)
        .executeTakeFirstOrThrow();
      return Number(n);
    },

    async setWrapped(keyId: string, version: number, kekVersion: number, wrapped: Uint8Array, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('kms_key_versions')
        .set({ kek_version: kekVersion, wrapped_material: wrapped })
        .where('key_id', '=', keyId)
        .where('version', '=', version)
        .execute();
    },
  };
}

export type KmsKeysRepo = ReturnType<typeof kmsKeysRepo>;
