/**
 * What is stored, and what is wrapped by what: every table of the schema is
 * classified here, and each column holding key material or ciphertext names
 * the key that protects it and the associated data (AAD) bound to it.
 *
 *   root-wrapped  rows wrapped by a root key version (the version is a column);
 *                 root rotation rewraps exactly these (seal/rewrap.ts)
 *   kek-wrapped   rows wrapped by a namespace KEK version (DEKs), and the values
 *                 those DEKs encrypt; KEK rotation's rewrap job moves the DEKs
 *   seal          the seal's own row: check values and chained keys, rewritten by
 *                 the ceremonies themselves (init, rotation, migration)
 *   plain         no key material (hashes and signatures are listed with the reason)
 *
 * test/unit/wrapped-tables.test.ts compares this with the migrated schema: a
 * table or a bytes column added later fails it until it is classified here.
 * Backup/restore will read the same list.
 *
 * AAD is declared as its parts: ['coffer/v1', context, ...fields, key version]
 * (crypto/context.ts and seal/seal-context.ts build it; the test checks that
 * they agree with what is declared here).
 */
import type { Database } from './schema.js';

export type TableName = keyof Database;
type ColumnOf<T extends TableName> = keyof Database[T] & string;

/** A column whose value a root key version wraps. */
export interface RootWrappedColumn<T extends TableName = TableName> {
  table: T;
  /** The primary key: which row a rewrapped value goes back to. */
  key: ReadonlyArray<ColumnOf<T>>;
  /** The wrapped bytes (null: destroyed or spent, nothing to rewrap). */
  column: ColumnOf<T>;
  /** The root key version that wrapped them. */
  rootVersion: ColumnOf<T>;
  /** AAD: context and the columns it binds, followed by the root version. */
  aad: { context: string; fields: ReadonlyArray<ColumnOf<T>> };
  /** Rows that are past use keep their bytes unrewrapped only if this column is set (e.g. a spent import key). */
  onlyWhileNull?: ColumnOf<T>;
  /** Which count of a root rotation's answer (RewrapCounts) the rows add to. */
  count: 'keks' | 'system_keys' | 'import_keys';
}

/** A column whose value a namespace KEK version wraps (a DEK), or a DEK encrypts (the value). */
export interface KekWrappedColumn<T extends TableName = TableName> {
  table: T;
  key: ReadonlyArray<ColumnOf<T>>;
  /** The wrapped DEK. */
  column: ColumnOf<T>;
  /** The KEK version that wrapped it. */
  kekVersion: ColumnOf<T>;
  /** How a row reaches its namespace (the KEK's owner): through this table's column. */
  namespace: { via: TableName; join: [ColumnOf<T>, string]; column: string };
  /** AAD of the DEK: context and its fields (namespace_id comes through `namespace`), then the KEK version. */
  aad: { context: string; fields: readonly string[] };
  /**
   * The ciphertext the DEK encrypts, and its AAD (no key version: the DEK is per version).
   * Absent when the wrapped bytes are the key itself (a KMS named key version).
   */
  encrypts?: { column: ColumnOf<T>; aad: { context: string; fields: readonly string[] } };
}

/** Any registry entry, column names as plain strings (what the generic queries need). */
export interface WrappedColumnShape {
  table: TableName;
  key: readonly string[];
  column: string;
  rootVersion: string;
  aad: { context: string; fields: readonly string[] };
  onlyWhileNull?: string;
}

const rootWrapped = <T extends TableName>(entry: RootWrappedColumn<T>): RootWrappedColumn<T> => entry;
const kekWrapped = <T extends TableName>(entry: KekWrappedColumn<T>): KekWrappedColumn<T> => entry;

