/**
 * What a namespace export reads and a namespace import writes
 * (kms/namespace-transfer): whole secrets with every retained version, and
 * named keys with their versions, rows as they are, times included. The
 * import writes rows the ordinary write path never makes (a secret at version
 * 7 whose versions 1-4 were pruned, a destroyed version), so it has its own
 * statements here rather than bending the write path's.
 */
import type { Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, KmsKeyTypeName } from '../schema.js';
import { lockNamespaceRow } from './namespaces.js';

export interface ImportedSecret {
  id: string;
  namespace_id: string;
  path: string;
  current_version: number;
  max_versions: number;
  created_at: Date;
  updated_at: Date;
}

export interface ImportedSecretVersion {
  secret_id: string;
  version: number;
  type: string;
  /** JSON text. */
  metadata: string;
  kek_version: number | null;
  wrapped_dek: Uint8Array | null;
  ciphertext: Uint8Array | null;
  created_at: Date;
  deleted_at: Date | null;
  destroyed_at: Date | null;
}

export interface ImportedKey {
  id: string;
  namespace_id: string;
  name: string;
  type: KmsKeyTypeName;
  latest_version: number;
  min_decryption_version: number;
  min_encryption_version: number;
  exportable: boolean;
  export_locked: boolean;
  deletion_allowed: boolean;
  auto_rotate_period_seconds: number | null;
  origin: 'internal' | 'external';
  hsm: boolean;
}

export function namespaceTransferRepo(db: Kysely<Database>) {
  return {
    /** The namespace row an import fills, FOR UPDATE: no write lands in it until the import commits. */
    async lockForImport(name: string, tx: Executor) {
      return lockNamespaceRow(tx, name, 'update');
    },

    /** Whether a namespace holds no secret (not even a destroyed one) and no named key. */
    async isEmpty(namespaceId: string, tx: Executor = db): Promise<boolean> {
      const secret = await tx.selectFrom('secrets').select('id').where('namespace_id', '=', namespaceId).limit(1).executeTakeFirst();
      if (secret) return false;
      const key = await tx.selectFrom('kms_keys').select('id').where('namespace_id', '=', namespaceId).limit(1).executeTakeFirst();
      return !key;
    },

    /** Up to `limit` secrets of a namespace after path `after`, in path order. */
    async secretsPage(namespaceId: string, after: string, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('secrets')
        .select(['id', 'path', 'current_version', 'max_versions', 'created_at', 'updated_at'])
        .where('namespace_id', '=', namespaceId)
        .where('path', '>', after)
        .orderBy('path')
        .limit(limit)
        .execute();
    },

    /** Every retained version of these secrets, by secret then version. */
    async versionsOf(secretIds: readonly string[], tx: Executor = db) {
      if (secretIds.length === 0) return [];
      return tx
        .selectFrom('secret_versions')
        .select(['secret_id', 'version', 'type', 'metadata', 'kek_version', 'wrapped_dek', 'ciphertext', 'created_at', 'deleted_at', 'destroyed_at'])
        .where('secret_id', 'in', [...secretIds])
        .orderBy('secret_id')
        .orderBy('version')
        .execute();
    },

    /** Every named key of a namespace, whole rows, by name. */
    async keys(namespaceId: string, tx: Executor = db) {
      return tx.selectFrom('kms_keys').selectAll().where('namespace_id', '=', namespaceId).orderBy('name').execute();
    },

    /** Secrets and their versions, a batch at a time (the secrets first: versions reference them). */
    async insertSecrets(secrets: readonly ImportedSecret[], versions: readonly ImportedSecretVersion[], tx: Executor): Promise<void> {
      if (secrets.length > 0) await tx.insertInto('secrets').values([...secrets]).execute();
      if (versions.length > 0) await tx.insertInto('secret_versions').values([...versions]).execute();
    },

    async insertKey(row: ImportedKey, versions: ReadonlyArray<{ version: number; kek_version: number; wrapped_material: Uint8Array; created_at: Date }>, tx: Executor): Promise<void> {
      await tx.insertInto('kms_keys').values(row).execute();
      if (versions.length > 0) {
        await tx
          .insertInto('kms_key_versions')
          .values(versions.map((v) => ({ key_id: row.id, namespace_id: row.namespace_id, ...v })))
          .execute();
      }
    },
  };
}

export type NamespaceTransferRepo = ReturnType<typeof namespaceTransferRepo>;