/** In the order root rotation rewraps them. */
export const ROOT_WRAPPED = [
  rootWrapped({
    table: 'namespace_keys',
    key: ['namespace_id', 'version'],
    column: 'wrapped_key',
    rootVersion: 'root_version',
    aad: { context: 'kek', fields: ['namespace_id', 'version'] },
    count: 'keks',
  }),
  rootWrapped({
    table: 'system_keys',
    key: ['name', 'version'],
    column: 'wrapped_key',
    rootVersion: 'root_version',
    aad: { context: 'system-key', fields: ['name', 'version'] },
    count: 'system_keys',
  }),
  rootWrapped({
    table: 'import_keys',
    key: ['id'],
    column: 'wrapped_private_key',
    rootVersion: 'root_version',
    aad: { context: 'import-key', fields: ['id'] },
    onlyWhileNull: 'used_at',
    count: 'import_keys',
  }),
] as const;

export type RootWrappedTable = (typeof ROOT_WRAPPED)[number]['table'];

export const KEK_WRAPPED = [
  kekWrapped({
    table: 'secret_versions',
    key: ['secret_id', 'version'],
    column: 'wrapped_dek',
    kekVersion: 'kek_version',
    namespace: { via: 'secrets', join: ['secret_id', 'id'], column: 'namespace_id' },
    aad: { context: 'dek', fields: ['namespace_id', 'secret_id', 'version'] },
    encrypts: { column: 'ciphertext', aad: { context: 'secret-value', fields: ['namespace_id', 'secret_id', 'version'] } },
  }),
  // A KMS named key's versions: the material itself, under its namespace's KEK. `name` and `type`
  // of the AAD come from kms_keys (key_id); a row moved to another key or namespace fails to open.
  kekWrapped({
    table: 'kms_key_versions',
    key: ['key_id', 'version'],
    column: 'wrapped_material',
    kekVersion: 'kek_version',
    namespace: { via: 'namespaces', join: ['namespace_id', 'id'], column: 'id' },
    aad: { context: 'kms-key', fields: ['namespace_id', 'key_id', 'name', 'type', 'version'] },
  }),
] as const;

export type TableClass =
  | { kind: 'root-wrapped' }
  | { kind: 'kek-wrapped' }
  | { kind: 'seal'; columns: Readonly<Record<string, string>> }
  | { kind: 'plain'; bytes?: Readonly<Record<string, string>> };

/** Every table, classified. A table missing here does not compile; one missing in the schema fails the test. */
export const TABLES: { readonly [T in TableName]: TableClass } = {
  seal_config: {
    kind: 'seal',
    columns: {
      root_check: 'a fixed plaintext under the root key in effect (aad root-check): proves a rebuilt root key',
      recovery_check: 'a fixed plaintext under the recovery key (PKCS#11 seal)',
      pending_root: 'a Shamir rekey\'s next root key, wrapped by the root in effect (aad pending-root)',
      root_chain: 'the root key in effect, wrapped by the previous one, for other servers to follow',
    },
  },
  system_keys: { kind: 'root-wrapped' },
  namespace_keys: { kind: 'root-wrapped' },
  import_keys: { kind: 'root-wrapped' },
  secret_versions: { kind: 'kek-wrapped' },
  kms_key_versions: { kind: 'kek-wrapped' },
  kms_keys: { kind: 'plain' },
  namespaces: { kind: 'plain' },
  secrets: { kind: 'plain' },
  kek_rewrap_jobs: { kind: 'plain' },
  escrow_requests: { kind: 'plain' },
  tokens: { kind: 'plain' },
  login_failures: { kind: 'plain' },
  job_leases: { kind: 'plain' },
  policies: { kind: 'plain' },
  users: { kind: 'plain' },
  groups: { kind: 'plain' },
  group_members: { kind: 'plain' },
  approle_roles: { kind: 'plain' },
  approle_secret_ids: { kind: 'plain', bytes: { secret_hash: 'SHA-256 of a 256-bit random secret_id (not reversible)' } },
  jwt_issuers: { kind: 'plain' },
  jwt_roles: { kind: 'plain' },
  cert_roles: { kind: 'plain' },
  audit_log: { kind: 'plain', bytes: { prev_hash: 'the audit chain\'s HMAC links', hash: 'the audit chain\'s HMAC links' } },
  audit_checkpoints: { kind: 'plain', bytes: { hash: 'chain hash at a checkpoint', signature: 'HMAC signature of the checkpoint' } },
  audit_intents: { kind: 'plain' },
};
